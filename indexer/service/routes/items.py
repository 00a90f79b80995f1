"""``/api/items/{id}``: an item's record, its duplicates and neighbours, its thumbnail and its picture.

Pictures are served by catalog id only, read from where the catalog says the item is: a client never
names a path.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from ...errors import QueryError
from ..schemas import MAX_ID, Item, ItemRef
from ..state import NotFound, ServedIndex
from .common import NOT_FOUND, as_hits, served_index

router = APIRouter(prefix="/api/items", tags=["items"], responses=NOT_FOUND)
ItemIdPath = Path(..., ge=0, le=MAX_ID, description="The item's catalog id.")
IMAGE = {200: {"content": {"image/jpeg": {}}, "description": "The picture."}, **NOT_FOUND}


def _record(served: ServedIndex, item_id: int) -> dict:
    record = served.index.item(item_id)
    if record is None:
        raise NotFound(f"no item {item_id} in index {served.name!r}")
    return record


@router.get("/{item_id}", response_model=Item, responses=NOT_FOUND)
def item(item_id: int = ItemIdPath, neighbours: int = Query(12, ge=0, le=100),
         served: ServedIndex = Depends(served_index)) -> Item:
    """What the catalog holds about an item, the other items with the same content, and its nearest
    neighbours (other contents, best first)."""
    record = _record(served, item_id)
    duplicates = [ItemRef(id=i, path=p) for i, p in served.index.same_content(item_id)]
    near = []
    vector = served.index.item_embedding(item_id)
    if vector is not None and neighbours:
        hits = served.search(vector, neighbours + 1)
        near = [hit for hit in as_hits(hits) if hit.id != item_id and record["path"] not in hit.duplicates]
    return Item(**record, duplicates=duplicates, neighbours=near[:neighbours])


@router.get("/{item_id}/thumbnail", response_class=Response, responses=IMAGE)
def thumbnail(item_id: int = ItemIdPath, size: int = Query(192, ge=16, le=512),
              served: ServedIndex = Depends(served_index)) -> Response:
    """A JPEG thumbnail fitting in size x size."""
    _record(served, item_id)
    try:
        jpeg = served.thumbnail(item_id, size)
    except QueryError as exc:  # the file is gone or unreadable now
        raise NotFound(str(exc)) from None
    if jpeg is None:
        raise NotFound(f"item {item_id} is not a readable picture")
    return Response(jpeg, media_type="image/jpeg", headers={"cache-control": "max-age=3600"})


# What the catalog's recorded format is served as; any other format is a download, never shown inline.
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "WEBP": "image/webp",
               "BMP": "image/bmp", "ICO": "image/x-icon", "AVIF": "image/avif", "TIFF": "image/tiff"}
# Should a browser ever render the answer as a document, it runs nothing and loads nothing.
IMAGE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"


@router.get("/{item_id}/image", response_class=Response, responses=IMAGE)
def image(item_id: int = ItemIdPath, served: ServedIndex = Depends(served_index)) -> Response:
    """The item's own bytes, as ingested: embedded pictures only, while their content is the one the
    catalog recorded, typed by the format the decoder found (never by the file's name)."""
    record = _record(served, item_id)
    try:
        data = served.index.item_bytes(item_id)
    except QueryError as exc:
        raise NotFound(str(exc)) from None
    media_type = IMAGE_TYPES.get(record.get("format") or "")
    name = record["path"].rsplit("::", 1)[-1].rsplit("/", 1)[-1]
    disposition = "inline" if media_type else "attachment"
    headers = {"x-content-type-options": "nosniff", "content-security-policy": IMAGE_CSP,
               "content-disposition": f"{disposition}; filename*=UTF-8''{quote(name, safe='')}"}
    return Response(data, media_type=media_type or "application/octet-stream", headers=headers)
