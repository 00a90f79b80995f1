"""Transductive refinement: the class Gaussians of the generative head re-estimated on the collection's
unlabelled embeddings by EM (numpy only).

A description places an unseen class's mean only roughly (a ridge regression from text embeddings or
attributes, fitted on the seen classes), and the backbone embeds truly unseen pictures off that place,
towards seen neighbours. The collection's unlabelled items often hold pictures of those classes. The
mixture fitted to them has, over the seen classes' pooled within-class covariance ``S``:

- one Gaussian per seen class, ``N(mean, s_seen S)``: ``s_seen`` is the labelled items' own spread, their
  means are anchored by the labelled items (counted in full in every M step);
- one Gaussian per unseen class, ``N(mean, s_unseen S)``, starting at the predicted mean, pulled back
  towards it by ``prior`` pseudo-items (a class no unlabelled item belongs to keeps its predicted mean);
  the unseen classes share one spread ``s_unseen``, learnt, never below ``s_seen``, and started
  ``start_spread`` times wider: their places are only predicted, so at first they must reach far;
- one *background* Gaussian, the spread of the whole collection (labelled and unlabelled, shrunk as
  ``S`` is), fixed: it takes the items no class explains (items of classes not in the list, pictures far
  off every cluster), which would otherwise drag an unseen class's mean to them;
- mixing weights learnt from the posteriors (one pseudo-item each).

EM runs a fixed number of iterations (no tolerance to tune, the same result on every machine).
``Refined.means`` replaces the predicted means; the classifier is then fitted as without refinement.
Why these choices (docs/guides/heads.md, "Unlabelled items"; docs/research.md): without the background, a
collection holding other things than the listed classes drags unseen means to them (H 0.55-0.77 on the development seeds instead
of 0.88-0.96 without refinement); without a wider start, an unseen class whose predicted place is
nearer a seen class than its pictures are loses them to it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..errors import HeadError

_CHUNK = 8192  # unlabelled items per block: memory grows with this x classes, not with the collection
_CACHE: "OrderedDict[bytes, Refined]" = OrderedDict()
_CACHE_SIZE = 4


@dataclass
class Refined:
    """The refined class means, their mixing weights, how many unlabelled items each class took (sum of
    posteriors), the share the background took, and the unseen classes' spread over the seen ones'."""

    means: np.ndarray  # (classes, d)
    log_weights: np.ndarray  # (classes,)
    taken: np.ndarray  # (classes,)
    background_share: float
    unseen_spread: float
    labels: np.ndarray  # (unlabelled,) each item's most probable class after the last iteration; -1: background
    confidence: np.ndarray  # (unlabelled,) its posterior


def shrunk(covariance: np.ndarray, shrink: float) -> np.ndarray:
    d = len(covariance)
    return (1 - shrink) * covariance + shrink * np.trace(covariance) / d * np.eye(d)


def regress_means(x: np.ndarray, y: np.ndarray, a: np.ndarray, seen: np.ndarray, ridge: float) -> np.ndarray:
    """Every class's mean: seen classes' from their items, unseen classes' predicted from their descriptions
    by a ridge regression fitted on the seen classes' means, both sides centred so that the ridge shrinks
    towards the average class and not towards the origin."""
    seen_ids = np.flatnonzero(seen)
    means = np.zeros((len(a), x.shape[1]))
    for c in seen_ids:
        means[c] = x[y == c].mean(axis=0)
    mu_bar, a_bar = means[seen_ids].mean(axis=0), a[seen_ids].mean(axis=0)
    a_s = a[seen_ids] - a_bar
    # Dual form: (seen classes x seen classes), small whatever the description's size.
    alpha = np.linalg.solve(a_s @ a_s.T + ridge * np.eye(len(seen_ids)), means[seen_ids] - mu_bar)
    predicted = mu_bar + (a - a_bar) @ a_s.T @ alpha
    means[~seen] = predicted[~seen]
    return means


def pooled_covariance(x: np.ndarray, y: np.ndarray, means: np.ndarray, seen: np.ndarray, shrink: float) -> np.ndarray:
    """The seen classes' within-class covariance (classes weighted equally), shrunk towards its average
    variance by ``shrink``: with few items per class the raw estimate is rank deficient and over-confident."""
    d = x.shape[1]
    covariance = np.zeros((d, d))
    seen_ids = np.flatnonzero(seen)
    for c in seen_ids:
        r = x[y == c] - means[c]
        covariance += r.T @ r / max(len(r), 1)
    return shrunk(covariance / len(seen_ids), shrink)


def _quadratic(v: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Row-wise ``v P v``."""
    return np.einsum("nd,nd->n", v @ precision, v)


