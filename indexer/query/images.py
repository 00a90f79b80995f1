"""The embedding of a query picture: the stored one when its content is in the catalog, else the model's,
read and decoded under the index's size, pixel and time limits."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from ..errors import DecodeError, QueryError

if TYPE_CHECKING:
    from ..context import IndexContext


def image_embedding(ctx: "IndexContext", path: Union[str, Path]) -> np.ndarray:
    """The embedding of the image file at ``path``."""
    from ..media.sources import read_bytes

    try:
        data = read_bytes(str(path), max_bytes=ctx.settings.max_file_size)
    except DecodeError as exc:
        raise QueryError(f"cannot read query image {path}: {exc.detail or exc.reason}") from None
    return embed_image_bytes(ctx, data, str(path))


def embed_image_bytes(ctx: "IndexContext", data: bytes, name: str = "the query image") -> np.ndarray:
    """The embedding of a picture given as bytes (an upload, a file's content)."""
    from ..media.decode import decode_image, limit_aspect, time_limit

    stored = ctx.catalog.embeddings.for_content(hashlib.sha256(data).hexdigest())
    if stored is not None:
        return stored
    embedder = ctx.model.embedder()
    try:
        with time_limit(ctx.settings.decode_seconds):
            decoded = decode_image(data, embedder.image_size, ctx.settings.max_pixels)
    except DecodeError as exc:
        raise QueryError(f"{name} is not a readable image: {exc}") from None
    image = limit_aspect(decoded.image) if embedder.preprocess_config.crops_centre else decoded.image
    return embedder.embed_images(embedder.preprocess(image)[None])[0]
