"""Crash-safe files: written under a temporary name, fsynced, renamed into place."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from ..errors import DiskFullError, IndexerError

VECTORS_FILE = "vectors.faiss"
VECTORS_META = "vectors.json"


def fault_point(name: str) -> None:
    """A named moment where the crash tests pause the process (``INDEXER_TEST_PAUSE=name:seconds``)
    to kill it there; does nothing otherwise."""
    spec = os.environ.get("INDEXER_TEST_PAUSE")
    if spec and spec.rsplit(":", 1)[0] == name:
        time.sleep(float(spec.rsplit(":", 1)[1]))


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Calls ``write(tmp_path)``, then makes the result appear at ``path`` all at once, or not at all."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        fault_point("write:" + path.name)  # the crash tests kill here: the old file must survive
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except RuntimeError as exc:  # FAISS reports write errors as RuntimeError
        tmp.unlink(missing_ok=True)
        if "No space left" in str(exc):
            raise DiskFullError(f"the disk is full: could not write {path}; the previous version is intact") from exc
        raise IndexerError(f"could not write {path}: {exc}") from exc
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == 28:  # ENOSPC
            raise DiskFullError(f"the disk is full: could not write {path}; the previous version is intact") from exc
        raise IndexerError(f"could not write {path}: {exc.strerror or exc}") from exc
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
