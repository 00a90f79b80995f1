"""One EM over class Gaussians in image-embedding space, numpy only, chunked: the mechanism behind both
transductive zero-shot classification (``query.transduce``: no label at all) and the heads' refinement
of their unseen classes (``heads.transductive``: seen classes anchored by labelled items).

The mixture holds one Gaussian per class, ``N(mean_k, spread_k * S)`` over a shared covariance ``S``
(given as its precision: a full matrix, or a vector for a diagonal one), and optionally one fixed
*background* component (a per-item log density computed by the caller) that takes the items no class
explains. Each class's mean is re-estimated from

- the items it is given (their posteriors), plus
- fixed sums and counts (labelled items, counted in full in every M step), plus
- ``anchor`` pseudo-items at its starting mean (a class no item belongs to keeps its start).

Components are grouped by ``groups``: a group whose ``learn`` is set re-estimates one shared spread
from its posteriors (never below its ``floor``); the others keep theirs. Mixing weights are learnt with
``weight_prior`` pseudo-items each, so a class absent from the collection can fall to almost no mass
without taking any from the rest.

``text`` adds, per item, ``text_weight`` times the log softmax of the text classifier's logits to every
E step: the Kullback-Leibler pull towards the zero-shot prediction of TransCLIP's objective (Zanella et
al. 2024), which keeps a cluster from drifting away from what its class's name says.

EM runs a fixed number of iterations: no tolerance to tune, the same result on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

CHUNK = 8192  # items per block: memory grows with this x classes, not with the collection


@dataclass
class Mixture:
    """What EM found: means, mixing weights (log, classes only), the items each class took (sum of
    posteriors), the background's share, every class's spread, and each item's most probable class after
    the last iteration (-1: the background) with its posterior."""

    means: np.ndarray
    log_weights: np.ndarray
    taken: np.ndarray
    background_share: float
    spreads: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray


@dataclass
class TextPrior:
    """The zero-shot classifier whose log softmax pulls every E step: ``scale * u @ text.T``."""

    text: np.ndarray  # (classes, d), normalised
    scale: float
    weight: float

    def log_probabilities(self, u: np.ndarray) -> np.ndarray:
        logits = self.scale * (u @ self.text.T.astype(np.float64))
        logits -= logits.max(axis=1, keepdims=True)
        return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def quadratic(v: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Row-wise ``v P v``; ``P`` a matrix or the diagonal of one."""
    if precision.ndim == 1:
        return (v * v) @ precision
    return np.einsum("nd,nd->n", v @ precision, v)


def _times(m: np.ndarray, precision: np.ndarray) -> np.ndarray:
    return m * precision if precision.ndim == 1 else m @ precision


