"""Dataset auditing: likely mislabels, duplicates, outliers and label-set problems of a labelled dataset,
computed from stored embeddings only (no image is read again) and without a trained classifier.

How each finding is made:

- **Label probabilities.** Every item gets probabilities over the dataset's label set: the zero-shot
  softmax of its cosine scores against the labels' prompt embeddings (``logit_scale`` of the model),
  mixed with the labels of its ``neighbours`` nearest other pictures (a k-NN vote through the FAISS
  index) by ``neighbour_weight``; weight 0 is pure zero-shot.
- **Mislabels** follow confident learning: a label's threshold is its class's average self-confidence
  (the mean probability of the given label over the items given it). An item is flagged when the most
  probable of the labels that reach their own threshold is another label, more probable than the given
  one; that label is suggested, and the score is the margin ``ln(p_suggested / p_given)``.
- **Duplicates**: exact (same content hash, one embedding) and near (cosine >= ``near_threshold``,
  from the same k-NN search), merged into groups; groups whose labels differ or that straddle splits
  rank first.
- **Outliers**: cosine distance to the item's class centroid, standardised per class (class mean,
  pooled within-class spread); items ``outlier_z`` or more above their class's mean are flagged.
- **Label set**: label pairs whose prompt embeddings have a cosine >= ``confusable_threshold``, or that
  the zero-shot model mixes up on this data (``confusion_rate``); classes with too few items.

Cost, for N labelled items, C labels, d dimensions, k neighbours, chunks of B items: two passes over
the catalog, O(N·C·d) for scoring; the k-NN search O(N·k) results, with O(N²·d) compute on the exact
(flat) FAISS index and sub-linear on an IVF/HNSW one; O(C²·d) for label pairs. Memory: O(B·(C+d+k)) per
chunk plus about (40 + 4k) bytes per item (ids, labels, neighbour labels, distances) and O(C·d + C²);
findings are kept in memory, so they grow with the problems found, not with the dataset.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import numpy as np
from sqlalchemy import select

from .audit_duplicates import DuplicateLinks, duplicate_groups
from .audit_labels import DatasetLabels, folder_labels
from .classify import iter_item_embeddings, label_embeddings, softmax
from .errors import EmptyIndexError, QueryError
from .store.catalog import Item

if TYPE_CHECKING:
    from .index import Index

FINDING_TYPES: tuple[str, ...] = ("mislabel", "duplicate", "outlier", "confusable_labels", "small_class")
Progress = Callable[[str, int, int], None]  # (stage, items done now, stage total)

_EPS = 1e-9
_SQL_IN = 900


@dataclass
class AuditOptions:
    """What the audit looks for, and how hard."""

    templates: str = "default"  # prompt templates of the labels (none, default, ensemble)
    neighbours: int = 10  # k of the k-NN label vote and of the near-duplicate search
    neighbour_weight: float = 0.5  # share of the k-NN vote in the label probabilities (0: zero-shot only)
    near_threshold: float = 0.97  # cosine at or above which two pictures are near duplicates
    outlier_z: float = 3.0  # standardised distance to the class centroid that makes an outlier
    confusable_threshold: float = 0.9  # prompt-embedding cosine that makes two labels confusable
    confusion_rate: float = 0.25  # share of a label pair's items the zero-shot model swaps (2 at least) that flags it
    min_class_size: int = 5  # classes with fewer items are flagged
    chunk: int = 4096  # items per pass chunk

    def check(self) -> None:
        if self.neighbours < 1:
            raise QueryError("--neighbours must be at least 1")
        if not 0.0 <= self.neighbour_weight <= 1.0:
            raise QueryError("--neighbour-weight must be between 0 and 1")
        if not -1.0 <= self.near_threshold <= 1.0 or not -1.0 <= self.confusable_threshold <= 1.0:
            raise QueryError("cosine thresholds must be between -1 and 1")
        if self.chunk < 1 or self.min_class_size < 0:
            raise QueryError("chunk must be at least 1 and --min-class-size at least 0")


@dataclass
class Finding:
    """One problem: its type, a score (higher = more likely, or worse), its item(s), and details."""

    type: str
    score: float
    path: Optional[str] = None
    paths: Optional[list[str]] = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type, "score": self.score}
        if self.path is not None:
            data["path"] = self.path
        if self.paths is not None:
            data["paths"] = self.paths
        data.update(self.details)
        return data


@dataclass
class AuditResult:
    """Every finding (ranked best first within its type, types in ``FINDING_TYPES`` order) and context."""

    findings: list[Finding]
    items: int
    labels: list[str]
    class_counts: dict[str, int]
    splits: list[str]
    label_source: str
    root: Optional[str]
    unlabelled: int
    unmatched: int
    thresholds: dict[str, float]  # per-label average self-confidence
    options: AuditOptions
    seconds: float = 0.0

    def of_type(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.type == kind]

    def counts(self) -> dict[str, int]:
        return {kind: len(self.of_type(kind)) for kind in FINDING_TYPES}

    def summary(self) -> dict[str, Any]:
        """Everything but the findings, as plain data."""
        data = {k: v for k, v in asdict(self).items() if k != "findings"}
        data["counts"] = self.counts()
        return data


class _Scorer:
    """Label probabilities of a chunk: zero-shot softmax mixed with the neighbours' label vote."""

    def __init__(self, text: np.ndarray, scale: float, weight: float) -> None:
        self.text, self.scale, self.weight = text, scale, weight

    def __call__(self, vectors: np.ndarray, neighbour_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        zero_shot = softmax((vectors @ self.text.T) * self.scale)
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


def _dataset_chunks(index: "Index", dataset: DatasetLabels, chunk: int
                    ) -> Iterator[tuple[np.ndarray, list[str], np.ndarray]]:
    """(positions in the dataset arrays, paths, embeddings) of the labelled items, chunk by chunk."""
    for item_ids, paths, vectors in iter_item_embeddings(index, chunk):
        found, positions = dataset.positions(item_ids)
        if found.any():
            yield positions[found], [p for p, keep in zip(paths, found) if keep], vectors[found]


def item_uris(index: "Index", item_ids: list[int]) -> dict[int, str]:
    """The uri of each of ``item_ids``."""
    uris: dict[int, str] = {}
    for start in range(0, len(item_ids), _SQL_IN):
        with index.catalog.read() as conn:
            uris.update(conn.execute(select(Item.id, Item.uri).where(Item.id.in_(item_ids[start:start + _SQL_IN]))).all())
    return uris


def audit(index: "Index", dataset: Optional[DatasetLabels] = None, options: Optional[AuditOptions] = None,
          progress: Optional[Progress] = None) -> AuditResult:
    """Audits the labelled items of ``index`` (labels from folder names unless ``dataset`` is given)."""
    started = time.time()
    options = options or AuditOptions()
    options.check()
    if index.count_embedded() == 0:
        raise EmptyIndexError(f"no embedded items in {index.path}; run `indexer ingest` first")
    if dataset is None:
        dataset = folder_labels(index)
    if dataset.size == 0:
        raise QueryError(f"no embedded item has a label ({dataset.source}); give --root, or --labels FILE")
    if len(dataset.labels) < 2:
        raise QueryError(f"the dataset has fewer than two labels ({dataset.source}); an audit needs a label set")
    labels, n_labels, n_items = dataset.labels, len(dataset.labels), dataset.size
    chunk = max(64, min(options.chunk, (1 << 24) // max(n_labels, 1)))  # keep chunk x labels bounded
    scorer = _Scorer(label_embeddings(index, labels, options.templates), index.logit_scale, options.neighbour_weight)
    vectors = index.vectors()
    contents, first = np.unique(dataset.content_ids, return_index=True)
    content_label = dataset.label_index[first]
    links = DuplicateLinks(contents)
    k = options.neighbours
    fetch = min(vectors.ntotal, 2 * k + 2)
    neighbour_labels = np.full((n_items, k), -1, dtype=np.int32)
    self_confidence = np.zeros(n_labels)
    centroid_sums = np.zeros((n_labels, index.dim))
    seen = np.zeros(n_items, dtype=bool)

    # Pass 1: neighbours (k-NN label votes and near-duplicate links), self-confidence and centroid sums.
    for positions, _, embeddings in _dataset_chunks(index, dataset, chunk):
        given = dataset.label_index[positions]
        scores, ids = vectors.search(embeddings, fetch)
        own = dataset.content_ids[positions][:, None]
        where = np.minimum(np.searchsorted(contents, ids), len(contents) - 1)
        usable = (ids >= 0) & (ids != own) & (contents[where] == ids)
        rank = np.cumsum(usable, axis=1)
        rows, cols = np.nonzero(usable & (rank <= k))
        block = np.full((len(positions), k), -1, dtype=np.int32)
        block[rows, rank[rows, cols] - 1] = content_label[where[rows, cols]]
        neighbour_labels[positions] = block
        near_rows, near_cols = np.nonzero(usable & (scores >= options.near_threshold))
        links.link(own[near_rows, 0], ids[near_rows, near_cols], np.minimum(scores[near_rows, near_cols], 1.0))
        _, mixed = scorer(embeddings, block)
        self_confidence += np.bincount(given, weights=mixed[np.arange(len(given)), given], minlength=n_labels)
        np.add.at(centroid_sums, given, embeddings)
        seen[positions] = True
        if progress:
            progress("scoring", len(positions), n_items)

    counts = np.bincount(dataset.label_index[seen], minlength=n_labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        thresholds = np.where(counts > 0, self_confidence / np.maximum(counts, 1), np.nan)
    norms = np.linalg.norm(centroid_sums, axis=1, keepdims=True)
    centroids = (centroid_sums / np.maximum(norms, _EPS)).astype(np.float32)

    # Pass 2: mislabels (confident learning), centroid distances, zero-shot confusions between labels.
    mislabels: list[Finding] = []
    distance = np.full(n_items, np.nan, dtype=np.float32)
    confusions: dict[tuple[int, int], int] = {}  # (given, zero-shot top-1) -> items, off the diagonal only
    for positions, paths, embeddings in _dataset_chunks(index, dataset, chunk):
        given = dataset.label_index[positions]
        zero_shot, mixed = scorer(embeddings, neighbour_labels[positions])
        rows = np.arange(len(given))
        given_p = mixed[rows, given]
        eligible = mixed >= thresholds[None, :]  # NaN thresholds (empty labels) are never reached
        best = np.where(eligible, mixed, -1.0).argmax(axis=1)
        best_p = mixed[rows, best]
        flagged = eligible[rows, best] & (best != given) & (best_p > given_p)
        for r in np.flatnonzero(flagged).tolist():
            position = int(positions[r])
            mislabels.append(Finding("mislabel", round(math.log(max(best_p[r], _EPS) / max(given_p[r], _EPS)), 4),
                                     path=paths[r], details={
                "given_label": labels[given[r]], "suggested_label": labels[best[r]],
                "given_probability": round(float(given_p[r]), 4),
                "suggested_probability": round(float(best_p[r]), 4),
                "zero_shot_given": round(float(zero_shot[r, given[r]]), 4),
                "zero_shot_suggested": round(float(zero_shot[r, best[r]]), 4),
                "split": dataset.split_of(position), "item_id": int(dataset.item_ids[position])}))
        distance[positions] = 1.0 - np.einsum("ij,ij->i", embeddings, centroids[given])
        top = zero_shot.argmax(axis=1)
        codes, swaps = np.unique(given[top != given].astype(np.int64) * n_labels + top[top != given], return_counts=True)
        for code, n in zip(codes.tolist(), swaps.tolist()):
            key = divmod(code, n_labels)
            confusions[key] = confusions.get(key, 0) + n
        if progress:
            progress("checking", len(positions), n_items)
    mislabels.sort(key=lambda f: (-f.score, f.path))

    outliers = _outliers(dataset, distance, seen, options.outlier_z)
    seen_positions = np.flatnonzero(seen)
    duplicates = [_duplicate_finding(dataset, seen_positions[g.positions], g.score, g.exact)
                  for g in duplicate_groups(dataset.content_ids[seen_positions], links)]
    duplicates.sort(key=lambda f: (not f.details["label_conflict"], not f.details["split_leak"], -f.score,
                                   -len(f.details["item_ids"]), f.details["item_ids"][0]))
    _fill_paths(index, outliers, duplicates)
    label_findings = _confusable_labels(labels, scorer.text, counts, confusions, options)
    label_findings += _small_classes(labels, counts, options.min_class_size)
    return AuditResult(
        findings=mislabels + duplicates + outliers + label_findings, items=int(seen.sum()), labels=labels,
        class_counts={label: int(n) for label, n in zip(labels, counts)}, splits=dataset.splits,
        label_source=dataset.source, root=dataset.root, unlabelled=dataset.unlabelled, unmatched=dataset.unmatched,
        thresholds={label: round(float(t), 4) for label, t in zip(labels, thresholds) if not np.isnan(t)},
        options=options, seconds=round(time.time() - started, 3))


def _duplicate_finding(dataset: DatasetLabels, positions_array: np.ndarray, score: float, exact: bool) -> Finding:
    positions = [int(p) for p in positions_array]
    member_labels = [dataset.labels[dataset.label_index[p]] for p in positions]
    member_splits = [dataset.split_of(p) for p in positions]
    return Finding("duplicate", score, paths=[], details={
        "kind": "exact" if exact else "near", "labels": member_labels, "splits": member_splits,
        "label_conflict": len(set(member_labels)) > 1,
        "split_leak": len({s for s in member_splits if s is not None}) > 1,
        "item_ids": [int(dataset.item_ids[p]) for p in positions]})


def _outliers(dataset: DatasetLabels, distance: np.ndarray, seen: np.ndarray, min_z: float) -> list[Finding]:
    """Items whose distance to their class centroid is ``outlier_z`` pooled deviations above the class mean."""
    positions = np.flatnonzero(seen)
    given, d = dataset.label_index[positions], distance[positions].astype(np.float64)
    n_labels = len(dataset.labels)
    counts = np.bincount(given, minlength=n_labels)
    means = np.bincount(given, weights=d, minlength=n_labels) / np.maximum(counts, 1)
    spread_dof = int(len(d) - np.count_nonzero(counts))
    if spread_dof < 1:
        return []
    pooled = math.sqrt(float(np.sum((d - means[given]) ** 2)) / spread_dof)
    z = (d - means[given]) / max(pooled, _EPS)
    findings = [(float(z[i]), int(positions[i])) for i in np.flatnonzero(z >= min_z).tolist()]
    return [Finding("outlier", round(score, 4), details={
        "label": dataset.labels[dataset.label_index[p]], "distance": round(float(distance[p]), 4),
        "class_mean_distance": round(float(means[dataset.label_index[p]]), 4), "split": dataset.split_of(p),
        "item_id": int(dataset.item_ids[p])}) for score, p in sorted(findings, key=lambda t: (-t[0], t[1]))]


def _fill_paths(index: "Index", outliers: list[Finding], duplicates: list[Finding]) -> None:
    wanted = [f.details["item_id"] for f in outliers] + [i for f in duplicates for i in f.details["item_ids"]]
    uris = item_uris(index, sorted(set(wanted)))
    for finding in outliers:
        finding.path = uris.get(finding.details["item_id"], "?")
    for finding in duplicates:
        finding.paths = [uris.get(i, "?") for i in finding.details["item_ids"]]


def _confusable_labels(labels: list[str], text: np.ndarray, counts: np.ndarray,
                       confusions: dict[tuple[int, int], int], options: AuditOptions) -> list[Finding]:
    """Label pairs with too-close prompt embeddings, or that the zero-shot model swaps on this data."""
    pairs: dict[tuple[int, int], float] = {}
    for start in range(0, len(labels), 1024):  # C x C similarities in blocks of rows
        block = text[start:start + 1024] @ text.T
        for r, c in zip(*np.nonzero(block >= options.confusable_threshold)):
            if start + r < c:
                pairs[(int(start + r), int(c))] = float(block[r, c])
    def swapped(a: int, b: int) -> int:
        return confusions.get((a, b), 0) + confusions.get((b, a), 0)

    for a, b in {tuple(sorted(key)) for key in confusions}:
        if swapped(a, b) >= max(2.0, options.confusion_rate * int(counts[a] + counts[b])):
            pairs.setdefault((a, b), float(text[a] @ text[b]))
    findings = [Finding("confusable_labels", round(similarity, 4), details={
        "labels": [labels[a], labels[b]], "text_similarity": round(similarity, 4), "swapped_items": swapped(a, b),
        "confusion_rate": round(swapped(a, b) / max(int(counts[a] + counts[b]), 1), 4)})
        for (a, b), similarity in pairs.items()]
    return sorted(findings, key=lambda f: (-f.score, f.details["labels"]))


def _small_classes(labels: list[str], counts: np.ndarray, min_size: int) -> list[Finding]:
    """Classes with fewer than ``min_size`` items, or fewer than a tenth of the median class."""
    present = counts[counts > 0]
    floor = max(float(min_size), 0.1 * float(np.median(present)) if len(present) else 0.0)
    findings = [Finding("small_class", round(1.0 - int(n) / floor, 4), details={"label": label, "items": int(n)})
                for label, n in zip(labels, counts) if n < floor]
    return sorted(findings, key=lambda f: (-f.score, f.details["label"]))
