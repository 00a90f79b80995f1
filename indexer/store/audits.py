"""The audit's rows (``catalog.audits``): the latest audit's findings and what it was made on, the
decisions a person made on findings, and the perceptual hashes of contents.

Plain SQL with named parameters, the same on SQLite and PostgreSQL. The latest audit's facts (when, on
which labels, at which embeddings version) are one meta entry; its findings are rows, replaced as a
whole by the next audit in one transaction."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Sequence

from .catalog import chunked, in_list

if TYPE_CHECKING:
    from .catalog import Catalog

LATEST_KEY = "audit.latest"  # meta: the latest audit's labels, source and embeddings version


@dataclass(frozen=True)
class Decision:
    """A decision on one finding, as stored."""

    finding_id: str
    type: str
    action: str  # accept, reject, relabel, drop
    label: Optional[str]
    finding: dict[str, Any]
    labels_key: str
    labels_source: str
    decided_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.finding_id, "type": self.type, "action": self.action, "label": self.label,
                "labels_key": self.labels_key, "labels_source": self.labels_source, "decided_at": self.decided_at,
                "finding": self.finding}


class CatalogAudits:
    """Audit findings, decisions and perceptual hashes (``catalog.audits``)."""

    def __init__(self, catalog: "Catalog") -> None:
        self.catalog = catalog

    # -- the latest audit ---------------------------------------------------------------------------

    def save_latest(self, facts: dict[str, Any], findings: Sequence[dict[str, Any]]) -> None:
        """Replaces the stored findings by ``findings`` (each with an ``id`` and a ``type``) and the
        latest audit's ``facts``, in one transaction."""
        rows = [{"id": f["id"], "type": f["type"], "payload": json.dumps(f, ensure_ascii=False)} for f in findings]
        meta = [{"key": LATEST_KEY, "value": json.dumps(facts)}]
        with self.catalog.begin() as conn:
            self.catalog.write("DELETE FROM audit_findings WHERE 1 = :one", [{"one": 1}], conn)
            self.catalog.write("INSERT INTO audit_findings (id, type, payload) VALUES (:id, :type, :payload)",
                               rows, conn)
            self.catalog.write("INSERT INTO meta (key, value) VALUES (:key, :value) "
                               "ON CONFLICT (key) DO UPDATE SET value = excluded.value", meta, conn)

    def latest(self) -> Optional[dict[str, Any]]:
        """The latest audit's facts, or None when no audit was stored."""
        return self.catalog.get_meta(LATEST_KEY)

    def finding(self, finding_id: str) -> Optional[dict[str, Any]]:
        rows = self.catalog.rows("SELECT payload FROM audit_findings WHERE id = :id", {"id": finding_id})
        return json.loads(rows[0][0]) if rows else None

    def findings(self, kind: Optional[str] = None) -> list[dict[str, Any]]:
        """The latest audit's findings (of one type when ``kind`` is given), in no particular order."""
        if kind is None:
            rows = self.catalog.rows("SELECT payload FROM audit_findings")
        else:
            rows = self.catalog.rows("SELECT payload FROM audit_findings WHERE type = :type", {"type": kind})
        return [json.loads(r[0]) for r in rows]

    # -- decisions ----------------------------------------------------------------------------------

    def decide(self, finding_id: str, kind: str, action: str, label: Optional[str], finding: dict[str, Any],
               labels_key: str, labels_source: str) -> Decision:
        """Records (or replaces) the decision on ``finding_id``."""
        decision = Decision(finding_id, kind, action, label, finding, labels_key, labels_source, time.time())
        self.catalog.write(
            "INSERT INTO audit_decisions (finding_id, type, action, label, finding, labels_key, labels_source, "
            "decided_at) VALUES (:finding_id, :type, :action, :label, :finding, :labels_key, :labels_source, "
            ":decided_at) ON CONFLICT (finding_id) DO UPDATE SET type = excluded.type, action = excluded.action, "
            "label = excluded.label, finding = excluded.finding, labels_key = excluded.labels_key, "
            "labels_source = excluded.labels_source, decided_at = excluded.decided_at",
            [{"finding_id": finding_id, "type": kind, "action": action, "label": label,
              "finding": json.dumps(finding, ensure_ascii=False), "labels_key": labels_key,
              "labels_source": labels_source, "decided_at": decision.decided_at}])
        return decision

    def undo(self, finding_id: str) -> bool:
        """Forgets the decision on ``finding_id``; False when there was none."""
        found = bool(self.catalog.rows("SELECT 1 FROM audit_decisions WHERE finding_id = :id", {"id": finding_id}))
        if found:
            self.catalog.write("DELETE FROM audit_decisions WHERE finding_id = :id", [{"id": finding_id}])
        return found

    def decisions(self) -> list[Decision]:
        """Every decision, oldest first."""
        rows = self.catalog.rows("SELECT finding_id, type, action, label, finding, labels_key, labels_source, "
                                 "decided_at FROM audit_decisions ORDER BY decided_at, finding_id")
        return [Decision(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], float(r[7])) for r in rows]

    # -- perceptual hashes --------------------------------------------------------------------------

    def phashes(self, embedding_ids: Sequence[int]) -> dict[int, Optional[int]]:
        """embedding id -> its stored perceptual hash (None where none is stored yet)."""
        found: dict[int, Optional[int]] = {}
        for part in chunked([int(i) for i in embedding_ids]):
            ids, params = in_list("e", part)
            for embedding_id, phash in self.catalog.rows(f"SELECT id, phash FROM embeddings WHERE id IN {ids}",
                                                         params):
                found[int(embedding_id)] = None if phash is None else int(phash)
        return found

    def count_unhashed(self) -> int:
        return int(self.catalog.rows("SELECT count(*) FROM embeddings WHERE phash IS NULL")[0][0] or 0)

    def unhashed(self, limit: int = 4096) -> list[tuple[int, int]]:
        """Up to ``limit`` (embedding id, an embedded item holding it) of contents without a hash."""
        return [(int(r[0]), int(r[1])) for r in self.catalog.rows(
            "SELECT e.id, min(i.id) FROM embeddings e JOIN items i ON i.embedding_id = e.id "
            "WHERE e.phash IS NULL AND i.state = :state GROUP BY e.id ORDER BY e.id LIMIT :limit",
            {"state": "embedded", "limit": int(limit)})]

    def set_phashes(self, hashes: dict[int, int]) -> None:
        """Stores perceptual hashes of contents that had none (the audit's back-fill)."""
        self.catalog.write("UPDATE embeddings SET phash = :phash WHERE id = :id AND phash IS NULL",
                           [{"id": int(k), "phash": int(v)} for k, v in hashes.items()])
