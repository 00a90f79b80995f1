"""What ingestion, queries and the service need from a model, whatever runs it (the ``Embedder`` protocol).

An embedder turns decoded pictures and texts into L2-normalised float32 rows. The picture's way to the
model is described by ``PreprocessConfig`` (plain data, applied by ``preprocess.py`` with PIL and numpy
exactly as open_clip's transform does), so that decode workers prepare pictures without holding the
model or importing torch, whatever runtime embeds them.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from .preprocess import PreprocessConfig

FeatureMatrix = np.ndarray  # float32, shape (n, dim), rows L2-normalised
ImageBatch = np.ndarray  # float32, shape (n, 3, size, size), preprocessed


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
    preprocess: Any  # picklable: one decoded RGB picture (PIL) -> (3, H, W) float32 array

    def identity(self) -> dict[str, Any]:
        """Architecture, weights identity and embedding size: what makes two models embed alike."""
        ...

    def embed_images(self, batch: ImageBatch) -> FeatureMatrix:
        """Embeddings of a batch of preprocessed pictures."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> FeatureMatrix:
        """Embeddings of texts (tokenised by the model's own tokenizer)."""
        ...
