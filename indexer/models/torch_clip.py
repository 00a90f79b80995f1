"""The torch runtime of the ``Embedder`` protocol: an open_clip model loaded and run with torch.

Everything torch- or open_clip-related is imported here, lazily: commands that need no model never
pay the seconds those imports cost. Loading is cut into named steps: decide whether the hub can be
reached (``prepare_network``), prepare torch (``prepare_torch``), load the model from a folder or by
name (``load_open_clip``), and map the many ways a load fails to one ``ModelError`` that says what to
do (``load_error``).
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from typing import Any, Callable, Optional, Sequence
from urllib.parse import urlparse

import numpy as np

from ..config import library_env
from ..errors import ModelError
from .embedder import ClipEmbedder, FeatureMatrix, ImageBatch
from .preprocess import PreprocessConfig, Preprocessor
from .spec import LOCAL_DIR, ModelSpec

OFFLINE_VALUES = ("1", "true", "yes", "on")


def select_device(requested: Optional[str] = None) -> str:
    """``cuda`` when there is one, then Apple's ``mps``, then ``cpu``; ``requested`` overrides."""
    import torch

    if requested and requested != "auto":
        if requested.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"--device {requested}: no CUDA device is available here (use --device cpu)")
        if requested == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ModelError("--device mps: Apple's Metal backend is not available here (use --device cpu)")
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = library_env("HF_ENDPOINT") or "https://huggingface.co"
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def needs_hub(spec: ModelSpec) -> bool:
    """Whether loading ``spec`` may download weights (a named pretrained tag or an hf-hub id)."""
    return spec.source in ("named", "hf-hub") and not (spec.weights or spec.is_random)


def prepare_network(spec: ModelSpec) -> bool:
    """Returns True when the weights must come from the local cache alone: the user said so
    (``HF_HUB_OFFLINE``) or the hub cannot be reached. Then huggingface_hub is told to answer from its
    cache at once, instead of retrying for a minute."""
    if not needs_hub(spec):
        return False
    offline = (library_env("HF_HUB_OFFLINE") or "").lower() in OFFLINE_VALUES
    if not offline and hub_reachable():
        return False
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    return True


def prepare_torch(threads: Optional[int]) -> Any:
    """Imports torch with passive OpenMP waiting (spinning threads steal the cores that a decode
    worker beside them needs; passive waiting measured the same or faster here)."""
    if "torch" not in sys.modules and library_env("OMP_WAIT_POLICY") is None:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch


def offline_help(spec: ModelSpec) -> str:
    return (
        f"the weights of {spec.describe()} are not in the local cache and the model hub cannot be reached. "
        "Offline options: --model tiny-shapes (bundled with indexer), "
        f"--model {spec.name} --weights PATH (a checkpoint file you copied here), "
        f"--model {LOCAL_DIR}FOLDER (an open_clip folder with open_clip_config.json), "
        "or copy a Hugging Face cache from a connected machine and point HF_HOME at it"
    )


def _check_named(spec: ModelSpec) -> Optional[str]:
    """The ``pretrained`` argument for open_clip, after checking the name and tag; None for random."""
    import open_clip

    if spec.source != "hf-hub" and spec.name.replace("/", "-") not in open_clip.list_models():
        raise ModelError(f"unknown model {spec.name!r}; `indexer models` lists the choices")
    if spec.is_random:
        warnings.warn(f"{spec.name} with random weights: embeddings are meaningless; for benchmarks and tests only",
                      stacklevel=3)
        return None
    if spec.weights:
        return spec.weights
    if spec.pretrained is None and spec.source != "hf-hub":
        raise ModelError(f"{spec.name}: name a pretrained tag (--pretrained), a checkpoint (--weights PATH), "
                         "or --pretrained random; `indexer models` lists the tags")
    if spec.pretrained and spec.pretrained not in open_clip.list_pretrained_tags_by_model(spec.name):
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(spec.name)) or "none"
        raise ModelError(f"{spec.name} has no pretrained tag {spec.pretrained!r}; its tags: {tags}")
    return spec.pretrained


def load_open_clip(spec: ModelSpec, device: str, precision: str) -> tuple[Any, Callable, Callable]:
    """(model, preprocess transform, tokenizer) of ``spec``: from its folder (bundled or local-dir) or
    by architecture name with a tag, a checkpoint or random weights."""
    import open_clip

    if spec.folder is not None:
        name = spec.open_clip_name
        # A BPE file named in the folder's config would be resolved against the working directory.
        tokenizer_kwargs = {"bpe_path": str(spec.bpe_file.resolve())} if spec.bpe_file else {}
        model, _, preprocess = open_clip.create_model_and_transforms(name, device=device, precision=precision)
        return model, preprocess, open_clip.get_tokenizer(name, **tokenizer_kwargs)
    pretrained = _check_named(spec)
    model, _, preprocess = open_clip.create_model_and_transforms(spec.name, pretrained=pretrained, device=device,
                                                                  precision=precision)
    return model, preprocess, open_clip.get_tokenizer(spec.name)


