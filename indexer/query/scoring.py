"""The one scorer of labels: the model's cosines against the labels' text embeddings, or a stored head.

Classify, evaluate and audit all score stored embeddings through ``LabelScores``: ``scores`` are what a
prediction ranks by (a cosine, or a head's calibrated score), ``probabilities`` their softmax (at the
model's logit scale for cosines; a head's scores are logits already).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from ..models.templates import prompts_for

if TYPE_CHECKING:
    from ..context import TextEncoder
    from .head import Head
    from .transduce import Transduced


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def label_embeddings(texts: "TextEncoder", labels: Sequence[str], templates: str = "default") -> np.ndarray:
    """One row per label: the normalised mean of its prompts' embeddings (cached per text)."""
    prompts = [prompts_for(label, templates) for label in labels]
    unique = list(dict.fromkeys(p for group in prompts for p in group))
    vectors = dict(zip(unique, texts.embed(unique)))
    matrix = np.stack([np.mean([vectors[p] for p in group], axis=0) for group in prompts]).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


class LabelScores:
    """Scores of stored embeddings over ``labels``: by ``head`` when given, else by cosine."""

    def __init__(self, labels: Sequence[str], text: Optional[np.ndarray], logit_scale: float,
                 head: Optional["Head"] = None) -> None:
        self.labels = list(labels)
        self.text, self.head = text, head
        self.scale = 1.0 if head is not None else logit_scale
        self._columns = head.columns(self.labels) if head is not None else None

    @classmethod
    def build(cls, texts: "TextEncoder", labels: Sequence[str], templates: str = "default",
              head: Optional["Head"] = None, with_text: bool = False) -> "LabelScores":
        """The scorer of ``labels``; the labels' text embeddings are computed when cosines score, or when
        ``with_text`` asks for them beside a head (the audit's centroids use them)."""
        text = label_embeddings(texts, labels, templates) if head is None or with_text else None
        return cls(labels, text, texts.logit_scale, head)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, labels): cosines, or the head's calibrated scores over the labels."""
        if self.head is not None:
            return self.head.scores(embeddings)[:, self._columns]
        assert self.text is not None
        return embeddings @ self.text.T

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        return self.scores(embeddings) * self.scale

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        return softmax(self.logits(embeddings))

    def transduced(self, embeddings: np.ndarray, guard: bool = True) -> "Transduced":
        """Transductive scores of a whole collection over the labels (``query.transduce``): cosines only,
        never a head (a head is a classifier of its own, refined on unlabelled items when trained)."""
        from ..errors import QueryError
        from .transduce import transduce

        if self.head is not None or self.text is None:
            raise QueryError("transductive classification scores by the labels' text embeddings; it does not "
                             "take a head", param="transductive")
        return transduce(embeddings, self.text, self.scale, guard=guard)
