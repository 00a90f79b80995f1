"""Tar and zip archives as sources: their image members listed from the headers, and their contents
streamed, without extracting anything to disk. A member is addressed as ``ARCHIVE::MEMBER`` everywhere.
"""

from __future__ import annotations

import io
import lzma
import os
import struct
import tarfile
import time
import zipfile
import zlib
from dataclasses import replace
from typing import IO, Iterator, Optional

from ..errors import DecodeError
from .entries import ArchiveSource, SourceEntry, is_image_name
from .metadata import CAPTION_SUFFIXES, MAX_CAPTION_BYTES, caption_from_bytes, member_stamp, sample_key

# The one list of archive names indexer reads (tar with any compression Python reads, and zip).
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
ZIP_SUFFIXES = (".zip",)
MEMBER_SEPARATOR = "::"
# Zip compression methods Python reads: stored, deflate, bzip2, lzma. Others (Deflate64 = 9,
# AES = 99, ...) are reported as unsupported instead of raising NotImplementedError.
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
_ARCHIVE_ERRORS = (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError, ValueError, RuntimeError,
                   NotImplementedError, KeyError, IndexError, OverflowError, struct.error, zlib.error, lzma.LZMAError)


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
    """(archive, member) of a member's uri; (None, uri) for a plain file. The archive is the shortest
    prefix before a ``::`` that has an archive's name (an archive's own path may hold ``::`` too)."""
    start = 0
    while (at := uri.find(MEMBER_SEPARATOR, start)) >= 0:
        archive = uri[:at]
        if archive_kind(archive):
            return archive, uri[at + len(MEMBER_SEPARATOR):]
        start = at + 1
    return None, uri


def reads_as_member(path: str) -> bool:
    """True for a plain file whose path would read as ``ARCHIVE::MEMBER`` (``/d/x.tar::y.png``): it
    would share its address with member ``y.png`` of ``/d/x.tar``, so ingestion refuses it."""
    return split_member_uri(path)[0] is not None


def _hidden_member(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def _with_caption(entry: SourceEntry, caption: Optional[tuple[Optional[str], Optional[str], int]]) -> SourceEntry:
    if caption is None:
        return entry
    text, note, stamp = caption
    return replace(entry, caption=text, caption_note=note, caption_stamp=stamp)


def _caption_member(data: bytes, suffix: str) -> tuple[Optional[str], Optional[str], int]:
    text, note = caption_from_bytes(data, suffix)
    return text, note, member_stamp(data)


def _oversized_caption(size: int, suffix: str) -> tuple[Optional[str], Optional[str], int]:
    return None, f"caption: the {suffix} member is larger than {MAX_CAPTION_BYTES // 1024} kB", size << 32


def iter_archive_members(archive: ArchiveSource) -> Iterator[SourceEntry]:
    """The image members of an archive, from its headers (a compressed tar is read through once), each
    with the caption of its WebDataset sample (``key.txt`` or ``key.json`` beside ``key.jpg``; in a tar,
    the sample's files must be next to each other, as WebDataset writes them).
    Raises ``DecodeError`` when the archive is unreadable or breaks off."""
    kind = archive_kind(archive.uri)
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive.uri) as zf:
                captions: dict[str, tuple[Optional[str], Optional[str], int]] = {}
                infos = zf.infolist()
                for info in infos:
                    key, suffix = sample_key(info.filename)
                    if suffix in CAPTION_SUFFIXES and not info.is_dir() and not _hidden_member(info.filename) \
                            and (key not in captions or suffix == ".txt"):  # .txt first, as beside a file
                        if info.file_size > MAX_CAPTION_BYTES:
                            captions[key] = _oversized_caption(info.file_size, suffix)
                        elif not info.flag_bits & 0x1 and info.compress_type in _ZIP_METHODS:
                            with zf.open(info) as handle:
                                captions[key] = _caption_member(read_bounded(handle, MAX_CAPTION_BYTES), suffix)
                for info in infos:
                    if info.is_dir() or not is_image_name(info.filename) or _hidden_member(info.filename):
                        continue
                    mtime = int(time.mktime(info.date_time + (0, 0, -1)) * 1e9)
                    entry = SourceEntry(member_uri(archive.uri, info.filename), info.file_size, mtime, archive.uri)
                    yield _with_caption(entry, captions.get(sample_key(info.filename)[0]))
        else:
            with tarfile.open(archive.uri, "r:*") as tf:
                # The images of the sample being read wait for its caption member, which may follow them.
                key: Optional[str] = None
                waiting: list[SourceEntry] = []
                caption: Optional[tuple[Optional[str], Optional[str], int]] = None
                for member in tf:
                    if not member.isfile() or _hidden_member(member.name):
                        continue
                    member_key, suffix = sample_key(member.name)
                    image = is_image_name(member.name)
                    if not image and suffix not in CAPTION_SUFFIXES:
                        continue
                    if member_key != key:
                        yield from (_with_caption(e, caption) for e in waiting)
                        key, waiting, caption = member_key, [], None
                    if image:
                        waiting.append(SourceEntry(member_uri(archive.uri, member.name), member.size,
                                                   int(member.mtime * 1e9), archive.uri))
                    elif caption is None or suffix == ".txt":  # .txt first, as beside a file
                        if member.size > MAX_CAPTION_BYTES:
                            caption = _oversized_caption(member.size, suffix)
                        else:
                            handle = tf.extractfile(member)
                            if handle is not None:
                                caption = _caption_member(read_bounded(handle, MAX_CAPTION_BYTES), suffix)
                yield from (_with_caption(e, caption) for e in waiting)
    except _ARCHIVE_ERRORS as exc:
        raise DecodeError("bad_archive", f"{type(exc).__name__}: {exc}"[:200]) from None


