"""The figures of generalized zero-shot learning, as the protocol defines them (Xian et al., 2018).

S and U are *average per-class* top-1 accuracies: each class's accuracy over its own pictures, averaged
over the seen (S) or the unseen (U) classes, with every picture searched over all classes at once; so a
class counts once whatever its number of pictures. H = 2SU/(S+U). Classic ZSL searches the unseen
pictures over the unseen classes only. The per-picture accuracies (what a collection's share of right
answers would be) are kept beside them, named as such; on a balanced set both agree.

Calibrated stacking subtracts a constant from the seen classes' scores before the arg-max; the constant
is given, or tuned to maximise H (``tune_calibration``), or tuned by two-fold cross-validation so that no
picture is scored with a constant tuned on itself (``cross_validated_calibration``).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def harmonic_mean(s: float, u: float) -> float:
    return 2 * s * u / (s + u) if s + u > 0 else 0.0


def per_class_accuracy(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """Top-1 accuracy of each class over its own pictures; NaN for a class without pictures."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    counts = np.bincount(truth, minlength=num_classes).astype(np.float64)
    hits = np.bincount(truth[predicted == truth], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if len(values) else 0.0


def _accuracies(predicted: np.ndarray, truth: np.ndarray, unseen_mask: np.ndarray) -> tuple[float, float, float, float]:
    """(S, U per class, S, U per picture), unrounded."""
    accuracy = per_class_accuracy(predicted, truth, len(unseen_mask))
    present = ~np.isnan(accuracy)
    right = np.asarray(predicted) == np.asarray(truth)
    on_unseen = unseen_mask[truth]
    return (_mean(accuracy[present & ~unseen_mask]), _mean(accuracy[present & unseen_mask]),
            _mean(right[~on_unseen]), _mean(right[on_unseen]))


def per_class_h(predicted: np.ndarray, truth: np.ndarray, unseen_mask: np.ndarray) -> float:
    """The protocol's H of these predictions, unrounded."""
    s, u, _, _ = _accuracies(predicted, truth, np.asarray(unseen_mask, dtype=bool))
    return harmonic_mean(s, u)


def figures_of_predictions(predicted: np.ndarray, truth: np.ndarray, unseen_mask: np.ndarray) -> dict[str, float]:
    """S, U, H per class (the protocol's), and the same per picture. A kind of class without pictures
    scores 0; a class without pictures is left out of its kind's mean."""
    s, u, s_pic, u_pic = _accuracies(predicted, truth, np.asarray(unseen_mask, dtype=bool))
    return {"seen_accuracy": round(s, 4), "unseen_accuracy": round(u, 4), "harmonic_mean": round(harmonic_mean(s, u), 4),
            "seen_accuracy_per_picture": round(s_pic, 4), "unseen_accuracy_per_picture": round(u_pic, 4),
            "harmonic_mean_per_picture": round(harmonic_mean(s_pic, u_pic), 4)}


def gzsl_figures(scores: np.ndarray, truth: np.ndarray, unseen_mask: np.ndarray, calibration: float = 0.0
                 ) -> dict[str, float]:
    """``figures_of_predictions`` of the arg-max over all classes, ``calibration`` subtracted from the
    seen classes' scores."""
    unseen_mask = np.asarray(unseen_mask, dtype=bool)
    adjusted = scores - calibration * (~unseen_mask)[None, :]
    return figures_of_predictions(adjusted.argmax(axis=1), truth, unseen_mask)


def zsl_accuracy(scores: np.ndarray, truth: np.ndarray, unseen_mask: np.ndarray) -> tuple[float, float]:
    """Classic ZSL (unseen pictures over the unseen classes only): (per-class mean, per-picture)."""
    unseen_mask = np.asarray(unseen_mask, dtype=bool)
    on_unseen = unseen_mask[truth]
    if not on_unseen.any():
        return 0.0, 0.0
    ids = np.flatnonzero(unseen_mask)
    predicted = ids[scores[on_unseen][:, ids].argmax(axis=1)]
    per_class = float(np.nanmean(per_class_accuracy(predicted, truth[on_unseen], len(unseen_mask))))
    return round(per_class, 4), round(float(np.mean(predicted == truth[on_unseen])), 4)


def tune_calibration(scores: np.ndarray, truth: np.ndarray, unseen_mask: np.ndarray, points: int = 151,
                     non_negative: bool = False) -> float:
    """The constant, on a grid over the score range (0 included), that maximises per-class H on these
    pictures; among equal ones, the smallest in size, so that a balanced scorer keeps 0. With
    ``non_negative`` no constant below 0 is tried: one that adds to the seen classes' scores only ever
    adds bias towards them."""
    seen = (~np.asarray(unseen_mask, dtype=bool)).astype(np.float64)
    spread = float(np.ptp(scores)) or 1.0
    best, best_h = 0.0, -1.0
    grid = np.unique(np.append(np.linspace(-0.25 * spread, 0.5 * spread, points), 0.0))
    for gamma in grid[grid >= 0] if non_negative else grid:
        predicted = (scores - gamma * seen).argmax(axis=1)
        h = per_class_h(predicted, truth, unseen_mask)
        if h > best_h + 1e-12 or (abs(h - best_h) <= 1e-12 and abs(gamma) < abs(best)):
            best, best_h = float(gamma), h
    return best


def cross_validated_calibration(scores: np.ndarray, truth: np.ndarray, unseen_mask: np.ndarray, seed: int = 0
                                ) -> dict[str, Any]:
    """Two-fold: tune on one half, predict the other; the pooled figures and both constants."""
    unseen_mask = np.asarray(unseen_mask, dtype=bool)
    fold = np.random.default_rng(seed).permutation(len(truth)) % 2
    predicted = np.empty(len(truth), dtype=np.int64)
    constants = []
    for k in (0, 1):
        tune, test = fold != k, fold == k
        gamma = tune_calibration(scores[tune], truth[tune], unseen_mask)
        constants.append(round(gamma, 4))
        predicted[test] = (scores[test] - gamma * (~unseen_mask)[None, :]).argmax(axis=1)
    return {**figures_of_predictions(predicted, truth, unseen_mask), "constants": constants}
