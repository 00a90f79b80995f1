"""clip-retrieval's back-end API, field for field, so its ``ClipClient`` and front-end can query an index.

Ids are catalog item ids (``/metadata`` takes them back). Results are distinct contents by descending
similarity (``deduplicate`` is always in effect: one hit per content). ``image_url`` is refused, and a
``text`` is never read as a file name: the service fetches and opens nothing a client names.
"""

from __future__ import annotations

import base64
import json
from typing import TypeVar

import numpy as np
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from ...errors import QueryError
from ..schemas import KnnRequest, KnnResult, MetadataEntry, MetadataRequest
from .common import BAD_REQUEST, NOT_FOUND, decode_base64, registry, timed

router = APIRouter(tags=["clip-retrieval"])
THUMBNAIL_PX = 256
M = TypeVar("M", bound=BaseModel)


async def _body(request: Request, model: type[M]) -> M:
    """The JSON body whatever its content type says: ClipClient posts a JSON string with none (its
    Flask back-end reads it with ``get_json(force=True)``)."""
    try:
        return model.model_validate(json.loads(await request.body()))
    except ValueError as exc:  # not JSON (ValidationError is a ValueError too: its errors are kept)
        errors = exc.errors() if isinstance(exc, ValidationError) else [
            {"type": "json_invalid", "loc": ("body",), "msg": f"the body is not JSON: {exc}", "input": None}]
        raise RequestValidationError(errors) from None


INVALID = {422: {"description": "The body is not JSON, or does not fit the schema."},
           413: {"description": "The body is over the size limit."}}


def _documented(model: type[BaseModel]) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


@router.get("/indices-list", response_model=list[str])
def indices_list(request: Request) -> list[str]:
    """The names of the served indexes."""
    return registry(request).names


def _thumbnail_b64(served, item_id: int) -> str | None:
    try:
        jpeg = served.thumbnail(item_id, THUMBNAIL_PX)
    except QueryError:  # the file is gone or unreadable: the result stays, without a picture
        return None
    return base64.b64encode(jpeg).decode("ascii") if jpeg else None


@router.post("/knn-service", response_model=list[KnnResult], response_model_exclude_unset=True,
             responses={**BAD_REQUEST, **NOT_FOUND, **INVALID}, openapi_extra=_documented(KnnRequest))
async def knn_service(request: Request) -> list[KnnResult]:
    """Nearest pictures to a text, a base64 picture or an embedding; the first ``num_images`` with their
    path and a base64 JPEG thumbnail, up to ``num_result_ids`` in all."""
    return await run_in_threadpool(_knn, await _body(request, KnnRequest), request)


def _knn(body: KnnRequest, request: Request) -> list[KnnResult]:
    served = registry(request).get(body.indice_name)
    if body.image_url:
        raise QueryError("image_url is not supported: this service never fetches anything; send the picture "
                         "itself as base64 in 'image'")
    if body.modality == "text":
        raise QueryError("modality 'text' searches caption embeddings, which this index does not have; "
                         "use modality 'image'")
    given = [x is not None for x in (body.text, body.image, body.embedding_input)]
    if sum(given) != 1:
        raise QueryError("give exactly one of text, image (base64) or embedding_input")
    with timed(request, "embed"):
        if body.text is not None:
            vector = served.query_vector(body.text)
        elif body.image is not None:
            vector = served.image_vector(decode_base64(body.image, "image"), "the image")
        else:
            # float64: values near float32's limit would make the norm overflow and the vector all zeros
            vector = np.asarray(body.embedding_input, dtype=np.float64)
            if vector.shape != (served.index.dim,) or not np.all(np.isfinite(vector)):
                raise QueryError(f"embedding_input must be {served.index.dim} finite numbers")
            scale = float(np.abs(vector).max())
            if scale == 0 or scale < 1e-300:
                raise QueryError("embedding_input is a zero vector")
            vector = vector / scale
            vector = (vector / np.linalg.norm(vector)).astype(np.float32)
    total = max(body.num_result_ids or body.num_images, body.num_images, 1)
    with timed(request, "search"):
        hits = served.search(vector, total)
    results = []
    for rank, hit in enumerate(hits):
        if rank < body.num_images:
            results.append(KnnResult(id=hit.item_id, similarity=hit.score, image_path=hit.path, caption=hit.caption,
                                     image=_thumbnail_b64(served, hit.item_id)))
        else:
            results.append(KnnResult(id=hit.item_id, similarity=hit.score))
    return results


@router.post("/metadata", response_model=list[MetadataEntry], responses={**NOT_FOUND, **INVALID},
             openapi_extra=_documented(MetadataRequest))
async def metadata(request: Request) -> list[MetadataEntry]:
    """Path, caption (None when it has none) and a base64 JPEG thumbnail of each id; an unknown id gets empty
    metadata."""
    return await run_in_threadpool(_metadata, await _body(request, MetadataRequest), request)


def _metadata(body: MetadataRequest, request: Request) -> list[MetadataEntry]:
    served = registry(request).get(body.indice_name)
    paths = served.index.item_paths(body.ids)
    facts = served.index.item_facts(list(paths))
    return [MetadataEntry(id=i, metadata={"image_path": paths[i], "caption": facts.get(i, {}).get("caption"),
                                          "image": _thumbnail_b64(served, i)} if i in paths else {})
            for i in body.ids]
