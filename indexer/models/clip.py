"""Loading an open_clip model and encoding images and texts with it.

Everything torch- or open_clip-related is imported here, lazily: commands that need no model never
pay the seconds those imports cost.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Sequence
from urllib.parse import urlparse

import numpy as np

from ..errors import ModelError
from . import bundled
from .spec import ModelSpec

log = logging.getLogger(__name__)

FeatureMatrix = np.ndarray  # float32, shape (n, dim), rows L2-normalised


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


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _go_offline() -> None:
    """Makes huggingface_hub answer from its cache at once instead of retrying for a minute."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import sys

    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


def _offline_help(spec: ModelSpec) -> str:
    return (
        f"the weights of {spec.describe()} are not in the local cache and the model hub cannot be reached. "
        "Offline options: --model tiny-shapes (bundled with indexer), "
        f"--model {spec.name} --weights PATH (a checkpoint file you copied here), "
        "--model local-dir:FOLDER (an open_clip folder with open_clip_config.json), "
        "or copy a Hugging Face cache from a connected machine and point HF_HOME at it"
    )


class ClipEmbedder:
    """An open_clip model ready to embed: ``embed_images`` on preprocessed batches, ``embed_texts``."""

    def __init__(self, spec: ModelSpec, device: Optional[str] = None, threads: Optional[int] = None) -> None:
        self.spec = spec
        self.needs_network = False
        if not (spec.is_bundled or spec.weights or spec.is_random or spec.name.startswith("local-dir:")):
            if not _hub_reachable():
                _go_offline()
                self.needs_network = True
        if "torch" not in sys.modules:
            # Torch's OpenMP threads spin while they wait; beside a decode worker on a small machine that
            # spinning steals the cores it waits for. Passive waiting measured the same or faster here.
            os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        if threads:
            torch.set_num_threads(threads)
        import open_clip

        self._torch = torch
        self.device = select_device(device)
        precision = "fp16" if self.device.startswith("cuda") else "fp32"
        tokenizer_kwargs: dict[str, Any] = {}
        try:
            if spec.is_bundled or spec.name.startswith("local-dir:"):
                folder = bundled.folder(spec.name) if spec.is_bundled else Path(spec.name[len("local-dir:"):])
                name = f"local-dir:{folder.resolve()}"
                bpe = sorted(folder.glob("*.txt.gz"))
                if bpe:
                    # A BPE file named in the folder's config would be resolved against the working directory.
                    tokenizer_kwargs["bpe_path"] = str(bpe[0].resolve())
                model, _, preprocess = open_clip.create_model_and_transforms(
                    name, device=self.device, precision=precision
                )
                tokenizer = open_clip.get_tokenizer(name, **tokenizer_kwargs)
            else:
                pretrained: Optional[str] = spec.weights or spec.pretrained
                if not spec.name.startswith("hf-hub:") and spec.name.replace("/", "-") not in open_clip.list_models():
                    raise ModelError(f"unknown model {spec.name!r}; `indexer models` lists the choices")
                if spec.is_random:
                    warnings.warn(
                        f"{spec.name} with random weights: embeddings are meaningless; for benchmarks and tests only",
                        stacklevel=2,
                    )
                    pretrained = None
                elif pretrained is None and not spec.name.startswith("hf-hub:"):
                    raise ModelError(
                        f"{spec.name}: name a pretrained tag (--pretrained), a checkpoint (--weights PATH), "
                        "or --pretrained random; `indexer models` lists the tags"
                    )
                elif spec.pretrained and spec.pretrained not in open_clip.list_pretrained_tags_by_model(spec.name):
                    tags = ", ".join(open_clip.list_pretrained_tags_by_model(spec.name)) or "none"
                    raise ModelError(f"{spec.name} has no pretrained tag {spec.pretrained!r}; its tags: {tags}")
                model, _, preprocess = open_clip.create_model_and_transforms(
                    spec.name, pretrained=pretrained, device=self.device, precision=precision
                )
                tokenizer = open_clip.get_tokenizer(spec.name)
        except ModelError:
            raise
        except RuntimeError as exc:
            if self.needs_network and ("download" in str(exc).lower() or "hub" in str(exc).lower()):
                raise ModelError(_offline_help(spec)) from None
            if "not found in built-ins" in str(exc):
                raise ModelError(f"unknown model {spec.name!r}; `indexer models` lists the choices") from None
            raise ModelError(f"cannot load {spec.describe()}: {exc}") from exc
        except (OSError, ValueError, KeyError) as exc:
            if self.needs_network:
                raise ModelError(_offline_help(spec)) from None
            raise ModelError(f"cannot load {spec.describe()}: {exc}") from exc

        model.eval()  # BatchNorm in ResNet towers, dropout everywhere
        model = _reparameterize(model)
        if self.device == "cpu":
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.preprocess: Callable = preprocess
        self.tokenizer = tokenizer
        self.image_size = _image_size(model)
        self.logit_scale = float(model.logit_scale.exp().item())
        with torch.inference_mode():
            probe = model.encode_text(tokenizer(["a"]).to(self.device))
        self.dim = int(probe.shape[-1])
        self._dtype = next(model.parameters()).dtype

    def identity(self) -> dict[str, Any]:
        identity = self.spec.identity()
        identity.update(embed_dim=self.dim, image_size=self.image_size, logit_scale=self.logit_scale)
        return identity

    def embed_images(self, batch: "Any") -> FeatureMatrix:
        """Embeds a batch of preprocessed images (``N×3×H×W`` tensor); returns normalised float32 rows."""
        torch = self._torch
        with torch.inference_mode():
            batch = batch.to(self.device, dtype=self._dtype, non_blocking=True)
            if self.device == "cpu":
                batch = batch.contiguous(memory_format=torch.channels_last)
            features = self.model.encode_image(batch, normalize=True)
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


def _reparameterize(model: Any) -> Any:
    """Folds the training-time branches of reparameterisable towers (MobileCLIP's FastViT / MCi) into
    single convolutions: the same outputs, about twice the speed. A no-op for other architectures."""
    if not any(hasattr(module, "reparameterize") for module in model.modules()):
        return model
    try:
        from timm.utils.model import reparameterize_model
    except ImportError:
        return model
    return reparameterize_model(model, inplace=True)


def _image_size(model: Any) -> int:
    size = getattr(model.visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)
