"""Filling in the metadata of items embedded before it was kept (an index upgraded to schema 0007):
each such item's bytes are read once more and only its header is parsed (EXIF date, camera, GPS);
nothing is decoded or embedded. Runs at the end of an ingest, under its lock, in pages."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Union

from ..errors import DecodeError
from ..media.archives import MEMBER_SEPARATOR, iter_archive_contents
from ..media.metadata import PictureFacts, read_facts
from ..media.sources import read_bytes
from .summary import IngestSummary

if TYPE_CHECKING:
    from ..store.catalog import Catalog

PAGE = 512


def _facts(data: Union[bytes, DecodeError]) -> PictureFacts:
    if isinstance(data, DecodeError):  # gone or unreadable now: recorded as read, with the reason
        return PictureFacts(notes=[f"metadata: {data.reason}"])
    return read_facts(data)


def fill_facts(catalog: "Catalog", summary: IngestSummary, max_bytes: Optional[int] = None,
               check: Callable[[], None] = lambda: None) -> int:
    """Reads the metadata of every embedded item that lacks it; returns how many were filled in.
    ``check`` is called between pages (the ingest lease's check: a run that lost it stops)."""
    filled = 0
    after = 0
    while True:
        rows = catalog.worklist.facts_missing(after, PAGE)
        if not rows:
            return filled
        after = rows[-1][0]
        found: list[tuple[int, PictureFacts]] = []
        members: dict[str, dict[str, int]] = {}
        for item_id, uri, raw_path, container in rows:
            if container:
                members.setdefault(container, {})[uri[len(container) + len(MEMBER_SEPARATOR):]] = item_id
                continue
            try:
                data: Union[bytes, DecodeError] = read_bytes(uri, raw_path, max_bytes)
            except DecodeError as exc:
                data = exc
            found.append((item_id, _facts(data)))
        for container, wanted in members.items():
            try:
                for name, data in iter_archive_contents(container, set(wanted), max_bytes):
                    found.append((wanted[name], _facts(data)))
            except Exception as exc:  # an archive that breaks off: its members are recorded as unreadable
                done = {item_id for item_id, _ in found}
                found += [(i, PictureFacts(notes=[f"metadata: {type(exc).__name__}"])) for i in wanted.values()
                          if i not in done]
        catalog.worklist.record_facts(found)
        filled += len(found)
        summary.metadata_filled += len(found)
        check()
