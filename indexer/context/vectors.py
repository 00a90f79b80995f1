"""The index's FAISS vectors, loaded on first need (FAISS is imported only then) and kept."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from ..config import DEFAULT_FLAT_MAX
from .model import empty_index

if TYPE_CHECKING:
    from ..store.catalog import Catalog
    from ..store.vectors import Filler, VectorIndex
    from .model import IndexModel


class IndexVectors:
    """The vectors of the index at ``path``, derived from its catalog (invariant 1)."""

    def __init__(self, path: Path, catalog: "Catalog", model: "IndexModel", flat_max: int = DEFAULT_FLAT_MAX) -> None:
        self.path, self.catalog, self.model = path, catalog, model
        self.flat_max = flat_max  # Settings.flat_max: above it, a trained layout
        self._loaded: Optional["VectorIndex"] = None

    def get(self, sync: bool = True, filler: Optional["Filler"] = None) -> "VectorIndex":
        """The FAISS index (a ``VectorIndex``); with ``sync`` it is first caught up with what was committed
        since (one short catalog query when nothing was). ``filler`` fills a layout that has to be built
        anew (the distributed runner's encodes on the cluster)."""
        from ..store.vectors import VectorIndex

        if self.model.recorded is None:
            raise empty_index(self.path)
        if self._loaded is None:
            self._loaded = VectorIndex(self.path, self.catalog, self.flat_max).load(sync=False)
        if sync:
            self._loaded.sync(filler=filler)
        return self._loaded

    def file_exists(self) -> bool:
        from ..store.files import VECTORS_FILE

        return (self.path / VECTORS_FILE).exists()

    def remove(self, embedding_ids: Sequence[int]) -> None:
        """Removes the embeddings just purged from the catalog (no rebuild)."""
        if embedding_ids and self.file_exists():
            # The file as it is, not caught up: a catch-up would see the deletions and rebuild.
            self.get(sync=False).remove(embedding_ids)
