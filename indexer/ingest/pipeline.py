"""Decode workers feeding the model: a torch DataLoader over ``read.iter_pending``, batches stacked as
numpy arrays. Imports torch, so ``run`` imports this module only when there is something to embed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from ..store.items import PendingReader
from .read import ItemRecord, ReadOptions, iter_pending


class PendingItems(IterableDataset):
    """The catalog's pending items, read and preprocessed, shared out between the loader's workers."""

    def __init__(self, reader: PendingReader, options: ReadOptions) -> None:
        self.reader = reader
        self.options = options

    def __iter__(self) -> Iterator[ItemRecord]:
        info = get_worker_info()
        shard, shards = (info.id, info.num_workers) if info else (0, 1)
        return iter_pending(self.reader, self.options, shard, shards)


@dataclass
class Batch:
    """A batch of records; the decoded pictures stacked, in the order of the "ok" records."""

    records: list[ItemRecord]
    images: Optional[np.ndarray]


def collate(records: list[ItemRecord]) -> Batch:
    pixels = [r.pixels for r in records if r.kind == "ok"]
    for r in records:
        r.pixels = None
    return Batch(records, np.stack(pixels) if pixels else None)


def _lower_priority(worker_id: int) -> None:
    """Decode workers yield to the model's threads: on a CPU the model is the bottleneck, and a
    worker needs only a sliver of a core, which it still gets, to keep the prefetch queue full."""
    try:
        os.nice(int(os.environ.get("INDEXER_WORKER_NICE", "10")))
    except OSError:
        pass


def make_loader(dataset: PendingItems, batch_size: int, workers: int, device: str = "cpu") -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
        worker_init_fn=_lower_priority if device == "cpu" and workers else None,
    )
