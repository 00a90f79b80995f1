"""Decisions on audit findings, and the corrected dataset they make.

Every finding has a stable ``id``: a short hash of what the finding is about (a mislabel: the item's
path and its given label; a duplicate group: its kind and its members' paths; an outlier: the path and
its label; a label pair; a small class), so the same problem found by a later audit has the same id,
whatever else changed. The latest audit's findings are stored in the catalog; a decision names one of
them and is stored beside it with the fingerprint of the labels the audit read (``labels_key``):

- ``accept``: the finding is right; its fix applies (a mislabel takes its suggested label, a duplicate
  group keeps its first member, an outlier is left out of the export);
- ``reject``: the finding is wrong; a later audit does not raise it again;
- ``relabel LABEL``: the finding's items get ``LABEL`` (one of the audited labels);
- ``drop``: the finding's items are left out of the export.

The export reads the labels the audit read (or others given), refuses decisions made on other labels,
and writes ``path,label`` (and ``split`` where the labels have splits) with the decisions applied.
"""

from __future__ import annotations

import csv
import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ..errors import QueryError
from ..store.audits import Decision
from ..store.files import atomic_open
from .dataset import DatasetLabels, labels_from_recipe, labels_key

if TYPE_CHECKING:
    from ..context import IndexContext
    from .core import AuditResult, Finding

ACTIONS = ("accept", "reject", "relabel", "drop")
ITEM_TYPES = ("mislabel", "duplicate", "outlier")  # findings about items: every action applies
_PREFIX = {"mislabel": "mis", "duplicate": "dup", "outlier": "out", "confusable_labels": "pair",
           "small_class": "small"}


def finding_id(finding: "Finding") -> str:
    """The stable id of a finding (``mis-1a2b3c4d5e6f``)."""
    d = finding.details
    if finding.type == "mislabel":
        key: list[Any] = [finding.path, d["given_label"]]
    elif finding.type == "duplicate":
        key = [d["kind"], sorted(finding.paths or [])]
    elif finding.type == "outlier":
        key = [finding.path, d["label"]]
    elif finding.type == "confusable_labels":
        key = sorted(d["labels"])
    else:
        key = [d.get("label")]
    text = "\x1f".join([finding.type] + [str(k) for k in key])
    return f"{_PREFIX.get(finding.type, finding.type)}-" + hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def record_audit(ctx: "IndexContext", result: "AuditResult", dataset: DatasetLabels) -> None:
    """Gives every finding its id and the decision made on it, leaves rejected ones out of ``result``
    (counted in ``result.decided``), and stores the findings as the latest audit (not on a read-only
    catalog)."""
    decisions = {d.finding_id: d for d in ctx.catalog.audits.decisions()}
    kept, decided = [], {action: 0 for action in ACTIONS}
    stored, ranks = [], {}
    for finding in result.findings:
        finding.id = finding_id(finding)
        decision = decisions.get(finding.id)
        if decision is not None:
            finding.decision = {"action": decision.action, "label": decision.label}
            decided[decision.action] += 1
        ranks[finding.type] = ranks.get(finding.type, 0) + 1
        stored.append({**finding.to_dict(), "rank": ranks[finding.type]})
        if decision is None or decision.action != "reject":
            kept.append(finding)
    result.findings, result.decided = kept, decided
    result.labels_key = labels_key(dataset)
    if ctx.catalog.readonly:
        return
    ctx.catalog.audits.save_latest({
        "labels": result.labels, "labels_key": result.labels_key, "labels_source": dataset.source,
        "recipe": dataset.recipe, "embeddings_version": list(ctx.catalog.embeddings_version()),
        "items": result.items, "at": time.time(), "near": result.near, "plots": result.plots}, stored)


def _latest(ctx: "IndexContext") -> dict[str, Any]:
    latest = ctx.catalog.audits.latest()
    if latest is None:
        raise QueryError(f"no audit is stored in {ctx.path}; run `indexer audit --index {ctx.path}` first")
    return latest


