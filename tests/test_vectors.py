"""The FAISS file is derived: missing, corrupt, stale or foreign files are repaired from the catalog."""

from __future__ import annotations

import json
import shutil
import sqlite3

import faiss

from indexer import open_index

from .conftest import PER_CLASS, TEST_CLASSES

TOTAL = len(TEST_CLASSES) * PER_CLASS


def test_missing_vectors_are_rebuilt_from_the_catalog(index_copy):
    (index_copy / "vectors.faiss").unlink()
    with open_index(index_copy) as index:
        assert index.vectors().ntotal == TOTAL
    assert faiss.read_index(str(index_copy / "vectors.faiss")).ntotal == TOTAL


def test_corrupt_vectors_are_rebuilt(index_copy):
    (index_copy / "vectors.faiss").write_bytes(b"\x00garbage" * 50)
    with open_index(index_copy) as index:
        hits = index.search("a red star", k=3)
    assert len(hits) == 3
    assert faiss.read_index(str(index_copy / "vectors.faiss")).ntotal == TOTAL


def test_stale_vectors_catch_up_and_deleted_ones_force_a_rebuild(index_copy):
    with open_index(index_copy) as index:
        vectors = index.vectors()
        ids = vectors._ids()
        vectors.remove(ids[-5:])  # pretend the last five were added after the file was written
        vectors.save()
    with open_index(index_copy) as index:
        assert index.vectors().ntotal == TOTAL
    conn = sqlite3.connect(index_copy / "catalog.sqlite")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("DELETE FROM embeddings WHERE id = (SELECT min(id) FROM embeddings)")
    conn.commit()
    conn.close()
    with open_index(index_copy) as index:
        vectors = index.vectors()
        assert vectors.ntotal == TOTAL - 1
        assert int(vectors._ids().min()) > 1


def test_vectors_of_another_catalog_are_not_trusted(index_copy, tmp_path, photos):
    other = tmp_path / "other"
    with open_index(other, model="tiny-shapes") as index:
        index.ingest([photos / "red_star"], progress=False)
    shutil.copy(other / "vectors.faiss", index_copy / "vectors.faiss")
    shutil.copy(other / "vectors.json", index_copy / "vectors.json")
    assert json.loads((index_copy / "vectors.json").read_text())["count"] == PER_CLASS
    with open_index(index_copy) as index:
        assert index.vectors().ntotal == TOTAL
