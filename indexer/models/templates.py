"""Prompt templates: how a label becomes the texts whose mean embedding stands for it.

``none`` uses the label as is; ``default`` is a short set of captions; ``ensemble`` is the 80 ImageNet
prompt templates of the CLIP paper, read from open_clip's own copy (without importing open_clip, which
costs seconds). A label's embedding is the normalised mean of its prompts' normalised embeddings.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Callable

from ..errors import QueryError

DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a picture of a {}.",
    "a drawing of a {}.",
    "an image of a {}.",
)
TEMPLATE_SETS = ("none", "default", "ensemble")


@lru_cache(maxsize=1)
def _imagenet_templates() -> tuple[Callable[[str], str], ...]:
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise QueryError("the 'ensemble' templates need open_clip installed")
    source = Path(list(spec.submodule_search_locations)[0]) / "zero_shot_metadata.py"
    namespace: dict = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)  # a data-only module
    return tuple(namespace["OPENAI_IMAGENET_TEMPLATES"])


def prompts_for(label: str, templates: str) -> list[str]:
    """The texts that stand for ``label`` under the template set ``templates``."""
    if templates == "none":
        return [label]
    if templates == "default":
        return [t.format(label) for t in DEFAULT_TEMPLATES]
    if templates == "ensemble":
        return [t(label) for t in _imagenet_templates()]
    raise QueryError(f"unknown template set {templates!r}; choose one of {', '.join(TEMPLATE_SETS)}")
