"""Hyper-parameters chosen without any unseen-class picture, then the final head.

The standard GZSL validation (Xian et al.): each fold holds out a group of *seen* classes as
pseudo-unseen (their items become validation pictures of "unseen" classes) and a share of every other
seen class's items; a candidate is trained on the rest and judged by the protocol's H, with the
calibrated-stacking constant that maximises it. The real unseen classes stay in the label set as
distractors; none of their pictures exists here, so none can be looked at.

Why a tie-break: when the backbone itself was trained on the seen classes (the bundled model was), the
pseudo-unseen classes are far easier than truly unseen ones, validation H saturates near 1 for most
candidates, and it cannot see the backbone's bias towards seen classes. Candidates within ``tolerance``
of the best H are tied, and the tie goes to the one giving pseudo-unseen items the highest probability
of their true class: among heads that lose nothing on validation, the one most confident on novel
classes is the least biased towards the seen ones.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..errors import HeadError
from ..query.scoring import softmax
from ..query.gzsl import per_class_h, tune_calibration
from .fit import Linear, check_inputs, check_unlabelled


Trainer = Callable[..., Linear]


def trainer_for(method: str) -> Trainer:
    if method == "projection":
        from .projection import train_projection

        return train_projection
    if method == "generative":
        from .generative import train_generative

        return train_generative
    raise HeadError(f"unknown head method {method!r}: projection or generative")


def default_grid(method: str, text_descriptions: bool, generator: str = "gaussian") -> list[dict[str, Any]]:
    """The candidates tried by default. Small on purpose: each costs a training per fold."""
    if method == "projection":
        return [{"reg": reg, "steps": 1000, "identity_prior": text_descriptions} for reg in (0.0, 1e-4, 1e-3, 1e-2)]
    if method == "generative" and generator == "wgan":
        return [{"generator": "wgan", "widen": widen, "clf_scale": 50.0} for widen in (1.0, 3.0)]
    if method == "generative":
        return [{"generator": generator, "widen": widen, "clf_scale": scale}
                for widen in (1.0, 2.0, 3.0, 4.0) for scale in (25.0, 50.0)]
    raise HeadError(f"unknown head method {method!r}: projection or generative")


@dataclass
class Fitted:
    """The final head's layer, its calibration, and how the choice was made."""

    layer: Linear
    calibration: float
    selection: dict[str, Any]  # the rule, the folds, every candidate's validation figures
    seconds: float


def _true_class_probability(logits: np.ndarray, truth: np.ndarray, classes: np.ndarray) -> float:
    """Mean over ``classes`` of the mean softmax probability their items give their true class."""
    p = softmax(logits)[np.arange(len(truth)), truth]
    return float(np.mean([p[truth == c].mean() for c in classes if (truth == c).any()]))


