"""Tar and zip archives as sources: their image members listed from the headers, and their contents
streamed, without extracting anything to disk. A member is addressed as ``ARCHIVE::MEMBER`` everywhere.
"""

from __future__ import annotations

import tarfile
import time
import zipfile
from typing import Iterator, Optional

from ..errors import DecodeError
from .entries import ArchiveSource, SourceEntry, is_image_name

# The one list of archive names indexer reads (tar with any compression Python reads, and zip).
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
MEMBER_SEPARATOR = "::"


def archive_kind(name: str) -> Optional[str]:
    lower = name.lower()
    if lower.endswith(TAR_SUFFIXES):
        return "tar"
    if lower.endswith(ZIP_SUFFIXES):
        return "zip"
    return None


def strip_archive_suffix(path: str) -> str:
    """``/data/train.tar.gz`` -> ``/data/train``: an archive read as the folder it packs."""
    lower = path.lower()
    for suffix in sorted(TAR_SUFFIXES + ZIP_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix) and len(path) > len(suffix):
            return path[:-len(suffix)]
    return path


def member_uri(archive: str, member: str) -> str:
    return f"{archive}{MEMBER_SEPARATOR}{member}"


def split_member_uri(uri: str) -> tuple[Optional[str], str]:
    """(archive, member) of a member's uri; (None, uri) for a plain file."""
    if MEMBER_SEPARATOR in uri:
        archive, member = uri.split(MEMBER_SEPARATOR, 1)
        if archive_kind(archive):
            return archive, member
    return None, uri


def _hidden_member(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def iter_archive_members(archive: ArchiveSource) -> Iterator[SourceEntry]:
    """The image members of an archive, from its headers (a compressed tar is read through once).
    Raises ``DecodeError`` when the archive is unreadable or breaks off."""
    kind = archive_kind(archive.uri)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive.uri) as zf:
                for info in zf.infolist():
                    if info.is_dir() or not is_image_name(info.filename) or _hidden_member(info.filename):
                        continue
                    mtime = int(time.mktime(info.date_time + (0, 0, -1)) * 1e9)
                    yield SourceEntry(member_uri(archive.uri, info.filename), info.file_size, mtime, archive.uri)
        else:
            with tarfile.open(archive.uri, "r:*") as tf:
                for member in tf:
                    if not member.isfile() or not is_image_name(member.name) or _hidden_member(member.name):
                        continue
                    yield SourceEntry(member_uri(archive.uri, member.name), member.size, int(member.mtime * 1e9),
                                      archive.uri)
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise DecodeError("bad_archive", f"{type(exc).__name__}: {exc}"[:200]) from None


def iter_archive_contents(container: str, wanted: set[str]) -> Iterator[tuple[str, bytes | DecodeError]]:
    """(member name, bytes or the error) for each wanted member, in archive order, as a stream.
    Members the archive no longer holds come last, as ``missing`` errors."""
    remaining = set(wanted)
    try:
        if archive_kind(container) == "zip":
            with zipfile.ZipFile(container) as zf:
                for name in sorted(remaining):
                    try:
                        yield name, zf.read(name)
                    except KeyError:
                        continue
                    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as exc:  # also CRC errors
                        yield name, DecodeError("bad_archive_member", str(exc)[:200])
                    remaining.discard(name)
        else:
            with tarfile.open(container, "r:*") as tf:
                for member in tf:
                    if member.name not in remaining:
                        continue
                    remaining.discard(member.name)
                    try:
                        handle = tf.extractfile(member)
                        yield member.name, handle.read() if handle else DecodeError("not_a_file")
                    except (OSError, tarfile.TarError, EOFError) as exc:
                        yield member.name, DecodeError("bad_archive_member", str(exc)[:200])
                    if not remaining:
                        break
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        error = DecodeError("bad_archive", f"{type(exc).__name__}: {exc}"[:200])
        for name in sorted(remaining):
            yield name, error
        return
    for name in sorted(remaining):
        yield name, DecodeError("missing", "the archive no longer holds this member")


