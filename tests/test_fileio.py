"""Crash-safe writes (indexer.fileio): a reader finds the old version or the new one, never a part."""

from __future__ import annotations

import errno

import pytest

from indexer import fileio
from indexer.errors import DiskFullError
from indexer.store import files


def test_a_write_appears_whole_and_a_failed_one_leaves_the_old_version_and_no_litter(tmp_path):
    target = tmp_path / "report.json"
    fileio.atomic_write(target, lambda tmp: tmp.write_text("old"))
    assert target.read_text() == "old"

    def half_then_fail(tmp):
        tmp.write_text("half of the new")
        raise OSError(errno.EIO, "I/O error")

    with pytest.raises(OSError):
        fileio.atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_stream_appears_only_when_its_block_ends_cleanly(tmp_path):
    target = tmp_path / "sub" / "hits.csv"
    with fileio.atomic_open(target) as handle:
        handle.write("a,b\n")
        assert not target.exists()
    assert target.read_text() == "a,b\n"
    with pytest.raises(ValueError):
        with fileio.atomic_open(target) as handle:
            handle.write("c,d\n")
            raise ValueError("the caller gave up")
    assert target.read_text() == "a,b\n"
    assert [p.name for p in target.parent.iterdir()] == ["hits.csv"]


def test_a_folder_replaces_the_old_one_at_once_or_not_at_all(tmp_path):
    target = tmp_path / "cache" / "model"
    with fileio.atomic_folder(target) as staging:
        (staging / "a.bin").write_bytes(b"first")
        assert not target.exists()
    assert (target / "a.bin").read_bytes() == b"first"
    with pytest.raises(RuntimeError):
        with fileio.atomic_folder(target) as staging:
            (staging / "a.bin").write_bytes(b"second, half")
            raise RuntimeError("conversion failed")
    assert [p.name for p in target.iterdir()] == ["a.bin"] and (target / "a.bin").read_bytes() == b"first"
    with fileio.atomic_folder(target) as staging:
        (staging / "b.bin").write_bytes(b"second")
    assert [p.name for p in target.iterdir()] == ["b.bin"]
    assert [p.name for p in target.parent.iterdir()] == ["model"]  # no staging folder left behind


def test_the_index_files_say_a_full_disk_in_words(tmp_path):
    target = tmp_path / "vectors.json"
    target.write_text("{}")

    def disk_full(tmp):
        tmp.write_text("{")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError, match="the disk is full.*previous version is intact"):
        files.atomic_write(target, disk_full)
    assert target.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.json"]
