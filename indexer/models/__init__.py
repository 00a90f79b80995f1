"""The embedding model: naming it (``ModelSpec``), listing the choices, loading it behind the
``Embedder`` protocol, prompt templates and the bundled models. Imports nothing above ``errors``."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import platform
from pathlib import Path
from typing import Any, Optional

from ..config import library_env
from ..errors import ModelError, RuntimeUnsupported
from . import bundled
from .embedder import PRECISIONS, ClipEmbedder, Embedder, PreprocessConfig
from .spec import RANDOM, ModelSpec, same_model

__all__ = ["Embedder", "ModelSpec", "PreprocessConfig", "PRECISIONS", "RANDOM", "RUNTIMES", "same_model",
           "list_models", "load_model", "bundled"]

# The runtimes, each a ``ClipEmbedder``: (module, class), imported when a model loads (the modules
# import torch or OpenVINO only then, but a query on numpy should not even read them).
RUNTIME_CLASSES = {"openvino": ("openvino_clip", "OpenVinoClipEmbedder"), "torch": ("torch_clip", "TorchClipEmbedder")}
RUNTIMES = ("auto", *RUNTIME_CLASSES)
log = logging.getLogger(__name__)


def runtime_class(runtime: str) -> type[ClipEmbedder]:
    """The class of ``runtime`` (a key of ``RUNTIME_CLASSES``)."""
    module, name = RUNTIME_CLASSES[runtime]
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def accelerator_present() -> bool:
    """Whether torch would find a GPU (CUDA, Apple's MPS), judged without importing torch."""
    if library_env("CUDA_VISIBLE_DEVICES") == "":
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
        try:
            return runtime_class("openvino")(spec, device=device, threads=threads, precision=precision)
        except RuntimeUnsupported as exc:
            if runtime == "openvino":
                raise
            log.warning("%s; running it on torch instead", exc)
    return runtime_class("torch")(spec, device=device, threads=threads, precision=precision)


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
