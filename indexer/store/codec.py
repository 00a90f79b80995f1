"""How an embedding is stored: little-endian float16 bytes, read back as re-normalised float32 rows."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import CatalogError

FeatureMatrix = np.ndarray  # float32, shape (n, dim), rows L2-normalised


def vector_to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f2").tobytes()


def blobs_to_matrix(blobs: Sequence[bytes], dim: int) -> FeatureMatrix:
    """float16 blobs to a float32 matrix, re-normalised (fp16 rounding moves the norm by ~1e-3)."""
    if not blobs:
        return np.zeros((0, dim), dtype=np.float32)
    size = 2 * dim
    for blob in blobs:
        if not isinstance(blob, (bytes, bytearray, memoryview)) or len(blob) != size:
            length = "NULL" if blob is None else f"{len(blob)} bytes" if hasattr(blob, "__len__") else type(blob).__name__
            raise CatalogError(f"the catalog holds a damaged embedding ({length}, expected {size} bytes for "
                               f"{dim} dimensions); restore it from a backup, or rebuild the index")
    matrix = np.frombuffer(b"".join(blobs), dtype="<f2").reshape(len(blobs), dim).astype(np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)
