"""Robust image decoding: bytes in, an RGB picture (or a ``DecodeError`` with a reason) out.

Handles what real archives contain: EXIF orientation, palette and alpha, CMYK, 16-bit and float
greyscale, animated images (first frame), truncated files, non-images with image names, and
decompression bombs (refused by a pixel limit before any pixel is decoded); HEIC/HEIF too when the
optional ``pillow-heif`` package is installed. Large JPEGs are decoded
at a reduced scale in the DCT domain (``Image.draft``) when the model needs far fewer pixels.
"""

from __future__ import annotations

import io
import os
import re
import signal
import struct
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError, features

from ..config import DEFAULT_DECODE_SECONDS, DEFAULT_MAX_PIXELS  # noqa: F401 - the limits, also read from here
from ..errors import DecodeError
from .metadata import PictureFacts, picture_facts
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is a failure, never a grey-filled picture
# Pillow's own bomb guard (Image.MAX_IMAGE_PIXELS) is left as it is, for this process and any other code
# in it: our limit is checked from the header as well (``check_pixels``), and a limit above Pillow's
# refuses at Pillow's.


_plugins_registered = False
_heif_registered = False


def _register_optional_plugins() -> None:
    """HEIC/HEIF (and AVIF on a Pillow built without it) through ``pillow-heif`` when it is installed.
    Done on first decode, not on import, so commands that never decode do not pay for it."""
    global _plugins_registered, _heif_registered
    if _plugins_registered:
        return
    _plugins_registered = True
    try:
        import pillow_heif
    except ImportError:
        return
    pillow_heif.register_heif_opener()
    _heif_registered = True


# Signatures of formats whose header alone Pillow cannot identify (a file cut off after its header),
# and how a complete file of that format ends.
_SIGNATURES = ((b"\xff\xd8\xff", "JPEG", b"\xff\xd9"), (b"\x89PNG\r\n\x1a\n", "PNG", b"IEND\xaeB`\x82"),
               (b"GIF8", "GIF", b";"))


_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


def _unidentified(data: bytes) -> DecodeError:
    """The error for bytes no Pillow plugin accepts: a known image header with its end missing is a
    truncated image, and a HEIC or AVIF file with no plugin to read it is unsupported, not a non-image."""
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS | _AVIF_BRANDS:
        if data[8:12] in _HEIF_BRANDS:
            name, readable, fix = "HEIC/HEIF", _heif_registered, "install the pillow-heif package"
        else:
            name, readable, fix = "AVIF", features.check("avif"), "use a Pillow built with AVIF (its 11.3+ wheels)"
        if not readable:
            return DecodeError("unsupported_format", f"{name} is not readable here: {fix}")
        return DecodeError("decode_error", f"an unreadable {name} file")
    for magic, name, end in _SIGNATURES:
        if data.startswith(magic):
            if not data.rstrip(b"\0").endswith(end):
                return DecodeError("truncated", f"a {name} header with no complete image after it")
            return DecodeError("decode_error", f"a {name} file whose header cannot be read")
    return DecodeError("not_an_image", "no image format recognised")


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB
    width: int  # upright (EXIF orientation applied), before any reduction
    height: int
    format: str
    facts: Optional[PictureFacts] = None  # EXIF date, camera, GPS (read with ``facts=True``)


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


def _pixel_count(pixels: int) -> str:
    """``900 MP``, ``2.5 MP``, or ``20,000 pixels`` (a small limit must not read as "0 MP")."""
    if pixels >= 10_000_000:
        return f"{pixels / 1e6:.0f} MP"
    return f"{pixels / 1e6:.1f} MP" if pixels >= 1_000_000 else f"{pixels:,} pixels"


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """Refuses a picture by its header's size, before any pixel is decoded (ingestion, query pictures
    and thumbnails alike)."""
    if width <= 0 or height <= 0:
        raise DecodeError("bad_dimensions", f"{width}x{height}")
    if width * height > max_pixels:
        raise DecodeError("too_many_pixels", f"{width}x{height} = {_pixel_count(width * height)} exceeds the "
                                             f"{_pixel_count(max_pixels)} limit")


