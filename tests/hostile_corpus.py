"""A corpus of hostile inputs for ingestion, written at test time (nothing binary is committed).

``write_hostile_corpus(root)`` fills ``root`` with one or more files per category of the issue's
"hostile input" list (empty, truncated and header-only files, non-images with image names,
decompression bombs, EXIF orientation, unusual modes, animation, tiny and extreme sizes, odd names,
links, unreadable files, HEIC/AVIF) and returns what ingesting each of them should give. Used by
``tests/test_hostile.py`` and ``scripts/hostile_report.py``.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from PIL import Image, ImageDraw, features

Expected = Literal["embedded", "failed", "skipped"]

BOMB_SIDE = 30_000  # a 900-megapixel canvas declared by a file of a few hundred bytes


@dataclass(frozen=True)
class Case:
    """One hostile input and what ingesting it must give.

    ``path`` is relative to the corpus root, as ``os.fsdecode`` spells it (a non-UTF-8 byte becomes a
    surrogate escape); ``None`` when nothing could be written (a format this machine cannot encode).
    ``expected``: ``embedded``; ``failed`` with ``reason``; or ``skipped`` (not an item at all: no
    catalog row at ``path`` or under it). ``same_picture_as`` names a plain file whose decoded picture
    must be the same (its embedding nearly equal); ``differs_from`` one whose picture must not be."""

    category: str
    path: Optional[str]
    expected: Expected
    reason: Optional[str] = None
    note: str = ""
    same_picture_as: Optional[str] = None
    differs_from: Optional[str] = None


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_by_hand(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG from raw scanlines (each already led by its filter byte): lets a header say anything."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows, 9))
            + _png_chunk(b"IEND", b""))


def _scene(width: int = 96, height: int = 64) -> Image.Image:
    """An asymmetric picture (so that a rotation or a flip changes it): a red bar on the left, a
    yellow disc at the top right, a blue square at the bottom, on grey."""
    image = Image.new("RGB", (width, height), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width // 6, height - 1), fill=(220, 30, 30))
    draw.ellipse((width * 3 // 5, 2, width - 3, height // 2), fill=(240, 220, 30))
    draw.rectangle((width // 3, height * 2 // 3, width // 2, height - 3), fill=(30, 60, 220))
    return image


def _write(root: Path, relative: str, data: bytes) -> str:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return relative


def _jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with the size in its frame header (SOF0) replaced: a header that lies."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[:sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9:]


def _gif_with_screen(gif: bytes, width: int, height: int) -> bytes:
    """``gif`` with its logical screen (bytes 6-9 of the header) declared as ``width`` x ``height``."""
    return gif[:6] + struct.pack("<HH", width, height) + gif[10:]


def _can_open(path: Path) -> bool:
    """Whether this process can read ``path`` (root can, whatever its permission bits say)."""
    try:
        with open(path, "rb"):
            return True
    except PermissionError:
        return False


def _heif_support() -> tuple[bool, str]:
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        return False, "pillow-heif is not installed: no HEIC encoder or decoder on this machine"
    return True, "pillow-heif registers a HEIF opener with Pillow"


def write_hostile_corpus(root: Path) -> list[Case]:
    """Writes the corpus under ``root`` (created if needed) and returns the expected outcomes."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2024)
    scene = _scene()
    jpeg, png = _encode(scene, "JPEG", quality=90), _encode(scene, "PNG")
    cases: list[Case] = []

    def add(category: str, relative: Optional[str], expected: Expected, reason: Optional[str] = None,
            note: str = "", same_picture_as: Optional[str] = None, differs_from: Optional[str] = None) -> None:
        cases.append(Case(category, relative, expected, reason, note, same_picture_as, differs_from))

    # Controls: a plain JPEG and PNG, which everything else is measured against.
    add("control", _write(root, "control/plain.jpg", jpeg), "embedded")
    add("control", _write(root, "control/plain.png", png), "embedded")

    add("zero-byte", _write(root, "bad/empty.jpg", b""), "failed", "empty_file")

    add("truncated", _write(root, "bad/truncated.jpg", jpeg[: len(jpeg) // 2]), "failed", "truncated",
        "the first half of a JPEG")
    add("truncated", _write(root, "bad/truncated.png", png[: len(png) // 2]), "failed", "truncated",
        "the first half of a PNG")

    jfif_app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    add("header-only", _write(root, "bad/header_only.jpg", b"\xff\xd8" + jfif_app0), "failed", "truncated",
        "SOI + APP0 markers, no frame")
    ihdr = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
    add("header-only", _write(root, "bad/header_only.png", b"\x89PNG\r\n\x1a\n" + ihdr), "failed", "truncated",
        "signature + IHDR, no pixel data")

    html = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>gone</body></html>\n"
    add("HTML/text named as an image", _write(root, "bad/page.jpg", html), "failed", "not_an_image",
        "an HTML error page saved under an image name")
    add("HTML/text named as an image", _write(root, "bad/notes.png", "just some text\n".encode()), "failed",
        "not_an_image")

    add("random bytes", _write(root, "bad/random.png", rng.bytes(4096)), "failed", "not_an_image")
    add("random bytes", _write(root, "bad/random.jpg", rng.bytes(65536)), "failed", "not_an_image")

    # Decompression bombs: tiny files whose headers declare canvases far beyond the pixel limit.
    # The PNG's pixel stream holds only four rows: decoding it would first allocate 2.7 GB and then
    # fail as truncated, so the reason "too_many_pixels" shows the header was refused before decoding.
    rows = bytes(4 * (1 + BOMB_SIDE * 3))
    add("decompression bomb", _write(root, "bomb/bomb_900mp.png", _png_by_hand(BOMB_SIDE, BOMB_SIDE, 8, 2, rows)),
        "failed", "too_many_pixels", f"{BOMB_SIDE}x{BOMB_SIDE} RGB PNG")
    add("decompression bomb", _write(root, "bomb/bomb_3600mp.jpg", _jpeg_with_size(jpeg, 60_000, 60_000)),
        "failed", "too_many_pixels", "a JPEG whose frame header says 60000x60000")
    gif = _encode(scene.convert("P", palette=Image.Palette.ADAPTIVE), "GIF")
    add("decompression bomb", _write(root, "bomb/bomb_4300mp.gif", _gif_with_screen(gif, 65_535, 65_535)),
        "failed", "too_many_pixels", "a GIF whose logical screen is 65535x65535")

    # EXIF orientation: stored sideways, shown upright. The PNGs decode to exactly the reference.
    for orientation, transpose in ((6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)):
        exif = Image.Exif()
        exif[0x0112] = orientation
        stored = scene.transpose(transpose)  # what a camera held sideways writes
        add("EXIF orientation", _write(root, f"exif/orientation_{orientation}.jpg",
                                       _encode(stored, "JPEG", quality=90, exif=exif)), "embedded")
        add("EXIF orientation", _write(root, f"exif/orientation_{orientation}.png", _encode(stored, "PNG", exif=exif)),
            "embedded", note="decodes to control/plain.png", same_picture_as="control/plain.png")
        add("EXIF orientation", _write(root, f"exif/sideways_{orientation}.png", _encode(stored, "PNG")),
            "embedded", note="the stored pixels without the EXIF tag", differs_from="control/plain.png")

    # CMYK: Pillow writes an Adobe-marked CMYK JPEG; it must come back in the right colours.
    add("CMYK", _write(root, "modes/cmyk.jpg", _encode(scene.convert("CMYK"), "JPEG", quality=95)), "embedded",
        same_picture_as="control/plain.jpg")

    # 16-bit: a 12-bit sensor's range (1000..4000) in a 16-bit greyscale PNG (mode I;16), which a plain
    # conversion to 8 bits turns all white; and a 16-bit RGB PNG written by hand.
    ramp = np.linspace(1000, 4000, 64 * 96).reshape(64, 96).astype(np.uint16)
    add("16-bit", _write(root, "modes/grey16.png", _encode(Image.fromarray(ramp), "PNG")), "embedded",
        note="I;16 values 1000..4000", same_picture_as="modes/grey16_as_8bit.png")
    scaled = ((ramp.astype(np.float64) - 1000) * (255 / 3000)).astype(np.uint8)
    add("16-bit", _write(root, "modes/grey16_as_8bit.png", _encode(Image.fromarray(scaled).convert("RGB"), "PNG")),
        "embedded", note="reference for grey16.png")
    rgb16 = np.asarray(scene, dtype=np.uint16) * 257  # the same picture at 16 bits per channel, big-endian
    scanlines = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)
    add("16-bit", _write(root, "modes/rgb48.png", _png_by_hand(scene.width, scene.height, 16, 2, scanlines)),
        "embedded", note="16 bits per channel RGB", same_picture_as="control/plain.png")

    # Palette + alpha: transparent pixels must come out white, whatever colour the palette gives them.
    palette_image = scene.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    hidden = palette_image.getpixel((2, 2))  # the red bar's index: made transparent
    add("palette + alpha", _write(root, "modes/palette_alpha.png", _encode(palette_image, "PNG", transparency=hidden)),
        "embedded", note="the red bar is transparent", same_picture_as="modes/palette_alpha_on_white.png")
    on_white = palette_image.convert("RGB")
    on_white.paste((255, 255, 255), (0, 0, scene.width // 6 + 1, scene.height))
    add("palette + alpha", _write(root, "modes/palette_alpha_on_white.png", _encode(on_white, "PNG")), "embedded",
        note="reference for palette_alpha.png")
    rgba = scene.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.arange(96) < 48, 255, 0).astype(np.uint8)[None, :].repeat(64, 0)))
    add("palette + alpha", _write(root, "modes/rgba_half_transparent.png", _encode(rgba, "PNG")), "embedded")

    # Animation: the first frame is the picture.
    first, others = scene, [Image.new("RGB", scene.size, colour) for colour in ((0, 160, 0), (20, 20, 200))]
    add("animated", _write(root, "animated/animated.gif", _encode(
        first, "GIF", save_all=True, append_images=others, duration=100, loop=0)), "embedded",
        note="3 frames", same_picture_as="animated/first_frame.gif")
    add("animated", _write(root, "animated/first_frame.gif", _encode(first, "GIF")), "embedded",
        note="reference: the first frame alone")
    add("animated", _write(root, "animated/animated.png", _encode(
        first, "PNG", save_all=True, append_images=others, duration=100)), "embedded", note="APNG, 3 frames",
        same_picture_as="control/plain.png")

    add("1x1 pixel", _write(root, "sizes/one_pixel.png", _encode(Image.new("RGB", (1, 1), (200, 0, 0)), "PNG")),
        "embedded")
    add("1x1 pixel", _write(root, "sizes/one_pixel.jpg", _encode(Image.new("L", (1, 1), 90), "JPEG")), "embedded")
    strip = np.tile(np.arange(20_000, dtype=np.uint32) % 256, (10, 1)).astype(np.uint8)
    add("extreme aspect ratio", _write(root, "sizes/strip_20000x10.png", _encode(Image.fromarray(strip), "PNG")),
        "embedded")
    tall = _encode(Image.fromarray(np.ascontiguousarray(strip.T)), "PNG")
    add("extreme aspect ratio", _write(root, "sizes/strip_10x20000.png", tall), "embedded")
    add("extreme aspect ratio", _write(root, "sizes/strip_65000x2.jpg",
                                       _encode(Image.new("RGB", (65_000, 2), (0, 90, 200)), "JPEG")), "embedded")

    add("upper-case extension", _write(root, "names/UPPER.JPG", _encode(scene.rotate(180), "JPEG")), "embedded")
    add("upper-case extension", _write(root, "names/UPPER.PNG", _encode(scene.rotate(180), "PNG")), "embedded")
    add("upper-case extension", _write(root, "names/Mixed.JpEg", _encode(scene.rotate(90, expand=True), "JPEG")),
        "embedded")

    # Names that are not valid UTF-8 (Latin-1 bytes), in a file name and in a folder name.
    for raw in (b"names/caf\xe9.jpg", b"names/dossier_\xff\xfe/inside.png"):
        data = _encode(scene.transpose(Image.Transpose.FLIP_LEFT_RIGHT), "JPEG" if raw.endswith(b".jpg") else "PNG")
        add("non-UTF-8 name", _write(root, os.fsdecode(raw), data), "embedded", note=f"raw bytes {raw!r}")

    # 250-byte names (file names may have 255): ASCII, and multi-byte UTF-8.
    add("very long name", _write(root, "names/" + "l" * 246 + ".jpg", _encode(scene.rotate(270, expand=True), "JPEG")),
        "embedded", note="250-byte ASCII name")
    add("very long name", _write(root, "names/" + "é" * 123 + ".png", _encode(scene.rotate(90, expand=True), "PNG")),
        "embedded", note="250-byte UTF-8 name (123 x 'é')")

    # Links: a folder that links to itself; links that lead nowhere; a good link.
    _write(root, "links/loop/inside.png", _encode(Image.new("RGB", (40, 40), (250, 120, 0)), "PNG"))
    os.symlink(".", root / "links/loop/again")
    add("symlink loop", "links/loop/inside.png", "embedded", note="embedded once, not once per turn of the loop")
    add("symlink loop", "links/loop/again", "skipped", note="loop/again -> loop: the folder is not scanned twice")
    os.symlink("to_self.jpg", root / "links/to_self.jpg")
    add("symlink loop", "links/to_self.jpg", "failed", "broken_link", "to_self.jpg -> to_self.jpg")
    os.symlink("ping.jpg", root / "links/pong.jpg")
    os.symlink("pong.jpg", root / "links/ping.jpg")
    add("symlink loop", "links/ping.jpg", "failed", "broken_link", "ping.jpg -> pong.jpg -> ping.jpg")
    add("symlink loop", "links/pong.jpg", "failed", "broken_link")
    os.symlink("no_such_file.jpg", root / "links/dangling.jpg")
    add("dangling link", "links/dangling.jpg", "failed", "broken_link", "-> no_such_file.jpg")
    os.symlink("../control/plain.png", root / "links/good_link.png")
    add("dangling link", "links/good_link.png", "embedded", note="a working link, for contrast")

    # Unreadable files. Permission bits do not stop root (CAP_DAC_OVERRIDE), who reads it like any other.
    unreadable = _write(root, "unreadable/no_permission.jpg", _encode(scene.rotate(180).convert("L"), "JPEG"))
    os.chmod(root / unreadable, 0)
    if _can_open(root / unreadable):
        add("unreadable file", unreadable, "embedded", note="chmod 000, but this process may read it anyway (root)")
    else:
        add("unreadable file", unreadable, "failed", "unreadable", "chmod 000")
    os.mkfifo(root / "unreadable/pipe.jpg")
    add("unreadable file", "unreadable/pipe.jpg", "skipped", note="a FIFO: reading it would block for ever")

    # Not items at all: hidden files and names without an image extension.
    add("not an item", _write(root, "other/.hidden.jpg", jpeg), "skipped", note="hidden file")
    add("not an item", _write(root, "other/readme.txt", b"not an image name\n"), "skipped", note="no image extension")

    # HEIC and AVIF, where a Pillow plugin on this machine can write (and so read) them.
    if features.check("avif"):
        add("HEIC/AVIF", _write(root, "modern/picture.avif", _encode(scene, "AVIF", quality=90)), "embedded",
            note="Pillow's own AVIF plugin", same_picture_as="control/plain.png")
    else:
        add("HEIC/AVIF", None, "skipped", note="this Pillow was built without AVIF")
    heif_ok, heif_note = _heif_support()
    if heif_ok:
        import pillow_heif

        heif = pillow_heif.from_pillow(scene)
        buffer = io.BytesIO()
        heif.save(buffer, quality=90)
        add("HEIC/AVIF", _write(root, "modern/picture.heic", buffer.getvalue()), "embedded", note=heif_note,
            same_picture_as="control/plain.png")
    else:
        add("HEIC/AVIF", None, "skipped", note=heif_note)
    return cases
