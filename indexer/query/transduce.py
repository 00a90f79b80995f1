"""Transductive zero-shot classification: a whole collection classified at once, without any label, from
its stored embeddings (numpy only, read block by block).

Plain zero-shot scores each item alone against the labels' text embeddings. The collection's items of
one class cluster in image space, and the text embeddings sit off those clusters (the modality gap) and
off-centre (a backbone embeds pictures of classes it never saw towards seen neighbours). Transduction
fits a Gaussian mixture to the collection (``query.mixture``, the same EM the heads refine with):

1. every class starts at the mean of the items weighted by their plain zero-shot probabilities (its
   proxy moved into image space, as InMaP does), with a shared diagonal covariance from the same
   weights, shrunk towards its average variance;
2. EM re-estimates the means, one shared spread and the mixing weights (a class absent from the
   collection falls to almost no mass and takes nothing from the others), every E step pulled towards
   the text classifier by ``text_weight`` times its log probabilities (TransCLIP's KL term);
3. the result is each item's posterior over the labels.

**The guard.** Transduction needs clusters to work with. It is not trusted, and plain zero-shot's
scores are returned unchanged, when the collection is small against the label set (fewer than
``min_items`` items, or fewer than ``min_items_per_label`` per label); when plain zero-shot spreads the
items over fewer than ``min_present_share`` of the labels (the exponential of its top-1 marginal's
entropy: most labels absent, or one label holding most items, where such methods are known to fall below
zero-shot); or when its answer strays too far from plain zero-shot's: more than ``max_changed`` of the
arg-maxes changed (EM re-drew the classes rather than refined them). What was decided, and why, is
reported in ``Transduced.guard``. The settings were chosen on the development sets only
(``indexer.synthetic`` and ``tests/plain_shapes.py`` pictures; docs/figures.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .mixture import CHUNK, TextPrior, blocks, fit_mixture, log_posteriors, normalised

SETTINGS: dict[str, float] = {
    "text_weight": 20.0, "iterations": 10, "shrink": 0.2, "anchor": 1.0, "weight_prior": 0.1,
    "min_items": 100, "min_items_per_label": 2.0, "max_changed": 0.3, "min_present_share": 0.5,
}


@dataclass
class Transduced:
    """Each item's scores over the labels (log posteriors after transduction, or plain zero-shot's
    cosines when the guard fell back), the scale their softmax is taken at, and the guard's record."""

    scores: np.ndarray
    scale: float
    used: bool
    guard: dict[str, Any] = field(default_factory=dict)
    means: Optional[np.ndarray] = None  # (labels, d) where the mixture put each label, when it was used
    taken: Optional[np.ndarray] = None  # (labels,) the items each label's component took (sum of posteriors)

    def found_means(self, min_items: float = 2.0) -> Optional[np.ndarray]:
        """The mixture's means, NaN rows for labels that took fewer than ``min_items`` items; None when
        transduction was not used. What a head's unseen classes start from (``heads.transductive``)."""
        if not self.used or self.means is None or self.taken is None:
            return None
        return np.where((self.taken >= min_items)[:, None], self.means, np.nan)

    def probabilities(self) -> np.ndarray:
        return normalised(self.scores * self.scale)


def _plain(embeddings: np.ndarray, text: np.ndarray) -> np.ndarray:
    """Plain zero-shot's cosines, computed as ``LabelScores.scores`` computes them (the same numbers)."""
    if not len(embeddings):
        return np.zeros((0, len(text)), np.float32)
    return np.concatenate([embeddings[i:i + CHUNK] @ text.T for i in range(0, len(embeddings), CHUNK)])


def transduce(embeddings: np.ndarray, text: np.ndarray, scale: float, guard: bool = True,
              **settings: float) -> Transduced:
    """Transductive scores of ``embeddings`` (items, d; normalised) over the labels whose normalised text
    embeddings are ``text`` (labels, d), ``scale`` the model's logit scale. ``guard=False`` returns the
    transductive answer whatever the guard says (for comparison only)."""
    s = {**SETTINGS, **settings}
    n, k = len(embeddings), len(text)
    plain = _plain(embeddings, text)
    record: dict[str, Any] = {"items": n, "labels": k}

    def fall_back(reason: str) -> Transduced:
        return Transduced(plain, scale, False, record | {"used": False, "reason": reason})

    if guard and (n < s["min_items"] or n < s["min_items_per_label"] * k):
        return fall_back(f"{n} items for {k} labels: too few for clusters to be found (needs at least "
                         f"{int(s['min_items'])} and {s['min_items_per_label']:g} per label)")
    if n == 0:
        return fall_back("no items")
    marginal = np.bincount(plain.argmax(axis=1), minlength=k) / n
    present = float(np.exp(-np.sum(marginal[marginal > 0] * np.log(marginal[marginal > 0]))))
    record["labels_effective"] = round(present, 2)
    if guard and present < s["min_present_share"] * k:
        return fall_back(f"plain zero-shot spreads the items over about {present:.0f} of the {k} labels (fewer than "
                         f"{s['min_present_share']:.0%}): with most labels absent, or one label holding most "
                         "items, transduction has little to work with")
    prior = TextPrior(text.astype(np.float64), scale, s["text_weight"])
    # Starting means and a diagonal covariance from the plain zero-shot probabilities.
    mass, sums, d = np.zeros(k), np.zeros((k, text.shape[1])), text.shape[1]
    squares = np.zeros((k, d))
    for _, u in blocks(embeddings):
        p = np.exp(prior.log_probabilities(u))
        mass += p.sum(axis=0)
        sums += p.T @ u
        squares += p.T @ (u * u)
    start = sums / np.maximum(mass, 1e-12)[:, None]
    # Sum over classes of each class's weighted squared deviations from its start (expanded: one pass).
    variance = (squares - 2 * start * sums + mass[:, None] * start ** 2).sum(axis=0)
    variance = variance / n
    variance = (1 - s["shrink"]) * variance + s["shrink"] * variance.mean() + 1e-12
    precision = 1.0 / variance
    mixture = fit_mixture(embeddings, start, precision, spreads=np.ones(k), groups=np.zeros(k, np.int64),
                          learn=(True,), floors=(1e-3,), iterations=int(s["iterations"]),
                          anchor=np.full(k, s["anchor"]), text=prior, weight_prior=s["weight_prior"],
                          start_weights=(mass + s["weight_prior"]) / (n + k * s["weight_prior"]))
    scores = np.concatenate([
        log_posteriors(u, mixture.means, precision, float(np.log(variance).sum()), mixture.spreads,
                       mixture.log_weights, None, prior) for _, u in blocks(embeddings)])
    scores = scores - scores.max(axis=1, keepdims=True)
    before, after = plain.argmax(axis=1), scores.argmax(axis=1)
    changed = float(np.mean(before != after))
    record |= {"changed": round(changed, 4), "labels_present": int((mixture.taken > 0.5).sum()),
               "spread": round(float(mixture.spreads[0]), 4)}
    if guard and changed > s["max_changed"]:
        return fall_back(f"transduction changed {changed:.0%} of the answers (more than {s['max_changed']:.0%}): "
                         "it re-drew the classes rather than refined them")
    return Transduced(scores, 1.0, True, record | {"used": True, "reason": None}, mixture.means, mixture.taken)