def decode_image(data: bytes, target_size: int = 224, max_pixels: int = DEFAULT_MAX_PIXELS,
                 facts: bool = False) -> DecodedImage:
    """Decodes ``data`` into an RGB image at least ``target_size`` pixels on its short side (when the
    original is), with EXIF orientation applied. With ``facts``, the EXIF facts are read from the same
    opened image (no second open or decode). Raises ``DecodeError`` with a short reason."""
    if not data:
        raise DecodeError("empty_file", "zero bytes")
    _register_optional_plugins()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd EXIF and palettes; the result is what counts
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            fmt = image.format or "unknown"
            check_pixels(width, height, max_pixels)
            if fmt == "JPEG" and min(width, height) > 2 * target_size:
                # Decode at 1/2, 1/4 or 1/8 scale in the DCT domain: the result stays >= target_size.
                image.draft("RGB", (target_size, target_size))
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)
            image.load()
            found = picture_facts(image) if facts else None
            stored = image.size
            image = ImageOps.exif_transpose(image) or image
            if image.size != stored and image.size == stored[::-1]:
                width, height = height, width  # stored sideways (EXIF 5-8): report the size as shown
            rgb = _to_rgb(image)
    except DecodeError:
        raise
    except UnidentifiedImageError:
        raise _unidentified(data) from None
    except Image.DecompressionBombError as exc:  # past Pillow's own guard, before our check could run
        size = re.search(r"\((\d+) pixels\)", str(exc))
        if size is None or not Image.MAX_IMAGE_PIXELS:
            raise DecodeError("too_many_pixels", str(exc)[:200]) from None
        limit = min(max_pixels, 2 * Image.MAX_IMAGE_PIXELS)  # Pillow refuses at twice its limit
        raise DecodeError("too_many_pixels", f"{_pixel_count(int(size.group(1)))} exceeds the "
                                             f"{_pixel_count(limit)} limit") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, struct.error) as exc:
        message = str(exc) or type(exc).__name__
        reason = "truncated" if "truncated" in message or isinstance(exc, EOFError) else "decode_error"
        raise DecodeError(reason, message[:200]) from None
    except MemoryError:
        raise DecodeError("out_of_memory", "the decoder ran out of memory") from None
    return DecodedImage(rgb, width, height, fmt, found)




class _Alarm:
    """The decode time limit's clock: one daemon thread per process that sends SIGALRM to the main thread
    when the armed deadline passes. The signal is aimed at the main thread (``pthread_kill``), where a
    process-wide interval timer's may land on any thread (native libraries' threads included), and the
    caller's own ``ITIMER_REAL``, if any, is left running."""

    def __init__(self) -> None:
        self._pid = 0
        self._cond = threading.Condition()
        self._deadline: Optional[float] = None

    def arm(self, seconds: float) -> None:
        if self._pid != os.getpid():  # first use, or a forked child: the parent's thread is not here
            self._pid, self._cond, self._deadline = os.getpid(), threading.Condition(), None
            threading.Thread(target=self._run, args=(self._cond, threading.main_thread().ident),
                             name="indexer-decode-alarm", daemon=True).start()
        with self._cond:
            self._deadline = time.monotonic() + seconds
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:  # once this returns, no signal is sent for the block that armed it
            self._deadline = None

    def _run(self, cond: threading.Condition, main: int) -> None:
        with cond:
            while True:
                if self._deadline is None:
                    cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    cond.wait(left)
                    continue
                self._deadline = None
                signal.pthread_kill(main, signal.SIGALRM)


_alarm = _Alarm()


@contextmanager
def time_limit(seconds: Optional[float]) -> Iterator[None]:
    """Raises ``DecodeError('timeout')`` if the block runs longer than ``seconds`` (a hostile file
    that sends a decoder into a very long loop). Uses SIGALRM, aimed at the main thread: only in a
    process's main thread."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: object) -> None:
        raise DecodeError("timeout", f"decoding took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    try:
        # Armed inside the try: however early the alarm fires, the previous handler is put back.
        _alarm.arm(seconds)
        yield
    finally:
        try:
            _alarm.disarm()
        finally:
            # signal.signal runs a signal still pending (``expired``) before it puts the previous handler back
            signal.signal(signal.SIGALRM, previous)


def limit_aspect(image: Image.Image, max_aspect: float = 2.0) -> Image.Image:
    """Crops a very long or tall picture to its centre, at most ``max_aspect`` : 1.

    A "resize the short side, then centre-crop a square" preprocessing keeps only the centre anyway;
    cropping first gives the same pixels and stops a 20000x10 strip from being resized to a
    448000x224 canvas on the way."""
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if long <= short * max_aspect:
        return image
    keep = int(short * max_aspect)
    if width > height:
        left = (width - keep) // 2
        return image.crop((left, 0, left + keep, height))
    top = (height - keep) // 2
    return image.crop((0, top, width, top + keep))
