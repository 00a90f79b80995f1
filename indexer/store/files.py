"""The index folder's files: their names, crash-safe writes (``indexer.fileio``) with the catalog's
errors, and the crash tests' fault points."""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator, Optional

from .. import _faults, fileio
from ..errors import DiskFullError, IndexerError

CATALOG_FILE = "catalog.sqlite"
VECTORS_FILE = "vectors.faiss"
VECTORS_META = "vectors.json"


def fault_point(name: str) -> None:
    """A named moment where the crash tests pause the process (``INDEXER_TEST_PAUSE=name:seconds``)
    to kill it there; does nothing otherwise."""
    _faults.pause(name)


def _write_error(exc: BaseException, path: Path) -> IndexerError:
    if (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or "No space left" in str(exc):
        return DiskFullError(f"the disk is full: could not write {path}; the previous version is intact")
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return IndexerError(f"could not write {path}: {detail}")


def _crash_point(path: Path) -> None:
    fault_point("write:" + path.name)  # the crash tests kill here: the old file must survive


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """``fileio.atomic_write`` for the index's files: a failed write is an ``IndexerError`` (``DiskFullError``
    when the disk is full) that says the previous version is intact."""
    try:
        fileio.atomic_write(path, write, before_publish=_crash_point)
    except (OSError, RuntimeError) as exc:  # FAISS reports write errors as RuntimeError
        raise _write_error(exc, path) from exc


@contextmanager
def atomic_open(path: Path, newline: Optional[str] = None) -> Iterator[IO[str]]:
    """``fileio.atomic_open`` for the index's files, with the errors of ``atomic_write``."""
    try:
        with fileio.atomic_open(path, newline=newline, before_publish=_crash_point) as handle:
            yield handle
    except OSError as exc:
        raise _write_error(exc, path) from exc


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
