"""What ingestion writes: items found by a scan, archives, committed batches, deletions.

Every write that changes an item's state is here, each in one transaction, so that a crash between
two of them leaves a catalog that the next run resumes from (the design's invariant 2). The decisions
(what is new, changed or unchanged) are made by ``indexer.ingest``; this module only records them.

``pending_reader`` gives the read-only view that decode workers (other processes) use to stream the work
list (``store.pending``): it opens its own connection in the process that uses it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

from sqlalchemy import bindparam, delete, func, select, update

from ..errors import CatalogError
from .dialect import insert_for
from .files import fault_point
from .catalog import chunked
from .states import PURGES_KEY
from .schema import Archive, Embedding, Item, ItemState, Meta
from .pending import PendingReader

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from .catalog import Catalog

PENDING, EMBEDDED, FAILED, DELETED = (s.value for s in ItemState)
RUNTIMES_KEY = "runtimes"  # meta: {"openvino/bf16": {"embedded": n, "first_used": t, "last_used": t}, ...}
COMMIT_ATTEMPTS = 5


@dataclass(frozen=True)
class KnownItem:
    """What a scan compares an entry with."""

    id: int
    size: int
    mtime_ns: int
    state: str
    caption_stamp: Optional[int] = None


@dataclass(frozen=True)
class ArchiveRecord:
    uri: str
    size: int
    mtime_ns: int
    members: int
    complete: bool


@dataclass
class EmbeddedRecord:
    """An item to mark embedded: its content, and either the fresh vector blob or a known embedding."""

    item_id: int
    sha256: str
    width: Optional[int] = None
    height: Optional[int] = None
    format: Optional[str] = None
    embedding_id: Optional[int] = None  # set when the content was already in the catalog
    facts: Any = None  # media.metadata.PictureFacts: EXIF date, camera, GPS, notes (None: not read)


@dataclass
class FailedRecord:
    item_id: int
    reason: str
    detail: Optional[str] = None
    sha256: Optional[str] = None


FACT_VALUES = {"taken": bindparam("b_taken"), "camera": bindparam("b_camera"), "lat": bindparam("b_lat"),
               "lon": bindparam("b_lon"), "meta_notes": bindparam("b_notes"), "meta_at": bindparam("b_meta_at")}


def fact_params(facts: Any, stamp: float) -> dict[str, Any]:
    """The bound values of ``FACT_VALUES`` for one item's facts (None: not read, left to fill in)."""
    if facts is None:
        return {"b_taken": None, "b_camera": None, "b_lat": None, "b_lon": None, "b_notes": None, "b_meta_at": None}
    return {"b_taken": facts.taken, "b_camera": facts.camera, "b_lat": facts.lat, "b_lon": facts.lon,
            "b_notes": "; ".join(facts.notes) or None, "b_meta_at": stamp}


