"""What ingestion, queries and the service need from a model, whatever runs it (the ``Embedder`` protocol).

An embedder turns decoded pictures and texts into L2-normalised float32 rows. The picture's way to the
model is described by ``PreprocessConfig`` (plain data), so that decode workers can prepare pictures
without holding the model, and a runtime other than torch can reproduce it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

FeatureMatrix = np.ndarray  # float32, shape (n, dim), rows L2-normalised
ImageBatch = np.ndarray  # float32, shape (n, 3, size, size), preprocessed


@dataclass(frozen=True)
class PreprocessConfig:
    """How a picture becomes the model's input: resized (``resize_mode`` "shortest": short side to
    ``size`` then centre crop; "longest": long side to ``size`` then padded with ``fill_color``;
    "squash": both sides to ``size``) with ``interpolation``, then normalised by ``mean`` and ``std``."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    @property
    def crops_centre(self) -> bool:
        """True when only a centred square is kept: a long strip can be cut before resizing."""
        return self.resize_mode == "shortest"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class Embedder(Protocol):
    """A loaded model, ready to embed. ``identity`` is what a catalog records and checks."""

    dim: int
    image_size: int
    logit_scale: float
    device: str
    runtime: str  # "torch", "openvino", ...
    precision: str  # "fp32", "fp16", "bf16", "int8"
    preprocess_config: PreprocessConfig

    def identity(self) -> dict[str, Any]:
        """Architecture, weights identity and embedding size: what makes two models embed alike."""
        ...

    def preprocess(self, image: Any) -> np.ndarray:
        """One decoded RGB picture (PIL) as a (3, size, size) float32 array."""
        ...

    def embed_images(self, batch: ImageBatch) -> FeatureMatrix:
        """Embeddings of a batch of preprocessed pictures."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> FeatureMatrix:
        """Embeddings of texts (tokenised by the model's own tokenizer)."""
        ...
