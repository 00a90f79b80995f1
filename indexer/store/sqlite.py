"""SQLite specifics: the URL of a catalog file, its connection settings, and a read-only connection."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = NORMAL")  # with WAL: a crash never corrupts, a kill loses nothing committed
    cursor.close()


def sqlite_url(path: Path) -> "URL":
    """The SQLAlchemy URL of an SQLite file, built as an object: a path holding ``#``, ``?`` or ``%``
    stays one file name instead of being parsed as parts of a URL."""
    from sqlalchemy.engine import URL  # here: the rest of this module serves the SQLAlchemy-free reads too

    return URL.create("sqlite", database=str(path))


def readonly_connection(path: Path, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection to the SQLite file at ``path`` (a ``file:`` URI with the path quoted).
    ``immutable``: the file is on media nobody writes (a read-only folder), so SQLite takes no locks and
    needs no ``-shm`` file beside it (which it could not create there)."""
    uri = f"file:{quote(str(path))}?mode=ro" + ("&immutable=1" if immutable else "")
    return sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)


def is_writable(path: Path) -> bool:
    """Whether SQLite can write the catalog at ``path``: the file and its folder (journal, WAL) writable."""
    folder_writable = os.access(path.parent, os.W_OK | os.X_OK)
    return folder_writable and (not path.exists() or os.access(path, os.W_OK))


