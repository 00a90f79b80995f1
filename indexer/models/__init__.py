"""The embedding model: naming it (``ModelSpec``), listing the choices, loading it behind the
``Embedder`` protocol, prompt templates and the bundled models. Imports nothing above ``errors``."""

from __future__ import annotations

from typing import Any, Optional

from . import bundled
from .embedder import Embedder, PreprocessConfig
from .spec import RANDOM, ModelSpec, same_model

__all__ = ["Embedder", "ModelSpec", "PreprocessConfig", "RANDOM", "same_model", "list_models", "load_model",
           "bundled"]


def load_model(spec: ModelSpec, device: Optional[str] = None, threads: Optional[int] = None) -> Embedder:
    """Loads ``spec`` with open_clip on torch (imports torch)."""
    from .torch_clip import TorchClipEmbedder

    return TorchClipEmbedder(spec, device=device, threads=threads)


def list_models(include_pretrained: bool = True) -> list[dict[str, Any]]:
    """The models one can choose: the bundled ones (with their cards), then open_clip's pretrained list."""
    models: list[dict[str, Any]] = [
        {"name": name, "source": "bundled", "pretrained": None, "card": bundled.card(name)} for name in bundled.names()
    ]
    if include_pretrained:
        import open_clip

        for name, tag in open_clip.list_pretrained():
            models.append({"name": name, "source": "open_clip", "pretrained": tag})
    return models
