"""Phase 1 of ingestion, with no model: scan the sources, compare each entry with the catalog, record
new and changed items as pending, and mark what has gone.

An item whose path, size and modification time match the catalog is unchanged and skipped without
being read; an unchanged archive is not even opened. Pending items are the work list, kept in the
catalog, so a run killed at any moment is resumed by the next one. Items under a scanned folder (or
in a re-read archive) that were not seen are marked ``deleted``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Union

from ..errors import DecodeError
from ..media.archives import iter_archive_members
from ..media.entries import ArchiveSource, SourceEntry, storable_path
from ..media.metadata import read_sidecar
from ..store.catalog import Catalog
from ..store.worklist import ArchiveRecord
from ..store.schema import ItemState
from .summary import IngestSummary

SCAN_CHUNK = 2000
Warn = Callable[[str], None]
PENDING, EMBEDDED, FAILED = ItemState.PENDING.value, ItemState.EMBEDDED.value, ItemState.FAILED.value


@dataclass(frozen=True)
class ArchiveDone:
    """Follows the last member of an archive in the entry stream: the archive was read completely."""

    archive: ArchiveSource
    members: int

    def record(self) -> ArchiveRecord:
        return ArchiveRecord(self.archive.uri, self.archive.size, self.archive.mtime_ns, self.members, complete=True)


def expand_archives(catalog: Catalog, entries: Iterable[Union[SourceEntry, ArchiveSource]], run_id: int,
                    summary: IngestSummary, warn: Warn) -> Iterator[Union[SourceEntry, ArchiveDone]]:
    """Files pass through; an unchanged archive is settled at once; another is read for its members,
    followed by an ``ArchiveDone`` marker."""
    for entry in entries:
        if isinstance(entry, SourceEntry):
            yield entry
            continue
        known = catalog.worklist.archive(entry.uri)
        if known and known.complete and known.size == entry.size and known.mtime_ns == entry.mtime_ns:
            settled = catalog.worklist.settle_unchanged_archive(entry.uri, run_id)
            summary.unchanged += settled
            summary.scanned += settled
            continue
        members = 0
        try:
            for member in iter_archive_members(entry):
                members += 1
                yield member
        except DecodeError as exc:
            warn(f"skipping the rest of {entry.uri}: {exc.reason} ({exc.detail})")
            summary.count_failure(exc.reason)
            catalog.worklist.record_archive(ArchiveRecord(entry.uri, entry.size, entry.mtime_ns, members, complete=False))
            continue
        yield ArchiveDone(entry, members)


def _chunks(entries: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(entries)
    while chunk := list(islice(it, size)):
        yield chunk


def register(catalog: Catalog, entries: Iterable[Union[SourceEntry, ArchiveSource]], run_id: int,
             retry_failed: bool, summary: IngestSummary, warn: Warn) -> None:
    """Records new and changed entries as pending (or failed, when known bad), marks every entry
    seen by ``run_id``."""
    for chunk in _chunks(expand_archives(catalog, entries, run_id, summary, warn), SCAN_CHUNK):
        # The same path twice (a source named twice, a list with repeats, a tar holding a name twice): once.
        files = list({e.uri: e for e in chunk if isinstance(e, SourceEntry)}.values())
        finished = [e.record() for e in chunk if isinstance(e, ArchiveDone)]
        summary.scanned += len(files)
        known = catalog.worklist.known_items([e.uri for e in files]) if files else {}
        seen, new, changed, captions = [], [], [], []
        for entry in files:
            state = FAILED if entry.problem else PENDING
            row = known.get(entry.uri)
            if row is None:
                caption = _caption(entry, summary, warn)
                new.append({"uri": entry.uri, "size": entry.size, "mtime_ns": entry.mtime_ns, "state": state,
                            "container": entry.container, "raw_path": entry.raw_path,
                            "failure_reason": entry.problem, "caption": caption,
                            "caption_stamp": entry.caption_stamp})
                if entry.problem:
                    summary.count_failure(entry.problem)
                continue
            seen.append(row.id)
            if entry.caption_stamp != row.caption_stamp:  # a sidecar added, changed or removed
                captions.append({"id": row.id, "caption": _caption(entry, summary, warn),
                                 "caption_stamp": entry.caption_stamp})
            same_file = row.size == entry.size and row.mtime_ns == entry.mtime_ns
            settled = row.state == EMBEDDED or (row.state == FAILED and not retry_failed)
            if same_file and settled:
                summary.unchanged += 1
            elif row.state != PENDING or not same_file:
                changed.append({"id": row.id, "size": entry.size, "mtime_ns": entry.mtime_ns, "state": state,
                                "failure_reason": entry.problem})
                if entry.problem:
                    summary.count_failure(entry.problem)
        summary.deleted += catalog.worklist.apply_scan(run_id, new, changed, seen, finished, captions)


def _caption(entry: SourceEntry, summary: IngestSummary, warn: Warn) -> Optional[str]:
    """The caption of an entry: its sidecar file read now, or what its archive sample held. A caption
    that cannot be kept is skipped with a warning and counted; the item itself goes on."""
    if entry.caption_stamp is None:
        return None
    caption, note = read_sidecar(entry.sidecar) if entry.sidecar else (entry.caption, entry.caption_note)
    if note:
        summary.metadata_skipped += 1
        warn(f"{entry.uri}: {note}; kept without it")
    return caption


def mark_missing(catalog: Catalog, sources: Iterable[Path], run_id: int) -> int:
    """Items under a scanned folder that this run did not see are gone: marked deleted.

    Their rows (and embeddings) stay as history; if the file comes back, it is restored without being
    embedded again (its content is still in the catalog)."""
    deleted = 0
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            deleted += catalog.worklist.mark_unseen_deleted(storable_path(str(path.resolve()))[0].rstrip(os.sep) + os.sep,
                                                   run_id)
    return deleted
