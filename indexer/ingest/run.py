"""One ingest run, on one machine or a Ray cluster alike: lock -> register (``register.py``, no model) ->
mark what has gone -> embed what is pending (an ``embedding.Embedding`` strategy) -> purge -> vectors ->
the run's record.

Two phases, so that a run with nothing to do never imports torch (nor starts a cluster). Phase 2 runs
only when something is pending: pending items are read, hashed and decoded (``read.py``); content
already in the catalog (a moved or duplicated file) reuses its embedding; the rest is embedded in
batches, and each batch is committed in one transaction (``commit.py``). Progress and warnings go to
callbacks: this module never prints.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Optional

from ..media.sources import recorded_source, scan
from .facts import fill_facts
from .embedding import Embedding, LocalEmbedding, Progress, Report
from .int8 import INT8_FOLDER
from .lock import ingest_lock
from .register import Warn, mark_missing, register
from .summary import IngestSummary

if TYPE_CHECKING:
    from ..context import IndexContext

log = logging.getLogger(__name__)


def purge_deleted(ctx: "IndexContext") -> int:
    """Removes deleted items for good, and the embeddings (and vectors) no item uses any more."""
    purged, orphans = ctx.catalog.worklist.purge_deleted()
    ctx.vectors.remove(orphans)
    return purged


def run_ingest(ctx: "IndexContext", sources: Iterable[Path], *, retry_failed: bool = False, purge: bool = False,
               progress: Optional[Progress] = None, warn: Optional[Warn] = None, strict: bool = True,
               embedding: Optional[Embedding] = None) -> IngestSummary:
    """Ingests ``sources`` into the index; see the module docstring for the two phases. ``embedding`` is
    how phase 2 embeds (default: ``LocalEmbedding``, decode workers and the model here). ``progress``
    is called as items are embedded; ``warn`` receives one line per unreadable file or folder."""
    warn = warn or log.warning
    embedding = embedding or LocalEmbedding(ctx.model.embedder, ctx.settings, ctx.path / INT8_FOLDER)
    started = time.time()
    summary = IngestSummary()
    catalog = ctx.catalog
    named: list[str] = []  # the first sources, for the run's record (a list may hold millions)

    def noted(items: Iterable[Path]) -> Iterator[Path]:
        for item in items:
            if len(named) < 100:
                named.append(recorded_source(item))
            yield item

    try:
        with ingest_lock(ctx.path, catalog, ctx.settings.lease_seconds) as lock:
            summary.run_id = catalog.runs.start_ingest()
            folders: list[Path] = []
            register(catalog, scan(noted(sources), strict=strict, folders=folders, warn=warn), summary.run_id,
                     retry_failed, summary, warn)
            summary.deleted += mark_missing(catalog, folders, summary.run_id)
            todo = catalog.worklist.pending_count()
            if todo:
                report = Report(warn, progress, lock.check)
                embedding.embed_pending(catalog, todo, summary, report)
                report.finish(summary)
            fill_facts(catalog, summary, ctx.settings.max_file_size, lock.check)
            if purge:
                summary.purged = purge_deleted(ctx)
            if ctx.model.recorded is not None and (summary.embedded or summary.reused
                                                   or not ctx.vectors.file_exists()):
                ctx.vectors.get(filler=embedding.filler())  # brings the FAISS file in step with the catalog
            summary.seconds = round(time.time() - started, 3)
            catalog.runs.finish_ingest(summary.run_id, named, summary.to_dict())
    finally:
        embedding.close()
    return summary
