"""The vectors' layout built on the cluster: the driver trains the IVF(-PQ) index on a sample, tasks
encode runs of embedding ids read from the catalog into copies of it, and the driver merges their lists.

Encoding is the long part of a large build (every vector is assigned to a list and, for PQ, quantised);
it parallelises over id ranges with nothing shared but the trained index. A task that dies is retried by
Ray; its part is only merged once complete, so a retried range is never counted twice.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

RANGE_IDS = 100_000  # embedding ids per task
RETRIES = 3


def fill_range(trained: Any, index_dir: str, catalog_url: Optional[str], after_id: int,
               upto_id: int) -> tuple[int, Any]:
    """(embeddings added, the serialised part): ids in (after_id, upto_id] of the catalog added to a copy
    of the ``trained`` index (serialised bytes). Runs as a Ray task."""
    import faiss

    from ..store.catalog import CATALOG_FILE, Catalog

    part = faiss.deserialize_index(trained)
    catalog = Catalog(Path(index_dir) / CATALOG_FILE, catalog_url)
    try:
        for ids, matrix in catalog.embeddings.pages(after_id=after_id, upto_id=upto_id):
            part.add_with_ids(matrix, ids)
    finally:
        catalog.close()
    return int(part.ntotal), faiss.serialize_index(part)


class RayFiller:
    """A ``store.vectors.Filler`` that encodes the catalog's embeddings on the Ray cluster ``ray``."""

    def __init__(self, ray: Any, index_dir: Path, catalog: Any, catalog_url: Optional[str],
                 range_ids: int = RANGE_IDS) -> None:
        self.ray, self.index_dir, self.catalog, self.range_ids = ray, index_dir, catalog, range_ids
        self.catalog_url = catalog_url  # as the command was given it (None: the index folder's SQLite file)

    def __call__(self, trained: Any, progress: Optional[Callable[[int], None]] = None) -> Any:
        import faiss

        from ..store.vectors import merge_ivf

        ray = self.ray
        low, high = self.catalog.embeddings.id_range()
        blob = ray.put(faiss.serialize_index(trained))
        task = ray.remote(fill_range).options(num_cpus=1, max_retries=RETRIES)
        running = [task.remote(blob, str(self.index_dir), self.catalog_url, start, min(start + self.range_ids, high))
                   for start in range(low - 1, high, self.range_ids)]
        log.info("filling %s from %d id ranges on the cluster", type(trained).__name__, len(running))
        while running:
            ready, running = ray.wait(running, num_returns=1)
            added, part = ray.get(ready[0])
            merge_ivf(trained, faiss.deserialize_index(part))
            if progress:
                progress(added)
        return trained
