"""The audit's label probabilities: the one scorer of labels (``query.scoring``: cosines, or a stored head)
mixed with the labels of each item's nearest neighbours and with a linear probe's leave-one-out
probabilities (``probe.py``)."""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..query.scoring import LabelScores
from .probe import RidgeProbe


class NeighbourMix:
    """Label probabilities of a chunk: ``weight`` of the neighbours' label vote, ``probe_weight`` of the
    probe's probabilities, the rest zero-shot (both weights 0: pure zero-shot)."""

    def __init__(self, scores: LabelScores, weight: float, probe_weight: float = 0.0,
                 probe: Optional[RidgeProbe] = None) -> None:
        self.scores, self.weight, self.probe_weight, self.probe = scores, weight, probe_weight, probe
        assert scores.text is not None, "the audit's centroids need the labels' text embeddings"
        self.text: np.ndarray = scores.text

    def __call__(self, vectors: np.ndarray, neighbour_labels: np.ndarray,
                 given: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        zero_shot = self.scores.probabilities(vectors)
        use_probe = self.probe is not None and given is not None and self.probe_weight > 0
        if self.weight == 0.0 and not use_probe:
            return zero_shot, zero_shot
        votes = np.zeros_like(zero_shot)
        rows, slots = np.nonzero(neighbour_labels >= 0)
        np.add.at(votes, (rows, neighbour_labels[rows, slots]), 1.0)
        total = votes.sum(axis=1, keepdims=True)
        voted = total[:, 0] > 0
        vote = np.where(voted[:, None], votes / np.maximum(total, 1.0), zero_shot)  # no neighbours: zero-shot
        probe_weight = self.probe_weight if use_probe else 0.0
        mixed = (1.0 - self.weight - probe_weight) * zero_shot + self.weight * vote
        if use_probe:
            assert self.probe is not None and given is not None
            mixed += probe_weight * self.probe.probabilities(vectors, given)
        return zero_shot, mixed.astype(np.float32)
