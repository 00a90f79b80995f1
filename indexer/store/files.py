"""Crash-safe files: written under a temporary name, fsynced, renamed into place."""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator, Optional

from .. import _faults
from ..errors import DiskFullError, IndexerError

CATALOG_FILE = "catalog.sqlite"
VECTORS_FILE = "vectors.faiss"
VECTORS_META = "vectors.json"


def fault_point(name: str) -> None:
    """A named moment where the crash tests pause the process (``INDEXER_TEST_PAUSE=name:seconds``)
    to kill it there; does nothing otherwise."""
    _faults.pause(name)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _write_error(exc: BaseException, path: Path) -> IndexerError:
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left" in str(exc):
        return DiskFullError(f"the disk is full: could not write {path}; the previous version is intact")
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return IndexerError(f"could not write {path}: {detail}")


def _publish(tmp: Path, path: Path) -> None:
    """fsync ``tmp``, rename it to ``path``, fsync the folder: after this the new file survives a crash."""
    fault_point("write:" + path.name)  # the crash tests kill here: the old file must survive
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Calls ``write(tmp_path)``, then makes the result appear at ``path`` all at once, or not at all."""
    tmp = _temporary(path)
    try:
        write(tmp)
        _publish(tmp, path)
    except (OSError, RuntimeError) as exc:  # FAISS reports write errors as RuntimeError
        tmp.unlink(missing_ok=True)
        raise _write_error(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_open(path: Path, newline: Optional[str] = None) -> Iterator[IO[str]]:
    """A text file to stream into; it appears at ``path`` complete when the block ends without an
    error, and not at all otherwise (the previous version, if any, stays)."""
    tmp = _temporary(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = tmp.open("w", encoding="utf-8", newline=newline)
    except OSError as exc:
        raise _write_error(exc, path) from exc
    try:
        with handle:
            yield handle
        _publish(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _write_error(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
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


def vectors_file_info(index_dir: Path) -> dict:
    """What ``status`` shows about the vectors file, read from its sidecar (FAISS is not imported)."""
    import json

    meta_path, path = index_dir / VECTORS_META, index_dir / VECTORS_FILE
    info: dict = {"file": str(path), "exists": path.exists()}
    if path.exists():
        info["bytes"] = os.path.getsize(path)
    if meta_path.exists():
        try:
            info.update(json.loads(meta_path.read_text()))
        except (OSError, ValueError):
            info["unreadable_meta"] = True
    return info
