"""Crash safety, proven with SIGKILL: a killed ingest leaves a catalog that opens, loses at most the
batch in flight, never embeds anything twice, and the next run finishes the job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

from indexer import open_index, synthetic

from .conftest import catalog_rows, run_cli

pytestmark = pytest.mark.slow

BATCH = 8


def start_ingest(photos: Path, index: Path, trace: Path, pause: str | None = None, workers: int = 0):
    env = dict(os.environ, INDEXER_TEST_TRACE=str(trace))
    if pause:
        env["INDEXER_TEST_PAUSE"] = pause
    script = Path(sys.executable).with_name("indexer")
    command = [str(script), "ingest", str(photos), "--index", str(index), "--model", "tiny-shapes",
               "--batch-size", str(BATCH), "--workers", str(workers), "--no-progress"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def traced(trace: Path) -> list[int]:
    return [int(line) for line in trace.read_text().split()] if trace.exists() else []


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError("the ingest never reached the moment to kill it")
        time.sleep(0.05)


def catalog_facts(index: Path) -> dict:
    """Opens the catalog as a reader would after the crash, and checks it is whole."""
    assert catalog_rows(index, "PRAGMA integrity_check")[0][0] == "ok"
    embedded = catalog_rows(index, "SELECT count(*) FROM items WHERE state = 'embedded'")[0][0]
    contents = catalog_rows(index, "SELECT count(*) FROM embeddings")[0][0]
    dangling = catalog_rows(index, "SELECT count(*) FROM items WHERE state = 'embedded' AND embedding_id NOT IN "
                                   "(SELECT id FROM embeddings)")[0][0]
    shas = catalog_rows(index, "SELECT count(DISTINCT sha256), count(*) FROM embeddings")[0]
    assert dangling == 0
    assert shas[0] == shas[1]  # no content embedded twice
    return {"embedded": embedded, "contents": contents}


def test_sigkill_at_random_moments_during_commits_and_during_the_index_write(tmp_path):
    photos = tmp_path / "photos"
    written = synthetic.write_labelled_folder(photos, 8, synthetic.ALL_CLASSES, seed=11, size=64)
    files = len(written)
    index, trace = tmp_path / "index", tmp_path / "trace.txt"
    rng = np.random.default_rng(2026)
    lost_before = 0
    trials = ["random", "commit", "random", "random", "vectors"]
    kills = 0
    for trial in trials:
        done_before = catalog_facts(index)["contents"] if (index / "catalog.sqlite").exists() else 0
        if trial == "commit":
            # Paused inside the transaction of the second batch from now, then killed.
            process = start_ingest(photos, index, trace, pause="commit:3", workers=1)
            first = len(traced(trace))
            wait_for(lambda: len(traced(trace)) >= first + 2 or process.poll() is not None)
            time.sleep(0.5)
        elif trial == "vectors":
            process = start_ingest(photos, index, trace, pause="write:vectors.faiss:5")
            wait_for(lambda: any(index.glob(".vectors.faiss.tmp-*")) or process.poll() is not None)
            time.sleep(0.2)
        else:
            # Slowed down a little at a random stage of every batch, and killed after a random number of
            # batches (counted, not timed: a fast machine must not finish the job first) plus a random delay.
            stage = ["batch", "commit"][int(rng.integers(0, 2))]
            process = start_ingest(photos, index, trace, pause=f"{stage}:0.1", workers=int(rng.integers(0, 2)))
            first, batches = len(traced(trace)), int(rng.integers(1, 6))
            wait_for(lambda: len(traced(trace)) >= first + batches or process.poll() is not None)
            time.sleep(float(rng.uniform(0.0, 0.3)))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait()

        facts = catalog_facts(index)  # opens cleanly, nothing dangling, nothing twice
        assert facts["embedded"] <= files
        lost = sum(traced(trace)) - facts["contents"]
        assert lost - lost_before <= BATCH, f"{trial}: lost {lost - lost_before} embeddings in one kill"
        assert facts["contents"] >= done_before  # what was committed stays committed
        lost_before = lost
        print(process.stderr.read()[-800:] if process.returncode != -9 else "")
        print(f"trial {trial}: killed={process.returncode == -9} committed={facts['contents']} traced={sum(traced(trace))}")
        if trial == "vectors" and (index / "vectors.faiss").exists():
            faiss.read_index(str(index / "vectors.faiss"))  # the old file is intact, never half-written
    assert kills >= 4

    final = run_cli("ingest", str(photos), "--index", str(index), "--json", env={"INDEXER_TEST_TRACE": str(trace)})
    assert final.returncode == 0, final.stderr
    facts = catalog_facts(index)
    assert facts["embedded"] == files == facts["contents"]  # every distinct file, once
    assert sum(traced(trace)) - files <= BATCH * kills  # at most one batch redone per kill
    vectors = faiss.read_index(str(index / "vectors.faiss"))
    ids = sorted(row[0] for row in catalog_rows(index, "SELECT id FROM embeddings"))
    assert sorted(faiss.vector_to_array(vectors.id_map).tolist()) == ids  # the FAISS file agrees
    with open_index(index) as opened:
        assert len(opened.search("a red star", k=5)) == 5


def test_second_ingest_is_refused_while_searches_keep_working(tmp_path, photos):
    index, trace = tmp_path / "index", tmp_path / "trace.txt"
    warm = run_cli("ingest", str(photos / "red_star"), "--index", str(index), "--model", "tiny-shapes")
    assert warm.returncode == 0, warm.stderr
    assert run_cli("search", "a red star", "--index", str(index)).returncode == 0  # caches the query text
    process = start_ingest(photos, index, trace, pause="commit:4")
    try:
        wait_for(lambda: len(traced(trace)) >= 1 or process.poll() is not None)
        second = run_cli("ingest", str(photos), "--index", str(index))
        assert second.returncode == 1
        assert "being ingested into by process" in second.stderr
        search = run_cli("search", "a red star", "--index", str(index), "-k", "3", "--json")
        assert search.returncode == 0, search.stderr
        assert process.poll() is None  # the first ingest was still running all along
    finally:
        process.kill()
        process.wait()
