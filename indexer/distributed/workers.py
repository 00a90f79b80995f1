"""What runs on the cluster: a decode task per shard (CPU: the one reader, ``ingest.read.iter_pending``,
over the shard's selection; no model) and embedding actors, each holding the model once and committing
each batch it embeds.

A batch is committed in one transaction by ``ingest.commit.commit_batch``, which embeds only contents the
catalog does not hold yet: a shard run again (Ray retrying the call of a killed actor) re-embeds only
its batches that were not committed, and commits nothing twice.

A decode task reads under the same watchdog as a decode worker on one machine. When it kills the task's
process (a decoder stuck in C code), Ray runs the task again; the new attempt finds the note the dead one
left in this machine's temporary folder and fails the item it died on (``timeout``) instead of reading
it again. (A retry that Ray places on another machine reads the item again, and after Ray's retries the
shard stays pending, reported by the driver.)
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _faults
from ..ingest.embedding import Skipped
from ..ingest.read import Batch, ReadOptions, batches, iter_pending, read_options
from ..store.pending import PendingReader
from .shards import Shard

if TYPE_CHECKING:
    from ..config import Settings

MAX_REPORTED_FAILURES = 20


@dataclass
class ShardResult:
    """What an actor reports for one shard."""

    shard: int
    items: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    failures: list[Skipped] = field(default_factory=list)  # the first few


def decode_shard(reader: PendingReader, options: ReadOptions, shard: Shard, batch_size: int, notes: str,
                 faults: _faults.Faults) -> list[Batch]:
    """The pending items of ``shard``, read and preprocessed, in batches of ``batch_size``. ``notes`` names
    the run's folder of watchdog notes in this machine's temporary folder (see the module docstring)."""
    from ..media.guard import stuck_items

    _faults.install(faults)
    folder = Path(tempfile.gettempdir()) / notes / f"shard-{shard.number}"
    folder.mkdir(parents=True, exist_ok=True)
    selection = dataclasses.replace(shard.selection, stuck=stuck_items(str(folder)))
    found = list(batches(iter_pending(reader, dataclasses.replace(options, watchdog_dir=str(folder)), selection),
                         batch_size))
    shutil.rmtree(folder, ignore_errors=True)  # read to the end: nothing left to tell a retry
    return found


class EmbedWorker:
    """Holds the model and a catalog connection; embeds and commits shards (a Ray actor: see ``run``)."""

    def __init__(self, spec: Any, device: str, settings: "Settings", index_dir: str, faults: _faults.Faults) -> None:
        from ..models import load_model
        from ..store.catalog import CATALOG_FILE, Catalog

        _faults.install(faults)
        self.settings = settings
        self.embedder = load_model(spec, device=device, threads=settings.threads, runtime=settings.runtime,
                                   precision=settings.precision)
        self.catalog = Catalog(Path(index_dir) / CATALOG_FILE, settings.catalog)

    def identity(self) -> dict[str, Any]:
        return self.embedder.identity()

    def runtime(self) -> tuple[str, str]:
        """The runtime and precision this actor embeds with (the catalog counts embeddings by them)."""
        return self.embedder.runtime, self.embedder.precision

    def read_options(self) -> ReadOptions:
        """How decode tasks prepare pictures for this model (the preprocessing function is picklable)."""
        return read_options(self.embedder, self.settings)

    def embed_shard(self, shard: Shard, found: list[Batch]) -> ShardResult:
        from ..ingest.commit import commit_batch
        from ..ingest.summary import IngestSummary

        result = ShardResult(shard.number)
        for batch in found:
            summary = IngestSummary()
            for r in commit_batch(self.catalog, batch, self.embedder, summary):
                if len(result.failures) < MAX_REPORTED_FAILURES:
                    result.failures.append(Skipped(r.uri, r.reason, r.detail))
            result.items += len(batch.records)
            for reason, n in summary.failed_by_reason.items():
                result.failed_by_reason[reason] = result.failed_by_reason.get(reason, 0) + n
        return result
