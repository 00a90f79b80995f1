"""What can be ingested, and how its items are found and read.

Sources are folders (scanned recursively), single image files, tar archives (``.tar``, ``.tar.gz``,
``.tgz``, ``.tar.bz2``, ``.tar.xz``, including WebDataset shards) and zip archives, read as streams
without extracting anything to disk, and lists of any of these (``--from-list FILE`` or ``-``).
An archive member is addressed as ``ARCHIVE::MEMBER`` everywhere.

Scanning yields ``SourceEntry`` records (an address, a size, a modification time) without reading
content: deciding what is unchanged costs a ``stat``. ``read_bytes`` fetches one file's content;
``archives.iter_archive_contents`` streams the wanted members of one archive.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat as stat_module
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, Optional

from ..errors import DecodeError, SourceError
from .archives import archive_kind, iter_archive_contents, read_bounded, reads_as_member, \
    split_member_uri, too_large
from .entries import ArchiveSource, SourceEntry, is_image_name, storable_path
from .metadata import CAPTION_SUFFIXES, sidecar_for

def _entry(path: str, st: os.stat_result, sidecar: Optional[str] = None) -> SourceEntry:
    """The entry of an image file, with its sidecar caption file (a path beside it) when it has one."""
    uri, raw = storable_path(path)
    stamp = None
    if sidecar is not None:
        try:
            side = os.stat(sidecar)
            stamp = side.st_mtime_ns ^ (side.st_size << 1)
        except OSError:
            sidecar = None
    return SourceEntry(uri, st.st_size, st.st_mtime_ns, raw_path=raw, sidecar=sidecar, caption_stamp=stamp)


def _sidecar_beside(path: str) -> Optional[str]:
    """The caption file beside a single image file named as a source, if there is one."""
    stem = os.path.splitext(path)[0]
    return next((stem + s for s in CAPTION_SUFFIXES if os.path.isfile(stem + s)), None)


def scan_folder(root: Path, warn: Optional[Callable[[str], None]] = None) -> Iterator[SourceEntry | ArchiveSource]:
    """Images and archives under ``root``, recursively and sorted; hidden entries skipped; symlinked
    folders followed once (loops are cut); dangling links and loops of links with an image name
    reported as entries with a problem."""
    stack = [root]
    visited: set[tuple[int, int]] = set()
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in visited:
                continue  # a symlink loop, or the same folder reached twice
            visited.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            # An unreadable sub-folder is skipped, the rest of the scan goes on; the user is told.
            if warn is not None:
                warn(f"skipping folder {folder}: {exc.strerror or exc}")
            continue
        subfolders = []
        captions = {e.name for e in entries if e.name.lower().endswith(CAPTION_SUFFIXES)}
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                image, kind = is_image_name(entry.name), archive_kind(entry.name)
                # Checked before is_dir(), which raises for a loop of links (a.jpg -> b.jpg -> a.jpg).
                if entry.is_symlink() and not os.path.exists(entry.path):
                    if image:
                        uri, raw = storable_path(os.path.abspath(entry.path))
                        yield SourceEntry(uri, 0, 0, raw_path=raw, problem="broken_link")
                    continue
                if entry.is_dir():
                    subfolders.append(Path(entry.path))
                    continue
                if not image and not kind:
                    continue
                st = entry.stat()
                if not stat_module.S_ISREG(st.st_mode):
                    continue
            except OSError:
                continue
            path = os.path.abspath(entry.path)
            if reads_as_member(path):
                _refuse_member_like(path, warn)
                continue
            if kind:
                yield ArchiveSource(storable_path(path)[0], st.st_size, st.st_mtime_ns)
            else:
                sidecar = sidecar_for(captions, entry.name) if captions else None
                yield _entry(path, st, os.path.join(os.path.dirname(path), sidecar) if sidecar else None)
        stack.extend(reversed(subfolders))


_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_braces(pattern: str) -> list[str]:
    """WebDataset-style shard ranges: ``shards-{000..009}.tar`` -> ten names (zero padding kept)."""
    match = _BRACES.search(pattern)
    if not match:
        return [pattern]
    first, last = match.group(1), match.group(2)
    width = len(first) if first.startswith("0") else 0
    out = []
    for n in range(int(first), int(last) + 1):
        out += expand_braces(pattern[:match.start()] + str(n).zfill(width) + pattern[match.end():])
    return out


def read_list(list_file: str) -> Iterator[Path]:
    """Paths from a text file, one per line (``-`` reads standard input); blank and # lines skipped."""
    import sys

    handle: IO[str]
    if list_file == "-":
        handle = sys.stdin
    else:
        try:
            handle = open(list_file, encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            raise SourceError(f"cannot read the list {list_file}: {exc.strerror}") from None
    try:
        for line in handle:
            line = line.rstrip("\n").rstrip("\r")
            if line.strip() and not line.lstrip().startswith("#"):
                yield Path(line)
    finally:
        if handle is not sys.stdin:
            handle.close()


def _source_entries(path: Path, folders: Optional[list[Path]],
                    warn: Optional[Callable[[str], None]]) -> Iterator[SourceEntry | ArchiveSource]:
    """The entries of one existing source; nothing (and False from the caller's view) when it is not there."""
    if path.is_dir():
        if folders is not None:
            folders.append(path.resolve())
        yield from scan_folder(path.resolve(), warn)
        return
    resolved = str(path.resolve())
    if reads_as_member(resolved):
        _refuse_member_like(resolved, warn)
    elif archive_kind(path.name):
        st = path.stat()
        yield ArchiveSource(storable_path(resolved)[0], st.st_size, st.st_mtime_ns)
    else:
        yield _entry(resolved, path.stat(), _sidecar_beside(resolved))


def _refuse_member_like(path: str, warn: Optional[Callable[[str], None]]) -> None:
    if warn is not None:
        warn(f"skipping {path}: its name reads as an archive member (ARCHIVE::MEMBER); rename it to ingest it")


def scan(sources: Iterable[Path], strict: bool = True, folders: Optional[list[Path]] = None,
         warn: Optional[Callable[[str], None]] = None) -> Iterator[SourceEntry | ArchiveSource]:
    """Entries of every source: folders are scanned, files and archives taken as they are.

    With ``strict`` a missing or unusable source is an error (a typo on the command line); without (a
    list of files, some of which may have gone), it is skipped with a warning. Scanned folders are
    appended to ``folders``. A file whose path reads as ``ARCHIVE::MEMBER`` is skipped with a warning:
    it would share its address with that member."""
    for source in sources:
        for name in expand_braces(str(source)):
            path = Path(name).expanduser()
            try:
                usable = path.is_dir() or path.is_file()
                problem = None if usable else ("no such file or folder" if not path.exists()
                                               else "not a file or folder")
            except (OSError, ValueError) as exc:  # a name longer than the system allows, a NUL byte
                usable, problem = False, (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
            if usable:
                try:
                    yield from _source_entries(path, folders, warn)
                    continue
                except (OSError, ValueError) as exc:
                    problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if strict:
                raise SourceError(f"{problem}: {source}")
            if warn is not None and problem != "no such file or folder":
                warn(f"skipping {name}: {problem}")


def recorded_source(source: Path | str) -> str:
    """A source as an ingest run records it: absolute (not resolved: a link stays a link), so that the run
    repeated from another folder (``POST /api/ingest``) reads the same files."""
    return os.path.abspath(os.path.expanduser(str(source)))


def read_bytes(uri: str, raw_path: Optional[bytes] = None, max_bytes: Optional[int] = None) -> bytes:
    """The content of the file at ``uri`` (or at ``raw_path`` when the name is not UTF-8); a file larger
    than ``max_bytes`` is refused from its size, and never read past ``max_bytes + 1`` bytes."""
    try:
        with open(raw_path if raw_path is not None else uri, "rb") as f:
            error = too_large(os.fstat(f.fileno()).st_size, max_bytes)
            if error is not None:
                raise error
            return read_bounded(f, max_bytes)
    except FileNotFoundError:
        raise DecodeError("missing", "the file disappeared before it was read") from None
    except IsADirectoryError:
        raise DecodeError("not_a_file", "a folder with an image name") from None
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            raise DecodeError("name_too_long", "the path is longer than the system allows") from None
        raise DecodeError("unreadable", exc.strerror or str(exc)) from None
    except (ValueError, MemoryError) as exc:  # a NUL in the name; a file too large for memory
        raise DecodeError("unreadable", f"{type(exc).__name__}: {exc}"[:200]) from None


def read_uri(uri: str, raw_path: Optional[bytes] = None, max_bytes: Optional[int] = None) -> bytes:
    """The content of the item at ``uri``: a file, or a member (``ARCHIVE::MEMBER``) of an archive."""
    archive, member = split_member_uri(uri)
    if archive is None:
        return read_bytes(uri, raw_path, max_bytes)
    for _, data in iter_archive_contents(archive, {member}, max_bytes):
        if isinstance(data, DecodeError):
            raise data
        return data
    raise DecodeError("missing", "the archive no longer holds this member")


def read_recorded(uri: str, size: int, sha256: str, max_bytes: Optional[int] = None) -> bytes:
    """The content of the item at ``uri`` only while it is what the catalog recorded: ``size`` bytes
    whose SHA-256 is ``sha256``. Never reads more than ``size`` bytes (nor over ``max_bytes``); a file
    replaced since (by other content, by a link to another file, by a FIFO or a device) is refused with
    ``DecodeError('changed')`` before or after that bounded read, never served."""
    error = too_large(size, max_bytes)
    if error is not None:
        raise error
    archive, member = split_member_uri(uri)
    if archive is None:
        data = _read_regular(uri, size)
    else:
        data = b""
        for _, content in iter_archive_contents(archive, {member}, size):
            if isinstance(content, DecodeError):
                raise DecodeError("changed", "the member is not the one ingested") if content.reason == "too_large" \
                    else content
            data = content
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise DecodeError("changed", "the content is not the one ingested (changed or replaced since)")
    return data


def _read_regular(path: str, size: int) -> bytes:
    """At most ``size`` bytes of the regular file at ``path`` (a FIFO would block a plain open: opened
    without blocking, then refused from its stat)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise DecodeError("missing", "the file is gone") from None
    except OSError as exc:
        raise DecodeError("unreadable", exc.strerror or str(exc)) from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat_module.S_ISREG(st.st_mode) or st.st_size != size:
            raise DecodeError("changed", "the file is not the one ingested (changed or replaced since)")
        try:
            return f.read(size)
        except OSError as exc:
            raise DecodeError("unreadable", exc.strerror or str(exc)) from None
