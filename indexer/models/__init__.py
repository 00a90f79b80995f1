"""The embedding model: naming it (``ModelSpec``), listing the choices, loading it behind the
``Embedder`` protocol, prompt templates and the bundled models. Imports nothing above ``errors``."""

from __future__ import annotations

import importlib.util
import logging
import os
import platform
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelError
from . import bundled
from .embedder import Embedder, PreprocessConfig
from .spec import RANDOM, ModelSpec, same_model

__all__ = ["Embedder", "ModelSpec", "PreprocessConfig", "RANDOM", "RUNTIMES", "same_model", "list_models",
           "load_model", "bundled"]

RUNTIMES = ("auto", "openvino", "torch")
log = logging.getLogger(__name__)


def accelerator_present() -> bool:
    """Whether torch would find a GPU (CUDA, Apple's MPS), judged without importing torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    if Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists():
        return True
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def choose_runtime(runtime: str = "auto", device: Optional[str] = None) -> str:
    """``auto``: OpenVINO on the CPU (when it is installed), torch on a GPU; or the one asked for."""
    if runtime not in RUNTIMES:
        raise ModelError(f"--runtime {runtime}: choose one of {', '.join(RUNTIMES)}")
    on_cpu = device == "cpu" or (device in (None, "auto") and not accelerator_present())
    if runtime == "openvino":
        if not on_cpu:
            raise ModelError(f"--runtime openvino runs on the CPU; leave out --device {device} or use --runtime torch")
        if importlib.util.find_spec("openvino") is None:
            raise ModelError("--runtime openvino needs the openvino package: pip install openvino")
        return "openvino"
    if runtime == "torch":
        return "torch"
    return "openvino" if on_cpu and importlib.util.find_spec("openvino") is not None else "torch"


def load_model(spec: ModelSpec, device: Optional[str] = None, threads: Optional[int] = None,
               runtime: str = "auto", precision: str = "auto") -> Embedder:
    """Loads ``spec`` behind the ``Embedder`` protocol: on OpenVINO (CPU; no torch once converted) or on
    torch (CUDA in fp16, MPS, or CPU in fp32); see ``choose_runtime``. With ``auto``, a model OpenVINO
    cannot run (its tokenizer, say) falls back to torch with a warning."""
    chosen = choose_runtime(runtime, device)
    if chosen == "openvino":
        from .openvino_clip import OpenVinoClipEmbedder, RuntimeUnsupported

        try:
            return OpenVinoClipEmbedder(spec, precision=precision, threads=threads)
        except RuntimeUnsupported as exc:
            if runtime == "openvino":
                raise
            log.warning("%s; running it on torch instead", exc)
    if precision not in ("auto", "fp32", "fp16"):
        raise ModelError(f"--precision {precision} needs the OpenVINO runtime on the CPU (--runtime openvino)")
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
