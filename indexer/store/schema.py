"""The catalog's tables: what an index stores, one SQLAlchemy Core table each.

Alembic revisions under ``migrations/`` bring older catalogs to exactly this schema; a test checks that
an upgraded empty database and ``metadata`` agree. The tables are Core tables, not ORM classes: the
catalog only ever runs SQL statements, and a search starts faster without the ORM. Each is wrapped so
that its columns read as attributes (``Item.uri``), and it stands for its table in ``select``, ``insert``,
``update``, ``delete`` and joins.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Float, ForeignKey, Index as SqlIndex, Integer, LargeBinary, \
    DDL, MetaData, String, Table, Text, UniqueConstraint, event, func, text

from .states import ItemState  # noqa: F401 - the items' states, also read from here

metadata = MetaData()

# Byte sizes and nanosecond times pass 2**31: SQLite's INTEGER holds 64 bits, PostgreSQL needs BIGINT.
Int64 = Integer().with_variant(BigInteger(), "postgresql")


class TableColumns:
    """A table whose columns are attributes; SQLAlchemy takes it for the table itself."""

    def __init__(self, table: Table) -> None:
        self.__table__ = table

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__table__.c[name]
        except KeyError:
            raise AttributeError(f"table {self.__table__.name} has no column {name!r}") from None

    def __clause_element__(self) -> Table:
        return self.__table__


def _table(name: str, *columns: Any, **options: Any) -> Any:
    return TableColumns(Table(name, metadata, *columns, **options))


# Key/value facts about the index: its model, its id, the vectors' epoch.
Meta = _table(
    "meta",
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


# One embedding per distinct content (sha256); its id is the vector's id in FAISS.
Embedding = _table(
    "embeddings",
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), unique=True, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    # A 64-bit perceptual hash (DCT) of the picture, signed; made at ingest from the decoded picture,
    # or by the audit for contents embedded before it existed.
    Column("phash", Int64),
    sqlite_autoincrement=True,  # ids are never reused: FAISS relies on it
)


# A file or an archive member, addressed by ``uri``.
Item = _table(
    "items",
    Column("id", Integer, primary_key=True),
    Column("uri", Text, unique=True, nullable=False),
    Column("size", Int64, nullable=False),
    Column("mtime_ns", Int64, nullable=False),
    Column("state", String(16), nullable=False),
    Column("sha256", String(64)),
    Column("embedding_id", ForeignKey("embeddings.id", ondelete="SET NULL")),
    Column("width", Integer),
    Column("height", Integer),
    Column("format", String(16)),
    Column("failure_reason", String(64)),
    Column("failure_detail", Text),
    Column("scan_id", Integer),
    Column("added_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # The archive holding this item (its uri is "ARCHIVE::MEMBER"), or None for a plain file.
    Column("container", Text),
    # The file name's bytes when they are not UTF-8 (``uri`` then shows them escaped).
    Column("raw_path", LargeBinary),
    # What the file says about itself (``media/metadata.py``), read at ingest with no extra decode:
    # the EXIF date taken as "YYYY-MM-DD HH:MM:SS" (local time, as the camera wrote it), the camera's
    # make and model, its GPS position in degrees; values that were unreadable or implausible are left
    # out and named in ``meta_notes``. ``meta_at``: when they were read (None: not yet, e.g. an item
    # embedded before they were kept; the next ingest fills them in without embedding anything).
    Column("taken", String(19)),
    Column("camera", String(128)),
    Column("lat", Float),
    Column("lon", Float),
    Column("meta_at", Float),
    Column("meta_notes", Text),
    # A caption from a same-name .txt/.json beside the file, or from the WebDataset sample in its archive;
    # ``caption_stamp`` tells a changed sidecar (its modification time, or a checksum of a member's text).
    Column("caption", Text),
    Column("caption_stamp", Int64),
    SqlIndex("ix_items_state", "state"),
    SqlIndex("ix_items_taken", "taken"),
    # What a selective --where compares with < and > finds without reading the table (migration 0007).
    SqlIndex("ix_items_size", "size"),
    SqlIndex("ix_items_lat", "lat"),
    SqlIndex("ix_items_lon", "lon"),
    SqlIndex("ix_items_width", "width"),  # migration 0008: a selective --where on them, or on camera =
    SqlIndex("ix_items_height", "height"),
    SqlIndex("ix_items_camera_lower", func.lower(text("camera"))),
    SqlIndex("ix_items_sha256", "sha256"),
    SqlIndex("ix_items_embedding_id", "embedding_id"),
    SqlIndex("ix_items_container", "container"),
    sqlite_autoincrement=True,
)


# The embedded items whose metadata is still to be read (after an upgrade): found without a scan. A partial
# index, made by the same DDL on both databases when the table is: declared on the table, its options
# (``postgresql_where``) would load SQLAlchemy's PostgreSQL dialect in every process (~35 ms of a command's
# start). Migration 0007 makes the same index.
META_MISSING_INDEX = "ix_items_meta_missing"
event.listen(Item.__table__, "after_create", DDL(f"CREATE INDEX {META_MISSING_INDEX} ON items (id) WHERE meta_at IS NULL"))

# A tar or zip archive as last read: when its size and mtime are unchanged and the read was
# complete, its members are known to be unchanged without opening it.
Archive = _table(
    "archives",
    Column("id", Integer, primary_key=True),
    Column("uri", Text, unique=True, nullable=False),
    Column("size", Int64, nullable=False),
    Column("mtime_ns", Int64, nullable=False),
    Column("members", Integer, nullable=False),
    Column("complete", Boolean, nullable=False),
    Column("scanned_at", Float, nullable=False),
)


# Cache of text embeddings, keyed by (model, text): label queries never re-encode.
TextEmbedding = _table(
    "text_embeddings",
    Column("id", Integer, primary_key=True),
    Column("model_key", String(64), nullable=False),
    Column("text", Text, nullable=False),
    Column("vector", LargeBinary, nullable=False),
    UniqueConstraint("model_key", "text"),
)


# One ingest run: its sources, when it ran and what it counted.
IngestRun = _table(
    "ingest_runs",
    Column("id", Integer, primary_key=True),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("sources", Text, nullable=False),
    Column("counts", Text),
)


# One zero-shot classification of the collection over a label set.
ClassificationRun = _table(
    "classification_runs",
    Column("id", Integer, primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("labels", Text, nullable=False),  # JSON list
    Column("templates", String(32), nullable=False),
    Column("top_k", Integer, nullable=False),
    Column("item_count", Integer, nullable=False),
    # Set when every item was classified: a run killed half-way is never taken for a whole one.
    Column("completed_at", Float),
)


# The ``rank``-th best label of one item in one classification run.
Classification = _table(
    "classifications",
    Column("run_id", ForeignKey("classification_runs.id", ondelete="CASCADE"), primary_key=True),
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("rank", Integer, primary_key=True),
    Column("label", Text, nullable=False),
    Column("score", Float, nullable=False),
)


# A zero-shot head trained on stored embeddings (``indexer.heads``): its classes, how it was made,
# and its weights (an ``.npz`` blob: no pickles). It belongs to one model, by ``Index.model_key()``.
TrainedHead = _table(
    "heads",
    Column("id", Integer, primary_key=True),
    Column("name", String(128), unique=True, nullable=False),
    Column("method", String(32), nullable=False),
    Column("classes", Text, nullable=False),  # JSON list, in the weights' row order
    Column("hparams", Text, nullable=False),  # JSON: chosen hyper-parameters, calibration, seed, descriptions
    Column("model_key", String(64), nullable=False),
    Column("figures", Text, nullable=False),  # JSON: training items, seconds, validation table
    Column("weights", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)


# Who may ingest into the index now: a lease with an expiry, renewed by its holder's heartbeat.
# A holder that dies stops renewing; once the lease has expired, the next run takes it over.
IngestLease = _table(
    "ingest_leases",
    Column("name", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("acquired_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)


# The findings of the latest audit (``indexer audit`` replaces them): what a decision may name.
AuditFinding = _table(
    "audit_findings",
    Column("id", String(32), primary_key=True),
    Column("type", String(32), nullable=False),
    Column("payload", Text, nullable=False),  # JSON: the finding as ``audit --json`` prints it
)


# A person's decision on a finding: accept, reject, relabel (to ``label``) or drop. ``labels_key`` is
# the fingerprint of the labels the finding was made on; an export applies only decisions made on
# the labels it exports.
AuditDecision = _table(
    "audit_decisions",
    Column("finding_id", String(32), primary_key=True),
    Column("type", String(32), nullable=False),
    Column("action", String(16), nullable=False),
    Column("label", Text),
    Column("finding", Text, nullable=False),  # JSON: the finding as it was decided
    Column("labels_key", String(64), nullable=False),
    Column("labels_source", Text, nullable=False),
    Column("decided_at", Float, nullable=False),
)
