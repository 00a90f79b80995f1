"""Phase 2 of a run, embedding what is pending, as a strategy with one method: ``LocalEmbedding`` (decode
workers and the model in this process, here) or ``distributed.RayEmbedding`` (shards decoded by tasks,
embedded by actors on a Ray cluster). Both read through ``read.iter_pending`` with ``read.read_options``
and commit through ``commit.commit_batch``; the run around them (``run.run_ingest``) is the same.

What a strategy tells the caller goes through one ``Report``: progress, one ``skipping PATH: reason``
line per unreadable item (the first ``MAX_WARNINGS``, then a count), and the ingest lock's check.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple, Optional, Protocol


from .. import _faults
from ..store.worklist import FailedRecord
from .commit import commit_batch
from .int8 import int8_batches
from .read import STUCK_DETAILS, read_options
from .summary import IngestSummary

if TYPE_CHECKING:
    from ..config import Settings
    from ..models import Embedder
    from ..store.catalog import Catalog
    from ..store.vectors import Filler

MAX_WARNINGS = 20
Progress = Callable[[str, int, int], None]  # (stage, items done now, stage total), as classify and audit report
Warn = Callable[[str], None]
log = logging.getLogger(__name__)


class Skipped(NamedTuple):
    """An item that could not be read, as the warnings name it."""

    uri: str
    reason: Optional[str]
    detail: Optional[str]


class Report:
    """What a run tells its caller while phase 2 goes on (see the module docstring)."""

    def __init__(self, warn: Warn, progress: Optional[Progress] = None, check: Callable[[], None] = lambda: None
                 ) -> None:
        self.warn = warn
        self._progress = progress
        self.check = check  # raises when the ingest lock was lost: the run stops, what it committed is kept
        self.warned = 0

    def progress(self, stage: str, done: int, total: int) -> None:
        if self._progress:
            self._progress(stage, done, total)

    def skipped(self, failed: Iterable[Any]) -> None:
        """``skipping PATH: reason (detail)`` for each of ``failed`` (anything with uri, reason, detail)."""
        for r in failed:
            if self.warned < MAX_WARNINGS:
                self.warn(f"skipping {r.uri}: {r.reason or 'unreadable'}" + (f" ({r.detail})" if r.detail else ""))
                self.warned += 1

    def finish(self, summary: IngestSummary) -> None:
        if summary.failed > self.warned:
            self.warn(f"... and {summary.failed - self.warned} more unreadable files "
                      "(`indexer status` counts them by reason)")


class Embedding(Protocol):
    """How phase 2 embeds: ``embed_pending`` embeds and commits every pending item of ``catalog`` (``todo`` of
    them), counting into ``summary``; ``filler`` is what fills a vectors layout built anew afterwards (None:
    here); ``close`` releases what the strategy started (a cluster stays up until then)."""

    def embed_pending(self, catalog: "Catalog", todo: int, summary: IngestSummary, report: Report) -> None: ...

    def filler(self) -> Optional["Filler"]: ...

    def close(self) -> None: ...


class LocalEmbedding:
    """Decode workers (``pipeline.BatchLoader``) feeding the model in this process."""

    def __init__(self, load_model: Callable[[], "Embedder"], settings: "Settings",
                 int8_folder: Optional[Path] = None) -> None:
        self.load_model = load_model  # called only when something is pending: a run with nothing to do loads nothing
        self.settings = settings
        self.int8_folder = int8_folder  # where the index keeps an int8 tower (ingest.int8); None: no int8

    def embed_pending(self, catalog: "Catalog", todo: int, summary: IngestSummary, report: Report) -> None:
        from .pipeline import BatchLoader, WorkerLost

        embedder = self.load_model()
        settings = self.settings
        with tempfile.TemporaryDirectory(prefix="indexer-decode-") as notes:
            options = read_options(embedder, settings, watchdog_dir=notes)
            workers = settings.resolved_workers(embedder.device)
            while True:
                # The work list is the catalog: after a decode worker dies, fresh workers take up what is pending.
                loader = BatchLoader(catalog.worklist.pending_reader(), options, settings.resolved_batch_size(embedder.device),
                                     workers, settings.worker_nice)
                try:
                    embedded = iter(loader)
                    if self.int8_folder is not None:
                        embedded = int8_batches(embedder, embedded, catalog, self.int8_folder, todo, report.warn)
                    for batch in embedded:
                        report.check()
                        _faults.pause("batch")
                        report.skipped(commit_batch(catalog, batch, embedder, summary))
                        report.progress("embedding", len(batch.records), todo)
                    break
                except WorkerLost as exc:  # a decode worker died: a decoder hung (killed by its watchdog) or crashed
                    error = str(exc)
                if not _fail_stuck(catalog, notes, error, summary, report):
                    # No item to blame (a worker that could not even start, say): read the rest in this process,
                    # which loses no worker; nothing pending is failed for a fault that is not its own.
                    report.warn(f"{error}; reading the rest in this process")
                    workers = 0
        if summary.embedded:
            catalog.worklist.record_runtime(embedder.runtime, embedder.precision, summary.embedded)

    def filler(self) -> None:
        return None

    def close(self) -> None:
        pass


def _fail_stuck(catalog: "Catalog", notes: str, error: str, summary: IngestSummary, report: Report) -> bool:
    """Records the items a dead worker was reading as failed; True when the run can go on with fresh
    workers, False when no item is to blame."""
    from ..media.guard import stuck_items

    stuck = stuck_items(notes)
    log.debug("decode worker died: %s", error)
    if not stuck:
        return False
    records = [FailedRecord(item_id, reason, STUCK_DETAILS.get(reason)) for item_id, reason in stuck.items()]
    catalog.worklist.commit_batch({}, [], records)
    uris = catalog.items.uris(list(stuck))
    for record in records:
        summary.count_failure(record.reason)
    report.skipped(Skipped(uris.get(r.item_id, f"item {r.item_id}"), r.reason, r.detail) for r in records)
    return True
