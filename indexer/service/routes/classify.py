"""``/api/classify``: a whole index over a label set, in the background, with progress and pages of
items per label. Runs read stored embeddings only and are kept in memory, not written to the catalog."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request

from ...errors import QueryError
from ..schemas import MAX_RESULTS, ClassifyRequest, ClassifyRun, LabelItem, LabelPage
from ..state import ClassifyJob, ServedIndex
from .common import BAD_REQUEST, NOT_FOUND, registry, served_index

router = APIRouter(prefix="/api/classify", tags=["classify"], responses=NOT_FOUND)
RunId = Path(..., max_length=64, pattern=r"^[0-9a-f]+$")


def _run(served: ServedIndex, job: ClassifyJob) -> ClassifyRun:
    return ClassifyRun(id=job.id, index=served.name, labels=job.labels, templates=job.templates, state=job.state,
                       done=job.done, total=job.total, counts=dict(job.counts), seconds=job.seconds, error=job.error,
                       transductive=job.guard)


@router.post("", response_model=ClassifyRun, status_code=202, responses={**BAD_REQUEST, **NOT_FOUND})
def start(body: ClassifyRequest, request: Request) -> ClassifyRun:
    """Starts classifying every embedded item over ``labels``; poll the run for progress and counts."""
    labels = list(dict.fromkeys(label.strip() for label in body.labels if label.strip()))
    if not labels:
        raise QueryError("give at least one non-empty label")
    if any(len(label) > 300 for label in labels):
        raise QueryError("a label is over 300 characters")
    served = registry(request).get(body.index)
    return _run(served, served.start_classify(labels, body.templates, registry(request).pool,
                                                         body.transductive))


@router.get("/{run_id}", response_model=ClassifyRun, responses=NOT_FOUND)
def run(run_id: str = RunId, served: ServedIndex = Depends(served_index)) -> ClassifyRun:
    """A run's state, progress (done of total) and items per label so far."""
    return _run(served, served.job(run_id))


@router.get("/{run_id}/items", response_model=LabelPage, responses={**BAD_REQUEST, **NOT_FOUND})
def label_items(run_id: str = RunId, label: str = Query(..., max_length=300),
                offset: int = Query(0, ge=0, le=10_000_000), limit: int = Query(50, ge=1, le=MAX_RESULTS),
                served: ServedIndex = Depends(served_index)) -> LabelPage:
    """A page of the items whose best label is ``label``, by descending score."""
    total, page = served.job(run_id).page(label, offset, limit)
    paths = served.index.item_paths([item_id for item_id, _ in page])
    return LabelPage(run=run_id, label=label, total=total, offset=offset,
                     items=[LabelItem(id=i, path=paths.get(i, ""), score=round(s, 6)) for i, s in page])
