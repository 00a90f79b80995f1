"""A perceptual hash of a picture: 64 bits that change little when the picture is resized, re-encoded or
slightly retouched, and a lot when it shows something else.

The picture is reduced to 32 x 32 grey pixels (box filter), its 2-D DCT taken, and the 8 x 8 lowest
frequencies compared with their median (the DC term left out of the median): one bit each. Two
pictures' hashes differ in few bits (the Hamming distance) when they are copies of one another. It is
computed from a picture already decoded (ingestion's own decode), so it costs no extra read or
decode: a resize of the decoded picture and two 32 x 32 matrix products."""

from __future__ import annotations

import numpy as np
from PIL import Image

SIDE, LOW = 32, 8


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    matrix = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT = _dct_matrix(SIDE)[:LOW].astype(np.float32)  # only the low frequencies are ever used
_DCT_T = np.ascontiguousarray(_DCT.T)


def perceptual_hash(image: Image.Image) -> int:
    """The picture's 64-bit hash, as a signed integer (what a 64-bit database column holds)."""
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    small = image.resize((SIDE, SIDE), Image.Resampling.BOX).convert("L")
    low = (_DCT @ np.asarray(small, dtype=np.float32) @ _DCT_T).ravel()
    median = np.partition(low[1:], 31)[31]  # the median of the 63 terms after DC (the 32nd smallest)
    value = int.from_bytes(np.packbits(low > median).tobytes(), "big")
    return value - (1 << 64) if value >= (1 << 63) else value


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between two arrays of hashes (int64), element by element."""
    x = (np.asarray(a, dtype=np.int64) ^ np.asarray(b, dtype=np.int64)).view(np.uint64)
    count = np.zeros(x.shape, dtype=np.int64)
    for shift in range(0, 64, 8):
        count += _POPCOUNT[((x >> np.uint64(shift)) & np.uint64(0xFF)).astype(np.intp)]
    return count


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
