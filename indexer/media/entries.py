"""What a scan finds: an item's address, size and modification time, before any content is read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
     ".pbm", ".pnm", ".tga", ".ico", ".heic", ".heif", ".avif", ".jp2", ".j2k"}
)


@dataclass(frozen=True)
class SourceEntry:
    """One item found by a scan. ``problem`` is set for an item known to be bad before any read
    (a dangling link); ``raw_path`` holds the bytes of a file name that is not valid UTF-8."""

    uri: str
    size: int
    mtime_ns: int
    container: Optional[str] = None
    raw_path: Optional[bytes] = None
    problem: Optional[str] = None
    # Its caption's source: a sidecar file beside it (read when ``caption_stamp`` differs from the
    # catalog's), or, for an archive member, the caption already read from its sample (``caption``,
    # or ``caption_note`` saying why it was not kept). ``caption_stamp`` None: no caption source.
    sidecar: Optional[str] = None
    caption_stamp: Optional[int] = None
    caption: Optional[str] = None
    caption_note: Optional[str] = None


@dataclass(frozen=True)
class ArchiveSource:
    """An archive to ingest, as stat() sees it; its members come from ``iter_archive_members``."""

    uri: str
    size: int
    mtime_ns: int


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def storable_path(path: str) -> tuple[str, Optional[bytes]]:
    """A path as text SQLite can hold, and its raw bytes when the name is not valid UTF-8."""
    try:
        path.encode("utf-8")
        return path, None
    except UnicodeEncodeError:
        raw = os.fsencode(path)
        return raw.decode("utf-8", "backslashreplace"), raw


