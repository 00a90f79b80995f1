"""Status, health, metrics, the served indexes, and ingest (only when allowed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse

from ..schemas import Health, IndexInfo, IngestState
from ..state import ServedIndex
from .common import BAD_REQUEST, NOT_FOUND, registry, served_index

router = APIRouter(tags=["info"], responses=NOT_FOUND)


@router.get("/api/healthz", response_model=Health)
@router.get("/healthz", response_model=Health, include_in_schema=False)
async def healthz(request: Request) -> Health:
    """Answers while the service is up (no token needed), on the event loop itself: never queued
    behind requests waiting for worker threads."""
    return Health(status="ok", indexes=registry(request).names)


@router.get("/api/status", response_model=dict[str, Any], responses=NOT_FOUND)
def status(served: ServedIndex = Depends(served_index)) -> dict[str, Any]:
    """What ``indexer status --json`` prints: counts, failures by reason, model, vectors, sizes."""
    return served.index.status()


@router.get("/api/indexes", response_model=list[IndexInfo])
def indexes(request: Request) -> list[IndexInfo]:
    """The served indexes, with their item counts and models."""
    out = []
    for served in registry(request).indexes.values():
        model = served.index.recorded_model
        out.append(IndexInfo(name=served.name, path=str(served.path), embedded=served.index.count_embedded(),
                             model=model.get("name") if model else None))
    return out


@router.get("/api/metrics", response_class=PlainTextResponse)
@router.get("/metrics", response_class=PlainTextResponse, include_in_schema=False)
def metrics(request: Request) -> PlainTextResponse:
    """Prometheus metrics (text exposition format)."""
    return PlainTextResponse(request.app.state.metrics.render(), media_type="text/plain; version=0.0.4")


def _ingest_state(served: ServedIndex) -> IngestState:
    job = served.ingest_job
    if job is None:
        return IngestState(state="idle")
    return IngestState(state=job.state, sources=job.sources, embedded=job.embedded, summary=job.summary,
                       error=job.error)


@router.post("/api/ingest", response_model=IngestState, status_code=202,
             responses={**BAD_REQUEST, 403: {"description": "The service is read-only (no --allow-ingest)."}})
def ingest(request: Request, served: ServedIndex = Depends(served_index)) -> IngestState:
    """Ingests the index's recorded sources again (new and changed files), in the background. Only when
    the service was started with --allow-ingest."""
    if not request.app.state.config.allow_ingest:
        raise HTTPException(403, "this service is read-only; start it with --allow-ingest to ingest through the API")
    served.start_ingest(registry(request).pool)
    return _ingest_state(served)


@router.get("/api/ingest", response_model=IngestState, responses=NOT_FOUND)
def ingest_state(served: ServedIndex = Depends(served_index)) -> IngestState:
    """The state of the last ingest started through the API."""
    return _ingest_state(served)
