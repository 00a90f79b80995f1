"""``/api/search``: text, uploaded picture, stored items ("more like this"), combined with weights."""

from __future__ import annotations

import time
from typing import Optional

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile

from ...errors import QueryError
from ..schemas import MAX_RESULTS, ItemId, SearchResponse
from ..state import ServedIndex
from .common import BAD_REQUEST, NOT_FOUND, as_hits, served_index, timed

router = APIRouter(prefix="/api", tags=["search"], responses=NOT_FOUND)

WHERE_MAX = 16_384  # above the grammar's own limit, so that its message (with the column) is the one given
WHERE_HELP = ("A filter: 'taken >= 2024-06-01 and camera ~ canon' (fields taken, camera, caption, path, label, width, "
              "height, size, lat, lon; operators = != < <= > >= ~; and, or, not, brackets).")
HYBRID_HELP = "Also rank the words of q over captions and file names, fused with the cosine ranking."
Q_HELP = ("Terms joined by ' + ' and ' - ', each optionally weighted as 'W:term': 'dog + beach - people', "
          "'2:red fox + snow'. Every term is text.")


def _run(request: Request, served: ServedIndex, q: Optional[str], like: list[int], like_weight: float,
         image: Optional[bytes], image_weight: float, k: int, offset: int, path_filter: Optional[str],
         min_score: Optional[float], where: Optional[str] = None, hybrid: bool = False) -> SearchResponse:
    started = time.perf_counter()
    with timed(request, "embed"):
        vectors = [(like_weight, served.item_vector(item_id)) for item_id in like]
        if image is not None:
            vectors.append((image_weight, served.image_vector(image)))
        if not (q and q.strip()) and not vectors:
            raise QueryError("give a query text (q), a picture, or an item to search like")
        vector = served.query_vector(q, vectors)
    with timed(request, "search"):
        keywords = None
        if hybrid:
            from ...query.search import parse_query

            terms = parse_query(q, read_paths=False) if q and q.strip() else []
            keywords = " ".join(t.text for t in terms if t.text and t.weight > 0)
            if not keywords:
                raise QueryError("a hybrid search needs a query text (q) to rank as keywords", param="hybrid")
        hits = served.search(vector, k, offset, path_filter or None, min_score, where if where and where.strip() else None,
                             keywords)
    return SearchResponse(index=served.name, query=q, k=k, offset=offset, hits=as_hits(hits),
                          took_ms=round((time.perf_counter() - started) * 1000, 2))


@router.get("/search", response_model=SearchResponse, responses={**BAD_REQUEST, **NOT_FOUND})
def search(request: Request, served: ServedIndex = Depends(served_index),
           q: Optional[str] = Query(None, max_length=2000, description=Q_HELP),
           like: list[ItemId] = Query([], max_length=20,
                                   description="Item ids to search like ('more like this'); repeatable."),
           like_weight: float = Query(1.0, ge=-100, le=100),
           k: int = Query(20, ge=1, le=MAX_RESULTS), offset: int = Query(0, ge=0, le=100_000),
           path_filter: Optional[str] = Query(None, max_length=1000,
                                              description="Only paths containing this text, or matching this glob."),
           min_score: Optional[float] = Query(None, ge=-1, le=1),
           where: Optional[str] = Query(None, max_length=WHERE_MAX, description=WHERE_HELP),
           hybrid: bool = Query(False, description=HYBRID_HELP)) -> SearchResponse:
    """Top-k items for a text and/or stored items, best first."""
    return _run(request, served, q, like, like_weight, None, 1.0, k, offset, path_filter, min_score, where, hybrid)


@router.post("/search", response_model=SearchResponse,
             responses={**BAD_REQUEST, **NOT_FOUND, 413: {"description": "The upload is over the size limit."}})
def search_upload(request: Request, served: ServedIndex = Depends(served_index),
                  image: UploadFile = File(..., description="A picture to search by."),
                  image_weight: float = Form(1.0, ge=-100, le=100),
                  q: Optional[str] = Form(None, max_length=2000, description=Q_HELP),
                  k: int = Form(20, ge=1, le=MAX_RESULTS), offset: int = Form(0, ge=0, le=100_000),
                  path_filter: Optional[str] = Form(None, max_length=1000),
                  min_score: Optional[float] = Form(None, ge=-1, le=1),
                  where: Optional[str] = Form(None, max_length=WHERE_MAX, description=WHERE_HELP),
                  hybrid: bool = Form(False, description=HYBRID_HELP)) -> SearchResponse:
    """Top-k items for an uploaded picture, optionally combined with text terms."""
    data = image.file.read()
    if not data:
        raise QueryError("the uploaded picture is empty")
    return _run(request, served, q, [], 1.0, data, image_weight, k, offset, path_filter, min_score, where, hybrid)
