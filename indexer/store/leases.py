"""Leases in the catalog: one holder at a time per name, with an expiry its heartbeat pushes on.

Used for the per-index ingest lock when the catalog is on a server (several machines, no shared lock
file): a holder that dies stops renewing, and once its lease has expired the next run takes it over.
Times come from the database server's clock, so machines with skewed clocks still agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from sqlalchemy import delete, select, text, update

from .dialect import insert_for
from .schema import IngestLease

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .catalog import Catalog


@dataclass(frozen=True)
class LeaseInfo:
    holder: str
    expires_in: float  # seconds from now (negative: expired)


def _now(conn: "Connection") -> float:
    if conn.dialect.name == "postgresql":
        return float(conn.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar())
    return float(conn.execute(text("SELECT (julianday('now') - 2440587.5) * 86400.0")).scalar())


class CatalogLeases:
    """Lease operations (``catalog.leases``)."""

    def __init__(self, catalog: "Catalog") -> None:
        self.catalog = catalog

    def acquire(self, name: str, holder: str, ttl: float) -> Optional[LeaseInfo]:
        """Takes the lease ``name`` for ``holder`` for ``ttl`` seconds when it is free, expired or already
        ``holder``'s. Returns None on success, else who holds it."""
        with self.catalog.begin() as conn:
            now = _now(conn)
            conn.execute(insert_for(self.catalog.dialect, IngestLease).values(
                name=name, holder=holder, acquired_at=now, heartbeat_at=now, expires_at=now + ttl)
                .on_conflict_do_nothing(index_elements=[IngestLease.name]))
            taken = conn.execute(update(IngestLease).where(
                IngestLease.name == name, (IngestLease.holder == holder) | (IngestLease.expires_at < now))
                .values(holder=holder, acquired_at=now, heartbeat_at=now, expires_at=now + ttl)).rowcount
            if taken == 1:
                return None
            row = conn.execute(select(IngestLease.holder, IngestLease.expires_at)
                               .where(IngestLease.name == name)).one()
            return LeaseInfo(row.holder, row.expires_at - now)

    def renew(self, name: str, holder: str, ttl: float) -> bool:
        """Pushes the expiry on; False when ``holder`` no longer holds the lease (it expired and was taken)."""
        with self.catalog.begin() as conn:
            now = _now(conn)
            return conn.execute(update(IngestLease).where(IngestLease.name == name, IngestLease.holder == holder)
                                .values(heartbeat_at=now, expires_at=now + ttl)).rowcount == 1

    def release(self, name: str, holder: str) -> None:
        with self.catalog.begin() as conn:
            conn.execute(delete(IngestLease).where(IngestLease.name == name, IngestLease.holder == holder))
