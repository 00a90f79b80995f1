"""The pending work list, read-only, for a decode worker in another process (or on another machine).

A decode worker starts in a fresh process (``spawn``) and reads four things from the catalog: pages of
pending plain files, the archives with pending members, one archive's members, and, for every item it
reads, whether its bytes are already embedded. Plain SQL, the same on both databases: on SQLite through
the standard library's ``sqlite3`` (a worker then never imports SQLAlchemy, ~0.2 s of CPU per worker at
start on a small machine), on PostgreSQL through a one-connection SQLAlchemy engine.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterator, Optional

from ..errors import CatalogError
from .sqlite import readonly_connection
from .states import ItemState

PENDING = ItemState.PENDING.value


class PendingReader:
    """Picklable: the connection is opened in the process that reads, on first use. ``sqlite_path`` is
    given for a SQLite catalog (its file), None for a server catalog at ``catalog_url``."""

    PAGE = 256

    def __init__(self, catalog_url: str, sqlite_path: Optional[str] = None) -> None:
        self.catalog_url = catalog_url
        self.sqlite_path = sqlite_path
        self._engine: Any = None
        self._sqlite: Optional[sqlite3.Connection] = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_engine": None, "_sqlite": None}

    def _rows(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        if self.sqlite_path is not None:
            try:
                if self._sqlite is None:
                    self._sqlite = readonly_connection(Path(self.sqlite_path))
                return self._sqlite.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise CatalogError(f"cannot read the pending items of the catalog: {str(exc).strip()}") from exc
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import DBAPIError

        if self._engine is None:
            self._engine = create_engine(self.catalog_url, pool_size=1, max_overflow=0, pool_pre_ping=True)
        try:
            with self._engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql), params)]
        except DBAPIError as exc:
            raise CatalogError(f"cannot read the pending items of the catalog: {str(exc.orig).strip()}") from exc

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None

    def embedding_id(self, sha256: str) -> Optional[int]:
        """The embedding already stored for these bytes, if any (asked once per item read)."""
        rows = self._rows("SELECT id FROM embeddings WHERE sha256 = :sha", {"sha": sha256})
        return int(rows[0][0]) if rows else None

    def plain_files(self, shard: int = 0, shards: int = 1, first_id: int = 0,
                    last_id: Optional[int] = None) -> Iterator[tuple[int, str, Optional[bytes]]]:
        """(item id, uri, raw path) of the pending plain files whose id falls in ``shard`` of ``shards``
        (and within ``first_id``..``last_id`` when given), page by page in id order."""
        last = first_id - 1
        upto = "" if last_id is None else " AND id <= :last_id"
        while True:
            page = self._rows(
                "SELECT id, uri, raw_path FROM items WHERE state = :state AND container IS NULL AND id > :after "
                f"AND id % :shards = :shard{upto} ORDER BY id LIMIT :limit",
                {"state": PENDING, "after": last, "shards": shards, "shard": shard, "last_id": last_id,
                 "limit": self.PAGE})
            if not page:
                return
            yield from ((int(r[0]), str(r[1]), None if r[2] is None else bytes(r[2])) for r in page)
            last = int(page[-1][0])

    def containers(self) -> list[str]:
        """Archives with pending members, in name order."""
        return [str(r[0]) for r in self._rows(
            "SELECT DISTINCT container FROM items WHERE state = :state AND container IS NOT NULL ORDER BY container",
            {"state": PENDING})]

    def members(self, container: str) -> list[tuple[int, str]]:
        """(item id, uri) of the pending members of one archive."""
        return [(int(r[0]), str(r[1])) for r in self._rows(
            "SELECT id, uri FROM items WHERE state = :state AND container = :container",
            {"state": PENDING, "container": container})]
