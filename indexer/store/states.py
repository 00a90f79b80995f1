"""Facts about the catalog known without the database layer (read by code that must start fast): the
states of an item, its schema version, the meta key counting purges."""

from __future__ import annotations

import enum


class ItemState(str, enum.Enum):
    """Where an item stands. Only ``EMBEDDED`` items are searched and classified."""

    PENDING = "pending"  # seen, not embedded yet (a crash leaves these; the next run picks them up)
    EMBEDDED = "embedded"
    FAILED = "failed"  # unreadable; ``failure_reason`` says why
    DELETED = "deleted"  # gone from its source; kept as history until purged


# The newest revision under migrations/versions; a test checks it against Alembic's own view.
SCHEMA_HEAD = "0008_filter_indexes"
PURGES_KEY = "embeddings.purges"  # meta: how many times embeddings were deleted (vectors must follow)
INT8_KEY = "int8"  # meta: whether the index embeds with an int8 image tower, why, and its agreement (ingest.int8)
