"""The reading stage of ingestion, as run in a decode worker: read, hash, skip known content, decode,
preprocess. No torch here: a worker needs only Pillow, numpy and the preprocessing function.

Each worker streams its share of the catalog's pending items through its own read-only connection
(``PendingReader``), so no process ever holds the whole work list: plain files are shared out by item
id (``id % workers``), archives whole (each one streamed once, in its own order, by one worker: a
compressed tar cannot be read any other way without reading it many times).
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
import zlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from ..errors import DecodeError
from ..media.archives import MEMBER_SEPARATOR, iter_archive_contents
from ..media.decode import decode_image, limit_aspect, time_limit
from ..media.guard import DecodeWatchdog, hard_limit
from ..media.sources import read_bytes
from ..store.worklist import PendingReader


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
    max_file_size: Optional[int] = None  # bytes; larger files and members fail as too_large
    watchdog_dir: Optional[str] = None  # where a worker's watchdog leaves its notes (see media.guard)
    main_pid: int = field(default_factory=os.getpid)  # the process that must never be killed by a watchdog

    def watchdog(self) -> Optional[DecodeWatchdog]:
        """A watchdog for this process when it is a decode worker (never in the main process)."""
        if not self.watchdog_dir or not self.decode_seconds or os.getpid() == self.main_pid:
            return None
        return DecodeWatchdog(self.watchdog_dir, hard_limit(self.decode_seconds))


def load_item(item_id: int, uri: str, data: Union[bytes, DecodeError], known_content: Callable[[str], Optional[int]],
              options: ReadOptions) -> ItemRecord:
    """The record of one item. Never raises for a bad picture: whatever goes wrong while reading one
    item becomes a failed record with a reason."""
    if isinstance(data, DecodeError):
        return ItemRecord(item_id, uri, "failed", reason=data.reason, detail=data.detail)
    sha = hashlib.sha256(data).hexdigest()
    embedding_id = known_content(sha)
    if embedding_id is not None:
        return ItemRecord(item_id, uri, "known", sha256=sha, embedding_id=embedding_id)
    try:
        with time_limit(options.decode_seconds):
            _hang_for_tests(uri)
            decoded = decode_image(data, options.target_size, options.max_pixels)
            image = limit_aspect(decoded.image) if options.crop_long_sides else decoded.image
            pixels = options.preprocess(image)
    except DecodeError as exc:
        return ItemRecord(item_id, uri, "failed", sha256=sha, reason=exc.reason, detail=exc.detail)
    except Exception as exc:  # a decoder or transform choking on an odd picture, in any way
        return ItemRecord(item_id, uri, "failed", sha256=sha, reason="preprocess_error",
                          detail=f"{type(exc).__name__}: {exc}"[:200])
    return ItemRecord(item_id, uri, "ok", sha256=sha, pixels=pixels, width=decoded.width, height=decoded.height,
                      format=decoded.format)


def _hang_for_tests(uri: str) -> None:
    """``INDEXER_TEST_HANG=NAME``: reading a file whose uri ends with NAME hangs the way a decoder stuck
    in C code does, deaf to SIGALRM (the tests of the watchdog need such a file; no real one is known)."""
    name = os.environ.get("INDEXER_TEST_HANG")
    if name and uri.endswith(name):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(3600)


def _read_file(uri: str, raw_path: Optional[bytes], max_bytes: Optional[int]) -> Union[bytes, DecodeError]:
    try:
        return read_bytes(uri, raw_path, max_bytes)
    except DecodeError as exc:
        return exc


def _archive_contents(container: str, wanted: set[str],
                      max_bytes: Optional[int]) -> Iterator[tuple[str, Union[bytes, DecodeError]]]:
    """``iter_archive_contents``, and should anything unforeseen escape it, the members not reached yet
    as ``bad_archive`` failures: one archive never stops the others."""
    left = set(wanted)
    try:
        for name, data in iter_archive_contents(container, wanted, max_bytes):
            left.discard(name)
            yield name, data
    except Exception as exc:
        error = DecodeError("bad_archive", f"{type(exc).__name__}: {exc}"[:200])
        for name in sorted(left):
            yield name, error


def iter_pending(reader: PendingReader, options: ReadOptions, shard: int = 0, shards: int = 1) -> Iterator[ItemRecord]:
    """The records of this worker's share of the pending items: plain files first, then archives.
    In a worker process, each item is read under a watchdog that kills the worker if a decoder hangs."""
    watchdog = options.watchdog()
    guard = watchdog.watch if watchdog is not None else (lambda item_id: nullcontext())
    try:
        for item_id, uri, raw_path in reader.plain_files(shard, shards):
            with guard(item_id):
                record = load_item(item_id, uri, _read_file(uri, raw_path, options.max_file_size),
                                   reader.embedding_id, options)
            yield record
        for container in reader.containers():
            if zlib.crc32(container.encode("utf-8", "surrogateescape")) % shards != shard:
                continue
            members = {uri[len(container) + len(MEMBER_SEPARATOR):]: (item_id, uri)
                       for item_id, uri in reader.members(container)}
            for name, data in _archive_contents(container, set(members), options.max_file_size):
                item_id, uri = members[name]
                with guard(item_id):
                    record = load_item(item_id, uri, data, reader.embedding_id, options)
                yield record
    finally:
        reader.close()
