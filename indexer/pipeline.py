"""The reading stage of ingestion, run in DataLoader workers: read, hash, skip known content, decode,
preprocess. Imports torch, so ``ingest`` imports this module only when there is something to embed.

Each worker streams its share of the catalog's pending items through its own read-only SQLite
connection, in small pages, so no process ever holds the whole work list: plain files are shared out
by item id (``id % workers``), archives whole (each one streamed once, in its own order, by one
worker: a compressed tar cannot be read any other way without reading it many times).
"""

from __future__ import annotations

import hashlib
import sqlite3
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Union

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .decode import decode_image, limit_aspect, time_limit
from .errors import DecodeError
from .sources import MEMBER_SEPARATOR, iter_archive_contents, read_bytes

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


@dataclass
class ReadOptions:
    preprocess: Callable[[Any], torch.Tensor]
    target_size: int
    max_pixels: int
    decode_seconds: Optional[float]
    crop_long_sides: bool  # the preprocessing centre-crops a square: long strips may be cut first


def load_item(item_id: int, uri: str, data: Union[bytes, DecodeError], known_content: Callable[[str], Optional[int]],
              options: ReadOptions) -> ItemRecord:
    if isinstance(data, DecodeError):
        return ItemRecord(item_id, uri, "failed", reason=data.reason, detail=data.detail)
    sha = hashlib.sha256(data).hexdigest()
    embedding_id = known_content(sha)
    if embedding_id is not None:
        return ItemRecord(item_id, uri, "known", sha256=sha, embedding_id=embedding_id)
    try:
        with time_limit(options.decode_seconds):
            decoded = decode_image(data, options.target_size, options.max_pixels)
            image = limit_aspect(decoded.image) if options.crop_long_sides else decoded.image
            tensor = options.preprocess(image)
    except DecodeError as exc:
        return ItemRecord(item_id, uri, "failed", sha256=sha, reason=exc.reason, detail=exc.detail)
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:  # a transform choking on an odd picture
        return ItemRecord(item_id, uri, "failed", sha256=sha, reason="preprocess_error", detail=str(exc)[:200])
    return ItemRecord(item_id, uri, "ok", sha256=sha, tensor=tensor, width=decoded.width, height=decoded.height,
                      format=decoded.format)


def _read_file(uri: str, raw_path: Optional[bytes]) -> Union[bytes, DecodeError]:
    try:
        return read_bytes(uri, raw_path)
    except DecodeError as exc:
        return exc


class PendingItems(IterableDataset):
    """The catalog's pending items, read and preprocessed; see the module docstring for the sharing."""

    def __init__(self, catalog_path: str, options: ReadOptions) -> None:
        self.catalog_path = catalog_path
        self.options = options

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
                    "SELECT id, uri, raw_path FROM items WHERE state = 'pending' AND container IS NULL AND id > ? "
                    "AND id % ? = ? ORDER BY id LIMIT ?", (last, shards, shard, PAGE)).fetchall()
                if not page:
                    break
                for item_id, uri, raw_path in page:
                    yield load_item(item_id, uri, _read_file(uri, raw_path), known, self.options)
                last = page[-1][0]

            containers = [row[0] for row in conn.execute(
                "SELECT DISTINCT container FROM items WHERE state = 'pending' AND container IS NOT NULL "
                "ORDER BY container")]
            for container in containers:
                if zlib.crc32(container.encode("utf-8", "surrogateescape")) % shards != shard:
                    continue
                members = {uri[len(container) + len(MEMBER_SEPARATOR):]: (item_id, uri) for item_id, uri in conn.execute(
                    "SELECT id, uri FROM items WHERE state = 'pending' AND container = ?", (container,))}
                for name, data in iter_archive_contents(container, set(members)):
                    item_id, uri = members[name]
                    yield load_item(item_id, uri, data, known, self.options)
        finally:
            conn.close()


@dataclass
class Batch:
    """A batch of records; the decoded pictures' tensors stacked, in the order of the "ok" records."""

    records: list[ItemRecord]
    images: Optional[torch.Tensor]

    def pin_memory(self) -> "Batch":  # called by the DataLoader when pinning for a GPU
        if self.images is not None:
            self.images = self.images.pin_memory()
        return self


def collate(records: list[ItemRecord]) -> Batch:
    tensors = [r.tensor for r in records if r.kind == "ok"]
    for r in records:
        r.tensor = None
    return Batch(records, torch.stack(tensors) if tensors else None)


def _lower_priority(worker_id: int) -> None:
    """Decode workers yield to the model's threads: on a CPU the model is the bottleneck, and a
    worker needs only a sliver of a core, which it still gets, to keep the prefetch queue full."""
    import os

    try:
        os.nice(int(os.environ.get("INDEXER_WORKER_NICE", "10")))
    except OSError:
        pass


def make_loader(dataset: PendingItems, batch_size: int, workers: int, device: str = "cpu") -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        prefetch_factor=4 if workers else None,
        pin_memory=device.startswith("cuda"),
        persistent_workers=False,
        worker_init_fn=_lower_priority if device == "cpu" and workers else None,
    )
