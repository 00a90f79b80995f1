"""One ingest per index at a time: a POSIX file lock for an SQLite catalog, a lease in the catalog
for a catalog on a server (``ingest_lock`` picks)."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import threading
import uuid
from pathlib import Path
from typing import Any, Optional, Union

from ..config import DEFAULT_LEASE_SECONDS
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

    def check(self) -> None:
        """Nothing to check: the kernel keeps the lock as long as this process lives."""

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
            IngestLock._held.discard(str(self.path.resolve()))


LEASE_NAME = "ingest"


class CatalogLease:
    """The ingest lock of an index whose catalog is on a server: a lease row in the catalog (``store/
    leases.py``), renewed by a heartbeat thread every third of its term. Runs on other machines see it;
    if its holder dies, the lease expires and the next run takes it over. ``check()`` raises when the
    lease was lost (a heartbeat could not reach the server for a whole term and someone took over)."""

    def __init__(self, catalog: Any, ttl: float = DEFAULT_LEASE_SECONDS) -> None:
        self.catalog = catalog
        self.ttl = ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.lost = False

    def __enter__(self) -> "CatalogLease":
        held = self.catalog.leases.acquire(LEASE_NAME, self.holder, self.ttl)
        if held is not None:
            raise IndexBusyError(
                f"the index with catalog {self.catalog.location} is being ingested into by {held.holder} (its lease "
                f"runs {max(0.0, held.expires_in):.0f} s more unless renewed); wait for it to finish")
        self._thread = threading.Thread(target=self._heartbeat, name="indexer-lease", daemon=True)
        self._thread.start()
        return self

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                if not self.catalog.leases.renew(LEASE_NAME, self.holder, self.ttl):
                    self.lost = True
                    return
            except IndexerError:
                continue  # the server is briefly unreachable: try again; the term allows two misses

    def check(self) -> None:
        if self.lost:
            raise IndexBusyError(f"the ingest lease on {self.catalog.location} was lost (taken over after it "
                                 "expired); this run stops: everything committed so far is kept")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self.lost:
            self.catalog.leases.release(LEASE_NAME, self.holder)


def ingest_lock(index_dir: Path, catalog: Any,
                lease_seconds: float = DEFAULT_LEASE_SECONDS) -> Union[IngestLock, CatalogLease]:
    """The ingest lock that fits the catalog: the kernel's lock on a file for an SQLite catalog (one
    machine; released the instant its process dies), a lease of ``lease_seconds`` in the catalog for a
    server catalog."""
    return IngestLock(index_dir) if catalog.dialect == "sqlite" else CatalogLease(catalog, lease_seconds)
