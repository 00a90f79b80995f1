"""The states of an item, without the database layer (read by code that must start fast)."""

from __future__ import annotations

import enum


class ItemState(str, enum.Enum):
    """Where an item stands. Only ``EMBEDDED`` items are searched and classified."""

    PENDING = "pending"  # seen, not embedded yet (a crash leaves these; the next run picks them up)
    EMBEDDED = "embedded"
    FAILED = "failed"  # unreadable; ``failure_reason`` says why
    DELETED = "deleted"  # gone from its source; kept as history until purged
