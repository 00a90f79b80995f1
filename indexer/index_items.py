"""What an ``Index`` answers about single items: their records, stored embeddings, copies and bytes (the
service's item view, "more like this", notebooks)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np

from .errors import QueryError
from .store.states import ItemState

if TYPE_CHECKING:
    from .store.catalog import Catalog


class IndexItems:
    """Item look-ups (mixed into ``Index``, whose ``catalog`` and ``path`` they use)."""

    catalog: "Catalog"
    path: Path

    def item(self, item_id: int) -> Optional[dict]:
        """What the catalog holds about one item (path, state, size, sha256, ...), or None."""
        return self.catalog.item(item_id)

    def item_paths(self, item_ids: Sequence[int]) -> dict[int, str]:
        """item id -> path."""
        return self.catalog.item_uris(item_ids)

    def item_embedding(self, item_id: int) -> Optional[np.ndarray]:
        """The stored embedding of an embedded item, or None."""
        item = self.catalog.item(item_id)
        if item is None or item["state"] != ItemState.EMBEDDED.value or item["embedding_id"] is None:
            return None
        ids, matrix = self.catalog.embeddings_by_id([item["embedding_id"]])
        return matrix[0] if len(ids) else None

    def same_content(self, item_id: int) -> list[tuple[int, str]]:
        """(item id, path) of the other embedded items holding the same content as ``item_id``."""
        item = self.catalog.item(item_id)
        if item is None or item["embedding_id"] is None:
            return []
        return [(other, uri) for other, uri, _ in self.catalog.items_for_embeddings([item["embedding_id"]])
                if other != item_id]

    def item_bytes(self, item_id: int) -> bytes:
        """The content of an item, read from where the catalog says it is (a file, an archive member)."""
        from .errors import DecodeError
        from .media.sources import read_uri

        item = self.catalog.item(item_id)
        if item is None:
            raise QueryError(f"no item {item_id} in {self.path}")
        try:
            return read_uri(item["path"])
        except DecodeError as exc:
            raise QueryError(f"item {item_id} ({item['path']}) cannot be read: {exc.detail or exc.reason}") from None

    def audit_findings(self, folder: Union[str, Path, None] = None) -> list[dict]:
        """The findings of a stored audit (``findings.json`` in ``folder``, by default INDEX/audit)."""
        from .audit.report import read_findings

        return read_findings(Path(folder) if folder else self.path / "audit")

    def ingest_sources(self) -> list[str]:
        """The sources named by the last finished ingest run (to ingest them again)."""
        return self.catalog.last_ingest_sources()
