"""A trained head as the catalog keeps it, its scoring and its loading: numpy only, so classifying with a
head never imports torch (the trainers live in ``indexer.heads``).

Every head, whatever trained it, ends as one linear layer over all its classes,
``logits = normalise(x) @ weight.T + bias``, and ``scores = logits - calibration * seen``: scoring a
collection is one matrix product per chunk of stored embeddings. The weights are stored as an ``.npz``
blob without pickles, so a head is safe to load from a catalog someone else wrote.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import numpy.typing as npt

from ..errors import HeadError

if TYPE_CHECKING:
    from ..context import IndexModel
    from ..store.catalog import Catalog

FeatureMatrix = npt.NDArray[np.float32]
METHODS: tuple[str, ...] = ("projection", "generative")


def normalise(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero)."""
    return matrix / np.maximum(np.linalg.norm(matrix, axis=-1, keepdims=True), 1e-12)


@dataclass
class Head:
    """A zero-shot head over ``classes``: seen ones had labelled items, unseen ones only a description."""

    name: str
    method: str
    classes: list[str]
    weight: FeatureMatrix  # (classes, d)
    bias: npt.NDArray[np.float32]  # (classes,)
    seen_mask: npt.NDArray[np.bool_]  # (classes,)
    model_key: str
    calibration: float = 0.0  # subtracted from seen classes' logits (calibrated stacking, chosen on seen classes)
    hparams: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    @property
    def seen_classes(self) -> list[str]:
        return [c for c, s in zip(self.classes, self.seen_mask) if s]

    @property
    def unseen_classes(self) -> list[str]:
        return [c for c, s in zip(self.classes, self.seen_mask) if not s]

    def logits(self, features: np.ndarray) -> np.ndarray:
        """(n, classes) uncalibrated logits of (n, d) embeddings, normalised first as the catalog stores them."""
        x = normalise(np.asarray(features, dtype=np.float32))
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise HeadError(f"head {self.name!r} expects {self.dim}-d embeddings, got shape {x.shape}")
        return x @ self.weight.T + self.bias

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(n, classes) calibrated scores: a row's arg-max is its predicted class, its softmax the head's
        probabilities."""
        return self.logits(features) - np.float32(self.calibration) * self.seen_mask.astype(np.float32)

    def columns(self, labels: Sequence[str]) -> np.ndarray:
        """Positions of ``labels`` among the head's classes; every label must be one of them."""
        position = {c: i for i, c in enumerate(self.classes)}
        missing = [label for label in labels if label not in position]
        if missing:
            raise HeadError(f"head {self.name!r} does not know {len(missing)} of these labels, e.g. {missing[0]!r}; "
                            f"its classes are listed by `indexer heads show {self.name}`")
        return np.array([position[label] for label in labels], dtype=np.int64)

    def weights_blob(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, weight=self.weight.astype(np.float32), bias=self.bias.astype(np.float32),
                            seen_mask=self.seen_mask.astype(bool))
        return buffer.getvalue()

    def describe(self) -> dict[str, Any]:
        """Everything but the weights, as plain data (``heads show --json``)."""
        return {"name": self.name, "method": self.method, "classes": len(self.classes),
                "seen_classes": self.seen_classes, "unseen_classes": self.unseen_classes, "dim": self.dim,
                "calibration": round(self.calibration, 6), "model_key": self.model_key, "hparams": self.hparams,
                "figures": self.figures, "created_at": self.created_at}


def arrays_from_blob(blob: bytes, name: str) -> tuple[FeatureMatrix, np.ndarray, np.ndarray]:
    """(weight, bias, seen mask) of a stored head's blob."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            weight, bias, seen = data["weight"], data["bias"], data["seen_mask"]
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise HeadError(f"the stored weights of head {name!r} are unreadable ({exc}); train it again") from None
    if weight.ndim != 2 or bias.shape != (len(weight),) or seen.shape != (len(weight),):
        raise HeadError(f"the stored weights of head {name!r} are inconsistent; train it again")
    return weight.astype(np.float32), bias.astype(np.float32), seen.astype(bool)


def load_head(catalog: "Catalog", model: "IndexModel", name: str, index_path: Path) -> Head:
    """The stored head ``name``, refused when it was trained for another model than the index's."""
    row = catalog.heads.get(name)
    if row is None:
        known = [r.name for r in catalog.heads.rows()]
        hint = f"stored heads: {', '.join(known)}" if known else "there is none yet (indexer heads train)"
        raise HeadError(f"no head named {name!r} in the index at {index_path}; {hint}")
    key, dim = model.key, model.dim
    if row.model_key != key:
        raise HeadError(f"head {name!r} was trained for another model (key {row.model_key[:12]}) than this index's "
                        f"(key {key[:12]}): its weights score another model's embeddings. Train it again on this "
                        f"index: indexer heads train {name} --replace --index {index_path} ...")
    weight, bias, seen = arrays_from_blob(row.weights, name)
    if len(weight) != len(row.classes) or weight.shape[1] != dim:
        raise HeadError(f"head {name!r} does not fit this index ({weight.shape} weights, {len(row.classes)} "
                        f"classes, {dim}-d embeddings); train it again")
    return Head(name=row.name, method=row.method, classes=row.classes, weight=weight, bias=bias, seen_mask=seen,
                model_key=row.model_key, calibration=float(row.hparams.get("calibration", 0.0)),
                hparams=row.hparams, figures=row.figures, created_at=row.created_at)


def list_heads(catalog: "Catalog", model: "IndexModel") -> list[dict[str, Any]]:
    """Every stored head, without weights; ``usable`` is False for a head of another model."""
    key = model.key if model.recorded else None
    return [{"name": r.name, "method": r.method, "classes": len(r.classes),
             "unseen_classes": r.figures.get("unseen_classes"), "items": r.figures.get("items"),
             "descriptions": r.hparams.get("descriptions"), "calibration": r.hparams.get("calibration"),
             "created_at": r.created_at, "weights_bytes": r.weights_bytes, "usable": r.model_key == key}
            for r in catalog.heads.rows()]
