"""What an index answers about itself and its single items: counts and sizes, an item's record, stored
embedding, copies and bytes (``indexer status``, the service's item view, "more like this", notebooks)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import DecodeError, QueryError
from ..store.states import INT8_KEY, ItemState

if TYPE_CHECKING:
    from ..context import IndexContext
    from ..store.catalog import Catalog


def status(ctx: "IndexContext") -> dict:
    """Counts, model, vectors and sizes: no model load, no vector load."""
    from ..models.spec import describe_identity
    from ..store.files import vectors_file_info

    catalog = ctx.catalog
    by_state = catalog.items.counts_by_state()
    recorded = ctx.model.recorded
    return {
        "index": str(ctx.path),
        "items": sum(n for state, n in by_state.items() if state != ItemState.DELETED.value),
        "embedded": by_state.get(ItemState.EMBEDDED.value, 0),
        "pending": by_state.get(ItemState.PENDING.value, 0),
        "failed": by_state.get(ItemState.FAILED.value, 0),
        "deleted": by_state.get(ItemState.DELETED.value, 0),
        "failures_by_reason": catalog.items.failures_by_reason(),
        "distinct_contents": catalog.embeddings.count(),
        "model": recorded,
        "model_description": describe_identity(recorded) if recorded else None,
        "runtimes": catalog.get_meta("runtimes", {}),
        "int8": catalog.get_meta(INT8_KEY),
        "vectors": vectors_file_info(ctx.path),
        "catalog_bytes": catalog.size_bytes(),
        "last_ingest": catalog.runs.last_ingest(),
    }


def item_embedding(catalog: "Catalog", item_id: int) -> Optional[np.ndarray]:
    """The stored embedding of an embedded item, or None."""
    item = catalog.items.get(item_id)
    if item is None or item["state"] != ItemState.EMBEDDED.value or item["embedding_id"] is None:
        return None
    ids, matrix = catalog.embeddings.by_ids([item["embedding_id"]])
    return matrix[0] if len(ids) else None


def same_content(catalog: "Catalog", item_id: int) -> list[tuple[int, str]]:
    """(item id, path) of the other embedded items holding the same content as ``item_id``."""
    item = catalog.items.get(item_id)
    if item is None or item["embedding_id"] is None:
        return []
    return [(other, uri) for other, uri, _ in catalog.items_for_embeddings([item["embedding_id"]]) if other != item_id]


def item_bytes(ctx: "IndexContext", item_id: int) -> bytes:
    """The content of an embedded item, read from where the catalog says it is (a file, an archive
    member) only while it is still the content that was embedded (same size and SHA-256), under the
    index's size limit. An item that failed (too large, not an image) is never read."""
    from ..media.sources import read_recorded

    item = ctx.catalog.items.get(item_id)
    if item is None:
        raise QueryError(f"no item {item_id} in {ctx.path}")
    if item["state"] != ItemState.EMBEDDED.value or not item["sha256"] or item["size"] is None:
        raise QueryError(f"item {item_id} ({item['path']}) is not an embedded picture ({item['state']})")
    try:
        return read_recorded(item["path"], int(item["size"]), item["sha256"], ctx.settings.max_file_size)
    except DecodeError as exc:
        raise QueryError(f"item {item_id} ({item['path']}) cannot be read: {exc.detail or exc.reason}") from None
