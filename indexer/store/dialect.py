"""What differs between the catalog's two databases, SQLite (a file in the index folder) and
PostgreSQL (``--catalog postgresql+psycopg://…``), in one place: the URL and its driver, upserts, path
filters. Everything else in ``store/`` is plain SQLAlchemy and runs on both.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, Optional

from sqlalchemy import func
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ..errors import CatalogError, MissingExtraError
from .sqlite import sqlite_url

CLUSTER_EXTRA = "pip install 'indexer[cluster]'"
_USER_PASSWORD = re.compile(r"://([^:/@?]*):[^@/?]*@")
_SECRET_PARAMETER = re.compile(r"(?i)([?&](?:[\w.-]*(?:pass|secret|token)[\w.-]*)=)[^&#]*")


def shown_url(url: "URL | str") -> str:
    """A catalog URL as messages show it: its password masked, in the user part and in the query string
    (``?password=…``, ``sslpassword``, any parameter named like a secret)."""
    text = url.render_as_string(hide_password=True) if isinstance(url, URL) else str(url)
    return _SECRET_PARAMETER.sub(r"\1***", _USER_PASSWORD.sub(r"://\1:***@", text))


def catalog_url(sqlite_path: Path, catalog: Optional[str]) -> URL:
    """The catalog's URL: ``catalog`` (a SQLAlchemy URL) when given, else the SQLite file at ``sqlite_path``."""
    if not catalog:
        return sqlite_url(sqlite_path)
    try:
        url = make_url(catalog)
    except ArgumentError:
        raise CatalogError(f"--catalog {shown_url(catalog)!r} is not a database URL "
                           "(e.g. postgresql+psycopg://user@host/db)") from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.get_driver_name() not in ("psycopg", "psycopg2", ""):
            raise CatalogError(f"--catalog: driver {url.get_driver_name()!r} is not supported; "
                               "use postgresql+psycopg://")
        if importlib.util.find_spec("psycopg") is None:
            raise MissingExtraError(f"a PostgreSQL catalog needs the psycopg driver: {CLUSTER_EXTRA}")
        return url.set(drivername="postgresql+psycopg")
    if backend != "sqlite":
        raise CatalogError(f"--catalog: {backend} is not supported; use postgresql+psycopg://… or leave it out")
    return url


def insert_for(dialect_name: str, table: Any) -> Any:
    """An INSERT that knows ``ON CONFLICT`` on this dialect (SQLite and PostgreSQL spell it alike)."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects import postgresql  # imported for a server catalog only

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


def glob_to_regex(pattern: str) -> str:
    """A glob (``*``, ``?``, ``[..]``, ``[!..]``, as SQLite's GLOB reads it) as an anchored POSIX regex."""
    out, i = ["^"], 0
    while i < len(pattern):
        c = pattern[i]
        start = i + 2 if pattern[i + 1:i + 2] == "!" else i + 1
        start += 1 if pattern[start:start + 1] == "]" else 0  # a "]" first in a set is literal
        end = pattern.find("]", start) if c == "[" else -1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif end != -1:
            body = pattern[i + 1:end]
            body = "^" + body[1:] if body.startswith("!") else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out) + "$"


def glob_condition(dialect_name: str, column: Any, pattern: str) -> Any:
    """``column`` matches the glob ``pattern``, case-sensitive, on either database."""
    if dialect_name == "postgresql":
        return column.op("~")(glob_to_regex(pattern))
    return column.op("GLOB")(pattern)


def contains_condition(dialect_name: str, column: Any, text: str) -> Any:
    """``column`` contains ``text``, case-sensitive (LIKE would fold ASCII case on SQLite)."""
    if dialect_name == "postgresql":
        return func.strpos(column, text) > 0
    return func.instr(column, text) > 0
