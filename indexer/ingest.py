"""Ingestion: scan -> diff against the catalog -> read/hash/decode (workers) -> embed -> commit.

Two phases, so that a run with nothing to do never imports torch:

1. *Register* (no model): sources are scanned in chunks; an item whose path, size and modification
   time match the catalog is unchanged and skipped without being read; new and changed items are
   recorded as ``pending``. Pending items are the work list, kept in the catalog, so a run killed at
   any moment is resumed by the next one.
2. *Embed* (only when something is pending): DataLoader workers read, hash and decode the pending
   items; content already in the catalog (a moved or duplicated file) reuses its embedding; the rest
   is embedded in batches, and each batch is committed in one transaction.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator, Optional

from sqlalchemy import bindparam, insert, select, update

from .errors import IndexBusyError
from .sources import SourceEntry, scan
from .store.catalog import Catalog, Embedding, IngestRun, Item, ItemState, now, vector_to_blob

if TYPE_CHECKING:
    from .index import Index

SCAN_CHUNK = 2000
MAX_WARNINGS = 20


@dataclass
class IngestSummary:
    """What one run did. ``embedded``: newly embedded; ``reused``: content already embedded (a moved
    or duplicated file); ``unchanged``: skipped without reading; ``failed``: unreadable this run."""

    embedded: int = 0
    unchanged: int = 0
    reused: int = 0
    failed: int = 0
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    scanned: int = 0
    deleted: int = 0  # items under a scanned folder whose file is gone (kept as history)
    seconds: float = 0.0
    run_id: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


class IngestLock:
    """One ingest per index at a time: an exclusive ``flock`` on ``ingest.lock`` in the index folder."""

    def __init__(self, index_dir: Path) -> None:
        self.path = index_dir / "ingest.lock"
        self.fd: Optional[int] = None

    def __enter__(self) -> "IngestLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            self.fd = None
            raise IndexBusyError(
                f"{self.path.parent} is being ingested into by process {holder}; wait for it to finish "
                "(searches keep working meanwhile)"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _chunks(entries: Iterable[SourceEntry], size: int) -> Iterator[list[SourceEntry]]:
    it = iter(entries)
    while chunk := list(islice(it, size)):
        yield chunk


def register(catalog: Catalog, entries: Iterable[SourceEntry], run_id: int, retry_failed: bool,
             summary: IngestSummary) -> None:
    """Phase 1: records new and changed entries as pending, marks every entry seen by ``run_id``."""
    for chunk in _chunks(entries, SCAN_CHUNK):
        summary.scanned += len(chunk)
        with catalog.begin() as conn:
            rows = conn.execute(
                select(Item.id, Item.uri, Item.size, Item.mtime_ns, Item.state).where(
                    Item.uri.in_([e.uri for e in chunk])
                )
            ).all()
            known = {r.uri: r for r in rows}
            stamp = now()
            seen_ids, new_rows, changed_rows = [], [], []
            for entry in chunk:
                row = known.get(entry.uri)
                if row is None:
                    new_rows.append({"uri": entry.uri, "size": entry.size, "mtime_ns": entry.mtime_ns,
                                     "state": ItemState.PENDING.value, "scan_id": run_id, "added_at": stamp,
                                     "updated_at": stamp})
                    continue
                seen_ids.append(row.id)
                same_file = row.size == entry.size and row.mtime_ns == entry.mtime_ns
                settled = row.state == ItemState.EMBEDDED.value or (
                    row.state == ItemState.FAILED.value and not retry_failed)
                if same_file and settled:
                    summary.unchanged += 1
                elif row.state != ItemState.PENDING.value or not same_file:
                    changed_rows.append({"b_id": row.id, "b_size": entry.size, "b_mtime": entry.mtime_ns})
            if new_rows:
                conn.execute(insert(Item), new_rows)
            if changed_rows:
                conn.execute(
                    update(Item).where(Item.id == bindparam("b_id")).values(
                        size=bindparam("b_size"), mtime_ns=bindparam("b_mtime"), state=ItemState.PENDING.value,
                        sha256=None, embedding_id=None, failure_reason=None, failure_detail=None, updated_at=stamp),
                    changed_rows,
                )
            if seen_ids:
                conn.execute(update(Item).where(Item.id.in_(seen_ids)).values(scan_id=run_id))


def mark_missing(catalog: Catalog, sources: Iterable[Path], run_id: int) -> int:
    """Items under a scanned folder that this run did not see are gone: mark them deleted.

    Their rows (and embeddings) stay as history; if the file comes back, it is restored without being
    embedded again (its content is still in the catalog)."""
    deleted = 0
    for source in sources:
        path = Path(source).expanduser()
        if not path.is_dir():
            continue
        prefix = str(path.resolve()).rstrip(os.sep) + os.sep
        # A range on the unique uri index: every uri that starts with the folder's path.
        upper = prefix[:-1] + chr(ord(os.sep) + 1)
        with catalog.begin() as conn:
            result = conn.execute(
                update(Item).where(Item.uri >= prefix, Item.uri < upper,
                                   Item.state != ItemState.DELETED.value,
                                   (Item.scan_id != run_id) | Item.scan_id.is_(None))
                .values(state=ItemState.DELETED.value, updated_at=now()))
            deleted += result.rowcount or 0
    return deleted


def pending_count(catalog: Catalog) -> int:
    from sqlalchemy import func

    with catalog.read() as conn:
        return int(conn.execute(select(func.count()).where(Item.state == ItemState.PENDING.value)).scalar() or 0)


def commit_batch(catalog: Catalog, records: list, embedder, summary: IngestSummary) -> list:
    """Embeds what is new in ``records`` and commits the whole batch in one transaction.
    Returns the failed records (for the warnings)."""
    import torch

    ok = [r for r in records if r.kind == "ok"]
    with catalog.read() as conn:
        existing = dict(conn.execute(
            select(Embedding.sha256, Embedding.id).where(Embedding.sha256.in_({r.sha256 for r in ok}))
        ).all()) if ok else {}
    fresh: dict[str, object] = {}
    for r in ok:
        if r.sha256 not in existing and r.sha256 not in fresh:
            fresh[r.sha256] = r
    vectors = embedder.embed_images(torch.stack([r.tensor for r in fresh.values()])) if fresh else []
    stamp = now()
    failed = [r for r in records if r.kind == "failed"]
    with catalog.begin() as conn:
        if fresh:
            conn.execute(insert(Embedding), [
                {"sha256": sha, "vector": vector_to_blob(v), "created_at": stamp} for sha, v in zip(fresh, vectors)
            ])
            existing.update(conn.execute(
                select(Embedding.sha256, Embedding.id).where(Embedding.sha256.in_(list(fresh)))
            ).all())
        done = []
        for r in records:
            if r.kind == "failed":
                continue
            embedding_id = r.embedding_id if r.kind == "known" else existing[r.sha256]
            done.append({"b_id": r.item_id, "b_sha": r.sha256, "b_emb": embedding_id, "b_w": r.width,
                         "b_h": r.height, "b_fmt": r.format})
            if r.kind == "ok" and r.sha256 in fresh and fresh[r.sha256] is r:
                summary.embedded += 1
            else:
                summary.reused += 1
        if done:
            conn.execute(update(Item).where(Item.id == bindparam("b_id")).values(
                state=ItemState.EMBEDDED.value, sha256=bindparam("b_sha"), embedding_id=bindparam("b_emb"),
                width=bindparam("b_w"), height=bindparam("b_h"), format=bindparam("b_fmt"),
                failure_reason=None, failure_detail=None, updated_at=stamp), done)
        if failed:
            conn.execute(update(Item).where(Item.id == bindparam("b_id")).values(
                state=ItemState.FAILED.value, sha256=bindparam("b_sha"), failure_reason=bindparam("b_reason"),
                failure_detail=bindparam("b_detail"), updated_at=stamp),
                [{"b_id": r.item_id, "b_sha": r.sha256, "b_reason": r.reason, "b_detail": r.detail} for r in failed])
    summary.failed += len(failed)
    for r in failed:
        summary.failed_by_reason[r.reason] = summary.failed_by_reason.get(r.reason, 0) + 1
    return failed


def run_ingest(index: "Index", sources: Iterable[Path], *, retry_failed: bool = False, progress: bool = True,
               warn=None) -> IngestSummary:
    """Ingests ``sources`` into ``index``; see the module docstring for the two phases."""
    warn = warn or (lambda message: print(message, file=sys.stderr))
    started = time.time()
    summary = IngestSummary()
    catalog = index.catalog
    sources = list(sources)
    with IngestLock(index.path):
        with catalog.begin() as conn:
            run_id = conn.execute(insert(IngestRun).values(
                started_at=started, sources=json.dumps([str(s) for s in sources]))).inserted_primary_key[0]
        summary.run_id = int(run_id)
        register(catalog, scan(sources), summary.run_id, retry_failed, summary)
        summary.deleted = mark_missing(catalog, sources, summary.run_id)
        todo = pending_count(catalog)
        if todo:
            _embed_pending(index, todo, summary, progress, warn)
        if summary.embedded or summary.reused or not index.vectors_file_exists():
            index.vectors()  # brings the FAISS file in step with the catalog
        summary.seconds = round(time.time() - started, 3)
        with catalog.begin() as conn:
            conn.execute(update(IngestRun).where(IngestRun.id == summary.run_id).values(
                finished_at=time.time(), counts=json.dumps(summary.to_dict())))
    return summary


def _embed_pending(index: "Index", todo: int, summary: IngestSummary, progress: bool, warn) -> None:
    from tqdm import tqdm

    from .pipeline import PendingItems, make_loader

    embedder = index.embedder()
    settings = index.settings
    dataset = PendingItems(str(index.catalog.path), embedder.preprocess, embedder.image_size, settings.max_pixels)
    workers = settings.resolved_workers(embedder.device)
    loader = make_loader(dataset, settings.resolved_batch_size(embedder.device), workers)
    warned = 0
    with tqdm(total=todo, unit="img", desc="embedding", file=sys.stderr, disable=not progress,
              dynamic_ncols=True, smoothing=0.1) as bar:
        for records in loader:
            for r in commit_batch(index.catalog, records, embedder, summary):
                if warned < MAX_WARNINGS:
                    (bar.write if progress else warn)(f"skipping {r.uri}: {r.reason}" + (f" ({r.detail})" if r.detail else ""))
                    warned += 1
            bar.update(len(records))
    if summary.failed > warned:
        warn(f"... and {summary.failed - warned} more unreadable files (`indexer status` counts them by reason)")
