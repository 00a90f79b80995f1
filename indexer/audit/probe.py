"""A linear probe of the given labels on the stored embeddings, with out-of-sample probabilities for
every item: what the audit sets beside the zero-shot probabilities and the neighbours' vote.

The probe is ridge regression from an embedding (and a constant) to the one-hot given label, solved in
closed form from sums gathered in the audit's first pass (``X^T X`` and ``X^T Y``, so no embedding is
held in memory). Its out-of-sample scores are exact leave-one-out predictions, which ridge regression
gives at the cost of one fit: for item i with leverage h_i = x_i (X^T X + lambda I)^-1 x_i^T, the
prediction without it is (s_i - h_i y_i) / (1 - h_i). So every item is judged by a probe that never saw
its own label, and the probe learns from all the other items (N-fold cross-validation, not 5-fold).

Scores become probabilities by a softmax with temperature ``t``. The ridge ``lambda`` and ``t`` are chosen
to minimise the leave-one-out log loss of the given labels on a random sample of the items: noisy
labels, no knowledge of which are wrong. Cost: O(N·d²) for the sums, O(d³) for one eigendecomposition,
O(N·d·C) for the probabilities; memory O(d² + d·C + S·d) for a sample of S items.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

SAMPLE = 4000  # items whose leave-one-out log loss chooses lambda and t
LAMBDAS = tuple(10.0 ** e for e in np.arange(-4.0, 1.01, 0.5))  # relative to the mean eigenvalue
TEMPERATURES = tuple(float(t) for t in (1, 2, 3, 5, 8, 12, 18, 27, 40, 60, 90))


def _with_constant(x: np.ndarray) -> np.ndarray:
    return np.hstack([np.asarray(x, dtype=np.float64), np.ones((len(x), 1))])


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


class RidgeProbe:
    """Gathers the sums chunk by chunk (``add``), then fits (``fit``) and gives leave-one-out
    probabilities (``probabilities``)."""

    def __init__(self, dim: int, n_labels: int, seed: int = 0) -> None:
        self.n_labels = n_labels
        self.gram = np.zeros((dim + 1, dim + 1))
        self.cross = np.zeros((dim + 1, n_labels))
        self.count = 0
        self._rng = np.random.default_rng(seed)
        self._sample: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None  # keys, x, given
        self.lam = self.temperature = float("nan")
        self.loss = float("nan")

    def add(self, x: np.ndarray, given: np.ndarray) -> None:
        xb = _with_constant(x)
        self.gram += xb.T @ xb
        np.add.at(self.cross.T, given, xb)  # X^T Y with Y one-hot
        self.count += len(x)
        keys = self._rng.random(len(x))  # a uniform random sample of the items (the smallest keys)
        if self._sample is None:
            merged = (keys, xb, np.asarray(given))
        else:
            old = self._sample
            merged = (np.concatenate([old[0], keys]), np.vstack([old[1], xb]), np.concatenate([old[2], given]))
        if len(merged[0]) > SAMPLE:
            keep = np.argsort(merged[0])[:SAMPLE]
            merged = (merged[0][keep], merged[1][keep], merged[2][keep])
        self._sample = merged

    def fit(self) -> bool:
        """Chooses lambda and t; False when there is too little to fit (fewer items than two per label)."""
        if self._sample is None or self.count < 2 * self.n_labels:
            return False
        values, self._vectors = np.linalg.eigh(self.gram)
        self._values = np.maximum(values, 0.0)
        self._projected = self._vectors.T @ self.cross  # Q^T X^T Y
        scale = float(self._values.mean()) or 1.0
        _, x, given = self._sample
        z = x @ self._vectors
        rows = np.arange(len(given))
        best = (np.inf, 0.0, 0.0)
        for relative in LAMBDAS:
            lam = relative * scale
            scores = self._loo(z, given, lam)
            for t in TEMPERATURES:
                p = _softmax(t * scores)
                loss = float(-np.log(np.maximum(p[rows, given], 1e-12)).mean())
                if loss < best[0]:
                    best = (loss, lam, t)
        self.loss, self.lam, self.temperature = best
        return True

    def _loo(self, z: np.ndarray, given: np.ndarray, lam: float) -> np.ndarray:
        inverse = 1.0 / (self._values + lam)
        scores = (z * inverse) @ self._projected
        leverage = np.minimum((z * z * inverse).sum(axis=1), 1.0 - 1e-6)
        scores[np.arange(len(given)), given] -= leverage
        return scores / (1.0 - leverage)[:, None]

    def probabilities(self, x: np.ndarray, given: np.ndarray) -> np.ndarray:
        """Leave-one-out probabilities over the labels of items that were added with labels ``given``."""
        z = _with_constant(x) @ self._vectors
        return _softmax(self.temperature * self._loo(z, np.asarray(given), self.lam)).astype(np.float32)