def blocks(items: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    for i in range(0, len(items), CHUNK):
        yield i, items[i:i + CHUNK].astype(np.float64)


def log_posteriors(u: np.ndarray, means: np.ndarray, precision: np.ndarray, log_det: float, spreads: np.ndarray,
                   log_weights: np.ndarray, background: Optional[np.ndarray], text: Optional[TextPrior],
                   uu: Optional[np.ndarray] = None) -> np.ndarray:
    """(items, classes [+ background]) unnormalised log posteriors of one block."""
    d = means.shape[1]
    pm = _times(means, precision)
    offsets = np.einsum("kd,kd->k", pm, means)
    uu = quadratic(u, precision) if uu is None else uu
    distance = uu[:, None] - 2 * u @ pm.T + offsets  # Mahalanobis under S
    log_p = -0.5 * (distance / spreads + d * np.log(spreads) + log_det)
    if text is not None:
        log_p = log_p + text.weight * text.log_probabilities(u)
    if background is not None:
        log_p = np.concatenate([log_p, background[:, None]], axis=1)
    return log_p + log_weights


def normalised(log_p: np.ndarray) -> np.ndarray:
    log_p = log_p - log_p.max(axis=1, keepdims=True)
    p = np.exp(log_p)
    return p / p.sum(axis=1, keepdims=True)


def fit_mixture(unlabelled: np.ndarray, start: np.ndarray, precision: np.ndarray, *, spreads: np.ndarray,
                groups: np.ndarray, learn: Sequence[bool], floors: Sequence[float], iterations: int,
                anchor: np.ndarray, fixed_sums: Optional[np.ndarray] = None,
                fixed_counts: Optional[np.ndarray] = None, background: Optional[np.ndarray] = None,
                text: Optional[TextPrior] = None, weight_prior: float = 1.0, log_det: Optional[float] = None,
                start_weights: Optional[np.ndarray] = None) -> Mixture:
    """EM from ``start`` (classes, d) over ``unlabelled`` (items, d; normalised). ``spreads`` the classes'
    starting spreads, ``start_weights`` the components' starting mixing weights (equal by default),
    ``groups`` each class's spread group (0..G-1), ``learn``/``floors`` per group.
    Float64 throughout; ``unlabelled`` is read block by block."""
    k, d = start.shape
    start = start.astype(np.float64)
    means, spreads = start.copy(), np.asarray(spreads, dtype=np.float64).copy()
    if log_det is None:
        log_det = float(-np.log(precision).sum()) if precision.ndim == 1 else float(-np.linalg.slogdet(precision)[1])
    sums = np.zeros((k, d)) if fixed_sums is None else fixed_sums.astype(np.float64)
    counts = np.zeros(k) if fixed_counts is None else fixed_counts.astype(np.float64)
    components = k + (background is not None)
    log_weights = np.full(components, -np.log(components)) if start_weights is None \
        else np.log(np.asarray(start_weights, dtype=np.float64) / np.sum(start_weights))
    taken = np.zeros(components)
    n = len(unlabelled)
    # Every item's u S^-1 u once: the covariance is fixed, only the means move.
    quadratics = np.concatenate([quadratic(u, precision) for _, u in blocks(unlabelled)]) if n else np.zeros(0)
    for _ in range(iterations if n else 0):
        taken, weighted, squares = np.zeros(components), np.zeros((k, d)), np.zeros(k)
        for i, u in blocks(unlabelled):
            uu = quadratics[i:i + len(u)]
            posterior = normalised(log_posteriors(u, means, precision, log_det, spreads, log_weights,
                                                  None if background is None else background[i:i + len(u)], text, uu))
            taken += posterior.sum(axis=0)
            weighted += posterior[:, :k].T @ u
            squares += posterior[:, :k].T @ uu
        mass = counts + taken[:k] + anchor
        means = (sums + weighted + anchor[:, None] * start) / np.maximum(mass, 1e-12)[:, None]
        log_weights = np.log((taken + weight_prior) / (taken.sum() + components * weight_prior))
        pm = _times(means, precision)
        # Each class's scatter of its posteriors around its new mean (exact: expanded).
        scatter = squares - 2 * np.einsum("kd,kd->k", pm, weighted) + taken[:k] * np.einsum("kd,kd->k", pm, means)
        for g, (learnt, floor) in enumerate(zip(learn, floors)):
            mine = groups == g
            if learnt and taken[:k][mine].sum() > 1e-9:
                spreads[mine] = max(floor, float(scatter[mine].sum()) / (d * float(taken[:k][mine].sum())))
    labels, confidence = np.full(n, -1, np.int64), np.zeros(n)
    for i, u in blocks(unlabelled):
        posterior = normalised(log_posteriors(u, means, precision, log_det, spreads, log_weights,
                                              None if background is None else background[i:i + len(u)], text,
                                              quadratics[i:i + len(u)]))
        best = posterior.argmax(axis=1)
        labels[i:i + len(u)] = np.where(best == k, -1, best)
        confidence[i:i + len(u)] = posterior.max(axis=1)
    share = float(taken[k] / n) if background is not None and n else 0.0
    return Mixture(means, log_weights[:k], taken[:k], share, spreads, labels, confidence)
