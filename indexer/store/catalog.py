"""The catalog: the source of truth of an index, through SQLAlchemy.

It holds every item (a file or an archive member) with its state, every embedding (float16 blobs,
one per distinct content), the identity of the model that made them, the text-embedding cache and
classification results (tables in ``schema.py``). The FAISS file beside it is derived from it
(``vectors.py``).

``Catalog`` is the only object that talks to the database. Its query API is split by concern into
mixins: ``reads.py`` (items and embeddings, paged and by ids), ``items.py`` (what ingestion writes)
and ``runs.py`` (text cache, classification runs); this module holds the connection, transactions,
error translation and the key/value facts.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError

from ..errors import CatalogError, DiskFullError
from .dialect import catalog_url, insert_for
from .files import CATALOG_FILE  # noqa: F401 - the catalog file's name, also read from here
from .heads import CatalogHeads
from .items import CatalogItems
from .leases import CatalogLeases
from .reads import CatalogReads
from .runs import CatalogRuns
from .schema import Meta
from .sqlite import is_writable, readonly_connection, set_pragmas



def translate_errors(exc: Exception, path: object) -> CatalogError:
    message = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(getattr(exc, "orig", exc)).strip() \
        else type(exc).__name__
    if "disk is full" in message or "No space left" in message:
        return DiskFullError(
            f"the disk holding {path} is full; everything committed so far is intact. Free space and re-run: "
            "the run resumes where it stopped"
        )
    if "database is locked" in message:
        return CatalogError(f"{path} is locked by another process for more than 30 s; try again when it is done")
    if "file is not a database" in message or "malformed" in message:
        return CatalogError(f"{path} is not a readable SQLite catalog ({message})")
    if "connection" in message and ("refused" in message or "failed" in message):
        return CatalogError(f"cannot connect to the catalog {path} ({message}); is the server running?")
    if "readonly" in message:
        return CatalogError(f"{path} is read-only here: reading commands work (classify with --no-store, audit "
                            "with --no-report); to change the index, work on a writable copy")
    return CatalogError(f"catalog error on {path}: {message}")


DB_ERRORS = (OperationalError, DatabaseError, InterfaceError)


class Catalog(CatalogReads, CatalogItems, CatalogRuns, CatalogHeads, CatalogLeases):
    """An open catalog: an engine, schema checks done, and the query API of its mixins.

    ``path`` is the SQLite file in the index folder; with ``url`` (a PostgreSQL URL) the catalog lives
    on that server instead and ``path`` only names the index in messages. ``readonly``: an SQLite file on
    read-only media (a mounted archive disk, a shared folder) is opened immutable; everything that only
    reads works, and the caches that would be written stay in memory."""

    def __init__(self, path: Path, url: Optional[str] = None, readonly: bool = False) -> None:
        self.path = path
        self.url = catalog_url(path, url)
        self.dialect = self.url.get_backend_name()
        self.readonly = readonly and self.dialect == "sqlite"
        # Where the catalog is, for messages: the file, or the URL without its password.
        self.location = str(path) if self.dialect == "sqlite" else self.url.render_as_string(hide_password=True)
        if self.readonly:
            self.engine: Engine = create_engine("sqlite://", creator=lambda: readonly_connection(path, immutable=True))
            event.listen(self.engine, "connect", set_pragmas)
        elif self.dialect == "sqlite":
            self.engine = create_engine(self.url)
            event.listen(self.engine, "connect", set_pragmas)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True)
        try:
            if self.dialect == "sqlite" and not self.readonly:
                with self.engine.connect() as conn:
                    mode = conn.exec_driver_sql("PRAGMA journal_mode = WAL").scalar()
                    if str(mode).lower() != "wal":
                        raise CatalogError(f"cannot switch {path} to WAL mode (got {mode})")
            from .migrate import ensure_schema

            ensure_schema(self)
        except DB_ERRORS as exc:
            raise translate_errors(exc, self.location) from exc

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction; database errors become ``CatalogError`` with a message that says what to do."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except DB_ERRORS as exc:
            raise translate_errors(exc, self.location) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except DB_ERRORS as exc:
            raise translate_errors(exc, self.location) from exc

    def close(self) -> None:
        self.engine.dispose()

    def size_bytes(self) -> int:
        """The catalog's size on disk (the database and its write-ahead log; on a server, its database)."""
        if self.dialect == "postgresql":
            with self.read() as conn:
                return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar() or 0)
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())

    # -- meta -----------------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self.read() as conn:
            value = conn.execute(select(Meta.value).where(Meta.key == key)).scalar()
        if value is None:
            return default
        try:
            return json.loads(value)
        except (TypeError, ValueError):
            raise CatalogError(f"{self.location} is damaged: its {key!r} setting is not JSON; restore the catalog "
                               "from a backup or rebuild the index") from None

    def set_meta(self, key: str, value: Any, conn: Optional[Connection] = None) -> None:
        insert = insert_for(self.dialect, Meta).values(key=key, value=json.dumps(value))
        statement = insert.on_conflict_do_update(index_elements=[Meta.key], set_={"value": insert.excluded.value})
        if conn is not None:
            conn.execute(statement)
            return
        with self.begin() as own:
            own.execute(statement)

    def catalog_id(self) -> str:
        value = self.get_meta("catalog_id")
        if value is None and self.readonly:
            return uuid.uuid4().hex  # nothing derived from it is written on read-only media
        if value is None:
            # Two processes may get here at once: the first id written wins, and both read it back.
            with self.begin() as conn:
                conn.execute(insert_for(self.dialect, Meta).values(key="catalog_id", value=json.dumps(uuid.uuid4().hex))
                             .on_conflict_do_nothing(index_elements=[Meta.key]))
            value = self.get_meta("catalog_id")
        return value

    def embedding_dim(self) -> Optional[int]:
        model = self.get_meta("model")
        return int(model["embed_dim"]) if model else None


def open_catalog(index_dir: Path, create: bool = True, url: Optional[str] = None) -> Catalog:
    """Opens (and, when ``create``, creates) the catalog of the index in ``index_dir``: its SQLite file,
    or the database at ``url`` (PostgreSQL) whose FAISS files are kept in ``index_dir``."""
    path = index_dir / CATALOG_FILE
    if url:
        if create:
            try:
                index_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CatalogError(f"cannot create index folder {index_dir}: {exc.strerror}") from exc
        elif not index_dir.is_dir():
            raise CatalogError(f"no index folder {index_dir}; run `indexer ingest` first")
        return Catalog(path, url)
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except (OSError, ValueError) as exc:  # a path longer than the system allows, a NUL byte
        raise CatalogError(f"cannot use {index_dir} as an index folder: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    if not exists:
        if not create:
            raise CatalogError(f"no index at {index_dir} (no {CATALOG_FILE}); run `indexer ingest` first")
        try:
            index_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(f"cannot create index folder {index_dir}: {exc.strerror}") from exc
    elif is_dir:
        raise CatalogError(f"{path} is a folder, not a catalog file")
    return Catalog(path, readonly=not is_writable(path))
