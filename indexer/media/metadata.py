"""What a picture says about itself, and what lies beside it: EXIF date taken, camera, GPS position
(read from an image Pillow has already opened: no extra decode), and captions from sidecar files
(``photo.txt`` or ``photo.json`` beside ``photo.jpg``, or a WebDataset sample's ``key.txt``/``key.json``).

A value that cannot be read or is implausible (a date in 1900 or 2100, a GPS block of garbage, a
caption that is not UTF-8 or larger than ``MAX_CAPTION_BYTES``) is left out and named in a note; it
never fails the item.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import time
import warnings
import zlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Optional

MAX_CAPTION_BYTES = 64 * 1024  # a caption file larger than this is not read
MAX_CAPTION_CHARS = 4000  # a caption is kept up to this many characters
CAPTION_SUFFIXES = (".txt", ".json")
EARLIEST_YEAR = 1901  # "taken" before it is a camera's unset clock or a lie, not a date

_DATE_TIME_ORIGINAL, _DATE_TIME, _MAKE, _MODEL = 0x9003, 0x0132, 0x010F, 0x0110
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825


@dataclass
class PictureFacts:
    """The metadata of one picture; None where absent or unreadable (``notes`` says which and why)."""

    taken: Optional[str] = None  # "YYYY-MM-DD HH:MM:SS"
    camera: Optional[str] = None
    lat: Optional[float] = None
    lon: Optional[float] = None
    notes: list[str] = field(default_factory=list)


def _text(value: Any) -> Optional[str]:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def parse_taken(value: Any, now: Optional[float] = None) -> tuple[Optional[str], Optional[str]]:
    """(the EXIF date as "YYYY-MM-DD HH:MM:SS", None) or (None, why it is not kept)."""
    text = _text(value)
    if text is None:
        return None, None
    t = text[:19]
    if not any(ch.isdigit() and ch != "0" for ch in t):
        return None, None  # "    :  :     :  :  " or zeros: EXIF's way of saying the date is unknown
    digits = (t[0:4], t[5:7], t[8:10], t[11:13], t[14:16], t[17:19])
    try:  # "YYYY:MM:DD HH:MM:SS" (some cameras write "-" in the date)
        if len(t) != 19 or t[4] not in ":-" or t[7] != t[4] or t[10] not in " T" or t[13] != ":" or t[16] != ":" \
                or not all(d.isdigit() for d in digits):
            raise ValueError(t)
        parsed = datetime(*(int(d) for d in digits))
    except ValueError:
        return None, f"taken: unreadable date {text[:40]!r}"
    latest = datetime.fromtimestamp((now or time.time()) + 2 * 86400)
    if parsed.year < EARLIEST_YEAR or parsed > latest:
        return None, f"taken: implausible date {text[:19]!r}"
    return parsed.strftime("%Y-%m-%d %H:%M:%S"), None


def _degrees(value: Any) -> float:
    parts = [float(v) for v in value]
    if len(parts) != 3:
        raise ValueError("not degrees, minutes, seconds")
    return parts[0] + parts[1] / 60 + parts[2] / 3600


def parse_gps(gps: Any) -> tuple[Optional[float], Optional[float], Optional[str]]:
    """(latitude, longitude, None) from an EXIF GPS block, or (None, None, why) when it is garbage."""
    if not gps:
        return None, None, None
    try:
        lat, lon = _degrees(gps[2]), _degrees(gps[4])
        lat_ref, lon_ref = _text(gps.get(1)) or "N", _text(gps.get(3)) or "E"
        if lat_ref.upper() not in ("N", "S") or lon_ref.upper() not in ("E", "W"):
            raise ValueError("bad hemisphere")
        lat = -lat if lat_ref.upper() == "S" else lat
        lon = -lon if lon_ref.upper() == "W" else lon
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError, OverflowError):
        return None, None, "gps: unreadable position"
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return None, None, "gps: position out of range"
    return round(lat, 7), round(lon, 7), None


# -- a small EXIF reader: only the tags kept, straight from the block's bytes --------------------------

_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}
_MAX_ENTRIES = 512  # entries of one IFD; a block claiming more is garbage
_IFD0_TAGS = frozenset({_MAKE, _MODEL, _DATE_TIME, _EXIF_IFD, _GPS_IFD})
_EXIF_TAGS = frozenset({_DATE_TIME_ORIGINAL})
_GPS_TAGS = frozenset({1, 2, 3, 4})


class ExifError(ValueError):
    """An EXIF block that does not hold what it claims."""


def _ifd(data: bytes, offset: int, order: str, wanted: frozenset) -> dict[int, Any]:
    """The ``wanted`` tags of the IFD at ``offset``, decoded (ASCII as bytes, numbers as tuples)."""
    if offset < 8 or offset + 2 > len(data):
        raise ExifError("an IFD outside the block")
    (count,) = struct.unpack_from(order + "H", data, offset)
    if count > _MAX_ENTRIES or offset + 2 + 12 * count > len(data):
        raise ExifError("an IFD larger than the block")
    found: dict[int, Any] = {}
    for i in range(count):
        tag, kind, n = struct.unpack_from(order + "HHI", data, offset + 2 + 12 * i)
        if tag not in wanted or kind not in _TYPE_SIZES:
            continue
        size = _TYPE_SIZES[kind] * n
        if size > 4096:
            raise ExifError("a value larger than any of these tags holds")
        at = offset + 2 + 12 * i + 8
        if size > 4:
            (at,) = struct.unpack_from(order + "I", data, at)
        if at + size > len(data):
            raise ExifError("a value outside the block")
        if kind in (2, 7, 1):
            found[tag] = data[at:at + size]
        elif kind == 3:
            found[tag] = struct.unpack_from(f"{order}{n}H", data, at)
        elif kind == 4:
            found[tag] = struct.unpack_from(f"{order}{n}I", data, at)
        elif kind == 9:
            found[tag] = struct.unpack_from(f"{order}{n}i", data, at)
        else:
            pairs = struct.unpack_from(f"{order}{2 * n}{'I' if kind == 5 else 'i'}", data, at)
            found[tag] = tuple(pairs[j] / pairs[j + 1] if pairs[j + 1] else math.nan for j in range(0, len(pairs), 2))
    return found


def read_exif_block(block: bytes) -> tuple[dict[int, Any], dict[int, Any], dict[int, Any]]:
    """(IFD0, Exif IFD, GPS IFD) tags kept, from an EXIF block (a JPEG's APP1 payload, with or without its
    ``Exif\\0\\0`` prefix, or a PNG's eXIf chunk). Raises ``ExifError`` (or ``struct.error``) on garbage."""
    data = block[6:] if block[:6] == b"Exif\x00\x00" else block
    if data[:2] == b"II":
        order = "<"
    elif data[:2] == b"MM":
        order = ">"
    else:
        raise ExifError("no TIFF byte order")
    magic, first = struct.unpack_from(order + "HI", data, 2)
    if magic != 42:
        raise ExifError("no TIFF header")
    ifd0 = _ifd(data, first, order, _IFD0_TAGS)
    pointers = {tag: value[0] for tag in (_EXIF_IFD, _GPS_IFD)
                if isinstance(value := ifd0.get(tag), tuple) and value and isinstance(value[0], int)}
    sub = _ifd(data, pointers[_EXIF_IFD], order, _EXIF_TAGS) if _EXIF_IFD in pointers else {}
    gps = _ifd(data, pointers[_GPS_IFD], order, _GPS_TAGS) if _GPS_IFD in pointers else {}
    return ifd0, sub, gps


def _tags(image: Any) -> tuple[dict[int, Any], dict[int, Any], dict[int, Any]]:
    """The kept tags of an opened image: from its raw EXIF block when Pillow found one (JPEG, PNG, WebP:
    a few microseconds), else through Pillow's own reader (TIFF, whose tags are the file's own)."""
    block = image.info.get("exif")
    if isinstance(block, (bytes, bytearray)) and block:
        return read_exif_block(bytes(block))
    if image.format not in ("TIFF", "MPO"):
        return {}, {}, {}
    exif = image.getexif()
    if not exif:
        return {}, {}, {}
    return dict(exif), dict(exif.get_ifd(_EXIF_IFD) or {}), dict(exif.get_ifd(_GPS_IFD) or {})


def picture_facts(image: Any) -> PictureFacts:
    """The EXIF facts of an opened Pillow image (its header is parsed already; no pixel is decoded)."""
    facts = PictureFacts()
    try:
        exif, sub, gps = _tags(image)  # the callers hold Pillow's warnings (decode_image, read_facts)
        if not exif and not sub and not gps:
            return facts
        raw_date = sub.get(_DATE_TIME_ORIGINAL) or exif.get(_DATE_TIME)
    except Exception as exc:  # a broken EXIF block: the picture itself may still be fine
        facts.notes.append(f"exif: unreadable ({type(exc).__name__})")
        return facts
    facts.taken, note = parse_taken(raw_date)
    if note:
        facts.notes.append(note)
    make, model = _text(exif.get(_MAKE)), _text(exif.get(_MODEL))
    if model and make and model.lower().startswith(make.lower().split()[0]):
        make = None  # "Canon" + "Canon EOS 5D": the model names the make already
    camera = " ".join(p for p in (make, model) if p)
    facts.camera = camera[:128] or None
    facts.lat, facts.lon, note = parse_gps(gps)
    if note:
        facts.notes.append(note)
    return facts


def read_facts(data: bytes) -> PictureFacts:
    """``picture_facts`` of encoded bytes, opening only the header (for content whose embedding exists)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return picture_facts(image)
    except Exception as exc:
        return PictureFacts(notes=[f"exif: unreadable ({type(exc).__name__})"])


# -- captions -----------------------------------------------------------------------------------------

def caption_from_bytes(data: bytes, suffix: str) -> tuple[Optional[str], Optional[str]]:
    """(caption, None) from a sidecar's bytes (``.txt``: its text; ``.json``: its ``caption`` or
    ``text`` key), or (None, why not)."""
    if len(data) > MAX_CAPTION_BYTES:
        return None, f"caption: the {suffix} file is larger than {MAX_CAPTION_BYTES // 1024} kB"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, f"caption: the {suffix} file is not UTF-8"
    if suffix == ".json":
        try:
            value = json.loads(text)
        except ValueError:
            return None, "caption: the .json file is not JSON"
        if not isinstance(value, dict):
            return None, "caption: the .json file holds no object"
        text = next((v for v in (value.get("caption"), value.get("text")) if isinstance(v, str)), "")
        if not text:
            return None, None
    text = " ".join(text.replace("\x00", " ").split())
    return (text[:MAX_CAPTION_CHARS] or None), None


def read_sidecar(path: str) -> tuple[Optional[str], Optional[str]]:
    """``caption_from_bytes`` of the sidecar at ``path``, reading at most one byte past the limit."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CAPTION_BYTES + 1)
    except OSError as exc:
        return None, f"caption: cannot read {os.path.basename(path)} ({exc.strerror or exc})"
    return caption_from_bytes(data, os.path.splitext(path)[1].lower())


def member_stamp(data: bytes) -> int:
    """What tells a changed caption member in an archive: its length and checksum in one number."""
    return (len(data) << 32) | zlib.crc32(data)


def sample_key(name: str) -> tuple[str, str]:
    """(WebDataset sample key, suffix) of an archive member: ``dir/0001.jpg`` -> (``dir/0001``, ``.jpg``).
    The key is the name up to the first dot of its last part."""
    folder, _, base = name.rpartition("/")
    stem, dot, rest = base.partition(".")
    key = f"{folder}/{stem}" if folder else stem
    return key, (dot + rest).lower()


def sidecar_for(names: "set[str] | frozenset[str]", image_name: str) -> Optional[str]:
    """The sidecar name of ``image_name`` among ``names`` (one folder's file names): ``stem.txt`` first,
    then ``stem.json``."""
    stem = os.path.splitext(image_name)[0]
    for suffix in CAPTION_SUFFIXES:
        if stem + suffix in names:
            return stem + suffix
    return None
