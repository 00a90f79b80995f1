"""Which embedding model an index uses, described without loading it (no torch import here)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..errors import ModelError
from . import bundled

RANDOM = "random"
SOURCES = ("bundled", "local-dir", "hf-hub", "named")
LOCAL_DIR = "local-dir:"  # open_clip's scheme for a folder holding open_clip_config.json and weights
HF_HUB = "hf-hub:"  # open_clip's scheme for a Hugging Face Hub repository
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


def parse_model_name(name: str) -> tuple[str, str]:
    """``(source, rest)`` of a model name, after open_clip's ``parse_model_name``: ``("local-dir", PATH)``,
    ``("hf-hub", "org/repo")``, ``("bundled", "tiny-shapes")`` or ``("named", "ViT-B-32")``."""
    if name.startswith(LOCAL_DIR):
        return "local-dir", name[len(LOCAL_DIR):]
    if name.startswith(HF_HUB):
        return "hf-hub", name[len(HF_HUB):]
    if bundled.is_bundled(name):
        return "bundled", name
    return "named", name


@dataclass(frozen=True)
class ModelSpec:
    """A model as the user names it.

    ``name`` is an open_clip architecture (``ViT-B-32``), an ``hf-hub:org/repo`` id, a
    ``local-dir:PATH`` folder, or a model bundled with indexer (``tiny-shapes``). ``pretrained`` is an
    open_clip pretrained tag, or ``random`` for random weights (benchmarks only). ``weights`` is a
    local checkpoint file for the architecture ``name``.

    The name is parsed once: ``source`` is one of ``SOURCES``; ``folder`` the folder holding the model
    (``open_clip_config.json``, weights, BPE file) for bundled and local-dir models, else None; ``hub_id``
    the ``org/repo`` of an hf-hub model, else None.
    """

    name: str
    pretrained: Optional[str] = None
    weights: Optional[str] = None
    # Parsed from ``name`` once, in __post_init__: not arguments, and not part of equality or hashing.
    source: str = field(init=False, repr=False, compare=False)
    folder: Optional[Path] = field(init=False, repr=False, compare=False)
    hub_id: Optional[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        source, rest = parse_model_name(self.name)
        folder = bundled.folder(rest) if source == "bundled" else Path(rest) if source == "local-dir" else None
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "folder", folder)
        object.__setattr__(self, "hub_id", rest if source == "hf-hub" else None)
        if self.weights and self.pretrained:
            raise ModelError("give either --pretrained TAG or --weights PATH, not both")
        if self.weights and folder is not None:
            # The model's own weights come with it: a checkpoint beside them would be ignored, yet
            # recorded as the index's identity. Refused, so that nothing is recorded that was not used.
            raise ModelError(f"{self.name} comes with its own weights: leave out --weights, or name the "
                             "architecture the checkpoint is for with --model")
        if self.weights and not _exists(Path(self.weights), "file"):
            raise ModelError(f"weights file not found: {self.weights}")
        if source == "local-dir" and not _exists(Path(rest), "dir"):
            raise ModelError(f"model folder not found: {rest}")

    @property
    def open_clip_name(self) -> str:
        """The name open_clip loads: a folder as ``local-dir:`` + its absolute path, else the name itself."""
        folder = self.folder
        return f"{LOCAL_DIR}{folder.resolve()}" if folder is not None else self.name

    @property
    def bpe_file(self) -> Optional[Path]:
        """The tokenizer's merge list in the model's folder, if it has one (else open_clip's default)."""
        found = sorted(self.folder.glob("*.txt.gz")) if self.folder is not None else []
        return found[0] if found else None

    @property
    def is_random(self) -> bool:
        return self.pretrained == RANDOM

    @property
    def is_bundled(self) -> bool:
        return self.source == "bundled"

    def identity(self) -> dict[str, Any]:
        """What makes two models produce the same embeddings: recorded in, and checked against, a catalog."""
        identity: dict[str, Any] = {"name": self.name, "pretrained": self.pretrained}
        if self.weights:
            identity["weights_sha256"] = file_sha256(Path(self.weights))
        elif self.is_bundled:
            identity["weights_sha256"] = file_sha256(bundled.checkpoint_file(self.name))
        elif self.folder is not None:
            checkpoints = sorted(p for p in self.folder.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
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
