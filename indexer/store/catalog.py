"""The catalog: SQLite through SQLAlchemy, the source of truth of an index.

It holds every item (a file or an archive member) with its state, every embedding (float16 blobs,
one per distinct content), the identity of the model that made them, the text-embedding cache and
classification results. The FAISS file beside it is derived from it (``vectors.py``).
"""

from __future__ import annotations

import enum
import json
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index as SqlIndex,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..errors import CatalogError, DiskFullError

CATALOG_FILE = "catalog.sqlite"


class Base(DeclarativeBase):
    pass


class ItemState(str, enum.Enum):
    """Where an item stands. Only ``EMBEDDED`` items are searched and classified."""

    PENDING = "pending"  # seen, not embedded yet (a crash leaves these; the next run picks them up)
    EMBEDDED = "embedded"
    FAILED = "failed"  # unreadable; ``failure_reason`` says why
    DELETED = "deleted"  # gone from its source; kept as history until purged


class Meta(Base):
    """Key/value facts about the index: its model, its id, the vectors' epoch."""

    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Embedding(Base):
    """One embedding per distinct content (sha256); its id is the vector's id in FAISS."""

    __tablename__ = "embeddings"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused: FAISS relies on it
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(Float)


class Item(Base):
    """A file or an archive member, addressed by ``uri``."""

    __tablename__ = "items"
    __table_args__ = (
        SqlIndex("ix_items_state", "state"),
        SqlIndex("ix_items_sha256", "sha256"),
        SqlIndex("ix_items_embedding_id", "embedding_id"),
        SqlIndex("ix_items_container", "container"),
        {"sqlite_autoincrement": True},
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uri: Mapped[str] = mapped_column(Text, unique=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime_ns: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[Optional[str]] = mapped_column(String(64))
    embedding_id: Mapped[Optional[int]] = mapped_column(ForeignKey("embeddings.id", ondelete="SET NULL"))
    width: Mapped[Optional[int]] = mapped_column(Integer)
    height: Mapped[Optional[int]] = mapped_column(Integer)
    format: Mapped[Optional[str]] = mapped_column(String(16))
    failure_reason: Mapped[Optional[str]] = mapped_column(String(64))
    failure_detail: Mapped[Optional[str]] = mapped_column(Text)
    scan_id: Mapped[Optional[int]] = mapped_column(Integer)
    added_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    # The archive holding this item (its uri is "ARCHIVE::MEMBER"), or None for a plain file.
    container: Mapped[Optional[str]] = mapped_column(Text)
    # The file name's bytes when they are not UTF-8 (``uri`` then shows them escaped).
    raw_path: Mapped[Optional[bytes]] = mapped_column(LargeBinary)


class Archive(Base):
    """A tar or zip archive as last read: when its size and mtime are unchanged and the read was
    complete, its members are known to be unchanged without opening it."""

    __tablename__ = "archives"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    uri: Mapped[str] = mapped_column(Text, unique=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime_ns: Mapped[int] = mapped_column(Integer)
    members: Mapped[int] = mapped_column(Integer)
    complete: Mapped[bool] = mapped_column(Boolean)
    scanned_at: Mapped[float] = mapped_column(Float)


class TextEmbedding(Base):
    """Cache of text embeddings, keyed by (model, text): label queries never re-encode."""

    __tablename__ = "text_embeddings"
    __table_args__ = (UniqueConstraint("model_key", "text"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_key: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    vector: Mapped[bytes] = mapped_column(LargeBinary)


class IngestRun(Base):
    """One ingest run: its sources, when it ran and what it counted."""

    __tablename__ = "ingest_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[Optional[float]] = mapped_column(Float)
    sources: Mapped[str] = mapped_column(Text)
    counts: Mapped[Optional[str]] = mapped_column(Text)


class ClassificationRun(Base):
    """One zero-shot classification of the collection over a label set."""

    __tablename__ = "classification_runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    labels: Mapped[str] = mapped_column(Text)  # JSON list
    templates: Mapped[str] = mapped_column(String(32))
    top_k: Mapped[int] = mapped_column(Integer)
    item_count: Mapped[int] = mapped_column(Integer)


class Classification(Base):
    """The ``rank``-th best label of one item in one classification run."""

    __tablename__ = "classifications"
    run_id: Mapped[int] = mapped_column(ForeignKey("classification_runs.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float)


def vector_to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f2").tobytes()


def blobs_to_matrix(blobs: list[bytes], dim: int) -> np.ndarray:
    """float16 blobs to a float32 matrix, re-normalised (fp16 rounding moves the norm by ~1e-3)."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    matrix = np.frombuffer(b"".join(blobs), dtype="<f2").reshape(len(blobs), dim).astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA synchronous = NORMAL")  # with WAL: a crash never corrupts, a kill loses nothing committed
    cursor.close()


def translate_errors(exc: Exception, path: Path) -> CatalogError:
    message = str(getattr(exc, "orig", exc))
    if "disk is full" in message or "No space left" in message:
        return DiskFullError(
            f"the disk holding {path} is full; everything committed so far is intact. Free space and re-run: "
            "the run resumes where it stopped"
        )
    if "database is locked" in message:
        return CatalogError(f"{path} is locked by another process for more than 30 s; try again when it is done")
    if "file is not a database" in message or "malformed" in message:
        return CatalogError(f"{path} is not a readable SQLite catalog ({message})")
    if "readonly" in message:
        return CatalogError(f"{path} is read-only here; open a writable copy")
    return CatalogError(f"catalog error on {path}: {message}")


class Catalog:
    """An open catalog file: an engine, schema checks done, and the few queries everyone needs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine: Engine = create_engine(f"sqlite:///{path}", future=True)
        event.listen(self.engine, "connect", _set_pragmas)
        try:
            with self.engine.connect() as conn:
                mode = conn.exec_driver_sql("PRAGMA journal_mode = WAL").scalar()
                if str(mode).lower() != "wal":
                    raise CatalogError(f"cannot switch {path} to WAL mode (got {mode})")
            from .migrate import ensure_schema

            ensure_schema(self)
        except (OperationalError, DatabaseError) as exc:
            raise translate_errors(exc, path) from exc

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """One transaction; SQLite errors become ``CatalogError`` with a message that says what to do."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (OperationalError, DatabaseError) as exc:
            raise translate_errors(exc, self.path) from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except (OperationalError, DatabaseError) as exc:
            raise translate_errors(exc, self.path) from exc

    def close(self) -> None:
        self.engine.dispose()

    # -- meta -----------------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self.read() as conn:
            value = conn.execute(select(Meta.value).where(Meta.key == key)).scalar()
        return json.loads(value) if value is not None else default

    def set_meta(self, conn: Connection, key: str, value: Any) -> None:
        conn.execute(
            text("INSERT INTO meta(key, value) VALUES (:k, :v) ON CONFLICT(key) DO UPDATE SET value = :v"),
            {"k": key, "v": json.dumps(value)},
        )

    def catalog_id(self) -> str:
        value = self.get_meta("catalog_id")
        if value is None:
            value = uuid.uuid4().hex
            with self.begin() as conn:
                self.set_meta(conn, "catalog_id", value)
        return value

    def embedding_dim(self) -> Optional[int]:
        model = self.get_meta("model")
        return int(model["embed_dim"]) if model else None


def now() -> float:
    return time.time()


def open_catalog(index_dir: Path, create: bool = True) -> Catalog:
    """Opens (and, when ``create``, creates) the catalog of the index in ``index_dir``."""
    path = index_dir / CATALOG_FILE
    if not path.exists():
        if not create:
            raise CatalogError(f"no index at {index_dir} (no {CATALOG_FILE}); run `indexer ingest` first")
        try:
            index_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(f"cannot create index folder {index_dir}: {exc.strerror}") from exc
    elif path.is_dir():
        raise CatalogError(f"{path} is a folder, not a catalog file")
    return Catalog(path)
