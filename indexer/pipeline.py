"""The reading stage of ingestion, run in DataLoader workers: read, hash, skip known content, decode,
preprocess. Imports torch, so ``ingest`` imports this module only when there is something to embed.

Each worker streams its share of the catalog's pending items (``id % workers == worker``) in small
pages through its own read-only SQLite connection, so no process ever holds the whole work list.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .decode import decode_image
from .errors import DecodeError
from .sources import read_bytes

PAGE = 256


@dataclass
class ItemRecord:
    """What a worker learned about one pending item."""

    item_id: int
    uri: str
    kind: str  # "ok" (decoded, tensor set), "known" (content already embedded), "failed"
    sha256: Optional[str] = None
    tensor: Optional[torch.Tensor] = None
    embedding_id: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    format: Optional[str] = None
    reason: Optional[str] = None
    detail: Optional[str] = None


def load_item(
    item_id: int, uri: str, known_content: Callable[[str], Optional[int]], preprocess: Callable[[Any], torch.Tensor],
    target_size: int, max_pixels: int,
) -> ItemRecord:
    try:
        data = read_bytes(uri)
    except DecodeError as exc:
        return ItemRecord(item_id, uri, "failed", reason=exc.reason, detail=exc.detail)
    sha = hashlib.sha256(data).hexdigest()
    embedding_id = known_content(sha)
    if embedding_id is not None:
        return ItemRecord(item_id, uri, "known", sha256=sha, embedding_id=embedding_id)
    try:
        decoded = decode_image(data, target_size, max_pixels)
        tensor = preprocess(decoded.image)
    except DecodeError as exc:
        return ItemRecord(item_id, uri, "failed", sha256=sha, reason=exc.reason, detail=exc.detail)
    except (OSError, ValueError, RuntimeError) as exc:  # a transform choking on an odd picture
        return ItemRecord(item_id, uri, "failed", sha256=sha, reason="preprocess_error", detail=str(exc)[:200])
    return ItemRecord(item_id, uri, "ok", sha256=sha, tensor=tensor, width=decoded.width, height=decoded.height,
                      format=decoded.format)


class PendingItems(IterableDataset):
    """The catalog's pending items, read and preprocessed; each worker takes every n-th item."""

    def __init__(self, catalog_path: str, preprocess: Callable, target_size: int, max_pixels: int) -> None:
        self.catalog_path = catalog_path
        self.preprocess = preprocess
        self.target_size = target_size
        self.max_pixels = max_pixels

    def __iter__(self) -> Iterator[ItemRecord]:
        info = get_worker_info()
        shard, shards = (info.id, info.num_workers) if info else (0, 1)
        conn = sqlite3.connect(f"file:{self.catalog_path}?mode=ro", uri=True, timeout=30)
        try:
            def known(sha: str) -> Optional[int]:
                row = conn.execute("SELECT id FROM embeddings WHERE sha256 = ?", (sha,)).fetchone()
                return row[0] if row else None

            last = 0
            while True:
                page = conn.execute(
                    "SELECT id, uri FROM items WHERE state = 'pending' AND id > ? AND id % ? = ? ORDER BY id LIMIT ?",
                    (last, shards, shard, PAGE),
                ).fetchall()
                if not page:
                    return
                for item_id, uri in page:
                    yield load_item(item_id, uri, known, self.preprocess, self.target_size, self.max_pixels)
                last = page[-1][0]
        finally:
            conn.close()


def collate(records: list[ItemRecord]) -> list[ItemRecord]:
    return records


def make_loader(dataset: PendingItems, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
