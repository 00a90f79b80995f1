"""Ingestion: scan -> diff against the catalog -> read/hash/decode (workers) -> embed -> commit.

Two phases, so that a run with nothing to do never imports torch:

1. *Register* (no model): sources are scanned in chunks; an item whose path, size and modification
   time match the catalog is unchanged and skipped without being read (an unchanged archive is not
   even opened); new and changed items are recorded as ``pending``. Pending items are the work list,
   kept in the catalog, so a run killed at any moment is resumed by the next one. Items under a
   scanned folder (or in a re-read archive) that were not seen are marked ``deleted``.
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
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Union

from sqlalchemy import bindparam, delete, func, insert, select, update

from .errors import DecodeError, IndexBusyError
from .sources import ArchiveSource, SourceEntry, iter_archive_members, scan, storable_path
from .store.files import fault_point
from .store.catalog import Archive, Catalog, Embedding, IngestRun, Item, ItemState, now, vector_to_blob

if TYPE_CHECKING:
    from .index import Index

SCAN_CHUNK = 2000
MAX_WARNINGS = 20
Warn = Callable[[str], None]


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
    deleted: int = 0  # items whose file is gone from a scanned folder or archive (kept as history)
    purged: int = 0  # deleted items removed for good (``purge=True``)
    seconds: float = 0.0
    run_id: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def count_failure(self, reason: str) -> None:
        self.failed += 1
        self.failed_by_reason[reason] = self.failed_by_reason.get(reason, 0) + 1


class IngestLock:
    """One ingest per index at a time: an exclusive POSIX lock on ``ingest.lock`` in the index folder.
    The kernel drops it when its process dies, however it dies; unlike ``flock``, decode workers
    forked from the process do not inherit it, so a killed run's orphaned workers hold nothing."""

    def __init__(self, index_dir: Path) -> None:
        self.path = index_dir / "ingest.lock"
        self.fd: Optional[int] = None

    _held: set[str] = set()  # POSIX locks do not exclude their own process: these paths are ours

    def _busy(self, holder: str) -> IndexBusyError:
        return IndexBusyError(
            f"{self.path.parent} is being ingested into by process {holder}; wait for it to finish "
            "(searches keep working meanwhile)"
        )

    def __enter__(self) -> "IngestLock":
        key = str(self.path.resolve())
        if key in IngestLock._held:
            # Checked before opening the file: closing any descriptor of it would drop our own lock.
            raise self._busy(str(os.getpid()))
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(self.fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            self.fd = None
            raise self._busy(holder) from None
        IngestLock._held.add(key)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, str(os.getpid()).encode(), 0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
            IngestLock._held.discard(str(self.path.resolve()))


# ---------------------------------------------------------------- phase 1: register


@dataclass(frozen=True)
class ArchiveDone:
    """Follows the last member of an archive in the entry stream: the archive was read completely."""

    archive: ArchiveSource
    members: int


def expand_archives(catalog: Catalog, entries: Iterable[Union[SourceEntry, ArchiveSource]], run_id: int,
                    summary: IngestSummary, warn: Warn) -> Iterator[Union[SourceEntry, ArchiveDone]]:
    """Files pass through; an unchanged archive is settled with one UPDATE; another is read for its
    members, followed by an ``ArchiveDone`` marker."""
    for entry in entries:
        if isinstance(entry, SourceEntry):
            yield entry
            continue
        with catalog.read() as conn:
            known = conn.execute(select(Archive).where(Archive.uri == entry.uri)).first()
        if known and known.complete and known.size == entry.size and known.mtime_ns == entry.mtime_ns:
            with catalog.begin() as conn:
                conn.execute(update(Item).where(Item.container == entry.uri).values(scan_id=run_id))
                settled = conn.execute(select(func.count()).where(
                    Item.container == entry.uri, Item.state.in_([ItemState.EMBEDDED.value, ItemState.FAILED.value])
                )).scalar()
            summary.unchanged += int(settled or 0)
            summary.scanned += int(settled or 0)
            continue
        members = 0
        try:
            for member in iter_archive_members(entry):
                members += 1
                yield member
        except DecodeError as exc:
            warn(f"skipping the rest of {entry.uri}: {exc.reason} ({exc.detail})")
            summary.count_failure(exc.reason)
            _record_archive(catalog, entry, members, complete=False)
            continue
        yield ArchiveDone(entry, members)


def _record_archive(catalog: Catalog, archive: ArchiveSource, members: int, complete: bool, conn: Any = None) -> None:
    values = {"uri": archive.uri, "size": archive.size, "mtime_ns": archive.mtime_ns, "members": members,
              "complete": complete, "scanned_at": now()}
    statement = insert(Archive).values(**values).prefix_with("OR REPLACE")
    if conn is not None:
        conn.execute(statement)
        return
    with catalog.begin() as own:
        own.execute(statement)


def _chunks(entries: Iterable[Any], size: int) -> Iterator[list[Any]]:
    it = iter(entries)
    while chunk := list(islice(it, size)):
        yield chunk


def register(catalog: Catalog, entries: Iterable[Union[SourceEntry, ArchiveSource]], run_id: int,
             retry_failed: bool, summary: IngestSummary, warn: Warn) -> None:
    """Phase 1: records new and changed entries as pending, marks every entry seen by ``run_id``."""
    for chunk in _chunks(expand_archives(catalog, entries, run_id, summary, warn), SCAN_CHUNK):
        # The same path twice (a source named twice, a list with repeats, a tar holding a name twice): once.
        files = list({e.uri: e for e in chunk if isinstance(e, SourceEntry)}.values())
        finished = [e for e in chunk if isinstance(e, ArchiveDone)]
        summary.scanned += len(files)
        with catalog.begin() as conn:
            rows = conn.execute(
                select(Item.id, Item.uri, Item.size, Item.mtime_ns, Item.state).where(
                    Item.uri.in_([e.uri for e in files]))
            ).all() if files else []
            known = {r.uri: r for r in rows}
            stamp = now()
            seen_ids, new_rows, changed_rows = [], [], []
            for entry in files:
                state = ItemState.FAILED.value if entry.problem else ItemState.PENDING.value
                row = known.get(entry.uri)
                if row is None:
                    new_rows.append({"uri": entry.uri, "size": entry.size, "mtime_ns": entry.mtime_ns,
                                     "state": state, "scan_id": run_id, "added_at": stamp, "updated_at": stamp,
                                     "container": entry.container, "raw_path": entry.raw_path,
                                     "failure_reason": entry.problem})
                    if entry.problem:
                        summary.count_failure(entry.problem)
                    continue
                seen_ids.append(row.id)
                same_file = row.size == entry.size and row.mtime_ns == entry.mtime_ns
                settled = row.state == ItemState.EMBEDDED.value or (
                    row.state == ItemState.FAILED.value and not retry_failed)
                if same_file and settled:
                    summary.unchanged += 1
                elif row.state != ItemState.PENDING.value or not same_file:
                    changed_rows.append({"b_id": row.id, "b_size": entry.size, "b_mtime": entry.mtime_ns,
                                         "b_state": state, "b_reason": entry.problem})
                    if entry.problem:
                        summary.count_failure(entry.problem)
            if new_rows:
                conn.execute(insert(Item), new_rows)
            if changed_rows:
                conn.execute(
                    update(Item).where(Item.id == bindparam("b_id")).values(
                        size=bindparam("b_size"), mtime_ns=bindparam("b_mtime"), state=bindparam("b_state"),
                        sha256=None, embedding_id=None, failure_reason=bindparam("b_reason"), failure_detail=None,
                        updated_at=stamp),
                    changed_rows,
                )
            if seen_ids:
                conn.execute(update(Item).where(Item.id.in_(seen_ids)).values(scan_id=run_id))
            for done in finished:
                # Members of a re-read archive that it no longer holds are gone.
                result = conn.execute(update(Item).where(
                    Item.container == done.archive.uri, Item.state != ItemState.DELETED.value,
                    (Item.scan_id != run_id) | Item.scan_id.is_(None),
                ).values(state=ItemState.DELETED.value, updated_at=stamp))
                summary.deleted += result.rowcount or 0
                _record_archive(catalog, done.archive, done.members, complete=True, conn=conn)


def mark_missing(catalog: Catalog, sources: Iterable[Path], run_id: int) -> int:
    """Items under a scanned folder that this run did not see are gone: mark them deleted.

    Their rows (and embeddings) stay as history; if the file comes back, it is restored without being
    embedded again (its content is still in the catalog)."""
    deleted = 0
    for source in sources:
        path = Path(source).expanduser()
        if not path.is_dir():
            continue
        prefix = storable_path(str(path.resolve()))[0].rstrip(os.sep) + os.sep
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
    with catalog.read() as conn:
        return int(conn.execute(select(func.count()).where(Item.state == ItemState.PENDING.value)).scalar() or 0)


# ---------------------------------------------------------------- phase 2: embed


def commit_batch(catalog: Catalog, batch: Any, embedder: Any, summary: IngestSummary) -> list:
    """Embeds what is new in ``batch`` and commits the whole batch in one transaction.
    Returns the failed records (for the warnings)."""
    records = batch.records
    ok = [r for r in records if r.kind == "ok"]
    with catalog.read() as conn:
        existing = dict(conn.execute(
            select(Embedding.sha256, Embedding.id).where(Embedding.sha256.in_({r.sha256 for r in ok}))
        ).all()) if ok else {}
    fresh: dict[str, int] = {}  # sha -> row of batch.images
    for row, r in enumerate(ok):
        if r.sha256 not in existing and r.sha256 not in fresh:
            fresh[r.sha256] = row
    vectors = embedder.embed_images(batch.images[list(fresh.values())]) if fresh else []
    _trace(len(fresh))
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
        fault_point("commit")  # inside the transaction: a kill here must lose the whole batch, nothing else
        done = []
        for r in (r for r in records if r.kind != "failed"):
            embedding_id = r.embedding_id if r.kind == "known" else existing[r.sha256]
            done.append({"b_id": r.item_id, "b_sha": r.sha256, "b_emb": embedding_id, "b_w": r.width,
                         "b_h": r.height, "b_fmt": r.format})
        for row, r in enumerate(ok):
            if fresh.get(r.sha256) == row:
                summary.embedded += 1
            else:
                summary.reused += 1
        summary.reused += sum(1 for r in records if r.kind == "known")
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


def _embed_pending(index: "Index", todo: int, summary: IngestSummary, progress: bool, warn: Warn) -> None:
    from tqdm import tqdm

    from .pipeline import PendingItems, ReadOptions, make_loader

    embedder = index.embedder()
    settings = index.settings
    resize_mode = getattr(embedder.model.visual, "preprocess_cfg", {}).get("resize_mode", "shortest")
    options = ReadOptions(embedder.preprocess, embedder.image_size, settings.max_pixels, settings.decode_seconds,
                          crop_long_sides=resize_mode == "shortest")
    loader = make_loader(PendingItems(str(index.catalog.path), options),
                         settings.resolved_batch_size(embedder.device), settings.resolved_workers(embedder.device),
                         embedder.device)
    warned = 0
    with tqdm(total=todo, unit="img", desc="embedding", file=sys.stderr, disable=not progress,
              dynamic_ncols=True, smoothing=0.1) as bar:
        for batch in loader:
            fault_point("batch")
            for r in commit_batch(index.catalog, batch, embedder, summary):
                if warned < MAX_WARNINGS:
                    message = f"skipping {r.uri}: {r.reason}" + (f" ({r.detail})" if r.detail else "")
                    bar.write(message, file=sys.stderr) if progress else warn(message)
                    warned += 1
            bar.update(len(batch.records))
    if summary.failed > warned:
        warn(f"... and {summary.failed - warned} more unreadable files (`indexer status` counts them by reason)")


# ---------------------------------------------------------------- the run


def purge_deleted(index: "Index") -> int:
    """Removes deleted items for good, and the embeddings (and vectors) no item uses any more."""
    catalog = index.catalog
    with catalog.begin() as conn:
        purged = conn.execute(delete(Item).where(Item.state == ItemState.DELETED.value)).rowcount or 0
        orphans = [row[0] for row in conn.execute(
            select(Embedding.id).where(~Embedding.id.in_(
                select(Item.embedding_id).where(Item.embedding_id.is_not(None))
            )))]
        for start in range(0, len(orphans), 10000):
            conn.execute(delete(Embedding).where(Embedding.id.in_(orphans[start:start + 10000])))
    if orphans and index.vectors_file_exists():
        # Remove from the file as it is (no catch-up, which would see the deletions and rebuild).
        vectors = index.vectors(sync=False)
        if vectors.index is not None:
            vectors.remove(orphans)
            vectors.save()
    return purged


def run_ingest(index: "Index", sources: Iterable[Path], *, retry_failed: bool = False, purge: bool = False,
               progress: bool = True, warn: Optional[Warn] = None, strict: bool = True) -> IngestSummary:
    """Ingests ``sources`` into ``index``; see the module docstring for the two phases."""
    warn = warn or (lambda message: print(message, file=sys.stderr))
    started = time.time()
    summary = IngestSummary()
    catalog = index.catalog
    named: list[str] = []  # the first sources, for the run's record (a list may hold millions)

    def noted(items: Iterable[Path]) -> Iterator[Path]:
        for item in items:
            if len(named) < 100:
                named.append(str(item))
            yield item

    with IngestLock(index.path):
        with catalog.begin() as conn:
            run_id = conn.execute(insert(IngestRun).values(started_at=started, sources="[]")).inserted_primary_key[0]
        summary.run_id = int(run_id)
        folders: list[Path] = []
        register(catalog, scan(noted(sources), strict=strict, folders=folders, warn=warn), summary.run_id,
                 retry_failed, summary, warn)
        summary.deleted += mark_missing(catalog, folders, summary.run_id)
        todo = pending_count(catalog)
        if todo:
            _embed_pending(index, todo, summary, progress, warn)
        if purge:
            summary.purged = purge_deleted(index)
        if index.recorded_model is not None and (summary.embedded or summary.reused or not index.vectors_file_exists()):
            index.vectors()  # brings the FAISS file in step with the catalog
        summary.seconds = round(time.time() - started, 3)
        with catalog.begin() as conn:
            conn.execute(update(IngestRun).where(IngestRun.id == summary.run_id).values(
                finished_at=time.time(), sources=json.dumps(named), counts=json.dumps(summary.to_dict())))
    return summary
