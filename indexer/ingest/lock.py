"""One ingest per index at a time."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Optional

from ..errors import IndexBusyError, IndexerError

LOCK_FILE = "ingest.lock"


class IngestLock:
    """An exclusive POSIX lock on ``ingest.lock`` in the index folder. The kernel drops it when its
    process dies, however it dies; unlike ``flock``, decode workers forked from the process do not
    inherit it, so a killed run's orphaned workers hold nothing. The file is opened without following
    a symbolic link: a link planted there cannot make the lock truncate another file."""

    _held: set[str] = set()  # POSIX locks do not exclude their own process: these paths are ours

    def __init__(self, index_dir: Path) -> None:
        self.path = index_dir / LOCK_FILE
        self.fd: Optional[int] = None

    def _busy(self, holder: str) -> IndexBusyError:
        return IndexBusyError(
            f"{self.path.parent} is being ingested into by process {holder}; wait for it to finish "
            "(searches keep working meanwhile)"
        )

    def __enter__(self) -> "IngestLock":
        key = str(self.path.resolve())
        if key in IngestLock._held:
            # Checked before opening the file: closing any descriptor of it would drop our own lock.
            raise self._busy(str(os.getpid()))
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise IndexerError(f"{self.path} is a symbolic link; remove it (indexer never follows it)") from None
            raise IndexerError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            self.fd = None
            raise self._busy(holder) from None
        IngestLock._held.add(key)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
            IngestLock._held.discard(str(self.path.resolve()))