def _folds(y: np.ndarray, seen: np.ndarray, rng: np.random.Generator, folds: int, pseudo_unseen_fraction: float,
           held_out_fraction: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(seen mask of the fold, items to fit on, pseudo-unseen classes) per fold; disjoint pseudo-unseen
    groups while folds x group size <= the number of seen classes."""
    seen_ids = rng.permutation(np.flatnonzero(seen))
    group = max(1, int(round(pseudo_unseen_fraction * len(seen_ids))))
    if len(seen_ids) - group < 2:
        raise HeadError(f"only {len(seen_ids)} classes have labelled items; validation holds some out as "
                        "pseudo-unseen and needs at least 3")
    splits = []
    for f in range(folds):
        held = np.roll(seen_ids, -f * group)[:group]
        fold_seen = seen.copy()
        fold_seen[held] = False
        fit = np.zeros(len(y), dtype=bool)
        for c in np.flatnonzero(fold_seen):
            items = rng.permutation(np.flatnonzero(y == c))
            fit[items[int(round(held_out_fraction * len(items))):]] = True
        splits.append((fold_seen, fit, held))
    return splits


def fit_head(features: np.ndarray, labels: np.ndarray, descriptions: np.ndarray, seen_mask: np.ndarray,
             method: str, seed: int = 0, grid: Optional[Sequence[Mapping[str, Any]]] = None,
             generator: str = "gaussian", folds: int = 2, pseudo_unseen_fraction: float = 0.25,
             held_out_fraction: float = 0.2, tolerance: float = 0.005, unlabelled: Optional[np.ndarray] = None,
             found_means: Optional[np.ndarray] = None) -> Fitted:
    """Chooses hyper-parameters (and the calibration constant) on held-out seen classes, then trains the
    final head on every labelled item. Same inputs and seed, same head.

    ``unlabelled`` embeddings (the collection's items without a label, of any class) go to the trainer in
    every fold as in the final training: in a fold its pseudo-unseen classes' unlabelled items are there
    to be found as the real unseen classes' are. ``found_means`` (where label-free transduction of those
    items put each class; NaN rows where it found none) are EM's starting means for the unseen classes of
    every fold and of the final head (``transductive.start_means``)."""
    started = time.perf_counter()
    x, y, a, seen = check_inputs(features, labels, descriptions, seen_mask)
    trainer = trainer_for(method)
    if unlabelled is not None:
        trainer = functools.partial(trainer, unlabelled=check_unlabelled(unlabelled, x.shape[1]),
                                    found_means=found_means)
    text = a.shape[1] == x.shape[1]
    candidates = [dict(c) for c in (grid if grid is not None else default_grid(method, text, generator))]
    if not candidates:
        raise HeadError("no hyper-parameter candidate to try")
    splits = _folds(y, seen, np.random.default_rng(seed), folds, pseudo_unseen_fraction, held_out_fraction)
    table = []
    for candidate in candidates:
        hs, raw, constants, confidence = [], [], [], []
        for f, (fold_seen, fit, held) in enumerate(splits):
            layer = trainer(x[fit], y[fit], a, fold_seen, seed=seed + f, **candidate)
            logits, truth = layer.logits(x[~fit]), y[~fit]
            raw.append(per_class_h(logits.argmax(axis=1), truth, ~fold_seen))
            # Never below 0: held-out seen classes are easier than truly unseen ones (the backbone knows
            # them), so a negative constant found on them adds seen bias where it hurts most.
            gamma = tune_calibration(logits, truth, ~fold_seen, non_negative=True)
            constants.append(gamma)
            hs.append(per_class_h((logits - gamma * fold_seen).argmax(axis=1), truth, ~fold_seen))
            confidence.append(_true_class_probability(logits - gamma * fold_seen, truth, held))
        table.append({"hparams": candidate, "H": round(float(np.mean(hs)), 4),
                      "H_uncalibrated": round(float(np.mean(raw)), 4),
                      "calibration": round(float(np.mean(constants)), 4),
                      "pseudo_unseen_confidence": round(float(np.mean(confidence)), 4)})
    top = max(row["H"] for row in table)
    best = max((row for row in table if row["H"] >= top - tolerance), key=lambda row: row["pseudo_unseen_confidence"])
    layer = trainer(x, y, a, seen, seed=seed, **best["hparams"])
    # Every candidate near-perfect on held-out seen classes: validation cannot see how the head treats
    # truly unseen pictures (the backbone knows the held-out ones), so it cannot say the head helps.
    saturated = top >= 1 - tolerance
    selection = {"rule": "best mean per-class H on pseudo-unseen seen classes; ties within "
                         f"{tolerance} go to the highest pseudo-unseen true-class probability",
                 "folds": folds, "pseudo_unseen_fraction": pseudo_unseen_fraction,
                 "held_out_fraction": held_out_fraction, "unseen_pictures_used": 0,
                 "unlabelled_items": 0 if unlabelled is None else int(len(unlabelled)), "candidates": table,
                 "saturated": bool(saturated)}
    if saturated:
        selection["warning"] = (f"validation saturated (H {top:.3f} on held-out seen classes): it cannot tell whether "
                                "this head beats plain cosine on truly unseen pictures; compare them on labelled "
                                "pictures of unseen classes (indexer eval --compare) before relying on it")
    return Fitted(layer, float(best["calibration"]), selection, round(time.perf_counter() - started, 3))
