"""The FAISS index beside the catalog: a derived accelerator over the catalog's embeddings.

Vectors are the catalog's L2-normalised embeddings, searched by inner product (= cosine), under the
catalog's embedding ids. The file is written to a temporary name, fsynced and renamed into place.
When it is missing, corrupt, made for another catalog, or behind, it is caught up or rebuilt from the
catalog's stored embeddings: images are never decoded again.

Staying in sync needs no bookkeeping: embedding ids only grow (SQLite AUTOINCREMENT), so a file that
holds every id up to its largest is caught up by adding the ids above it, and any deletion since
shows as a count that no longer matches, which triggers a rebuild (or is applied by ``remove``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import faiss
import numpy as np
from sqlalchemy import func, select

from .catalog import Catalog, Embedding, blobs_to_matrix
from .files import atomic_write

log = logging.getLogger(__name__)

VECTORS_FILE = "vectors.faiss"
VECTORS_META = "vectors.json"
CHUNK = 16384


def iter_embeddings(catalog: Catalog, after_id: int = 0, chunk: int = CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids, matrix) chunks of the catalog's embeddings with id > ``after_id``, in id order."""
    dim = catalog.embedding_dim()
    if dim is None:
        return
    last = after_id
    while True:
        with catalog.read() as conn:
            rows = conn.execute(
                select(Embedding.id, Embedding.vector).where(Embedding.id > last).order_by(Embedding.id).limit(chunk)
            ).all()
        if not rows:
            return
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        yield ids, blobs_to_matrix([r[1] for r in rows], dim)
        last = int(ids[-1])


class VectorIndex:
    """A FAISS ``IndexIDMap2`` over an exact inner-product index, kept in step with a catalog."""

    def __init__(self, index_dir: Path, catalog: Catalog) -> None:
        self.dir = index_dir
        self.catalog = catalog
        self.path = index_dir / VECTORS_FILE
        self.meta_path = index_dir / VECTORS_META
        self.index: Optional[faiss.Index] = None

    # -- state ------------------------------------------------------------------------------------

    def _catalog_state(self) -> tuple[int, int]:
        with self.catalog.read() as conn:
            count, max_id = conn.execute(select(func.count(Embedding.id), func.max(Embedding.id))).one()
        return int(count or 0), int(max_id or 0)

    def _ids(self) -> np.ndarray:
        assert self.index is not None
        return faiss.vector_to_array(self.index.id_map) if self.index.ntotal else np.zeros(0, dtype=np.int64)

    def _new_index(self, dim: int) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def _load_file(self, dim: int) -> Optional[faiss.Index]:
        if not self.path.exists() or not self.meta_path.exists():
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
            if meta.get("catalog_id") != self.catalog.catalog_id() or meta.get("dim") != dim:
                log.warning("%s belongs to another catalog or model: rebuilding it", self.path)
                return None
            index = faiss.read_index(str(self.path))
        except (OSError, ValueError, RuntimeError) as exc:  # faiss raises RuntimeError on a corrupt file
            log.warning("%s is unreadable (%s): rebuilding it from the catalog", self.path, exc)
            return None
        if index.d != dim or not isinstance(index, faiss.IndexIDMap2):
            return None
        return index

    def load(self, progress: Optional[Callable[[int], None]] = None, sync: bool = True) -> "VectorIndex":
        """Loads the file and brings it in step with the catalog (catch-up, or rebuild when needed);
        with ``sync=False``, the file as it is (``index`` is None when there is none)."""
        dim = self.catalog.embedding_dim()
        if dim is None:
            self.index = None
            return self
        if not sync:
            self.index = self._load_file(dim)
            return self
        count, max_id = self._catalog_state()
        index = self._load_file(dim)
        changed = False
        if index is None:
            index, changed = self._new_index(dim), True
        self.index = index
        ids = self._ids()
        have_max = int(ids.max()) if len(ids) else 0
        if have_max < max_id:
            for new_ids, matrix in iter_embeddings(self.catalog, after_id=have_max):
                index.add_with_ids(matrix, new_ids)
                if progress:
                    progress(len(new_ids))
            changed = True
        if index.ntotal != count or have_max > max_id:
            log.info("vectors out of step with the catalog (%d vs %d): rebuilding", index.ntotal, count)
            self.rebuild(progress)
            return self
        if changed:
            self.save()
        return self

    def rebuild(self, progress: Optional[Callable[[int], None]] = None) -> None:
        dim = self.catalog.embedding_dim()
        assert dim is not None
        index = self._new_index(dim)
        for ids, matrix in iter_embeddings(self.catalog):
            index.add_with_ids(matrix, ids)
            if progress:
                progress(len(ids))
        self.index = index
        self.save()

    def save(self) -> None:
        assert self.index is not None
        index = self.index
        atomic_write(self.path, lambda tmp: faiss.write_index(index, str(tmp)))
        meta = {
            "catalog_id": self.catalog.catalog_id(),
            "dim": index.d,
            "count": int(index.ntotal),
            "kind": "Flat (exact inner product)",
            "written_at": time.time(),
        }
        atomic_write(self.meta_path, lambda tmp: tmp.write_text(json.dumps(meta, indent=2)))

    # -- operations -------------------------------------------------------------------------------

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal) if self.index is not None else 0

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query row; ids of -1 pad when fewer vectors exist."""
        if self.index is None or self.index.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        k = min(k, int(self.index.ntotal))
        scores, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, ids

    def remove(self, ids: np.ndarray) -> None:
        if self.index is not None and len(ids):
            self.index.remove_ids(np.asarray(ids, dtype=np.int64))


def file_info(index_dir: Path) -> dict:
    """What ``status`` shows about the vectors file, without loading it."""
    meta_path, path = index_dir / VECTORS_META, index_dir / VECTORS_FILE
    info: dict = {"file": str(path), "exists": path.exists()}
    if path.exists():
        info["bytes"] = os.path.getsize(path)
    if meta_path.exists():
        try:
            info.update(json.loads(meta_path.read_text()))
        except (OSError, ValueError):
            info["unreadable_meta"] = True
    return info
