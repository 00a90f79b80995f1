"""The reading stage of ingestion, as run in a decode worker: read, hash, skip known content, decode,
preprocess. No torch here: a worker needs only Pillow, numpy and the preprocessing function.

Each worker streams its share of the catalog's pending items through its own read-only connection
(``PendingReader``), so no process ever holds the whole work list: plain files are shared out by item
id (``id % workers``), archives whole (each one streamed once, in its own order, by one worker: a
compressed tar cannot be read any other way without reading it many times).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from ..errors import DecodeError
from ..media.archives import MEMBER_SEPARATOR, iter_archive_contents
from ..media.decode import decode_image, limit_aspect, time_limit
from ..media.sources import read_bytes
from ..store.items import PendingReader


@dataclass
class ItemRecord:
    """What a worker learned about one pending item."""

    item_id: int
    uri: str
    kind: str  # "ok" (decoded, pixels set), "known" (content already embedded), "failed"
    sha256: Optional[str] = None
    pixels: Optional[np.ndarray] = None  # (3, size, size) float32, preprocessed
    embedding_id: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    format: Optional[str] = None
    reason: Optional[str] = None
    detail: Optional[str] = None


@dataclass
class ReadOptions:
    preprocess: Callable[[Any], np.ndarray]
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
            pixels = options.preprocess(image)
    except DecodeError as exc:
        return ItemRecord(item_id, uri, "failed", sha256=sha, reason=exc.reason, detail=exc.detail)
    except (OSError, ValueError, RuntimeError, MemoryError) as exc:  # a transform choking on an odd picture
        return ItemRecord(item_id, uri, "failed", sha256=sha, reason="preprocess_error", detail=str(exc)[:200])
    return ItemRecord(item_id, uri, "ok", sha256=sha, pixels=pixels, width=decoded.width, height=decoded.height,
                      format=decoded.format)


def _read_file(uri: str, raw_path: Optional[bytes]) -> Union[bytes, DecodeError]:
    try:
        return read_bytes(uri, raw_path)
    except DecodeError as exc:
        return exc


def iter_pending(reader: PendingReader, options: ReadOptions, shard: int = 0, shards: int = 1) -> Iterator[ItemRecord]:
    """The records of this worker's share of the pending items: plain files first, then archives."""
    try:
        for item_id, uri, raw_path in reader.plain_files(shard, shards):
            yield load_item(item_id, uri, _read_file(uri, raw_path), reader.embedding_id, options)
        for container in reader.containers():
            if zlib.crc32(container.encode("utf-8", "surrogateescape")) % shards != shard:
                continue
            members = {uri[len(container) + len(MEMBER_SEPARATOR):]: (item_id, uri)
                       for item_id, uri in reader.members(container)}
            for name, data in iter_archive_contents(container, set(members)):
                item_id, uri = members[name]
                yield load_item(item_id, uri, data, reader.embedding_id, options)
    finally:
        reader.close()
