"""The catalog's tables (SQLAlchemy models): what an index stores, one class per table.

Alembic revisions under ``migrations/`` bring older catalogs to exactly this schema; a test checks that
an upgraded empty database and ``Base.metadata`` agree.
"""

from __future__ import annotations

import enum
from typing import Optional

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index as SqlIndex, Integer, LargeBinary, String, Text, \
    UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


# Byte sizes and nanosecond times pass 2**31: SQLite's INTEGER holds 64 bits, PostgreSQL needs BIGINT.
Int64 = Integer().with_variant(BigInteger(), "postgresql")


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
    size: Mapped[int] = mapped_column(Int64)
    mtime_ns: Mapped[int] = mapped_column(Int64)
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
    size: Mapped[int] = mapped_column(Int64)
    mtime_ns: Mapped[int] = mapped_column(Int64)
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
    # Set when every item was classified: a run killed half-way is never taken for a whole one.
    completed_at: Mapped[Optional[float]] = mapped_column(Float)


class Classification(Base):
    """The ``rank``-th best label of one item in one classification run."""

    __tablename__ = "classifications"
    run_id: Mapped[int] = mapped_column(ForeignKey("classification_runs.id", ondelete="CASCADE"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float)


class TrainedHead(Base):
    """A zero-shot head trained on stored embeddings (``indexer.heads``): its classes, how it was made,
    and its weights (an ``.npz`` blob: no pickles). It belongs to one model, by ``Index.model_key()``."""

    __tablename__ = "heads"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    method: Mapped[str] = mapped_column(String(32))
    classes: Mapped[str] = mapped_column(Text)  # JSON list, in the weights' row order
    hparams: Mapped[str] = mapped_column(Text)  # JSON: chosen hyper-parameters, calibration, seed, descriptions
    model_key: Mapped[str] = mapped_column(String(64))
    figures: Mapped[str] = mapped_column(Text)  # JSON: training items, seconds, validation table
    weights: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[float] = mapped_column(Float)


class IngestLease(Base):
    """Who may ingest into the index now: a lease with an expiry, renewed by its holder's heartbeat.
    A holder that dies stops renewing; once the lease has expired, the next run takes it over."""

    __tablename__ = "ingest_leases"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[float] = mapped_column(Float)
    heartbeat_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
