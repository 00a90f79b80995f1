"""What the trainers share: input checks, the linear layer they all end as, and torch helpers (one CPU
thread, seeded generators, class-balanced sampling, a softmax classifier fitted in a fixed number of
steps). Imports torch: only training needs it."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HeadError
from ..query.head import normalise

T = TypeVar("T")


@dataclass
class Linear:
    """A trainer's result: ``logits = normalise(x) @ weight.T + bias`` over every class."""

    weight: np.ndarray
    bias: np.ndarray
    hparams: dict[str, Any] = field(default_factory=dict)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return normalise(x) @ self.weight.T + self.bias


def check_inputs(features: np.ndarray, labels: np.ndarray, descriptions: np.ndarray, seen_mask: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(normalised features, labels, normalised descriptions, seen mask), or a ``HeadError``."""
    x = np.asarray(features, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    a = np.asarray(descriptions, dtype=np.float32)
    seen = np.asarray(seen_mask, dtype=bool)
    if x.ndim != 2 or a.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise HeadError("features (n, d), labels (n,) and descriptions (classes, k) are needed")
    if len(seen) != len(a):
        raise HeadError(f"{len(seen)} classes marked seen or unseen for {len(a)} class descriptions")
    if len(y) == 0 or y.min() < 0 or y.max() >= len(a):
        raise HeadError("labels must index the class descriptions")
    if not seen[y].all():
        raise HeadError("a labelled item belongs to a class marked unseen")
    if seen.all():
        raise HeadError("every class has labelled items: there is no unseen class for a zero-shot head to learn")
    if not np.isfinite(x).all() or not np.isfinite(a).all():
        raise HeadError("embeddings and class descriptions must be finite numbers")
    return normalise(x).astype(np.float32), y, normalise(a).astype(np.float32), seen


def check_unlabelled(unlabelled: np.ndarray, dim: int) -> np.ndarray:
    """Normalised unlabelled embeddings (possibly none), or a ``HeadError``."""
    u = np.asarray(unlabelled, dtype=np.float32)
    if u.size == 0:
        return np.zeros((0, dim), np.float32)
    if u.ndim != 2 or u.shape[1] != dim:
        raise HeadError(f"unlabelled embeddings must be (n, {dim}), got shape {u.shape}")
    if not np.isfinite(u).all():
        raise HeadError("unlabelled embeddings must be finite numbers")
    return normalise(u).astype(np.float32)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Trains on one CPU thread, restoring the caller's setting after. The operations are tiny (batches of
    a few hundred vectors), so threads buy nothing, while OpenMP workers spinning on a shared machine
    slow each step tens of times; and a fixed thread count keeps results bit-identical."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def single_threaded(trainer: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(trainer)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with one_thread():
            return trainer(*args, **kwargs)

    return wrapper


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def balanced_weights(labels: np.ndarray) -> torch.Tensor:
    """Per-item sampling weights giving every class the same share: the protocol counts classes."""
    counts = np.bincount(labels)
    return torch.from_numpy(1.0 / counts[labels]).double()


def fit_softmax(x: np.ndarray, y: np.ndarray, num_classes: int, *, steps: int, lr: float, weight_decay: float,
                batch: int, seed: int, scale: Optional[float] = None) -> tuple[np.ndarray, np.ndarray]:
    """A softmax classifier on class-balanced mini-batches, for a fixed number of steps (its cost does not
    grow with the number of items). With ``scale`` it is a cosine classifier, ``scale * cos(x, w_c)``
    without bias: no class can win by the norm of its weights or a bias learnt from its many real items,
    which is the seen-class bias a plain linear layer picks up. Returns (weight, bias)."""
    g = generator(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    weights = balanced_weights(y)
    w = nn.Parameter(torch.randn(num_classes, x.shape[1], generator=g) * 0.01)
    b = nn.Parameter(torch.zeros(num_classes))
    params = [w] if scale is not None else [w, b]
    optimiser = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay if scale is None else 0.0)

    def matrix() -> torch.Tensor:
        return scale * F.normalize(w, dim=1) if scale is not None else w

    for _ in range(steps):
        idx = torch.multinomial(weights, batch, replacement=True, generator=g)
        logits = xt[idx] @ matrix().T + (b if scale is None else 0.0)
        loss = F.cross_entropy(logits, yt[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        return matrix().numpy().astype(np.float32).copy(), b.detach().numpy().astype(np.float32).copy()
