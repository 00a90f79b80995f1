"""The FAISS file is derived: missing, corrupt, stale or foreign files are repaired from the catalog."""

from __future__ import annotations

import json
import shutil

import faiss
import numpy as np

from indexer import open_index

from .conftest import PER_CLASS, TEST_CLASSES, catalog_execute

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
        ids = vectors.ids()
        vectors.remove(ids[-5:])  # pretend the last five were added after the file was written
        vectors.save()
    with open_index(index_copy) as index:
        assert index.vectors().ntotal == TOTAL
    catalog_execute(index_copy, "DELETE FROM embeddings WHERE id = (SELECT min(id) FROM embeddings)")  # foreign keys on
    with open_index(index_copy) as index:
        vectors = index.vectors()
        assert vectors.ntotal == TOTAL - 1
        assert int(vectors.ids().min()) > 1


def test_vectors_of_another_catalog_are_not_trusted(index_copy, tmp_path, photos):
    other = tmp_path / "other"
    with open_index(other, model="tiny-shapes") as index:
        index.ingest([photos / "red_star"])
    shutil.copy(other / "vectors.faiss", index_copy / "vectors.faiss")
    shutil.copy(other / "vectors.json", index_copy / "vectors.json")
    assert json.loads((index_copy / "vectors.json").read_text())["count"] == PER_CLASS
    with open_index(index_copy) as index:
        assert index.vectors().ntotal == TOTAL


def synthetic_catalog(path, vectors: np.ndarray) -> None:
    """A real catalog holding given embeddings (clustered like real ones), no model needed."""
    from indexer.store.catalog import open_catalog
    from indexer.store.codec import vector_to_blob
    from indexer.store.schema import Embedding

    catalog = open_catalog(path)
    with catalog.begin() as conn:
        catalog.set_meta("model", {"name": "synthetic", "pretrained": None, "embed_dim": vectors.shape[1]}, conn)
        conn.execute(Embedding.__table__.insert(), [
            {"sha256": f"{i:064x}", "vector": vector_to_blob(v), "created_at": 0.0} for i, v in enumerate(vectors)])
    catalog.close()


def clustered(n: int, dim: int = 32, clusters: int = 60, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(clusters, size=n)] + rng.normal(scale=0.6, size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_large_collections_get_a_tuned_ivf_index_that_grows_without_retraining(tmp_path, monkeypatch):
    monkeypatch.setenv("INDEXER_FLAT_MAX", "3000")
    data = clustered(6000)
    synthetic_catalog(tmp_path / "index", data[:5000])
    with open_index(tmp_path / "index") as index:
        vectors = index.vectors()
        layout = vectors.layout
        assert layout.kind == "ivf" and layout.trained_count == 5000
        assert layout.recall_at_10 >= 0.95
        # Its answers agree with exact search.
        queries = data[:50]
        _, found = vectors.search(queries, 10)
        exact = np.argsort(-(queries @ data[:5000].T), axis=1)[:, :10] + 1  # embedding ids start at 1
        agreement = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact)])
        assert agreement >= 0.9
    from indexer.store.catalog import open_catalog
    from indexer.store.codec import vector_to_blob
    from indexer.store.schema import Embedding

    catalog = open_catalog(tmp_path / "index")
    with catalog.begin() as conn:
        conn.execute(Embedding.__table__.insert(), [
            {"sha256": f"{i + 5000:064x}", "vector": vector_to_blob(v), "created_at": 0.0}
            for i, v in enumerate(data[5000:])])
    catalog.close()
    with open_index(tmp_path / "index") as index:
        vectors = index.vectors()
        assert vectors.ntotal == 6000
        assert vectors.layout.trained_count == 5000  # caught up by adding, not retrained
        status = index.status()
    assert "IVF" in status["vectors"]["kind"] and "recall@10" in status["vectors"]["kind"]


def test_a_memory_budget_selects_compressed_codes_with_exact_re_ranking(tmp_path, monkeypatch):
    monkeypatch.setenv("INDEXER_FLAT_MAX", "3000")
    data = clustered(5000, dim=32, seed=1)
    synthetic_catalog(tmp_path / "index", data)
    with open_index(tmp_path / "index") as index:
        index.set_memory_budget(5000 * 18)  # 18 bytes a vector, ids (8) included: flat float32 would need 136
        vectors = index.vectors()
        assert vectors.layout.kind == "ivfpq" and vectors.layout.pq_m == 8 and not vectors.layout.opq
        assert vectors.layout.recall_at_10 >= 0.9
        scores, ids = vectors.search(data[:5], 5)
        assert ids[:, 0].tolist() == [1, 2, 3, 4, 5]  # each stored vector finds itself first
        assert np.allclose(scores[:, 0], 1.0, atol=2e-3)  # exact scores, from the catalog


def test_parse_size():
    from indexer.config import parse_size

    assert parse_size("512MB") == 512 << 20
    assert parse_size("4g") == 4 << 30
    assert parse_size("1000") == 1000


def test_the_build_deepens_the_re_rank_when_probing_more_lists_stops_helping(tmp_path, monkeypatch):
    from indexer.store import vectors as vectors_module

    monkeypatch.setenv("INDEXER_FLAT_MAX", "3000")
    # Re-ranking only the k best codes leaves recall where the 4-byte codes put it; 50 x k reaches the target.
    monkeypatch.setattr(vectors_module, "PQ_RERANK_DEPTHS", (1, 50))
    data = clustered(5000, dim=32, seed=2)
    synthetic_catalog(tmp_path / "index", data)
    with open_index(tmp_path / "index") as index:
        index.set_memory_budget(5000 * 14)  # 4 bytes of code a vector (+ 8 of id)
        layout = index.vectors().layout
        assert layout.kind == "ivfpq" and layout.pq_m == 4
        assert layout.rerank == 50 and layout.recall_at_10 >= 0.9
        assert "re-rank of 50 x k" in index.status()["vectors"]["kind"]
    with open_index(tmp_path / "index") as index:  # read back from the file's metadata
        assert index.vectors().layout.rerank == 50
