"""The pending work list as shards: ranges of item ids for plain files (list chunks, folder subtrees:
registration gives a folder's files consecutive ids, so a range is mostly one subtree), one shard per
archive (a compressed tar can only be read in order, once). A shard is a numbered ``Selection`` of the
one reader, ``ingest.read.iter_pending``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..ingest.read import Selection


@dataclass(frozen=True)
class Shard:
    """The pending items ``selection`` takes: plain files with ids in a range, or one archive's members."""

    number: int
    selection: Selection

    def describe(self) -> str:
        s = self.selection
        return s.archive if s.archive is not None else f"items {s.first_id}..{s.last_id}"


def plan_shards(catalog: Any, shard_items: int) -> list[Shard]:
    """Shards covering every pending item of ``catalog``: id ranges of ``shard_items`` ids each (fewer
    pending items where some ids are settled), then the archives."""
    low, high = catalog.worklist.pending_id_bounds()
    shards = [Shard(n, Selection.id_range(start, min(start + shard_items - 1, high)))
              for n, start in enumerate(range(low, high + 1, shard_items))]
    reader = catalog.worklist.pending_reader()
    try:
        archives = reader.containers()
    finally:
        reader.close()
    return shards + [Shard(len(shards) + n, Selection.of_archive(a)) for n, a in enumerate(archives)]
