"""What runs on the cluster: a decode task per shard (CPU: read, hash, decode, preprocess; no model)
and embedding actors, each holding the model once and committing each batch it embeds.

A batch is committed in one transaction by ``ingest.run.commit_batch``, which embeds only contents the
catalog does not hold yet: a shard run again (Ray retrying the call of a killed actor) re-embeds only
its batches that were not committed, and commits nothing twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import DecodeError
from ..ingest.read import ItemRecord, ReadOptions, load_item
from ..media.archives import MEMBER_SEPARATOR, iter_archive_contents
from ..media.sources import read_bytes
from ..store.worklist import PendingReader
from .shards import Shard

MAX_REPORTED_FAILURES = 20


@dataclass
class ShardBatch:
    """A batch of one shard: its records, and the decoded pictures of the "ok" ones stacked in order."""

    records: list[ItemRecord]
    images: Optional[np.ndarray]


@dataclass
class ShardResult:
    """What an actor reports for one shard."""

    shard: int
    items: int = 0
    embedded: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[str, str, Optional[str]]] = field(default_factory=list)  # the first few: uri, reason, detail
    pid: int = 0


def _batch(records: list[ItemRecord]) -> ShardBatch:
    pixels = [r.pixels for r in records if r.kind == "ok"]
    for r in records:
        r.pixels = None
    return ShardBatch(records, np.stack(pixels) if pixels else None)


def _read(uri: str, raw_path: Optional[bytes]) -> Any:
    try:
        return read_bytes(uri, raw_path)
    except DecodeError as exc:
        return exc


def decode_shard(reader: PendingReader, options: ReadOptions, shard: Shard, batch_size: int) -> list[ShardBatch]:
    """The pending items of ``shard``, read and preprocessed, in batches of ``batch_size``."""
    records: list[ItemRecord] = []
    try:
        if shard.archive is None:
            for item_id, uri, raw_path in reader.plain_files(first_id=shard.first_id, last_id=shard.last_id):
                records.append(load_item(item_id, uri, _read(uri, raw_path), reader.embedding_id, options))
        else:
            prefix = len(shard.archive) + len(MEMBER_SEPARATOR)
            members = {uri[prefix:]: (item_id, uri) for item_id, uri in reader.members(shard.archive)}
            for name, data in iter_archive_contents(shard.archive, set(members)):
                item_id, uri = members[name]
                records.append(load_item(item_id, uri, data, reader.embedding_id, options))
    finally:
        reader.close()
    return [_batch(records[i:i + batch_size]) for i in range(0, len(records), batch_size)]


class EmbedWorker:
    """Holds the model and a catalog connection; embeds and commits shards (a Ray actor: see ``run``)."""

    def __init__(self, spec: Any, device: Optional[str], threads: Optional[int], index_dir: str,
                 catalog_url: Optional[str], environment: dict[str, str]) -> None:
        os.environ.update(environment)  # the driver's INDEXER_* settings (test hooks among them)
        from ..models import load_model
        from ..store.catalog import CATALOG_FILE, Catalog

        self.embedder = load_model(spec, device=device, threads=threads,
                                   runtime=os.environ.get("INDEXER_RUNTIME") or "auto",
                                   precision=os.environ.get("INDEXER_PRECISION") or "auto")
        self.catalog = Catalog(Path(index_dir) / CATALOG_FILE, catalog_url)

    def pid(self) -> int:
        return os.getpid()

    def identity(self) -> dict[str, Any]:
        return self.embedder.identity()

    def read_options(self, max_pixels: int, decode_seconds: Optional[float]) -> ReadOptions:
        """How decode tasks prepare pictures for this model (the preprocessing function is picklable)."""
        e = self.embedder
        return ReadOptions(e.preprocess, e.image_size, max_pixels, decode_seconds,
                           crop_long_sides=e.preprocess_config.crops_centre)

    def embed_shard(self, shard: Shard, batches: list[ShardBatch]) -> ShardResult:
        from ..ingest.run import commit_batch
        from ..ingest.summary import IngestSummary

        result = ShardResult(shard.number, pid=os.getpid())
        for batch in batches:
            summary = IngestSummary()
            for r in commit_batch(self.catalog, batch, self.embedder, summary):
                if len(result.failures) < MAX_REPORTED_FAILURES:
                    result.failures.append((r.uri, r.reason or "unreadable", r.detail))
            result.items += len(batch.records)
            result.embedded += summary.embedded
            for reason, n in summary.failed_by_reason.items():
                result.failed_by_reason[reason] = result.failed_by_reason.get(reason, 0) + n
        return result