def too_large(size: int, limit: Optional[int]) -> Optional[DecodeError]:
    if limit is not None and size > limit:
        return DecodeError("too_large", f"{size:,} bytes exceeds the {limit:,}-byte limit (--max-file-size)")
    return None


def read_bounded(handle: IO[bytes], limit: Optional[int]) -> bytes:
    """At most ``limit`` bytes of ``handle`` (never more than ``limit + 1`` read): a member or file
    whose declared size lies cannot make a read unbounded. Raises ``DecodeError('too_large')``."""
    if limit is None:
        return handle.read()
    try:
        size = os.fstat(handle.fileno()).st_size  # a plain file: read what it holds, not a limit-sized buffer
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        size = limit
    data = handle.read(min(size, limit) + 1)
    if size < len(data) <= limit:  # it grew since: the rest, still bounded
        data += handle.read(limit + 1 - len(data))
    if len(data) > limit:
        raise DecodeError("too_large", f"more than the {limit:,}-byte limit (--max-file-size)")
    return data


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: Optional[int]) -> bytes | DecodeError:
    if info.flag_bits & 0x1:
        return DecodeError("encrypted", "an encrypted zip member")
    if info.compress_type not in _ZIP_METHODS:
        return DecodeError("unsupported_compression", f"zip compression method {info.compress_type}")
    error = too_large(info.file_size, limit)
    if error is not None:
        return error
    with zf.open(info) as handle:
        return read_bounded(handle, limit)


def _tar_member(tf: tarfile.TarFile, member: tarfile.TarInfo, limit: Optional[int]) -> bytes | DecodeError:
    error = too_large(member.size, limit)
    if error is not None:
        return error
    handle = tf.extractfile(member)
    if handle is None:
        return DecodeError("not_a_file", "the member is not a regular file")
    return read_bounded(handle, limit)


def _member_error(exc: BaseException) -> DecodeError:
    if isinstance(exc, DecodeError):
        return exc
    return DecodeError("bad_member", f"{type(exc).__name__}: {exc}"[:200])


def iter_archive_contents(container: str, wanted: set[str],
                          max_bytes: Optional[int] = None) -> Iterator[tuple[str, bytes | DecodeError]]:
    """(member name, bytes or the error) for each wanted member, in archive order, as a stream; each
    wanted name comes exactly once. A member that cannot be read (encrypted, an unsupported compression,
    larger than ``max_bytes``, corrupt) gives its error and the others go on; members the archive no
    longer holds come last, as ``missing`` errors, and those left when the archive breaks off as
    ``bad_archive`` errors."""
    remaining = set(wanted)
    try:
        if archive_kind(container) == "zip":
            with zipfile.ZipFile(container) as zf:
                infos = {}
                for info in zf.infolist():  # the last entry of a name wins, as when listing members
                    if info.filename in remaining and not info.is_dir():
                        infos[info.filename] = info
                for name in sorted(infos):
                    try:
                        data: bytes | DecodeError = _zip_member(zf, infos[name], max_bytes)
                    except _ARCHIVE_ERRORS + (DecodeError,) as exc:  # also CRC errors
                        data = _member_error(exc)
                    remaining.discard(name)
                    yield name, data
        else:
            with tarfile.open(container, "r:*") as tf:
                for member in tf:
                    # Only regular files: a link (or folder) of the same name as a wanted file is not it.
                    if member.name not in remaining or not member.isfile():
                        continue
                    remaining.discard(member.name)
                    try:
                        data = _tar_member(tf, member, max_bytes)
                    except _ARCHIVE_ERRORS + (DecodeError,) as exc:
                        data = _member_error(exc)
                    yield member.name, data
                    if not remaining:
                        break
    except _ARCHIVE_ERRORS as exc:
        error = DecodeError("bad_archive", f"{type(exc).__name__}: {exc}"[:200])
        for name in sorted(remaining):
            yield name, error
        return
    for name in sorted(remaining):
        yield name, DecodeError("missing", "the archive no longer holds this member")
