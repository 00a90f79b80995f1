"""What the routers share: the served index a request names, and timing of query stages."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Optional

from fastapi import Query, Request

from ...errors import QueryError
from ..metrics import Metrics
from ..schemas import Hit
from ..state import Registry, ServedIndex

BAD_REQUEST = {400: {"description": "A malformed query, or an unreadable image."}}
NOT_FOUND = {404: {"description": "No such index, item or run."}}


def registry(request: Request) -> Registry:
    return request.app.state.registry


def served_index(request: Request, index: Optional[str] = Query(
        None, max_length=200, description="Which index (by name); default: the first one.")) -> ServedIndex:
    return registry(request).get(index)


@contextmanager
def timed(request: Request, stage: str) -> Iterator[None]:
    metrics: Metrics = request.app.state.metrics
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics.observe("indexer_query_seconds", "Time spent in a stage of a query.", time.perf_counter() - started,
                        stage=stage)


def as_hits(hits: list) -> list[Hit]:
    return [Hit(id=h.item_id, path=h.path, score=h.score, duplicates=h.duplicates, caption=h.caption, taken=h.taken,
                camera=h.camera, width=h.width, height=h.height) for h in hits]


def decode_base64(text: str, what: str) -> bytes:
    import base64
    import binascii

    if text.startswith("data:") and "," in text:  # a data: URI, as a browser makes it
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise QueryError(f"{what} is not valid base64") from None
