"""One ingest run: register (``register.py``, no model) -> embed what is pending -> commit -> vectors.

Two phases, so that a run with nothing to do never imports torch. Phase 2 runs only when something is
pending: decode workers read, hash and decode the pending items; content already in the catalog (a
moved or duplicated file) reuses its embedding; the rest is embedded in batches, and each batch is
committed in one transaction. Progress and warnings go to callbacks: this module never prints.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional

import numpy as np

from ..media.sources import recorded_source, scan
from ..store.codec import vector_to_blob
from ..store.files import fault_point
from ..store.worklist import EmbeddedRecord, FailedRecord
from .lock import ingest_lock
from .register import Warn, mark_missing, register
from .summary import IngestSummary

if TYPE_CHECKING:
    from ..index import Index
    from ..store.catalog import Catalog

MAX_WARNINGS = 20
Progress = Callable[[str, int, int], None]  # (stage, items done now, stage total), as classify and audit report
log = logging.getLogger(__name__)


def commit_batch(catalog: "Catalog", batch: Any, embedder: Any, summary: IngestSummary) -> list:
    """Embeds what is new in ``batch`` and commits the whole batch in one transaction.
    Returns the failed records (for the warnings)."""
    records = batch.records
    ok = [r for r in records if r.kind == "ok"]
    existing = catalog.embeddings.embedding_ids_for_contents(r.sha256 for r in ok) if ok else {}
    fresh: dict[str, int] = {}  # sha -> row of batch.images
    for row, r in enumerate(ok):
        if r.sha256 not in existing and r.sha256 not in fresh:
            fresh[r.sha256] = row
    vectors = embedder.embed_images(batch.images[list(fresh.values())]) if fresh else []
    _trace(len(fresh))
    embedded = [EmbeddedRecord(r.item_id, r.sha256, r.width, r.height, r.format,
                               embedding_id=r.embedding_id if r.kind == "known" else existing.get(r.sha256))
                for r in records if r.kind != "failed"]
    failed = [r for r in records if r.kind == "failed"]
    catalog.worklist.commit_batch({sha: vector_to_blob(v) for sha, v in zip(fresh, vectors)}, embedded,
                         [FailedRecord(r.item_id, r.reason, r.detail, r.sha256) for r in failed])
    for row, r in enumerate(ok):
        if fresh.get(r.sha256) == row:
            summary.embedded += 1
        else:
            summary.reused += 1
    summary.reused += sum(1 for r in records if r.kind == "known")
    for r in failed:
        summary.count_failure(r.reason)
    return failed


def _trace(embedded: int) -> None:
    """Appends the number of pictures the model just embedded to ``$INDEXER_TEST_TRACE`` (crash tests
    add these up to measure work done twice)."""
    path = os.environ.get("INDEXER_TEST_TRACE")
    if path and embedded:
        with open(path, "a") as f:
            f.write(f"{embedded}\n")
            f.flush()
            os.fsync(f.fileno())


def _calibrated(embedder: Any, batches: Iterator[Any], warn: Warn, wanted: int = 300) -> Iterator[Any]:
    """The batches, unchanged; first, when the embedder asks for it (int8), its image tower is calibrated
    on the first ``wanted`` pictures of this collection, and the agreement with the float tower is told."""
    if not getattr(embedder, "needs_calibration", False):
        yield from batches
        return
    held: list[Any] = []
    for batch in batches:
        held.append(batch)
        if sum(len(b.images) for b in held if b.images is not None) >= wanted:
            break
    pictures = [b.images for b in held if b.images is not None]
    if pictures:
        figures = embedder.calibrate(np.concatenate(pictures))
        warn(f"int8 image tower calibrated on {figures['pictures']} pictures of this collection in "
             f"{figures['seconds']} s; agreement with the float tower on held-out pictures: cosine min "
             f"{figures['cosine_min']}, mean {figures['cosine_mean']}")
    yield from held
    yield from batches


def _embed_pending(index: "Index", todo: int, summary: IngestSummary, progress: Optional[Progress],
                   warn: Warn) -> None:
    from .pipeline import BatchLoader, WorkerLost
    from .read import ReadOptions

    embedder = index.embedder()
    settings = index.settings
    warned = 0

    def report(failed: Iterable[Any]) -> None:
        nonlocal warned
        for r in failed:
            if warned < MAX_WARNINGS:
                warn(f"skipping {r.uri}: {r.reason}" + (f" ({r.detail})" if r.detail else ""))
                warned += 1

    with tempfile.TemporaryDirectory(prefix="indexer-decode-") as notes:
        options = ReadOptions(embedder.preprocess, embedder.image_size, settings.max_pixels, settings.decode_seconds,
                              crop_long_sides=embedder.preprocess_config.crops_centre,
                              max_file_size=settings.max_file_size, watchdog_dir=notes)
        workers = settings.resolved_workers(embedder.device)
        while True:
            # The work list is the catalog: after a decode worker dies, fresh workers take up what is pending.
            loader = BatchLoader(index.catalog.worklist.pending_reader(), options, settings.resolved_batch_size(embedder.device),
                                 workers)
            try:
                for batch in _calibrated(embedder, iter(loader), warn):
                    fault_point("batch")
                    report(commit_batch(index.catalog, batch, embedder, summary))
                    if progress:
                        progress("embedding", len(batch.records), todo)
                break
            except WorkerLost as exc:  # a decode worker died: a decoder hung (killed by its watchdog) or crashed
                error = str(exc)
            if not _fail_stuck(index, notes, error, summary, report):
                # No item to blame (a worker that could not even start, say): read the rest in this process,
                # which loses no worker; nothing pending is failed for a fault that is not its own.
                warn(f"{error}; reading the rest in this process")
                workers = 0
    if summary.failed > warned:
        warn(f"... and {summary.failed - warned} more unreadable files (`indexer status` counts them by reason)")
    if summary.embedded:
        index.catalog.worklist.record_runtime(embedder.runtime, embedder.precision, summary.embedded)


def _fail_stuck(index: "Index", notes: str, error: str, summary: IngestSummary,
                report: Callable[[Iterable[Any]], None]) -> bool:
    """Records the items a dead worker was reading as failed; True when the run can go on with fresh
    workers, False when no item is to blame."""
    from ..media.guard import stuck_items

    stuck = stuck_items(notes)
    log.debug("decode worker died: %s", error)
    if stuck:
        details = {"timeout": "the decoder did not stop within the time limit; killed",
                   "worker_crashed": "the decode worker died while reading it; --retry-failed tries again"}
        records = [FailedRecord(item_id, reason, details.get(reason)) for item_id, reason in stuck.items()]
        index.catalog.worklist.commit_batch({}, [], records)
        uris = index.catalog.items.item_uris(list(stuck))
        for record in records:
            summary.count_failure(record.reason)
        report(_Failed(uris.get(r.item_id, f"item {r.item_id}"), r.reason, r.detail) for r in records)
        return True
    return False


@dataclass
class _Failed:
    uri: str
    reason: str
    detail: Optional[str]


def purge_deleted(index: "Index") -> int:
    """Removes deleted items for good, and the embeddings (and vectors) no item uses any more."""
    purged, orphans = index.catalog.worklist.purge_deleted()
    index.remove_vectors(orphans)
    return purged


def run_ingest(index: "Index", sources: Iterable[Path], *, retry_failed: bool = False, purge: bool = False,
               progress: Optional[Progress] = None, warn: Optional[Warn] = None, strict: bool = True) -> IngestSummary:
    """Ingests ``sources`` into ``index``; see the module docstring for the two phases. ``progress``
    is called as items are embedded; ``warn`` receives one line per unreadable file or folder."""
    warn = warn or log.warning
    started = time.time()
    summary = IngestSummary()
    catalog = index.catalog
    named: list[str] = []  # the first sources, for the run's record (a list may hold millions)

    def noted(items: Iterable[Path]) -> Iterator[Path]:
        for item in items:
            if len(named) < 100:
                named.append(recorded_source(item))
            yield item

    with ingest_lock(index.path, catalog):
        summary.run_id = catalog.runs.start_ingest_run()
        folders: list[Path] = []
        register(catalog, scan(noted(sources), strict=strict, folders=folders, warn=warn), summary.run_id,
                 retry_failed, summary, warn)
        summary.deleted += mark_missing(catalog, folders, summary.run_id)
        todo = catalog.worklist.pending_count()
        if todo:
            _embed_pending(index, todo, summary, progress, warn)
        if purge:
            summary.purged = purge_deleted(index)
        if index.recorded_model is not None and (summary.embedded or summary.reused or not index.vectors_file_exists()):
            index.vectors()  # brings the FAISS file in step with the catalog
        summary.seconds = round(time.time() - started, 3)
        catalog.runs.finish_ingest_run(summary.run_id, named, summary.to_dict())
    return summary
