"""Small previews of pictures, as JPEG bytes or data URIs (audit report, service)."""

from __future__ import annotations

import base64
import io
import warnings
from typing import Optional

from PIL import Image, ImageOps

from ..config import DEFAULT_MAX_PIXELS
from ..errors import DecodeError
from .decode import check_pixels

THUMBNAIL_PX = 96


def thumbnail_jpeg(data: bytes, size: int = THUMBNAIL_PX, quality: int = 80,
                   max_pixels: int = DEFAULT_MAX_PIXELS) -> Optional[bytes]:
    """A JPEG of the picture in ``data`` fitting in ``size`` x ``size``; None when it is not readable or
    has more than ``max_pixels`` pixels (checked from its header, as ingestion does, before decoding)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's bomb warning: our limit decides
            with Image.open(io.BytesIO(data)) as image:
                check_pixels(image.width, image.height, max_pixels)
                image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
                picture = ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, DecodeError):
        return None
    picture.thumbnail((size, size))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def thumbnail_data_uri(data: bytes, size: int = THUMBNAIL_PX) -> Optional[str]:
    """``thumbnail_jpeg`` as a ``data:`` URI for a self-contained HTML page."""
    jpeg = thumbnail_jpeg(data, size)
    return None if jpeg is None else "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
