"""Pictures with metadata for the tests: JPEGs with EXIF (a date, a camera, a GPS block, any of them
wrong on purpose), caption sidecars, WebDataset shards."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any, Optional

from PIL import Image


def exif_jpeg(path: Path, colour=(200, 30, 30), taken: Optional[str] = "2024:06:01 12:30:00",
              make: Optional[str] = "Canon", model: Optional[str] = "Canon EOS 5D",
              gps: Optional[dict[int, Any]] = None, size=(64, 48)) -> Path:
    """A JPEG whose EXIF holds ``taken`` (DateTimeOriginal), ``make``/``model`` and a ``gps`` block."""
    image = Image.new("RGB", size, colour)
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if taken:
        exif.get_ifd(0x8769)[0x9003] = taken
    if gps is not None:
        exif.get_ifd(0x8825).update(gps)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", exif=exif.tobytes())
    return path


def jpeg_bytes(colour=(30, 30, 200), size=(40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def webdataset_shard(path: Path, samples: list[tuple[str, bytes, dict[str, bytes]]]) -> Path:
    """A tar of samples: (key, JPEG bytes, {".txt": caption bytes, ".json": ...}), each sample's files
    together, as WebDataset writes them."""
    with tarfile.open(path, "w") as tf:
        for key, image, extras in samples:
            for suffix, data in [(".jpg", image), *sorted(extras.items())]:
                info = tarfile.TarInfo(key + suffix)
                info.size = len(data)
                info.mtime = 1_700_000_000
                tf.addfile(info, io.BytesIO(data))
    return path
