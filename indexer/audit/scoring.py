"""The audit's label probabilities: the one scorer of labels (``query.scoring``: cosines, or a stored head)
mixed with the labels of each item's nearest neighbours."""

from __future__ import annotations

import numpy as np

from ..query.scoring import LabelScores


class NeighbourMix:
    """Label probabilities of a chunk: zero-shot probabilities mixed with the neighbours' label vote,
    ``weight`` of the vote (0: pure zero-shot)."""

    def __init__(self, scores: LabelScores, weight: float) -> None:
        self.scores, self.weight = scores, weight
        assert scores.text is not None, "the audit's centroids need the labels' text embeddings"
        self.text: np.ndarray = scores.text

    def __call__(self, vectors: np.ndarray, neighbour_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zero_shot = self.scores.probabilities(vectors)
        if self.weight == 0.0:
            return zero_shot, zero_shot
        votes = np.zeros_like(zero_shot)
        rows, slots = np.nonzero(neighbour_labels >= 0)
        np.add.at(votes, (rows, neighbour_labels[rows, slots]), 1.0)
        total = votes.sum(axis=1, keepdims=True)
        voted = total[:, 0] > 0
        mixed = zero_shot.copy()  # an item without labelled neighbours keeps its zero-shot probabilities
        mixed[voted] = (1 - self.weight) * zero_shot[voted] + self.weight * votes[voted] / total[voted]
        return zero_shot, mixed