def load_error(exc: Exception, spec: ModelSpec, offline: bool) -> ModelError:
    """The one-line error for a failed load: offline help, an unknown name, or what open_clip said."""
    message = str(exc)
    if offline and (not isinstance(exc, RuntimeError) or "download" in message.lower() or "hub" in message.lower()):
        return ModelError(offline_help(spec))
    if "not found in built-ins" in message:
        return ModelError(f"unknown model {spec.name!r}; `indexer models` lists the choices")
    return ModelError(f"cannot load {spec.describe()}: {message[:300]}")


class TorchClipEmbedder(ClipEmbedder):
    """An open_clip model on torch (CPU, CUDA in fp16, or Apple's MPS): the ``Embedder`` protocol."""

    runtime = "torch"
    # torch computes in fp16 on CUDA and fp32 elsewhere, whatever is asked: auto, or the one it will use.
    precisions = ("auto", "fp32", "fp16")

    def __init__(self, spec: ModelSpec, device: Optional[str] = None, threads: Optional[int] = None,
                 precision: str = "auto") -> None:
        self.check_precision(precision)
        self.spec = spec
        offline = prepare_network(spec)
        torch = self._torch = prepare_torch(threads)
        self.device = select_device(device)
        self.precision = "fp16" if self.device.startswith("cuda") else "fp32"
        try:
            model, _, tokenizer = load_open_clip(spec, self.device, self.precision)
        except ModelError:
            raise
        except Exception as exc:  # a checkpoint that fails to load can raise anything (unpickling, EOF, keys)
            raise load_error(exc, spec, offline) from exc
        model.eval()  # BatchNorm in ResNet towers, dropout everywhere
        model = reparameterize(model)
        if self.device == "cpu":
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.tokenizer = tokenizer
        self.image_size = image_size_of(model)
        # open_clip's own transform, reproduced with PIL and numpy (bit for bit, tested): decode workers
        # then need no torch, whatever the runtime.
        self.preprocess_config = PreprocessConfig.from_open_clip(model)
        self.preprocess = Preprocessor(self.preprocess_config)
        self.logit_scale = float(model.logit_scale.exp().item())
        self.dim = int(self.embed_texts(["a"]).shape[-1])
        self._dtype = next(model.parameters()).dtype

    @classmethod
    def check_precision(cls, precision: str) -> None:
        if precision not in cls.precisions:
            raise ModelError(f"--precision {precision} needs the OpenVINO runtime on the CPU (--runtime openvino)")

    def embed_images(self, batch: ImageBatch) -> FeatureMatrix:
        torch = self._torch
        with torch.inference_mode():
            pixels = batch.dtype == np.uint8  # N×H×W×3, normalised here, on the device: a quarter of the bytes
            tensor = torch.from_numpy(np.ascontiguousarray(batch if pixels else batch.astype(np.float32, copy=False)))
            if self.device.startswith("cuda"):
                tensor = tensor.pin_memory()
            if pixels:
                # The operations of preprocess.normalise, in float32 and in the same order: the same input.
                cfg = self.preprocess_config
                mean = torch.tensor(cfg.mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
                std = torch.tensor(cfg.std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
                tensor = tensor.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float() / 255
                tensor = ((tensor - mean) / std).to(self._dtype)
            else:
                tensor = tensor.to(self.device, dtype=self._dtype, non_blocking=True)
            if self.device == "cpu":
                tensor = tensor.contiguous(memory_format=torch.channels_last)
            features = self.model.encode_image(tensor, normalize=True)
        return features.float().cpu().numpy()

    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> FeatureMatrix:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                tokens = self.tokenizer(list(texts[start:start + batch_size])).to(self.device)
                out.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out)


def reparameterize(model: Any) -> Any:
    """Folds the training-time branches of reparameterisable towers (MobileCLIP's FastViT / MCi) into
    single convolutions: the same outputs, about twice the speed. A no-op for other architectures."""
    if not any(hasattr(module, "reparameterize") for module in model.modules()):
        return model
    try:
        from timm.utils.model import reparameterize_model
    except ImportError:
        return model
    return reparameterize_model(model, inplace=True)


def image_size_of(model: Any) -> int:
    size = getattr(model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)
