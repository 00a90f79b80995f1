"""The audit's findings, the decisions a reviewer makes on them (only with --allow-decisions), and the
corrected labels they make."""

from __future__ import annotations

import json
from typing import Any, Optional

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from ...errors import IndexerError
from ..schemas import AuditDecisionIn, AuditFindings
from ..state import NotFound, ServedIndex
from .common import BAD_REQUEST, NOT_FOUND, served_index

router = APIRouter(tags=["audit"], responses=NOT_FOUND)
TYPE_ORDER = ("mislabel", "duplicate", "outlier", "confusable_labels", "small_class")
READ_ONLY = {403: {"description": "The service is read-only for decisions (no --allow-decisions)."}}


def _stored_findings(served: ServedIndex) -> tuple[list[dict[str, Any]], Optional[dict[str, Any]]]:
    """The latest audit's findings with the decisions made since, ranked within each type: from the
    catalog, or else from INDEX/audit/findings.json (an audit written before decisions existed)."""
    audits = served.index.context.catalog.audits
    latest = audits.latest()
    if latest is not None:
        decisions = {d.finding_id: {"action": d.action, "label": d.label} for d in audits.decisions()}
        findings = audits.findings()
        for finding in findings:
            finding.pop("decision", None)
            if finding.get("id") in decisions:
                finding["decision"] = decisions[finding["id"]]
        order = {kind: i for i, kind in enumerate(TYPE_ORDER)}
        findings.sort(key=lambda f: (order.get(f.get("type"), len(order)), f.get("rank", 0)))
        return findings, latest
    if not (served.path / "audit" / "findings.json").is_file():
        raise NotFound(f"index {served.name!r} has no stored audit; run `indexer audit --index {served.path}` first")
    try:
        return served.index.audit_findings(), None
    except IndexerError as exc:  # a findings file that is not JSON, or not a list
        raise HTTPException(503, f"{exc}; run `indexer audit` again") from None


@router.get("/api/audit", response_model=AuditFindings, responses={**BAD_REQUEST, **NOT_FOUND})
def audit_findings(request: Request, served: ServedIndex = Depends(served_index),
                   type: Optional[str] = Query(None, max_length=40,
                                               description="mislabel, duplicate, outlier, confusable_labels, small_class"),
                   offset: int = Query(0, ge=0, le=10_000_000), limit: int = Query(100, ge=1, le=1000)) -> AuditFindings:
    """The findings of the latest audit (``indexer audit`` stores them), ranked within each type, with the
    decisions made on them."""
    findings, latest = _stored_findings(served)
    counts: dict[str, int] = {}
    for f in findings:
        if isinstance(f, dict):
            counts[str(f.get("type"))] = counts.get(str(f.get("type")), 0) + 1
    findings = [f for f in findings if isinstance(f, dict) and (not type or f.get("type") == type)]
    page = findings[offset:offset + limit]
    try:
        json.dumps(page, allow_nan=False)
    except (TypeError, ValueError):
        raise HTTPException(503, f"the stored audit of index {served.name!r} holds values JSON cannot carry "
                                 f"(NaN or infinity); run `indexer audit` again") from None
    return AuditFindings(index=served.name, total=len(findings), offset=offset, findings=page,
                         reviewed=sum(1 for f in findings if f.get("decision")), counts=counts,
                         labels=(latest or {}).get("labels", []),
                         decisions_allowed=request.app.state.config.allow_decisions)


@router.post("/api/audit/decisions", response_model=dict[str, Any], responses={**BAD_REQUEST, **READ_ONLY})
def record_decision(body: AuditDecisionIn, request: Request,
                    served: ServedIndex = Depends(served_index)) -> dict[str, Any]:
    """Records a decision on a finding of the latest audit: accept, reject, relabel (with ``label``), drop;
    ``undo`` forgets it. Only when the service was started with --allow-decisions."""
    if not request.app.state.config.allow_decisions:
        raise HTTPException(403, "this service is read-only; start it with --allow-decisions to record decisions")
    if body.action == "undo":
        if not served.index.audit_undo(body.id):
            raise NotFound(f"no decision on {body.id!r}")
        return {"id": body.id, "action": None}
    return served.index.audit_decide(body.id, body.action, body.label).to_dict()


@router.get("/api/audit/decisions", response_model=list[dict[str, Any]])
def list_decisions(served: ServedIndex = Depends(served_index)) -> list[dict[str, Any]]:
    """Every decision, oldest first."""
    return [d.to_dict() for d in served.index.audit_decisions()]


@router.get("/api/audit/export", response_class=Response, responses=BAD_REQUEST)
def export(served: ServedIndex = Depends(served_index),
           drop_duplicates: bool = Query(False, description="Keep one item of each exact duplicate group.")) -> Response:
    """The corrected labels as CSV (``path,label[,split]``): the labels the latest audit read, with accepted
    and relabelled decisions applied and dropped items left out."""
    from ...audit.decisions import corrected, csv_text

    header, rows, summary = corrected(served.index.context, None, drop_duplicates)
    return Response(csv_text(header, rows), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="corrected.csv"',
        "X-Indexer-Export": json.dumps(summary.to_dict())})


@router.get("/api/audit/plots/{name}.svg", response_class=Response, responses=NOT_FOUND)
def plot(name: str, served: ServedIndex = Depends(served_index)) -> Response:
    """One plot of the latest audit as SVG: nearest (nearest-neighbour similarity, the near-duplicate
    threshold marked), confidence, margins, agreement (per class), confusion."""
    from ...audit.report import PLOT_NAMES, plot_svgs
    from ...media.plots import INSTALL_HINT, available

    if name not in PLOT_NAMES:
        raise NotFound(f"no plot {name!r}; plots: {', '.join(PLOT_NAMES)}")
    latest = served.index.context.catalog.audits.latest()
    if latest is None or not latest.get("plots"):
        raise NotFound(f"index {served.name!r} has no stored audit with plots; run `indexer audit` first")
    if not available():
        raise HTTPException(503, INSTALL_HINT)
    svg = plot_svgs(latest["plots"], (name,))[name]
    if svg is None:
        raise NotFound(f"the latest audit has no data for the {name} plot")
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-cache"})