def decide(ctx: "IndexContext", finding: str, action: str, label: Optional[str] = None) -> Decision:
    """Records a decision on the finding ``finding`` (an id of the latest audit)."""
    if action not in ACTIONS:
        raise QueryError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}", param="action")
    if (action == "relabel") != (label is not None):
        raise QueryError("relabel needs the new label (relabel LABEL)" if action == "relabel"
                         else f"{action} takes no label", param="label")
    latest = _latest(ctx)
    stored = ctx.catalog.audits.finding(finding)
    if stored is None:
        raise QueryError(f"no finding {finding!r} in the latest audit of {ctx.path}; `indexer audit --index "
                         f"{ctx.path} --json` lists the ids (a finding of an older audit may be gone)")
    if list(ctx.catalog.embeddings_version()) != list(latest.get("embeddings_version", [])):
        raise QueryError(f"finding {finding} is stale: the index changed since the latest audit; run `indexer audit` "
                         "again and decide on its findings")
    kind = stored["type"]
    if kind not in ITEM_TYPES and action not in ("accept", "reject"):
        raise QueryError(f"a {kind} finding is about labels, not items: accept or reject it")
    if label is not None and label not in latest["labels"]:
        shown = ", ".join(latest["labels"][:8]) + (", ..." if len(latest["labels"]) > 8 else "")
        raise QueryError(f"{label!r} is not one of the {len(latest['labels'])} audited labels ({shown}); relabel to "
                         "one of them")
    return ctx.catalog.audits.decide(finding, kind, action, label, stored, latest["labels_key"],
                                     latest["labels_source"])


@dataclass
class ExportSummary:
    path: str
    rows: int  # items written
    relabelled: int  # items whose label a decision changed
    dropped: int  # items left out by decisions
    duplicates_dropped: int  # further copies left out by --drop-duplicates
    decisions: int  # decisions applied
    other_labels: int  # decisions made on other labels, not applied

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def corrected(ctx: "IndexContext", dataset: Optional[DatasetLabels] = None, drop_duplicates: bool = False
              ) -> tuple[list[str], list[list[str]], ExportSummary]:
    """The corrected dataset: (header, rows sorted by path, summary without a path); see the module's text."""
    if dataset is None:
        dataset = labels_from_recipe(ctx, _latest(ctx).get("recipe") or {})
    key = labels_key(dataset)
    decisions = ctx.catalog.audits.decisions()
    mine = [d for d in decisions if d.labels_key == key]
    if decisions and not mine:
        sources = sorted({d.labels_source for d in decisions})
        raise QueryError(f"the {len(decisions)} decisions were made on other labels ({'; '.join(sources)[:200]}) than "
                         f"these ({dataset.source}); give the labels they were made on, or audit these labels first")
    label_index = dataset.label_index.copy()
    keep = np.ones(dataset.size, dtype=bool)
    label_of = {label: i for i, label in enumerate(dataset.labels)}
    for decision in mine:
        finding = decision.finding
        ids = [finding["item_id"]] if "item_id" in finding else list(finding.get("item_ids", []))
        found, positions = dataset.positions(ids)
        positions = positions[found]
        if decision.type not in ITEM_TYPES or decision.action == "reject" or not len(positions):
            continue
        if decision.action == "drop" or (decision.action == "accept" and decision.type == "outlier"):
            keep[positions] = False
        elif decision.action == "relabel":
            label_index[positions] = label_of[decision.label]
        elif decision.type == "mislabel":  # accept
            label_index[positions] = label_of[finding["suggested_label"]]
        elif decision.type == "duplicate":  # accept: the first member stays
            keep[positions[1:]] = False
    dropped = int((~keep).sum())
    relabelled = int(((label_index != dataset.label_index) & keep).sum())
    duplicates_dropped = 0
    if drop_duplicates:  # one item per content among those kept: the first by item id
        order = np.flatnonzero(keep)
        _, first = np.unique(dataset.content_ids[order], return_index=True)
        copies = np.setdiff1d(order, order[first])
        keep[copies] = False
        duplicates_dropped = int(len(copies))
    kept = np.flatnonzero(keep)
    uris = ctx.catalog.items.uris([int(i) for i in dataset.item_ids[kept]])
    rows = sorted([uris.get(int(dataset.item_ids[p]), ""), dataset.labels[label_index[p]]]
                  + ([dataset.split_of(p) or ""] if dataset.splits else []) for p in kept.tolist())
    header = ["path", "label", "split"] if dataset.splits else ["path", "label"]
    return header, rows, ExportSummary("", len(rows), relabelled, dropped, duplicates_dropped, len(mine),
                                       len(decisions) - len(mine))


def export(ctx: "IndexContext", path: Path, dataset: Optional[DatasetLabels] = None,
           drop_duplicates: bool = False) -> ExportSummary:
    """Writes the corrected dataset to ``path`` (``path,label[,split]``), whole or not at all."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise QueryError(f"{path} is a folder; give a file name for the corrected labels", param="output")
    header, rows, summary = corrected(ctx, dataset, drop_duplicates)
    with atomic_open(path, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    summary.path = str(path)
    return summary


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    """The corrected dataset as CSV text (what the API answers)."""
    import io

    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()
