"""Which embedding model an index uses, described without loading it (no torch import here)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelError
from . import bundled

RANDOM = "random"


@dataclass(frozen=True)
class ModelSpec:
    """A model as the user names it.

    ``name`` is an open_clip architecture (``ViT-B-32``), an ``hf-hub:org/repo`` id, a
    ``local-dir:PATH`` folder, or a model bundled with indexer (``tiny-shapes``). ``pretrained`` is an
    open_clip pretrained tag, or ``random`` for random weights (benchmarks only). ``weights`` is a
    local checkpoint file for the architecture ``name``.
    """

    name: str
    pretrained: Optional[str] = None
    weights: Optional[str] = None

    def __post_init__(self) -> None:
        if self.weights and self.pretrained:
            raise ModelError("give either --pretrained TAG or --weights PATH, not both")
        if self.weights and (self.is_bundled or self.name.startswith("local-dir:")):
            # The model's own weights come with it: a checkpoint beside them would be ignored, yet
            # recorded as the index's identity. Refused, so that nothing is recorded that was not used.
            raise ModelError(f"{self.name} comes with its own weights: leave out --weights, or name the "
                             "architecture the checkpoint is for with --model")
        if self.weights and not _exists(Path(self.weights), "file"):
            raise ModelError(f"weights file not found: {self.weights}")
        if self.name.startswith("local-dir:") and not _exists(Path(self.name[len("local-dir:"):]), "dir"):
            raise ModelError(f"model folder not found: {self.name[len('local-dir:'):]}")

    @property
    def is_random(self) -> bool:
        return self.pretrained == RANDOM

    @property
    def is_bundled(self) -> bool:
        return bundled.is_bundled(self.name)

    def identity(self) -> dict[str, Any]:
        """What makes two models produce the same embeddings: recorded in, and checked against, a catalog."""
        identity: dict[str, Any] = {"name": self.name, "pretrained": self.pretrained}
        if self.weights:
            identity["weights_sha256"] = file_sha256(Path(self.weights))
        elif self.is_bundled:
            identity["weights_sha256"] = file_sha256(bundled.checkpoint_file(self.name))
        elif self.name.startswith("local-dir:"):
            folder = Path(self.name[len("local-dir:"):])
            checkpoints = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pth", ".pt"))
            if checkpoints:
                identity["weights_sha256"] = file_sha256(checkpoints[0])
        return identity

    def describe(self) -> str:
        if self.is_bundled:
            return f"{self.name} (bundled)"
        if self.weights:
            return f"{self.name} (weights {self.weights})"
        if self.pretrained:
            return f"{self.name} ({self.pretrained})"
        return self.name

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        return cls(name=data["name"], pretrained=data.get("pretrained"), weights=data.get("weights"))


def _exists(path: Path, kind: str) -> bool:
    """``path.is_file()`` / ``is_dir()``, False for a path the system cannot even look up (too long, NUL)."""
    try:
        return path.is_file() if kind == "file" else path.is_dir()
    except (OSError, ValueError):
        return False


def same_model(recorded: dict[str, Any], identity: dict[str, Any]) -> bool:
    """True when a catalog's recorded identity and a requested model's identity embed alike."""
    keys = ("name", "pretrained", "weights_sha256")
    return all(recorded.get(k) == identity.get(k) for k in keys)


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA_CACHE[key] = digest.hexdigest()
    return _SHA_CACHE[key]


def mismatch_message(path: Path, recorded: dict, requested: ModelSpec, identity: dict) -> str:
    """Why the index at ``path`` refuses ``requested``, and what to do instead."""
    if recorded.get("name") == identity.get("name") and recorded.get("pretrained") == identity.get("pretrained"):
        return (
            f"the weights of {requested.describe()} differ from those the index at {path} was built with "
            f"(sha256 {str(recorded.get('weights_sha256'))[:12]} then, {str(identity.get('weights_sha256'))[:12]} now), "
            "so their embeddings cannot be compared. Rebuild the index in a new --index folder with these weights, "
            "or use the original checkpoint with --weights PATH"
        )
    return (
        f"the index at {path} was built with {describe_identity(recorded)}, not {requested.describe()}. "
        "Embeddings of different models cannot be compared: leave out --model to use the index's own "
        f"model, or give {requested.describe()} its own --index folder"
    )


def describe_identity(recorded: dict) -> str:
    """A recorded model identity in words: ``ViT-B-32-256 (datacomp_s34b_b86k)``, ``tiny-shapes (bundled)``."""
    name = recorded.get("name", "?")
    if bundled.is_bundled(name):
        return f"{name} (bundled)"
    if recorded.get("pretrained"):
        return f"{name} ({recorded['pretrained']})"
    if recorded.get("weights_sha256"):
        return f"{name} (weights sha256 {recorded['weights_sha256'][:12]})"
    return name
