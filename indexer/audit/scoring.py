"""The audit's label probabilities: zero-shot (the model's cosines, or a stored head's scores) mixed with
the labels of each item's nearest neighbours."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np

from ..query.classify import label_embeddings, softmax

if TYPE_CHECKING:
    from ..index import Index


class LabelScorer:
    """Label probabilities of a chunk: zero-shot softmax mixed with the neighbours' label vote. The
    zero-shot logits are the model's (cosines times its logit scale), or a stored head's scores."""

    def __init__(self, text: np.ndarray, scale: float, weight: float,
                 logits: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> None:
        self.text, self.scale, self.weight = text, scale, weight
        self.logits = logits or (lambda vectors: (vectors @ self.text.T) * self.scale)

    def __call__(self, vectors: np.ndarray, neighbour_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zero_shot = softmax(self.logits(vectors))
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


def label_scorer(index: "Index", labels: Sequence[str], templates: str, neighbour_weight: float,
                 head: Optional[str] = None) -> LabelScorer:
    """The scorer of ``labels``: the head's scores over them when ``head`` names a stored head."""
    text = label_embeddings(index, labels, templates)
    if head is None:
        return LabelScorer(text, index.logit_scale, neighbour_weight)
    trained = index.head(head)
    columns = trained.columns(labels)
    return LabelScorer(text, index.logit_scale, neighbour_weight, lambda vectors: trained.scores(vectors)[:, columns])
