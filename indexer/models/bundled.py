"""Models shipped inside the package: each a ``local-dir`` folder open_clip can load, plus a model card."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


def names() -> list[str]:
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / "open_clip_config.json").is_file())


def is_bundled(name: str) -> bool:
    return (BUNDLED_DIR / name / "open_clip_config.json").is_file()


def folder(name: str) -> Path:
    return BUNDLED_DIR / name


def checkpoint_file(name: str) -> Path:
    return BUNDLED_DIR / name / "open_clip_model.safetensors"


@lru_cache(maxsize=None)
def card(name: str) -> dict[str, Any]:
    path = BUNDLED_DIR / name / "model_card.json"
    return json.loads(path.read_text()) if path.is_file() else {"name": name}
