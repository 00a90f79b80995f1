"""Paths that look like URLs or worse (``#``, ``?``, ``%``, spaces, unicode, newlines) in the index folder
and in file names; names that read as archive members; an index on read-only media."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from indexer import open_index

from .conftest import catalog_rows, run_cli

ODD = ["a#b", "q?x=1", "p%20c%", "two words", "ünï €", "line\nbreak", "semi;colon&amp"]


@pytest.mark.parametrize("name", ODD)
def test_odd_characters_in_the_index_path_and_in_file_names(tmp_path, photos, name):
    folder = tmp_path / f"photos {name}"
    folder.mkdir()
    for i, source in enumerate(sorted((photos / "red_star").iterdir())[:2]):
        shutil.copy(source, folder / f"{name}-{i}.jpg")
    with tarfile.open(folder / f"{name}.tar", "w") as tf:
        tf.add(sorted((photos / "blue_circle").iterdir())[0], arcname=f"{name}/member.jpg")
    index_dir = tmp_path / f"index {name}"
    with open_index(index_dir, model="tiny-shapes") as index:
        summary = index.ingest([folder])
        assert (summary.embedded, summary.failed) == (3, 0)
        hits = index.search("a blue circle", k=1)
    assert hits[0].path == f"{folder / (name + '.tar')}::{name}/member.jpg"
    # The catalog is the file in that folder (no stray file named after part of the path), and the
    # decode workers' read-only connection found it too (they read every pending item).
    assert sorted(p.name for p in index_dir.iterdir() if not p.name.startswith("catalog.sqlite")) == \
        ["ingest.lock", "vectors.faiss", "vectors.json"]
    assert {p.name for p in tmp_path.iterdir()} == {folder.name, index_dir.name}
    assert len(catalog_rows(index_dir, "SELECT uri FROM items WHERE state = 'embedded'")) == 3
    with open_index(index_dir) as index:  # reopened: the same file, found by the same name
        assert index.status()["embedded"] == 3


def test_a_file_whose_name_reads_as_an_archive_member_is_refused(tmp_path, photos):
    pictures = sorted((photos / "green_square").iterdir())
    with tarfile.open(tmp_path / "x.tar", "w") as tf:
        tf.add(pictures[0], arcname="y.jpg")
    shutil.copy(pictures[1], tmp_path / "x.tar::y.jpg")  # would be addressed as member y.jpg of x.tar
    warnings: list[str] = []
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        summary = index.ingest([tmp_path], warn=warnings.append)
    assert summary.embedded == 1
    assert catalog_rows(tmp_path / "index", "SELECT uri, container FROM items") == \
        [(f"{tmp_path / 'x.tar'}::y.jpg", str(tmp_path / "x.tar"))]
    assert any("x.tar::y.jpg" in w and "reads as an archive member" in w for w in warnings)


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only for this process: a read-only bind mount when running as root (root ignores
    permission bits), else permission bits."""
    if os.geteuid() == 0:
        done = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True)
        if done.returncode != 0:
            pytest.skip("running as root where no read-only mount can be made")
        try:
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        yield
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def test_reading_commands_work_on_a_read_only_index(tmp_path, built_index):
    index = tmp_path / "index"
    shutil.copytree(built_index, index)
    assert run_cli("search", "a red star", "--index", str(index)).returncode == 0  # caches the text
    (index / "vectors.faiss").unlink()  # must be rebuilt in memory, never written there
    before = sorted(p.name for p in index.iterdir())
    with read_only(index):
        status = run_cli("status", "--index", str(index), "--json")
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["embedded"] > 0
        cached = run_cli("search", "a red star", "--index", str(index), "--json")
        assert cached.returncode == 0, cached.stderr
        assert "red_star" in json.loads(cached.stdout)[0]["path"]
        fresh = run_cli("search", "a yellow square", "--index", str(index), "--json")  # new text: in memory
        assert fresh.returncode == 0, fresh.stderr
        assert "yellow_square" in json.loads(fresh.stdout)[0]["path"]
        classified = run_cli("classify", "--labels", "red star,blue circle", "--no-store", "--index", str(index),
                             "--json")
        assert classified.returncode == 0, classified.stderr
        audited = run_cli("audit", "--no-report", "--index", str(index))
        assert audited.returncode == 0, audited.stderr
        stored = run_cli("classify", "--labels", "red star,blue circle", "--index", str(index))
        assert stored.returncode == 1 and "Traceback" not in stored.stderr
        assert "read-only" in stored.stderr and "without storing the run" in stored.stderr
        assert sorted(p.name for p in index.iterdir()) == before
