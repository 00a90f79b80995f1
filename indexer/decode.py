"""Robust image decoding: bytes in, an RGB picture (or a ``DecodeError`` with a reason) out.

Handles what real archives contain: EXIF orientation, palette and alpha, CMYK, 16-bit and float
greyscale, animated images (first frame), truncated files, non-images with image names, and
decompression bombs (refused by a pixel limit before any pixel is decoded). Large JPEGs are decoded
at a reduced scale in the DCT domain (``Image.draft``) when the model needs far fewer pixels.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import DecodeError

DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: ten times a phone photo, far below a decompression bomb
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is a failure, never a grey-filled picture
Image.MAX_IMAGE_PIXELS = None  # the limit is ours (checked from the header); Pillow's would only warn


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB
    width: int  # as stored, before any reduction
    height: int
    format: str


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # Scale the real range to 8 bits; Pillow's own conversion clips everything above 255 to white.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels become white, as a viewer shows them, not whatever colour they hide.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(data: bytes, target_size: int = 224, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decodes ``data`` into an RGB image at least ``target_size`` pixels on its short side (when the
    original is), with EXIF orientation applied. Raises ``DecodeError`` with a short reason."""
    if not data:
        raise DecodeError("empty_file", "zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd EXIF and palettes; the result is what counts
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            fmt = image.format or "unknown"
            if width <= 0 or height <= 0:
                raise DecodeError("bad_dimensions", f"{width}x{height}")
            if width * height > max_pixels:
                raise DecodeError(
                    "too_many_pixels", f"{width}x{height} = {width * height / 1e6:.0f} MP exceeds the {max_pixels / 1e6:.0f} MP limit"
                )
            if fmt == "JPEG" and min(width, height) > 2 * target_size:
                # Decode at 1/2, 1/4 or 1/8 scale in the DCT domain: the result stays >= target_size.
                image.draft("RGB", (target_size, target_size))
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            image.load()
            image = ImageOps.exif_transpose(image) or image
            rgb = _to_rgb(image)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise DecodeError("not_an_image", "no image format recognised") from None
    except Image.DecompressionBombError as exc:
        raise DecodeError("too_many_pixels", str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as exc:
        message = str(exc) or type(exc).__name__
        reason = "truncated" if "truncated" in message or isinstance(exc, EOFError) else "decode_error"
        raise DecodeError(reason, message[:200]) from None
    except MemoryError:
        raise DecodeError("out_of_memory", "the decoder ran out of memory") from None
    return DecodedImage(rgb, width, height, fmt)

