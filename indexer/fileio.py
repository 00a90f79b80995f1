"""Crash-safe writes: a file (or a folder) is written under a temporary name, fsynced and renamed into
place, so a reader finds the previous version or the new one, never half of one.

A leaf (standard library only): ``store`` writes the index's files with it, ``models`` its cache. Errors
are the operating system's own ``OSError``; each caller says what a failed write means for it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator, Optional


def temporary_path(path: Path) -> Path:
    """The name ``path`` is written under before it is published: hidden, beside it, one per process."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def publish(written: Path, path: Path) -> None:
    """fsyncs ``written``, renames it to ``path`` and fsyncs the folder: the new file survives a crash."""
    fd = os.open(written, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(written, path)
    fsync_folder(path.parent)


def atomic_write(path: Path, write: Callable[[Path], object],
                 before_publish: Optional[Callable[[Path], None]] = None) -> None:
    """Calls ``write(tmp_path)``, then makes the result appear at ``path`` all at once, or not at all
    (the temporary file is removed on any error, which propagates). ``before_publish(path)`` runs
    between the two (the crash tests stop the process there)."""
    tmp = temporary_path(path)
    try:
        write(tmp)
        if before_publish is not None:
            before_publish(path)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: Path, newline: Optional[str] = None,
                before_publish: Optional[Callable[[Path], None]] = None) -> Iterator[IO[str]]:
    """A text file to stream into; it appears at ``path`` complete when the block ends without an
    error, and not at all otherwise (the previous version, if any, stays)."""
    tmp = temporary_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tmp.open("w", encoding="utf-8", newline=newline)
    try:
        with handle:
            yield handle
        if before_publish is not None:
            before_publish(path)
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """A staging folder to fill; when the block ends without an error its files are fsynced and it
    replaces ``path`` (an older ``path`` is removed first), so a crash never leaves a half-written folder
    that looks complete. The staging folder is removed whatever happens. When another process publishes
    the same folder at the same moment the rename fails with ``OSError``: the caller decides whether the
    other's result will do."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield staging
        for file in staging.rglob("*"):
            if file.is_file():
                fd = os.open(file, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
        fsync_folder(path.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fsync_folder(folder: Path) -> None:
    """fsyncs a folder (a rename in it then survives a crash); a no-op where the system cannot."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename is still atomic
    finally:
        os.close(fd)
