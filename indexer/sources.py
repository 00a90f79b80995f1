"""What can be ingested, and how its items are found and read.

A source yields ``SourceEntry`` records (an address, a size and a modification time) without reading
any content: deciding what is unchanged costs a ``stat``, not a read. ``read_bytes`` fetches one
item's content when it has to be hashed or decoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from .errors import DecodeError, SourceError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".ppm", ".pgm",
     ".pbm", ".pnm", ".tga", ".ico", ".heic", ".heif", ".avif", ".jp2", ".j2k"}
)


@dataclass(frozen=True)
class SourceEntry:
    uri: str  # an absolute file path
    size: int
    mtime_ns: int


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan_folder(root: Path) -> Iterator[SourceEntry]:
    """Every image file under ``root`` (recursively, sorted, hidden files and folders skipped)."""
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue  # an unreadable sub-folder is skipped, the rest of the scan goes on
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(Path(entry.path))
                    continue
                if not is_image_name(entry.name) or not entry.is_file():
                    continue
                stat = entry.stat()
            except OSError:
                continue
            yield SourceEntry(os.path.abspath(entry.path), stat.st_size, stat.st_mtime_ns)
        stack.extend(reversed(subfolders))


def scan(sources: Iterable[Path]) -> Iterator[SourceEntry]:
    """Entries of every source: a folder is scanned, a single image file is taken as is."""
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            yield from scan_folder(path.resolve())
        elif path.is_file():
            stat = path.stat()
            yield SourceEntry(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        elif not path.exists():
            raise SourceError(f"no such file or folder: {source}")
        else:
            raise SourceError(f"not a file or folder: {source}")


def read_bytes(uri: str) -> bytes:
    """The content of the item at ``uri``; ``DecodeError('unreadable')`` when the file cannot be read."""
    try:
        with open(uri, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DecodeError("missing", "the file disappeared before it was read") from None
    except OSError as exc:
        raise DecodeError("unreadable", exc.strerror or str(exc)) from None
