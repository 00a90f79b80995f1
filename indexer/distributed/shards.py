"""The pending work list as shards: ranges of item ids for plain files (list chunks, folder subtrees:
registration gives a folder's files consecutive ids, so a range is mostly one subtree), one shard per
archive (a compressed tar can only be read in order, once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class Shard:
    """Plain files with ids in ``first_id``..``last_id``, or the pending members of ``archive``."""

    number: int
    first_id: int = 0
    last_id: int = -1
    archive: Optional[str] = None

    def describe(self) -> str:
        return self.archive if self.archive else f"items {self.first_id}..{self.last_id}"


def plan_shards(catalog: Any, shard_items: int) -> list[Shard]:
    """Shards covering every pending item of ``catalog``: id ranges of ``shard_items`` ids each (fewer
    pending items where some ids are settled), then the archives."""
    low, high = catalog.worklist.pending_id_bounds()
    shards = [Shard(n, start, min(start + shard_items - 1, high))
              for n, start in enumerate(range(low, high + 1, shard_items))]
    reader = catalog.worklist.pending_reader()
    try:
        archives = reader.containers()
    finally:
        reader.close()
    return shards + [Shard(len(shards) + n, archive=a) for n, a in enumerate(archives)]
