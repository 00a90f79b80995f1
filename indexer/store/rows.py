"""Rows the catalog hands out, named: what a caller reads by attribute, not by position."""

from __future__ import annotations

from typing import NamedTuple


class LiveItem(NamedTuple):
    """An item that is not deleted, and the content it holds (None while pending or failed)."""

    item_id: int
    uri: str  # where the item is: a path, or ARCHIVE::MEMBER
    embedding_id: "int | None"
