"""The reading stage of ingestion, as run in a decode worker: read, hash, skip known content, decode,
preprocess. No torch here: a worker needs only Pillow, numpy and the preprocessing function.

Each worker streams its share of the catalog's pending items through its own read-only connection
(``PendingReader``), so no process ever holds the whole work list: plain files are shared out by item
id (``id % workers``), archives whole (each one streamed once, in its own order, by one worker: a
compressed tar cannot be read any other way without reading it many times). A shard of a distributed
run is read the same way: it is only another ``Selection``, and its ``ReadOptions`` come from the same
``read_options``, so the limits (size, pixels, decode time, the watchdog, a bad archive) are the same.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import islice
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional, Union

import numpy as np

from .. import _faults
from ..errors import DecodeError
from ..media.archives import MEMBER_SEPARATOR, iter_archive_contents
from ..media.decode import decode_image, limit_aspect, time_limit
from ..media.guard import DecodeWatchdog, hard_limit
from ..media.phash import perceptual_hash
from ..media.metadata import PictureFacts, read_facts
from ..media.sources import read_bytes
from ..store.pending import PendingReader

if TYPE_CHECKING:
    from ..config import Settings


@dataclass
class ItemRecord:
    """What a worker learned about one pending item."""

    item_id: int
    uri: str
    kind: str  # "ok" (decoded, pixels set), "known" (content already embedded), "failed"
    sha256: Optional[str] = None
    pixels: Optional[np.ndarray] = None  # (H, W, 3) uint8: resized and cropped, normalised where it is embedded
    embedding_id: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    format: Optional[str] = None
    reason: Optional[str] = None
    detail: Optional[str] = None
    phash: Optional[int] = None  # perceptual hash of the decoded picture (``media.phash``)
    facts: Optional[PictureFacts] = None  # EXIF date, camera, GPS; set for "ok" and "known" records


@dataclass
class ReadOptions:
    preprocess: Callable[[Any], np.ndarray]  # a decoded picture -> its pixels (Preprocessor.pixels)
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


def read_options(embedder: Any, settings: "Settings", watchdog_dir: Optional[str] = None) -> ReadOptions:
    """How pending items are read for ``embedder`` under ``settings``'s limits: the one place that builds
    ``ReadOptions``, for the decode workers here and the decode tasks on a cluster alike."""
    return ReadOptions(embedder.preprocess.pixels, embedder.image_size, settings.max_pixels, settings.decode_seconds,
                       crop_long_sides=embedder.preprocess_config.crops_centre,
                       max_file_size=settings.max_file_size, watchdog_dir=watchdog_dir)


@dataclass(frozen=True)
class Selection:
    """Which pending items one reader takes. A decode worker here takes its ``part`` of ``parts`` (plain
    files by id, archives whole); a shard on a cluster takes plain files with ids in ``first_id``..
    ``last_id`` (``archives=False``), or the members of one ``archive`` (``files=False``). Items in
    ``stuck`` (item id -> reason: a reader before this one died on them) are failed without being read."""

    part: int = 0
    parts: int = 1
    first_id: int = 0
    last_id: Optional[int] = None
    archive: Optional[str] = None
    files: bool = True
    archives: bool = True
    stuck: Mapping[int, str] = field(default_factory=dict)

    @classmethod
    def id_range(cls, first_id: int, last_id: int) -> "Selection":
        return cls(first_id=first_id, last_id=last_id, archives=False)

    @classmethod
    def of_archive(cls, archive: str) -> "Selection":
        return cls(archive=archive, files=False)

    def takes_archive(self, container: str) -> bool:
        if self.archive is not None:
            return container == self.archive
        return zlib.crc32(container.encode("utf-8", "surrogateescape")) % self.parts == self.part


# What a reader that died on an item leaves it with (the reason comes from ``media.guard.stuck_items``).
STUCK_DETAILS = {"timeout": "the decoder did not stop within the time limit; killed",
                 "worker_crashed": "the decode worker died while reading it; --retry-failed tries again"}


def load_item(item_id: int, uri: str, data: Union[bytes, DecodeError], known_content: Callable[[str], Optional[int]],
              options: ReadOptions) -> ItemRecord:
    """The record of one item. Never raises for a bad picture: whatever goes wrong while reading one
    item becomes a failed record with a reason."""
    if isinstance(data, DecodeError):
        return ItemRecord(item_id, uri, "failed", reason=data.reason, detail=data.detail)
    sha = hashlib.sha256(data).hexdigest()
    embedding_id = known_content(sha)
    if embedding_id is not None:  # nothing decoded: the header alone gives the EXIF facts
        return ItemRecord(item_id, uri, "known", sha256=sha, embedding_id=embedding_id, facts=read_facts(data))
    try:
        with time_limit(options.decode_seconds):
            _faults.hang(uri)
            decoded = decode_image(data, options.target_size, options.max_pixels, facts=True)
            image = limit_aspect(decoded.image) if options.crop_long_sides else decoded.image
            pixels = options.preprocess(image)
            phash = perceptual_hash(decoded.image)  # from the picture in hand: no second decode
    except DecodeError as exc:
        return ItemRecord(item_id, uri, "failed", sha256=sha, reason=exc.reason, detail=exc.detail)
    except Exception as exc:  # a decoder or transform choking on an odd picture, in any way
        return ItemRecord(item_id, uri, "failed", sha256=sha, reason="preprocess_error",
                          detail=f"{type(exc).__name__}: {exc}"[:200])
    return ItemRecord(item_id, uri, "ok", sha256=sha, pixels=pixels, width=decoded.width, height=decoded.height,
                      format=decoded.format, phash=phash, facts=decoded.facts)


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


def iter_pending(reader: PendingReader, options: ReadOptions, selection: Selection = Selection()) -> Iterator[ItemRecord]:
    """The records of the pending items ``selection`` takes: plain files first, then archives. Outside
    the main process, each item is read under a watchdog that kills the process if a decoder hangs."""
    watchdog = options.watchdog()
    guard = watchdog.watch if watchdog is not None else (lambda item_id: nullcontext())

    def load(item_id: int, uri: str, data: Union[bytes, DecodeError]) -> ItemRecord:
        reason = selection.stuck.get(item_id)
        if reason is not None:  # decoding it killed a reader before this one: not again
            return ItemRecord(item_id, uri, "failed", reason=reason, detail=STUCK_DETAILS.get(reason))
        with guard(item_id):
            return load_item(item_id, uri, data, reader.embedding_id, options)

    try:
        if selection.files:
            for item_id, uri, raw_path in reader.plain_files(selection.part, selection.parts, selection.first_id,
                                                             selection.last_id):
                yield load(item_id, uri, _read_file(uri, raw_path, options.max_file_size))
        if not selection.archives:
            return
        for container in [selection.archive] if selection.archive is not None else reader.containers():
            if not selection.takes_archive(container):
                continue
            members = {uri[len(container) + len(MEMBER_SEPARATOR):]: (item_id, uri)
                       for item_id, uri in reader.members(container)}
            if not members:
                continue
            for name, data in _archive_contents(container, set(members), options.max_file_size):
                item_id, uri = members[name]
                yield load(item_id, uri, data)
    finally:
        if watchdog is not None:
            watchdog.close()
        reader.close()


@dataclass
class Batch:
    """A batch of records; the decoded pictures stacked, in the order of the "ok" records."""

    records: list[ItemRecord]
    images: Optional[np.ndarray]


def collate(records: list[ItemRecord]) -> Batch:
    pixels = [r.pixels for r in records if r.kind == "ok"]
    for r in records:
        r.pixels = None
    return Batch(records, np.stack(pixels) if pixels else None)


def batches(records: Iterable[ItemRecord], size: int) -> Iterator[Batch]:
    """``records`` in batches of ``size``, collated."""
    it = iter(records)
    while chunk := list(islice(it, size)):
        yield collate(chunk)