def _background(x: np.ndarray, unlabelled: np.ndarray, shrink: float) -> np.ndarray:
    """Each unlabelled item's log density (up to the constant every component shares) under the Gaussian
    of the whole collection's mean and shrunk covariance."""
    n, d = len(x) + len(unlabelled), x.shape[1]
    total, outer = x.sum(axis=0).astype(np.float64), x.T.astype(np.float64) @ x
    for i in range(0, len(unlabelled), _CHUNK):
        u = unlabelled[i:i + _CHUNK].astype(np.float64)
        total += u.sum(axis=0)
        outer += u.T @ u
    mean = total / n
    covariance = shrunk(outer / n - np.outer(mean, mean), shrink) + 1e-9 * np.eye(d)
    precision, log_det = np.linalg.inv(covariance), float(np.linalg.slogdet(covariance)[1])
    return np.concatenate([-0.5 * (_quadratic(unlabelled[i:i + _CHUNK].astype(np.float64) - mean, precision) + log_det)
                           for i in range(0, len(unlabelled), _CHUNK)])


def _e_step(unlabelled: np.ndarray, means: np.ndarray, precision: np.ndarray, spread: np.ndarray, log_det: float,
            log_weights: np.ndarray, background: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(items, their ``u P u``, posteriors over the classes and the background, last column) per block."""
    k, d = means.shape
    precision_means = means @ precision
    offsets = np.einsum("kd,kd->k", precision_means, means)
    for i in range(0, len(unlabelled), _CHUNK):
        u = unlabelled[i:i + _CHUNK].astype(np.float64)
        uu = _quadratic(u, precision)
        distance = uu[:, None] - 2 * u @ precision_means.T + offsets  # Mahalanobis under S
        log_p = np.empty((len(u), k + 1))
        log_p[:, :k] = -0.5 * (distance / spread + d * np.log(spread) + log_det)
        log_p[:, k] = background[i:i + _CHUNK]
        log_p += log_weights
        log_p -= log_p.max(axis=1, keepdims=True)
        posterior = np.exp(log_p)
        yield u, uu, posterior / posterior.sum(axis=1, keepdims=True)


def refine_means(x: np.ndarray, y: np.ndarray, means: np.ndarray, covariance: np.ndarray, seen: np.ndarray,
                 unlabelled: np.ndarray, *, iterations: int = 10, prior: float = 1.0, start_spread: float = 16.0,
                 shrink: float = 0.2) -> Refined:
    """EM over ``unlabelled`` (normalised embeddings) from ``means`` (seen classes': their labelled items'
    ``x``/``y`` means; unseen: predicted), ``covariance`` the seen classes' pooled one (``shrink`` is
    applied to the background's too). Float64 throughout.

    The last few results are kept by a digest of the inputs: validation trains every candidate of a fold
    on the same items, and the candidates differ in the classifier only, not in what EM sees."""
    if iterations < 0 or prior <= 0 or start_spread < 1:
        raise HeadError("EM needs iterations >= 0, a prior strength > 0 and a starting spread >= 1")
    digest = hashlib.blake2b(repr((iterations, prior, start_spread, shrink)).encode(), digest_size=20)
    for array in (x, y, means, covariance, seen, unlabelled):
        digest.update(repr((array.dtype.str, array.shape)).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    key = digest.digest()
    if key not in _CACHE:
        refined = _refine(x, y, means, covariance, seen, unlabelled, iterations, prior, start_spread, shrink)
        for array in (refined.means, refined.log_weights, refined.taken, refined.labels, refined.confidence):
            array.setflags(write=False)  # shared by every caller with these inputs
        _CACHE[key] = refined
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key]


def _refine(x: np.ndarray, y: np.ndarray, means: np.ndarray, covariance: np.ndarray, seen: np.ndarray,
            unlabelled: np.ndarray, iterations: int, prior: float, start_spread: float, shrink: float) -> Refined:
    k, d = means.shape
    start = means.astype(np.float64)
    means = start.copy()
    if len(unlabelled) == 0 or iterations == 0:
        return Refined(means, np.full(k, -np.log(k)), np.zeros(k), 0.0, 1.0, np.full(len(unlabelled), -1),
                       np.zeros(len(unlabelled)))
    covariance = covariance + 1e-9 * np.eye(d)
    precision, log_det = np.linalg.inv(covariance), float(np.linalg.slogdet(covariance)[1])
    x = x.astype(np.float64)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    sums = np.zeros((k, d))
    np.add.at(sums, y, x)
    s_seen = float(_quadratic(x - start[y], precision).mean()) / d
    s_unseen = start_spread * s_seen
    anchor = prior * (~seen).astype(np.float64)
    background = _background(x, unlabelled, shrink)
    log_weights = np.full(k + 1, -np.log(k + 1))  # the last: the background
    for _ in range(iterations):
        spread = np.where(seen, s_seen, s_unseen)
        taken, weighted, squares = np.zeros(k + 1), np.zeros((k, d)), np.zeros(k)
        for u, uu, posterior in _e_step(unlabelled, means, precision, spread, log_det, log_weights, background):
            taken += posterior.sum(axis=0)
            weighted += posterior[:, :k].T @ u
            squares += posterior[:, :k].T @ uu
        mass = counts + taken[:k] + anchor
        means = (sums + weighted + anchor[:, None] * start) / np.maximum(mass, 1e-12)[:, None]
        log_weights = np.log((taken + 1.0) / (taken.sum() + k + 1))
        # The unseen classes' shared spread, from their posteriors around the new means (exact: expanded).
        unseen = ~seen
        mine = taken[:k][unseen]
        if mine.sum() > 1e-9:
            pm = means[unseen] @ precision
            scatter = squares[unseen] - 2 * np.einsum("kd,kd->k", pm, weighted[unseen]) \
                + mine * np.einsum("kd,kd->k", pm, means[unseen])
            s_unseen = max(s_seen, float(scatter.sum()) / (d * float(mine.sum())))
    # A last E step: each unlabelled item's most probable component (-1: the background) and its posterior.
    labels, confidence = np.empty(len(unlabelled), np.int64), np.empty(len(unlabelled))
    spread, at = np.where(seen, s_seen, s_unseen), 0
    for u, _, posterior in _e_step(unlabelled, means, precision, spread, log_det, log_weights, background):
        best = posterior.argmax(axis=1)
        labels[at:at + len(u)] = np.where(best == k, -1, best)
        confidence[at:at + len(u)] = posterior.max(axis=1)
        at += len(u)
    return Refined(means, log_weights[:k], taken[:k], float(taken[k] / len(unlabelled)), s_unseen / s_seen, labels,
                   confidence)


def pseudo_labelled(x: np.ndarray, y: np.ndarray, a: np.ndarray, seen: np.ndarray, unlabelled: np.ndarray, *,
                    ridge: float = 0.1, shrink: float = 0.2, iterations: int = 10, prior: float = 1.0,
                    threshold: float = 0.9) -> tuple[np.ndarray, np.ndarray, Refined]:
    """(items, unseen classes) of the unlabelled items EM gives to an unseen class with a posterior of at
    least ``threshold``, and the refinement itself: self-training data for the projection head."""
    means = regress_means(x, y, a, seen, ridge)
    refined = refine_means(x, y, means, pooled_covariance(x, y, means, seen, shrink), seen, unlabelled,
                           iterations=iterations, prior=prior, shrink=shrink)
    pick = (refined.labels >= 0) & (refined.confidence >= threshold)
    pick &= ~seen[np.maximum(refined.labels, 0)]
    return unlabelled[pick], refined.labels[pick], refined
