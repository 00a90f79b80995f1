"""The reads a search makes, on an SQLite catalog, without SQLAlchemy: a question starts faster.

Importing SQLAlchemy costs a search about 0.1 s, a quarter of a new question's whole process. A
``QuickCatalog`` answers the handful of calls a search makes (the model, the text cache, the vectors'
version, the items of a result) with the standard library's ``sqlite3``, and hands every other call to
the full ``Catalog``, opened on first need. It is used only where nothing unusual can happen: an existing,
writable SQLite catalog at this release's schema; anything else opens the full ``Catalog`` at once, which
migrates, refuses or explains.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from ..errors import CatalogError
from .files import CATALOG_FILE
from .sqlite import is_writable, set_pragmas
from .states import PURGES_KEY, SCHEMA_HEAD

if TYPE_CHECKING:
    from .catalog import Catalog

CHUNK = 500  # ids per IN (...) list


class QuickCatalog:
    """An SQLite catalog read with ``sqlite3``; every call it does not make itself goes to the full
    ``Catalog`` (SQLAlchemy), opened then. Safe to share between threads (one connection, one lock)."""

    readonly = False
    dialect = "sqlite"

    def __init__(self, index_dir: Path, connection: sqlite3.Connection) -> None:
        self.index_dir = index_dir
        self.path = index_dir / CATALOG_FILE
        self.location = str(self.path)
        self._conn = connection
        self._lock = threading.Lock()
        self._full: Optional["Catalog"] = None

    @classmethod
    def open(cls, index_dir: Path) -> Optional["QuickCatalog"]:
        """The quick reader of the catalog in ``index_dir``, or None where the full one must be used."""
        path = index_dir / CATALOG_FILE
        try:
            if not path.is_file() or not is_writable(path):
                return None
            connection = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
        except (OSError, ValueError, sqlite3.Error):
            return None
        try:
            set_pragmas(connection, None)
            mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            version = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.Error:
            connection.close()
            return None
        if str(mode).lower() != "wal" or version is None or version[0] != SCHEMA_HEAD:
            connection.close()
            return None
        return cls(index_dir, connection)

    # -- the full catalog, for everything else ------------------------------------------------------

    def full(self) -> "Catalog":
        with self._lock:
            if self._full is None:
                from .catalog import open_catalog

                self._full = open_catalog(self.index_dir, create=False)
            return self._full

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_full", "_conn", "_lock"):
            raise AttributeError(name)
        return getattr(self.full(), name)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._full is not None:
                self._full.close()

    def _rows(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(parameters)).fetchall()
            except sqlite3.Error as exc:
                raise CatalogError(f"catalog error on {self.path}: {exc}") from exc

    # -- the calls a search makes ---------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._rows("SELECT value FROM meta WHERE key = ?", (key,))
        if not rows or rows[0][0] is None:
            return default
        try:
            return json.loads(rows[0][0])
        except (TypeError, ValueError):
            raise CatalogError(f"{self.location} is damaged: its {key!r} setting is not JSON; restore the catalog "
                               "from a backup or rebuild the index") from None

    def catalog_id(self) -> str:
        value = self.get_meta("catalog_id")
        return value if value is not None else self.full().catalog_id()  # written once, by the full catalog

    def embedding_dim(self) -> Optional[int]:
        model = self.get_meta("model")
        return int(model["embed_dim"]) if model else None

    def has_embedded(self) -> bool:
        return bool(self._rows("SELECT 1 FROM items WHERE state = 'embedded' LIMIT 1"))

    def count_embedded(self) -> int:
        return int(self._rows("SELECT count(*) FROM items WHERE state = 'embedded'")[0][0] or 0)

    def embeddings_version(self) -> tuple[int, int]:
        max_id = self._rows("SELECT max(id) FROM embeddings")[0][0]
        purges = self._rows("SELECT value FROM meta WHERE key = ?", (PURGES_KEY,))
        return int(max_id or 0), int(purges[0][0] or 0) if purges else 0

    def embedding_state(self) -> tuple[int, int]:
        count, max_id = self._rows("SELECT count(id), max(id) FROM embeddings")[0]
        return int(count or 0), int(max_id or 0)

    def cached_texts(self, model_key: str, texts: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        wanted = list(dict.fromkeys(texts))
        for start in range(0, len(wanted), CHUNK):
            part = wanted[start:start + CHUNK]
            found.update((str(t), bytes(v)) for t, v in self._rows(
                f"SELECT text, vector FROM text_embeddings WHERE model_key = ? AND text IN ({','.join('?' * len(part))})",
                [model_key, *part]))
        return found

    def cache_texts(self, model_key: str, blobs: dict[str, bytes]) -> None:
        if not blobs:
            return
        with self._lock:
            try:
                with self._conn:  # one transaction
                    self._conn.execute("BEGIN")
                    self._conn.executemany(
                        "INSERT INTO text_embeddings (model_key, text, vector) VALUES (?, ?, ?) "
                        "ON CONFLICT (model_key, text) DO NOTHING",
                        [(model_key, t, blob) for t, blob in blobs.items()])
            except sqlite3.Error as exc:
                raise CatalogError(f"catalog error on {self.path}: {exc}") from exc

    def items_for_embeddings(self, embedding_ids: Sequence[int]) -> list[tuple[int, str, int]]:
        ids = [int(i) for i in embedding_ids]
        rows: list[tuple[int, str, int]] = []
        for start in range(0, len(ids), CHUNK):
            part = ids[start:start + CHUNK]
            rows += [(int(r[0]), str(r[1]), int(r[2])) for r in self._rows(
                f"SELECT id, uri, embedding_id, state FROM items WHERE embedding_id IN ({','.join('?' * len(part))})",
                part) if r[3] == "embedded"]
        return sorted(rows)
