"""What ingestion, queries and the service need from a model, whatever runs it (the ``Embedder`` protocol).

An embedder turns decoded pictures and texts into L2-normalised float32 rows. The picture's way to the
model is described by ``PreprocessConfig`` (plain data, applied by ``preprocess.py`` with PIL and numpy
exactly as open_clip's transform does), so that decode workers prepare pictures without holding the
model or importing torch, whatever runtime embeds them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import ModelError
from .preprocess import PreprocessConfig

if TYPE_CHECKING:
    from .spec import ModelSpec

FeatureMatrix = np.ndarray  # float32, shape (n, dim), rows L2-normalised
# float32 (n, 3, H, W), preprocessed; or uint8 (n, H, W, 3) pixels (``Preprocessor.pixels``: resized and
# cropped, not normalised), which every runtime normalises where it embeds (what ingestion sends).
ImageBatch = np.ndarray
# The precisions one may ask for. auto: the runtime's best (OpenVINO: bf16 where the CPU has the units,
# else fp32; torch: fp16 on CUDA, else fp32); fp32, bf16 and int8 (the image tower quantised) on OpenVINO.
PRECISIONS = ("auto", "fp32", "bf16", "int8")


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
    preprocess: Any  # picklable Preprocessor: a picture (PIL) -> (3, H, W) float32; .pixels -> (H, W, 3) uint8

    def identity(self) -> dict[str, Any]:
        """Architecture, weights identity and embedding size: what makes two models embed alike."""
        ...

    def embed_images(self, batch: ImageBatch) -> FeatureMatrix:
        """Embeddings of a batch of preprocessed pictures."""
        ...

    def embed_texts(self, texts: Sequence[str]) -> FeatureMatrix:
        """Embeddings of texts (tokenised by the model's own tokenizer)."""
        ...


class ClipEmbedder(ABC):
    """What the runtimes share (``load_model`` picks one from ``models.RUNTIME_CLASSES``): one
    constructor signature, the precisions a runtime accepts, and the identity a catalog records. A
    runtime sets the attributes of ``Embedder`` in its constructor and implements the two ``embed_*``."""

    runtime: str
    device: str
    # What ``precision`` a runtime accepts; ``check_precision`` refuses the others.
    precisions: tuple[str, ...] = PRECISIONS
    spec: "ModelSpec"
    dim: int
    image_size: int
    logit_scale: float
    preprocess_config: PreprocessConfig
    preprocess: Any

    @abstractmethod
    def __init__(self, spec: "ModelSpec", device: Optional[str] = None, threads: Optional[int] = None,
                 precision: str = "auto") -> None:
        """Loads ``spec`` on ``device`` (None: the runtime's choice) with at most ``threads`` threads."""

    @classmethod
    def check_precision(cls, precision: str) -> None:
        if precision not in cls.precisions:
            raise ModelError(f"--precision {precision}: choose one of {', '.join(cls.precisions)}")

    asked_precision: str = "auto"  # the precision asked for (``precision`` says what runs)

    def int8_unavailable(self) -> Optional[str]:
        """Why this runtime cannot run an int8 image tower here (None: it can; see ``calibrate``)."""
        return f"int8 runs on OpenVINO only, not on {self.runtime}"

    def use_int8(self, folder: Any) -> bool:
        """Switches to the int8 image tower kept in ``folder``; False when there is none (or no int8 here)."""
        return False

    def use_float(self) -> None:
        """Back to the float image tower."""

    def calibrate(self, pictures: np.ndarray, held_out: np.ndarray, folder: Any) -> dict[str, Any]:
        """Quantises the image tower on ``pictures`` into ``folder`` and measures it on ``held_out``."""
        raise ModelError(self.int8_unavailable() or "int8 is not available")

    def identity(self) -> dict[str, Any]:
        """The spec's identity with what the loaded model adds: embedding size, picture size, logit scale."""
        identity = self.spec.identity()
        identity.update(embed_dim=self.dim, image_size=self.image_size, logit_scale=self.logit_scale)
        return identity

    @abstractmethod
    def embed_images(self, batch: ImageBatch) -> FeatureMatrix:
        """Embeddings of a batch of preprocessed pictures."""

    @abstractmethod
    def embed_texts(self, texts: Sequence[str]) -> FeatureMatrix:
        """Embeddings of texts (tokenised by the model's own tokenizer)."""