class CatalogWorklist:
    """The catalog as ingestion's work list: what scans find, what is pending, committed batches,
    deletions (``catalog.worklist``)."""

    def __init__(self, catalog: "Catalog") -> None:
        self.catalog = catalog

    def known_items(self, uris: Sequence[str]) -> dict[str, KnownItem]:
        known: dict[str, KnownItem] = {}
        with self.catalog.read() as conn:
            for part in chunked(list(uris)):
                for r in conn.execute(select(Item.id, Item.uri, Item.size, Item.mtime_ns, Item.state,
                                             Item.caption_stamp).where(Item.uri.in_(part))):
                    known[r.uri] = KnownItem(r.id, r.size, r.mtime_ns, r.state, r.caption_stamp)
        return known

    def archive(self, uri: str) -> Optional[ArchiveRecord]:
        with self.catalog.read() as conn:
            row = conn.execute(select(Archive).where(Archive.uri == uri)).first()
        if row is None:
            return None
        a = row
        return ArchiveRecord(a.uri, a.size, a.mtime_ns, a.members, bool(a.complete))

    def settle_unchanged_archive(self, uri: str, run_id: int) -> int:
        """Marks every member of an unchanged archive as seen by ``run_id``; returns how many are settled
        (embedded or failed)."""
        with self.catalog.begin() as conn:
            conn.execute(update(Item).where(Item.container == uri).values(scan_id=run_id))
            return int(conn.execute(select(func.count()).where(
                Item.container == uri, Item.state.in_([EMBEDDED, FAILED]))).scalar() or 0)

    def record_archive(self, archive: ArchiveRecord, conn: Optional["Connection"] = None) -> None:
        values = {"uri": archive.uri, "size": archive.size, "mtime_ns": archive.mtime_ns, "members": archive.members,
                  "complete": archive.complete, "scanned_at": time.time()}
        upsert = insert_for(self.catalog.dialect, Archive).values(**values)
        statement = upsert.on_conflict_do_update(index_elements=[Archive.uri], set_={
            k: getattr(upsert.excluded, k) for k in values if k != "uri"})
        if conn is not None:
            conn.execute(statement)
            return
        with self.catalog.begin() as own:
            own.execute(statement)

    def apply_scan(self, run_id: int, new: list[dict[str, Any]], changed: list[dict[str, Any]], seen: list[int],
                   finished_archives: Sequence[ArchiveRecord] = (), captions: Sequence[dict[str, Any]] = ()) -> int:
        """Records one chunk of a scan in one transaction: ``new`` item rows (uri, size, mtime_ns, state,
        container, raw_path, failure_reason, caption, caption_stamp), ``changed`` items (id, size, mtime_ns,
        state, failure_reason: their content is forgotten), ``seen`` item ids, new ``captions`` (id, caption,
        caption_stamp: a sidecar changed); members of ``finished_archives`` (read to the end)
        that this run did not see are marked deleted. Returns that number."""
        stamp = time.time()
        deleted = 0
        with self.catalog.begin() as conn:
            if new:
                # Another registrar (a concurrent run on a server catalog) may have added the same path
                # since ``known_items``: its row stands, this one is dropped, never doubled.
                conn.execute(insert_for(self.catalog.dialect, Item).on_conflict_do_nothing(index_elements=[Item.uri]),
                             [dict(row, scan_id=run_id, added_at=stamp, updated_at=stamp)
                              for row in sorted(new, key=lambda r: r["uri"])])
            if changed:
                conn.execute(
                    update(Item).where(Item.id == bindparam("b_id")).values(
                        size=bindparam("b_size"), mtime_ns=bindparam("b_mtime"), state=bindparam("b_state"),
                        sha256=None, embedding_id=None, failure_reason=bindparam("b_reason"), failure_detail=None,
                        scan_id=run_id, updated_at=stamp),
                    [{"b_id": r["id"], "b_size": r["size"], "b_mtime": r["mtime_ns"], "b_state": r["state"],
                      "b_reason": r.get("failure_reason")} for r in changed])
            for part in chunked(seen):
                conn.execute(update(Item).where(Item.id.in_(part)).values(scan_id=run_id))
            if captions:
                conn.execute(update(Item).where(Item.id == bindparam("b_id")).values(
                    caption=bindparam("b_caption"), caption_stamp=bindparam("b_stamp")),
                    [{"b_id": r["id"], "b_caption": r["caption"], "b_stamp": r["caption_stamp"]} for r in captions])
            for archive in finished_archives:
                result = conn.execute(update(Item).where(
                    Item.container == archive.uri, Item.state != DELETED,
                    (Item.scan_id != run_id) | Item.scan_id.is_(None),
                ).values(state=DELETED, updated_at=stamp))
                deleted += result.rowcount or 0
                self.record_archive(archive, conn)
        return deleted

    def mark_unseen_deleted(self, prefix: str, run_id: int) -> int:
        """Items whose uri starts with ``prefix`` (a folder path ending in a separator) that ``run_id``
        did not see are gone: marked deleted (kept as history). Returns how many."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)  # a range on the unique uri index
        with self.catalog.begin() as conn:
            result = conn.execute(
                update(Item).where(Item.uri >= prefix, Item.uri < upper, Item.state != DELETED,
                                   (Item.scan_id != run_id) | Item.scan_id.is_(None))
                .values(state=DELETED, updated_at=time.time()))
            return int(result.rowcount or 0)

    def record_runtime(self, runtime: str, precision: str, embedded: int) -> None:
        """Counts the embeddings made by one runtime and precision (``status`` shows them; runtimes that
        agree within cosine 0.999 may share an index)."""
        key = f"{runtime}/{precision}"
        with self.catalog.begin() as conn:
            value = conn.execute(select(Meta.value).where(Meta.key == RUNTIMES_KEY)).scalar()
            runtimes = json.loads(value) if value else {}
            entry = runtimes.setdefault(key, {"embedded": 0, "first_used": time.time()})
            entry["embedded"] += int(embedded)
            entry["last_used"] = time.time()
            self.catalog.set_meta(RUNTIMES_KEY, runtimes, conn)

    def pending_count(self) -> int:
        with self.catalog.read() as conn:
            return int(conn.execute(select(func.count()).where(Item.state == PENDING)).scalar() or 0)

    def commit_batch(self, fresh: dict[str, bytes], embedded: Sequence[EmbeddedRecord],
                     failed: Sequence[FailedRecord], phashes: Optional[dict[str, Optional[int]]] = None) -> None:
        """One batch in one transaction: the ``fresh`` embeddings (sha256 -> vector blob, with the
        picture's perceptual hash from ``phashes`` where given), the items that hold them or a known
        content marked embedded, the ``failed`` items with their reason.

        Idempotent, and safe beside other writers: a content another worker committed meanwhile keeps
        its first embedding (unique sha256, ``ON CONFLICT DO NOTHING``) and the items point at it; the
        same batch committed twice (a retried task) writes the same rows again."""
        # Rows in one order (contents by sha256, items by id): two writers whose batches overlap wait for
        # each other instead of deadlocking; should the server still pick a victim, the batch is redone.
        fresh = dict(sorted(fresh.items()))
        embedded = sorted(embedded, key=lambda r: r.item_id)
        failed = sorted(failed, key=lambda r: r.item_id)
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                self._commit_batch_once(fresh, embedded, failed, phashes or {})
                return
            except CatalogError as exc:
                if "deadlock" not in str(exc) or attempt == COMMIT_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _commit_batch_once(self, fresh: dict[str, bytes], embedded: Sequence[EmbeddedRecord],
                           failed: Sequence[FailedRecord], phashes: dict[str, Optional[int]]) -> None:
        stamp = time.time()
        with self.catalog.begin() as conn:
            ids: dict[str, int] = {}
            if fresh:
                conn.execute(insert_for(self.catalog.dialect, Embedding).on_conflict_do_nothing(
                    index_elements=[Embedding.sha256]),
                    [{"sha256": sha, "vector": blob, "created_at": stamp, "phash": phashes.get(sha)}
                     for sha, blob in fresh.items()])
                ids.update(conn.execute(select(Embedding.sha256, Embedding.id)
                                        .where(Embedding.sha256.in_(list(fresh)))).all())
            fault_point("commit")  # inside the transaction: a kill here must lose the whole batch, nothing else
            if embedded:
                conn.execute(update(Item).where(Item.id == bindparam("b_id")).values(
                    state=EMBEDDED, sha256=bindparam("b_sha"), embedding_id=bindparam("b_emb"),
                    width=bindparam("b_w"), height=bindparam("b_h"), format=bindparam("b_fmt"),
                    failure_reason=None, failure_detail=None, updated_at=stamp, **FACT_VALUES),
                    [{"b_id": r.item_id, "b_sha": r.sha256, "b_w": r.width, "b_h": r.height, "b_fmt": r.format,
                      "b_emb": r.embedding_id if r.embedding_id is not None else ids[r.sha256],
                      **fact_params(r.facts, stamp)} for r in embedded])
            if failed:
                conn.execute(update(Item).where(Item.id == bindparam("b_id")).values(
                    state=FAILED, sha256=bindparam("b_sha"), failure_reason=bindparam("b_reason"),
                    failure_detail=bindparam("b_detail"), updated_at=stamp),
                    [{"b_id": r.item_id, "b_sha": r.sha256, "b_reason": r.reason, "b_detail": r.detail}
                     for r in failed])

    def import_embedded(self, rows: Sequence[tuple[str, Optional[str], str, bytes]]) -> int:
        """Items made embedded at once from imported vectors, in one transaction: ``rows`` of (uri, caption,
        content key, vector blob). A uri the catalog holds already is left as it is; equal content keys
        share one embedding. Returns how many items were added."""
        if not rows:
            return 0
        stamp = time.time()
        with self.catalog.begin() as conn:
            held: set[str] = set()
            for part in chunked(sorted(uri for uri, _, _, _ in rows)):
                held.update(r[0] for r in conn.execute(select(Item.uri).where(Item.uri.in_(part))))
            rows = sorted(r for r in rows if r[0] not in held)
            if not rows:
                return 0
            fresh = {key: blob for _, _, key, blob in rows}
            conn.execute(insert_for(self.catalog.dialect, Embedding).on_conflict_do_nothing(
                index_elements=[Embedding.sha256]),
                [{"sha256": key, "vector": blob, "created_at": stamp} for key, blob in sorted(fresh.items())])
            ids: dict[str, int] = {}
            for part in chunked(sorted(fresh)):
                ids.update(conn.execute(select(Embedding.sha256, Embedding.id).where(Embedding.sha256.in_(part))).all())
            # A concurrent writer's row for the same path stands (ON CONFLICT DO NOTHING).
            conn.execute(insert_for(self.catalog.dialect, Item).on_conflict_do_nothing(index_elements=[Item.uri]),
                         [{"uri": uri, "size": 0, "mtime_ns": 0, "state": EMBEDDED, "sha256": key,
                           "embedding_id": ids[key], "caption": caption, "added_at": stamp, "updated_at": stamp,
                           "meta_at": stamp, "meta_notes": "imported: no file read"} for uri, caption, key, _ in rows])
            return len(rows)

    def facts_missing(self, after: int = 0, limit: int = 512) -> list[tuple[int, str, Optional[bytes], Optional[str]]]:
        """(id, uri, raw path, container) of embedded items whose metadata was never read (embedded before
        it was kept), in id order after ``after``."""
        return [tuple(r) for r in self.catalog.rows(
            "SELECT id, uri, raw_path, container FROM items WHERE meta_at IS NULL AND id > :after "
            "AND state = :state ORDER BY id LIMIT :limit", {"after": after, "state": EMBEDDED, "limit": limit})]

    def record_facts(self, facts: Sequence[tuple[int, Any]]) -> None:
        """Stores the metadata read for items already embedded (``facts``: (item id, PictureFacts))."""
        stamp = time.time()
        self.catalog.write(
            "UPDATE items SET taken = :b_taken, camera = :b_camera, lat = :b_lat, lon = :b_lon, "
            "meta_notes = :b_notes, meta_at = :b_meta_at WHERE id = :b_id",
            [dict(fact_params(f, stamp), b_id=item_id) for item_id, f in facts])

    def purge_deleted(self) -> tuple[int, list[int]]:
        """Removes deleted items for good, and the embeddings no item uses any more.
        Returns (items purged, embedding ids removed)."""
        with self.catalog.begin() as conn:
            purged = conn.execute(delete(Item).where(Item.state == DELETED)).rowcount or 0
            orphans = [row[0] for row in conn.execute(
                select(Embedding.id).where(~Embedding.id.in_(
                    select(Item.embedding_id).where(Item.embedding_id.is_not(None)))))]
            for part in chunked(orphans):
                conn.execute(delete(Embedding).where(Embedding.id.in_(part)))
            if orphans:
                purges = conn.execute(select(Meta.value).where(Meta.key == PURGES_KEY)).scalar()
                self.catalog.set_meta(PURGES_KEY, int(purges or 0) + 1, conn)
        return int(purged), orphans

    def pending_reader(self) -> "PendingReader":
        url = self.catalog.url
        return PendingReader(url.render_as_string(hide_password=False),
                             url.database if url.get_backend_name() == "sqlite" else None)

    def pending_id_bounds(self) -> tuple[int, int]:
        """(smallest, largest) id of the pending plain files; (0, -1) when there is none."""
        with self.catalog.read() as conn:
            low, high = conn.execute(select(func.min(Item.id), func.max(Item.id)).where(
                Item.state == PENDING, Item.container.is_(None))).one()
        return (int(low), int(high)) if low is not None else (0, -1)
