"""Zero-shot classification of a whole collection over a label set, from stored embeddings only.

Each label becomes a text embedding (the normalised mean over its prompt templates, cached in the
catalog); every embedded item is scored against all labels in chunks of stored embeddings, so memory
stays bounded and no image is read again.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Optional, Sequence

import numpy as np

from ..errors import QueryError
from .head import load_head
from .scoring import LabelScores, softmax

if TYPE_CHECKING:
    from ..context import IndexContext

CHUNK = 8192


@dataclass
class Prediction:
    """An item's best labels, best first: (label, score, softmax probability); the score is a cosine, or a
    head's calibrated score when classified with a head."""

    path: str
    item_id: int
    labels: list[tuple[str, float, float]]

    def to_dict(self) -> dict:
        label, score, probability = self.labels[0]
        return {"path": self.path, "label": label, "score": score, "probability": probability,
                "top_k": [{"label": l, "score": s, "probability": p} for l, s, p in self.labels]}


@dataclass
class ClassifyResult:
    """A classification run: its id in the catalog, the labels, how many items, and items per top-1 label."""

    run_id: int
    labels: list[str]
    templates: str
    items: int
    counts: dict[str, int] = field(default_factory=dict)  # items per top-1 label
    seconds: float = 0.0
    head: Optional[str] = None  # the stored head that scored, if any
    transductive: Optional[dict] = None  # with transductive=True: the guard's record (used or fell back, why)

    def to_dict(self) -> dict:
        return asdict(self)


def top_labels(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best labels per row, best first."""
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
        return np.take_along_axis(part, order, axis=1)
    return scores.argsort(axis=1)[:, ::-1]


def classify(ctx: "IndexContext", labels: Optional[Sequence[str]], templates: str = "default", top_k: int = 1,
             on_predictions: Optional[Callable[[list[Prediction]], None]] = None, store: bool = True,
             progress: Optional[Callable[[int], None]] = None, head: Optional[str] = None,
             scorer: Optional[LabelScores] = None, transductive: bool = False,
             where: Optional[str] = None) -> ClassifyResult:
    """Classifies every embedded item over ``labels``; predictions go to ``on_predictions`` chunk by
    chunk and, when ``store``, into the catalog as a classification run.

    With ``head`` (a stored head's name) the scores are the head's calibrated scores and the
    probabilities their softmax, over ``labels`` (default: all the head's classes); otherwise cosine
    scores and the softmax of the model's logit scale times them. ``where``: only the items that filter
    expression keeps (``indexer.store.where``). A ``scorer`` built beforehand over
    ``labels`` (the service encodes the labels piecemeal, beside its searches) is used as it is.

    With ``transductive`` the whole collection is classified at once (``query.transduce``): every stored
    embedding is read first (4 bytes x dimension per item), the mixture fitted to them, then the
    predictions are made as without; the scores are log posteriors, and the guard's decision is in
    ``ClassifyResult.transductive`` (plain zero-shot's cosines when it fell back)."""
    if top_k < 1:
        raise QueryError("the number of labels per item must be at least 1", param="top_k")
    if transductive and head is not None:
        raise QueryError("transductive classification scores by the labels' text embeddings; it does not take "
                         "a head", param="transductive")
    started = time.time()
    ctx.require_embedded()
    trained = load_head(ctx.catalog, ctx.model, head, ctx.path) if head is not None else None
    if trained is not None:
        labels = list(labels) if labels else list(trained.classes)
    elif not labels:
        raise QueryError("give labels to classify into (or a head, whose classes are used)", param="labels")
    labels = list(labels)
    clause = ctx.catalog.filters.compile(where) if where is not None else None  # refused before any work
    scorer = scorer or LabelScores.build(ctx.texts, labels, templates, trained)
    k = min(top_k, len(labels))
    result = ClassifyResult(run_id=0, labels=labels, templates=templates, items=0,
                            counts={label: 0 for label in labels}, head=head)
    if store:
        result.run_id = ctx.catalog.runs.start_classification(labels, templates, k)
    chunks: Iterable[tuple[list[int], list[str], np.ndarray]] = ctx.catalog.items.iter_embedded(CHUNK, clause)
    transduced = None
    if transductive:  # the whole collection first, then its predictions chunk by chunk
        chunks = list(chunks)
        dim = chunks[0][2].shape[1] if chunks else 1
        transduced = scorer.transduced(np.concatenate([e for _, _, e in chunks]) if chunks else np.zeros((0, dim)))
        result.transductive = transduced.guard
    at = 0
    for item_ids, paths, embeddings in chunks:
        if transduced is not None:
            scores = transduced.scores[at:at + len(embeddings)]
            probabilities = softmax(scores * transduced.scale)
        else:
            scores = scorer.scores(embeddings)
            probabilities = softmax(scores * scorer.scale)
        at += len(embeddings)
        best = top_labels(scores, k)
        predictions = []
        for row, (item_id, path) in enumerate(zip(item_ids, paths)):
            predictions.append(Prediction(path, item_id, [
                (labels[j], round(float(scores[row, j]), 6), round(float(probabilities[row, j]), 6))
                for j in best[row]
            ]))
            result.counts[labels[best[row, 0]]] += 1
        result.items += len(predictions)
        if store:
            ctx.catalog.runs.add_classifications(result.run_id, [
                (p.item_id, rank, label, score) for p in predictions
                for rank, (label, score, _) in enumerate(p.labels, start=1)])
        if on_predictions:
            on_predictions(predictions)
        if progress:
            progress(len(predictions))
    result.seconds = round(time.time() - started, 3)
    if store:
        ctx.catalog.runs.finish_classification(result.run_id, result.items)
    return result
