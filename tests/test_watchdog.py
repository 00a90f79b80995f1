"""A decoder stuck in C code, deaf to SIGALRM: its worker is killed, the item recorded as ``timeout``,
and fresh workers embed the rest of the run; here and on a local Ray cluster alike."""

from __future__ import annotations

import shutil
import time

from indexer import open_index
from indexer.config import Settings

from .conftest import catalog_rows


def test_a_hung_decode_is_killed_and_recorded_as_timeout(tmp_path, photos, monkeypatch, strategy):
    # On a Ray cluster the decode task's process is killed; Ray runs the task again, and the new attempt
    # fails the item its predecessor died on instead of reading it again.
    folder = tmp_path / "photos"
    shutil.copytree(photos / "red_star", folder / "red_star")
    shutil.copytree(photos / "blue_circle", folder / "blue_circle")
    hung = sorted((folder / "red_star").iterdir())[1]
    monkeypatch.setenv("INDEXER_TEST_HANG", hung.name)
    started = time.monotonic()
    with open_index(tmp_path / "index", model="tiny-shapes", settings=Settings(workers=1, decode_seconds=1.0)) as index:
        summary = index.ingest([folder], **strategy)
    assert time.monotonic() - started < 120  # not the hour the hang lasts
    assert summary.failed_by_reason == {"timeout": 1}
    assert summary.embedded + summary.reused == 2 * len(list((folder / "red_star").iterdir())) - 1
    assert catalog_rows(tmp_path / "index", "SELECT uri, state, failure_reason FROM items WHERE state != 'embedded'") \
        == [(str(hung), "failed", "timeout")]
