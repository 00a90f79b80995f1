"""Schema versions: Alembic revisions under ``migrations/`` (shipped in the wheel as ``indexer.migrations``).

Opening a catalog: an empty file is created from the models and stamped at head; a catalog at head
is used as is (no Alembic import: that keeps small commands fast); an older one is backed up and
upgraded; one from a newer indexer is refused with what to do.
"""

from __future__ import annotations

import importlib.util
import logging
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

from sqlalchemy import inspect, text

from ..errors import CatalogError, SchemaTooNewError
from .states import SCHEMA_HEAD

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .catalog import Catalog

log = logging.getLogger(__name__)



def migrations_dir() -> Path:
    """Where the Alembic scripts are: beside the package in a source checkout, else inside the installed
    package (the wheel ships them as ``indexer.migrations``)."""
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if (checkout / "env.py").is_file() and (checkout / "versions").is_dir():
        return checkout
    spec = importlib.util.find_spec("indexer.migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return checkout


def alembic_config(catalog_url: str):  # -> alembic.config.Config
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # Alembic's config is an ini file: "%" would start an interpolation, so it is doubled.
    config.set_main_option("sqlalchemy.url", catalog_url.replace("%", "%%"))
    return config


# A server catalog's schema work (creation, upgrade) holds this PostgreSQL advisory lock: processes
# opening one empty database at once (a cluster's workers starting together) create it once.
SCHEMA_LOCK_KEY = 0x1DE8E5C4E3A


def _schema_state(conn: "Connection") -> tuple[set[str], Optional[str]]:
    tables = set(inspect(conn).get_table_names())
    version = None
    if "alembic_version" in tables:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return tables, version


def ensure_schema(catalog: "Catalog") -> None:
    with catalog.engine.connect() as conn:
        tables, version = _schema_state(conn)
    if version == SCHEMA_HEAD:
        return
    if catalog.dialect == "postgresql":
        with catalog.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
            tables, version = _schema_state(conn)  # as the process that held the lock before left it
            if version != SCHEMA_HEAD:
                _create_or_upgrade(catalog, conn, tables, version)
        return
    _create_or_upgrade(catalog, None, tables, version)


def _create_or_upgrade(catalog: "Catalog", conn: Optional["Connection"], tables: set[str],
                       version: Optional[str]) -> None:
    """Brings the catalog to ``SCHEMA_HEAD`` (in ``conn``'s transaction when given)."""
    if not tables:
        if getattr(catalog, "readonly", False):
            raise CatalogError(f"{catalog.path} is an empty file on read-only media; point --index at an index")
        _create_at_head(catalog, conn)
        return
    if version is None:
        raise CatalogError(
            f"{catalog.location} is a database but not an indexer catalog (no schema version); "
            + ("point --index at another folder" if catalog.dialect == "sqlite" else "give --catalog an empty database")
        )
    _upgrade(catalog, version, conn)


def _create_at_head(catalog: "Catalog", conn: Optional["Connection"] = None) -> None:
    from . import fulltext
    from .schema import metadata

    with _transaction(catalog, conn) as conn:
        metadata.create_all(conn)
        fulltext.create(conn.dialect.name, conn.exec_driver_sql)
        conn.exec_driver_sql(
            "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
            "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
        )
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": SCHEMA_HEAD})


@contextmanager
def _transaction(catalog: "Catalog", conn: Optional["Connection"]) -> Iterator["Connection"]:
    """``conn`` (a transaction the caller holds) or a new transaction of its own."""
    if conn is not None:
        yield conn
        return
    with catalog.engine.begin() as own:
        yield own


def _upgrade(catalog: "Catalog", version: str, conn: Optional["Connection"] = None) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    config = alembic_config(catalog.engine.url.render_as_string(hide_password=False))
    scripts = ScriptDirectory.from_config(config)
    try:
        known = scripts.get_revision(version) is not None
    except CommandError:
        known = False
    if not known:
        raise SchemaTooNewError(
            f"{catalog.location} has schema version {version!r}, written by a newer indexer than this one "
            f"(which knows up to {SCHEMA_HEAD!r}). Upgrade indexer (pip install -U indexer) to open it"
        )
    if getattr(catalog, "readonly", False):
        raise CatalogError(f"{catalog.path} has the older schema {version!r} and is read-only here: open it once "
                           "where it is writable (indexer upgrades it), or copy the index folder")
    if catalog.dialect == "sqlite":
        backup = str(backup_catalog(catalog.path, version))
    else:  # a server's backups are its operator's (pg_dump before upgrading indexer); the upgrade is one transaction
        backup = "none made for a server catalog: pg_dump it first to keep a copy"
    with _transaction(catalog, conn) as conn:
        if conn.dialect.name == "sqlite":
            # A batch migration rebuilds a table by copy and drop; with foreign keys on, dropping `items`
            # would cascade into the classifications. Off for the upgrade (before any write: a no-op in
            # a transaction), as SQLite's own ALTER TABLE procedure says.
            conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    log.warning("upgraded the catalog schema %s -> %s (backup: %s)", version, SCHEMA_HEAD, backup)


def backup_catalog(path: Path, version: str) -> Path:
    """A consistent copy of the catalog (SQLite's online backup) before a migration touches it."""
    folder = path.parent / "backups"
    folder.mkdir(exist_ok=True)
    target = folder / f"{path.stem}-{version}-{time.strftime('%Y%m%d-%H%M%S')}.sqlite"
    source = sqlite3.connect(str(path))
    try:
        destination = sqlite3.connect(str(target))
        with destination:
            source.backup(destination)
        destination.close()
    finally:
        source.close()
    return target
