"""The writing stage of ingestion: one batch of read items embedded (only the contents the catalog
does not hold yet) and committed in one transaction. Both strategies of phase 2 call it, here or in
an embedding actor on a cluster; run again on the same batch (a retried actor call), it embeds only
what was not committed and commits nothing twice."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import _faults
from ..store.codec import vector_to_blob
from ..store.worklist import EmbeddedRecord, FailedRecord
from .read import Batch, ItemRecord
from .summary import IngestSummary

if TYPE_CHECKING:
    from ..store.catalog import Catalog


def commit_batch(catalog: "Catalog", batch: Batch, embedder: Any, summary: IngestSummary) -> list[ItemRecord]:
    """Embeds what is new in ``batch`` and commits the whole batch in one transaction.
    Returns the failed records (for the warnings)."""
    records = batch.records
    ok = [r for r in records if r.kind == "ok"]
    existing = catalog.embeddings.ids_for_contents(r.sha256 for r in ok) if ok else {}
    fresh: dict[str, int] = {}  # sha -> row of batch.images
    for row, r in enumerate(ok):
        if r.sha256 not in existing and r.sha256 not in fresh:
            fresh[r.sha256] = row
    vectors = embedder.embed_images(batch.images[list(fresh.values())]) if fresh else []
    _faults.trace(len(fresh))
    embedded = [EmbeddedRecord(r.item_id, r.sha256, r.width, r.height, r.format,
                               embedding_id=r.embedding_id if r.kind == "known" else existing.get(r.sha256),
                               facts=r.facts)
                for r in records if r.kind != "failed"]
    failed = [r for r in records if r.kind == "failed"]
    catalog.worklist.commit_batch({sha: vector_to_blob(v) for sha, v in zip(fresh, vectors)}, embedded,
                         [FailedRecord(r.item_id, r.reason, r.detail, r.sha256) for r in failed],
                         phashes={sha: ok[row].phash for sha, row in fresh.items()})
    for row, r in enumerate(ok):
        if fresh.get(r.sha256) == row:
            summary.embedded += 1
        else:
            summary.reused += 1
    summary.reused += sum(1 for r in records if r.kind == "known")
    for r in failed:
        summary.count_failure(r.reason)
    return failed
