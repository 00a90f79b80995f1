"""Dataset auditing: likely mislabels, duplicates, outliers and label-set problems of a labelled dataset,
computed from stored embeddings only (no image is read again, but for perceptual hashes an index made
before them lacks) and without a classifier trained beforehand.

How each finding is made:

- **Label probabilities.** Every item gets probabilities over the dataset's label set: the zero-shot
  softmax of its cosine scores against the labels' prompt embeddings (``logit_scale`` of the model),
  or of a stored head's scores over those labels (``AuditOptions.head``),
  mixed with the labels of its ``neighbours`` nearest other pictures (a k-NN vote through the FAISS
  index, ``neighbour_weight``) and with a linear probe's leave-one-out probabilities (ridge regression
  on the embeddings to the given labels, ``probe.py``, ``probe_weight``); both weights 0 is pure
  zero-shot. The default weights were chosen on development sets (``scripts/audit_tune.py``).
- **Mislabels** follow confident learning: a label's threshold is its class's average self-confidence
  (the mean probability of the given label over the items given it). An item is flagged when the most
  probable of the labels that reach their own threshold is another label, more probable than the given
  one; that label is suggested, and the score is the margin ``ln(p_suggested / p_given)``.
- **Duplicates**: exact (same content hash, one embedding: always their own group) and near. Near
  candidates come from the same k-NN search (cosine >= ``near_threshold``, or by default 1 - ``near_ratio``
  x the median k-NN distance of a sample: a threshold that adapts to the model's geometry) and from
  stored perceptual hashes within 2 bits (``hashes.py``); a candidate is a near duplicate when its two
  perceptual hashes differ by at most ``phash_distance`` bits. Groups are built so that every two
  members of a near group are near (no chaining, ``duplicates.py``); groups whose labels differ or that
  straddle splits rank first.
- **Outliers**: pictures unlike the rest of their class. The k-NN distance (mean cosine distance to
  the ``neighbours`` nearest other pictures, from the same search) is compared with its class's median,
  in robust standard deviations (1.4826 x the pooled median absolute deviation); ``outlier_z`` or more
  is flagged. The k-NN distance rather than the distance to the class centroid, because a mislabelled
  picture is far from its given class's centroid too, and the mislabel finding already reports it;
  the centroid distance is shown beside the score.
- **Label set**: label pairs whose prompt embeddings have a cosine >= ``confusable_threshold``, or that
  the zero-shot model mixes up on this data (``confusion_rate``); classes with too few items.

Cost, for N labelled items, C labels, d dimensions, k neighbours, chunks of B items: three passes over
the catalog's stored embeddings (neighbours and the probe's sums; thresholds; findings), O(N·C·d) for the
label scores, O(N·d²) for the probe; one k-NN query per item through the
index's FAISS vectors, which costs O(N²·d) on the exact flat layout (collections up to ~200,000) and
about O(N·√N·d) on the IVF layouts chosen for larger ones; O(C²·d) for label pairs. Memory: O(B·(C+d+k))
per chunk, plus about (45 + 4k) bytes per item (ids, labels, neighbour labels, distances), the FAISS
index itself, and O(C·d) for label embeddings and centroids. Findings are kept in memory, so they grow
with the problems found, not with the dataset. Measured (scripts/audit_scale.py, 2 busy CPU cores,
128-d): 200,000 items in 309 s with a peak of 280 MB on the exact layout, nearly all of it the k-NN
search; 72 s on an IVF layout (same duplicate groups found). (Measured before the probe and the
third pass; not measured again.)
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import numpy as np
from ..errors import QueryError
from .dataset import DatasetLabels, folder_labels
from .decisions import record_audit
from .duplicates import DuplicateLinks, NearCandidates, duplicate_groups
from .hashes import confirm, hash_candidates
from ..query.head import load_head
from ..query.scoring import LabelScores
from .probe import RidgeProbe
from .scoring import NeighbourMix

if TYPE_CHECKING:
    from ..context import IndexContext

FINDING_TYPES: tuple[str, ...] = ("mislabel", "duplicate", "outlier", "confusable_labels", "small_class")
Progress = Callable[[str, int, int], None]  # (stage, items done now, stage total)

SWAP_EXAMPLES = 4  # items kept per (given label, zero-shot label) pair, to show with a confusable pair
CLASS_EXAMPLES = 20  # items shown with a small class
MAX_CONFUSION_LABELS = 2000  # label sets up to this size get a confusion matrix (and its plot)
NEAR_SAMPLE = 2000  # contents whose k-NN distance sets the adaptive near-duplicate threshold
_EPS = 1e-30  # floor of probabilities in the log-odds margin (float32 softmax reaches ~1e-38)


@dataclass
class AuditOptions:
    """What the audit looks for, and how hard."""

    templates: str = "default"  # prompt templates of the labels (none, default, ensemble)
    neighbours: int = 10  # k of the k-NN label vote and of the near-duplicate search
    neighbour_weight: float = 0.15  # share of the k-NN vote in the label probabilities
    probe_weight: float = 0.35  # share of the linear probe's leave-one-out probabilities (``probe.py``)
    # Cosine at or above which two pictures are near-duplicate candidates; None: adapt to the model's
    # geometry, 1 - near_ratio x the collection's median k-NN distance.
    near_threshold: Optional[float] = None
    near_ratio: float = 0.6
    # Bits (of 64) two candidates' perceptual hashes may differ by to be near duplicates; None: no check.
    phash_distance: Optional[int] = 6
    outlier_z: float = 3.5  # robust z of the k-NN distance, within the class, that makes an outlier
    confusable_threshold: float = 0.9  # prompt-embedding cosine that makes two labels confusable
    confusion_rate: float = 0.25  # share of a label pair's items the zero-shot model swaps (2 at least) that flags it
    min_class_size: int = 5  # classes with fewer items are flagged
    chunk: int = 4096  # items per pass chunk
    head: Optional[str] = None  # a stored head (indexer heads) giving the zero-shot probabilities
    where: Optional[str] = None  # only the items this filter expression keeps (indexer.store.where)

    def check(self) -> None:
        if self.neighbours < 1:
            raise QueryError("must be at least 1", param="neighbours")
        if not 0.0 <= self.neighbour_weight <= 1.0:
            raise QueryError("must be between 0 and 1", param="neighbour_weight")
        if not 0.0 <= self.probe_weight <= 1.0 or self.neighbour_weight + self.probe_weight > 1.0 + 1e-9:
            raise QueryError("must be between 0 and 1, and with --neighbour-weight at most 1", param="probe_weight")
        if self.near_threshold is not None and not -1.0 <= self.near_threshold <= 1.0 \
                or not -1.0 <= self.confusable_threshold <= 1.0:
            raise QueryError("cosine thresholds must be between -1 and 1")
        if not 0.0 < self.near_ratio <= 1.0:
            raise QueryError("must be above 0 and at most 1", param="near_ratio")
        if self.phash_distance is not None and not 0 <= self.phash_distance <= 64:
            raise QueryError("must be between 0 and 64 bits", param="phash_distance")
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
    id: Optional[str] = None  # stable across audits (``decisions.finding_id``)
    decision: Optional[dict[str, Any]] = None  # the decision made on it: {"action", "label"}

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id} if self.id is not None else {}
        data.update({"type": self.type, "score": self.score})
        if self.path is not None:
            data["path"] = self.path
        if self.paths is not None:
            data["paths"] = self.paths
        data.update(self.details)
        if self.decision is not None:
            data["decision"] = self.decision
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
    decided: dict[str, int] = field(default_factory=dict)  # findings with a decision, by action (rejected: left out)
    labels_key: str = ""  # fingerprint of the labels audited (``dataset.labels_key``)
    near: dict[str, Any] = field(default_factory=dict)  # the near-duplicate threshold used, and pair counts
    nearest: Optional[np.ndarray] = field(default=None, repr=False)  # per item: cosine of the nearest other content
    plots: dict[str, Any] = field(default_factory=dict)  # what the plots are drawn from (``_plot_data``)

    def of_type(self, kind: str) -> list[Finding]:
        """The findings of one type (``"mislabel"``, ``"duplicate"``, ``"outlier"``, …), best first."""
        return [f for f in self.findings if f.type == kind]

    def counts(self) -> dict[str, int]:
        """How many findings of each type."""
        return {kind: len(self.of_type(kind)) for kind in FINDING_TYPES}

    def summary(self) -> dict[str, Any]:
        """Everything but the findings, as plain data."""
        data = {k: v for k, v in asdict(self).items() if k not in ("findings", "nearest")}
        data["counts"] = self.counts()
        return data


def _dataset_chunks(ctx: "IndexContext", dataset: DatasetLabels, chunk: int
                    ) -> Iterator[tuple[np.ndarray, list[str], np.ndarray]]:
    """(positions in the dataset arrays, paths, embeddings) of the labelled items, chunk by chunk."""
    for item_ids, paths, vectors in ctx.catalog.items.iter_embedded(chunk):
        found, positions = dataset.positions(item_ids)
        if found.any():
            yield positions[found], [p for p, keep in zip(paths, found) if keep], vectors[found]


@dataclass
class _Neighbourhood:
    """What the first pass learns: each item's neighbours, and each class's self-confidence and centroid."""

    neighbour_labels: np.ndarray  # (items, k) label index of the k nearest other contents, -1 for none
    knn_distance: np.ndarray  # (items,) mean cosine distance to them
    nearest: np.ndarray  # (items,) cosine of the nearest other content
    given_probability: np.ndarray  # (items,) the given label's mixed probability (pass 3)
    links: DuplicateLinks
    candidates: "NearCandidates"
    seen: np.ndarray  # (items,) reached by the pass (an item deleted meanwhile is not)
    counts: np.ndarray  # items per label
    thresholds: np.ndarray  # per label: average self-confidence (NaN for a label without items)
    centroids: np.ndarray  # per label: normalised mean embedding
    confusion: Optional[np.ndarray] = None  # (labels, labels) given x most probable label counts (pass 3)


def _usable(ids: np.ndarray, own: np.ndarray, contents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which neighbours found count (another content of the dataset), and where they are in ``contents``."""
    where = np.minimum(np.searchsorted(contents, ids), len(contents) - 1)
    return (ids >= 0) & (ids != own) & (contents[where] == ids), where


def _near_gate(ctx: "IndexContext", contents: np.ndarray, vectors: Any, k: int, options: AuditOptions
               ) -> tuple[float, float]:
    """(cosine at or above which two pictures are near-duplicate candidates, the median k-NN distance of
    a sample of the dataset's contents): a fixed ``near_threshold``, or one relative to the geometry."""
    sample = contents if len(contents) <= NEAR_SAMPLE else np.sort(
        np.random.default_rng(0).choice(contents, NEAR_SAMPLE, replace=False))
    ids, embeddings = ctx.catalog.embeddings.by_ids(sample.tolist())
    median = float("nan")
    if len(ids):
        scores, found = vectors.search(embeddings, min(vectors.ntotal, 2 * k + 2))
        usable, _ = _usable(found, ids[:, None], contents)
        kept = usable & (np.cumsum(usable, axis=1) <= k)
        with np.errstate(invalid="ignore"):
            distance = np.where(kept, 1.0 - scores, 0.0).sum(axis=1) / kept.sum(axis=1)
        if np.isfinite(distance).any():
            median = float(np.nanmedian(distance))
    if options.near_threshold is not None:
        return options.near_threshold, median
    return (1.0 - options.near_ratio * median if np.isfinite(median) else 1.0), median


def _neighbour_pass(ctx: "IndexContext", dataset: DatasetLabels, scorer: NeighbourMix, options: AuditOptions, chunk: int,
                    progress: Optional[Progress]) -> _Neighbourhood:
    """Pass 1: k-NN search (label votes, near-duplicate candidates, k-NN distance), self-confidence, centroids."""
    n_items, n_labels, k = dataset.size, len(dataset.labels), options.neighbours
    vectors = ctx.vectors.get()
    fetch = min(vectors.ntotal, 2 * k + 2)  # room for the item itself and contents outside the dataset
    contents, first = np.unique(dataset.content_ids, return_index=True)
    content_label = dataset.label_index[first]
    gate, median = _near_gate(ctx, contents, vectors, k, options)
    found = _Neighbourhood(neighbour_labels=np.full((n_items, k), -1, dtype=np.int32),
                           knn_distance=np.full(n_items, np.nan, dtype=np.float32), links=DuplicateLinks(contents),
                           candidates=NearCandidates(gate, median),
                           nearest=np.full(n_items, np.nan, dtype=np.float32),
                           given_probability=np.full(n_items, np.nan, dtype=np.float32), seen=np.zeros(n_items, dtype=bool), counts=np.zeros(n_labels, dtype=np.int64),
                           thresholds=np.zeros(n_labels), centroids=np.zeros((n_labels, ctx.model.dim)))
    for positions, _, embeddings in _dataset_chunks(ctx, dataset, chunk):
        given = dataset.label_index[positions]
        scores, ids = vectors.search(embeddings, fetch)
        own = dataset.content_ids[positions][:, None]
        usable, where = _usable(ids, own, contents)
        rank = np.cumsum(usable, axis=1)
        kept = usable & (rank <= k)
        rows, cols = np.nonzero(kept)
        block = np.full((len(positions), k), -1, dtype=np.int32)
        block[rows, rank[rows, cols] - 1] = content_label[where[rows, cols]]
        found.neighbour_labels[positions] = block
        with np.errstate(invalid="ignore"):
            found.knn_distance[positions] = np.where(kept, 1.0 - scores, 0.0).sum(axis=1) / kept.sum(axis=1)
        found.nearest[positions] = np.where(kept, scores, -np.inf).max(axis=1)
        near_rows, near_cols = np.nonzero(usable & (scores >= gate))  # every neighbour fetched, not only k
        found.candidates.add(own[near_rows, 0], ids[near_rows, near_cols], np.minimum(scores[near_rows, near_cols], 1.0))
        if scorer.probe is not None:
            scorer.probe.add(embeddings, given)
        np.add.at(found.centroids, given, embeddings)
        found.seen[positions] = True
        if progress:
            progress("scoring", len(positions), n_items)
    found.counts = np.bincount(dataset.label_index[found.seen], minlength=n_labels)
    norms = np.linalg.norm(found.centroids, axis=1, keepdims=True)
    found.centroids = (found.centroids / np.maximum(norms, _EPS)).astype(np.float32)
    return found


@dataclass
class _Swaps:
    """Items whose zero-shot top-1 label is not their given label, per (given, top-1) pair."""

    counts: dict[tuple[int, int], int] = field(default_factory=dict)
    examples: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # item ids, a few per pair

    def between(self, a: int, b: int) -> int:
        return self.counts.get((a, b), 0) + self.counts.get((b, a), 0)


def _confidence_pass(ctx: "IndexContext", dataset: DatasetLabels, scorer: NeighbourMix, near: _Neighbourhood,
                     chunk: int, progress: Optional[Progress]) -> None:
    """Pass 2: each label's threshold, its class's average self-confidence (mean probability of the
    given label over the items given it)."""
    self_confidence = np.zeros(len(dataset.labels))
    for positions, _, embeddings in _dataset_chunks(ctx, dataset, chunk):
        given = dataset.label_index[positions]
        _, mixed = scorer(embeddings, near.neighbour_labels[positions], given)
        self_confidence += np.bincount(given, weights=mixed[np.arange(len(given)), given],
                                       minlength=len(dataset.labels))
        if progress:
            progress("weighing", len(positions), dataset.size)
    with np.errstate(invalid="ignore", divide="ignore"):
        near.thresholds = np.where(near.counts > 0, self_confidence / np.maximum(near.counts, 1), np.nan)


def _mislabel_pass(ctx: "IndexContext", dataset: DatasetLabels, scorer: NeighbourMix, near: _Neighbourhood, chunk: int,
                   progress: Optional[Progress]) -> tuple[list[Finding], np.ndarray, _Swaps]:
    """Pass 3: mislabels by confident learning; distances to the class centroid; zero-shot label swaps."""
    labels = dataset.labels
    mislabels: list[Finding] = []
    distance = np.full(dataset.size, np.nan, dtype=np.float32)
    swaps = _Swaps()
    n_labels = len(labels)
    confusion = np.zeros((n_labels, n_labels), dtype=np.int64) if n_labels <= MAX_CONFUSION_LABELS else None
    for positions, paths, embeddings in _dataset_chunks(ctx, dataset, chunk):
        given = dataset.label_index[positions]
        zero_shot, mixed = scorer(embeddings, near.neighbour_labels[positions], given)
        rows = np.arange(len(given))
        given_p = mixed[rows, given]
        near.given_probability[positions] = given_p
        if confusion is not None:
            np.add.at(confusion, (given, mixed.argmax(axis=1)), 1)
        eligible = mixed >= near.thresholds[None, :]  # NaN thresholds (labels without items) are never reached
        best = np.where(eligible, mixed, -1.0).argmax(axis=1)
        best_p = mixed[rows, best]
        for r in np.flatnonzero(eligible[rows, best] & (best != given) & (best_p > given_p)).tolist():
            position = int(positions[r])
            margin = math.log(max(float(best_p[r]), _EPS) / max(float(given_p[r]), _EPS))
            mislabels.append(Finding("mislabel", round(margin, 4), path=paths[r], details={
                "given_label": labels[given[r]], "suggested_label": labels[best[r]],
                "given_probability": _significant(given_p[r]), "suggested_probability": _significant(best_p[r]),
                "zero_shot_given": _significant(zero_shot[r, given[r]]),
                "zero_shot_suggested": _significant(zero_shot[r, best[r]]),
                "split": dataset.split_of(position), "item_id": int(dataset.item_ids[position])}))
        distance[positions] = 1.0 - np.einsum("ij,ij->i", embeddings, near.centroids[given])
        top = zero_shot.argmax(axis=1)
        swapped = np.flatnonzero(top != given)
        for r, pair in zip(swapped.tolist(), zip(given[swapped].tolist(), top[swapped].tolist())):
            swaps.counts[pair] = swaps.counts.get(pair, 0) + 1
            examples = swaps.examples.setdefault(pair, [])
            if len(examples) < SWAP_EXAMPLES:
                examples.append(int(dataset.item_ids[positions[r]]))
        if progress:
            progress("checking", len(positions), dataset.size)
    mislabels.sort(key=lambda f: (-f.score, f.path))
    near.confusion = confusion
    return mislabels, distance, swaps


def audit(ctx: "IndexContext", dataset: Optional[DatasetLabels] = None, options: Optional[AuditOptions] = None,
          progress: Optional[Progress] = None) -> AuditResult:
    """Audits the labelled items of the index (labels from folder names unless ``dataset`` is given)."""
    started = time.time()
    options = options or AuditOptions()
    options.check()
    ctx.require_embedded()
    clause = ctx.catalog.filters.compile(options.where) if options.where is not None else None
    if dataset is None:
        dataset = folder_labels(ctx)
    if clause is not None:
        dataset = dataset.subset(ctx.catalog.filters.matching_item_ids(clause))
    if dataset.size == 0:
        raise QueryError(f"no embedded item has a label ({dataset.source}); give the folder the labels are read below (--root), or a labels file (--labels FILE)")
    if len(dataset.labels) < 2:
        raise QueryError(f"the dataset has fewer than two labels ({dataset.source}); an audit needs a label set")
    labels = dataset.labels
    chunk = max(1, min(options.chunk, (1 << 24) // len(labels)))  # keeps a chunk's items x labels bounded
    head = load_head(ctx.catalog, ctx.model, options.head, ctx.path) if options.head is not None else None
    probe = RidgeProbe(ctx.model.dim, len(labels)) if options.probe_weight > 0 else None
    scorer = NeighbourMix(LabelScores.build(ctx.texts, labels, options.templates, head, with_text=True),
                          options.neighbour_weight, options.probe_weight, probe)
    near = _neighbour_pass(ctx, dataset, scorer, options, chunk, progress)
    if probe is not None and not probe.fit():
        scorer.probe = None  # too few items to learn from: zero-shot and neighbours alone
    _confidence_pass(ctx, dataset, scorer, near, chunk, progress)
    contents, first = np.unique(dataset.content_ids, return_index=True)
    by_hash = hash_candidates(ctx, contents, near.candidates) \
        if options.phash_distance is not None and options.near_threshold is None else 0  # a fixed cosine decides alone
    *pairs, near_counts = confirm(ctx, near.candidates, dict(zip(contents.tolist(), dataset.item_ids[first].tolist())),
                                  options.phash_distance, progress)
    near.links.link(*pairs)
    near_counts["by_hash"] = by_hash
    mislabels, distance, swaps = _mislabel_pass(ctx, dataset, scorer, near, chunk, progress)

    outliers = _outliers(dataset, near.knn_distance, distance, near.seen, options.outlier_z)
    flagged_ids = {f.details["item_id"] for f in mislabels}
    for finding in outliers:
        finding.details["also_mislabel"] = finding.details["item_id"] in flagged_ids
    seen_positions = np.flatnonzero(near.seen)
    duplicates = [_duplicate_finding(dataset, seen_positions[g.positions], g.score, g.exact)
                  for g in duplicate_groups(dataset.content_ids[seen_positions], near.links)]
    duplicates.sort(key=lambda f: (not f.details["label_conflict"], not f.details["split_leak"], -f.score,
                                   -len(f.details["item_ids"]), f.details["item_ids"][0]))
    label_findings = _confusable_labels(labels, scorer.text, near.counts, swaps, options)
    label_findings += _small_classes(dataset, near.seen, near.counts, options.min_class_size)
    _fill_paths(ctx, outliers + duplicates + label_findings)
    result = AuditResult(
        findings=mislabels + duplicates + outliers + label_findings, items=int(near.seen.sum()), labels=labels,
        class_counts={label: int(n) for label, n in zip(labels, near.counts)}, splits=dataset.splits,
        label_source=dataset.source, root=dataset.root, unlabelled=dataset.unlabelled, unmatched=dataset.unmatched,
        thresholds={label: round(float(t), 4) for label, t in zip(labels, near.thresholds) if not np.isnan(t)},
        options=options, near={
            "threshold": round(float(near.candidates.gate), 6),
            "median_knn_distance": round(float(near.candidates.median_knn_distance), 6),
            "adaptive": options.near_threshold is None, "phash_distance": options.phash_distance, **near_counts},
        nearest=near.nearest)
    result.plots = _plot_data(result, near, mislabels)
    record_audit(ctx, result, dataset)
    result.seconds = round(time.time() - started, 3)
    return result


def _plot_data(result: AuditResult, near: _Neighbourhood, mislabels: list[Finding]) -> dict[str, Any]:
    """The few numbers the audit's plots are drawn from (``media.plots``); kept with the stored audit."""
    from ..media.plots import confused_classes, histogram_data

    seen = near.seen
    thresholds = near.thresholds[np.isfinite(near.thresholds)]
    data: dict[str, Any] = {
        "nearest": {**histogram_data(near.nearest[seen & np.isfinite(near.nearest)], 60),
                    "marker": result.near.get("threshold")},
        "confidence": {**histogram_data(near.given_probability[seen], 50, 0.0, 1.0),
                       "marker": round(float(np.median(thresholds)), 4) if len(thresholds) else None},
        "margins": histogram_data(np.array([f.score for f in mislabels]), 50),
    }
    if near.confusion is not None:
        counts = near.confusion
        totals = counts.sum(axis=1)
        present = np.flatnonzero(totals > 0)
        data["agreement"] = {"classes": [result.labels[i] for i in present],
                             "rates": [round(float(counts[i, i] / totals[i]), 4) for i in present]}
        chosen = confused_classes(counts)
        data["confusion"] = {"classes": [result.labels[i] for i in chosen],
                             "counts": counts[np.ix_(chosen, chosen)].tolist()}
    return data


def _significant(value: float) -> float:
    """``value`` to 4 significant digits (probabilities of unlikely labels are tiny, not zero)."""
    return float(f"{float(value):.4g}")


def _duplicate_finding(dataset: DatasetLabels, positions_array: np.ndarray, score: float, exact: bool) -> Finding:
    positions = [int(p) for p in positions_array]
    member_labels = [dataset.labels[dataset.label_index[p]] for p in positions]
    member_splits = [dataset.split_of(p) for p in positions]
    return Finding("duplicate", score, paths=[], details={
        "kind": "exact" if exact else "near", "labels": member_labels, "splits": member_splits,
        "label_conflict": len(set(member_labels)) > 1,
        "split_leak": len({s for s in member_splits if s is not None}) > 1,
        "item_ids": [int(dataset.item_ids[p]) for p in positions]})


def _outliers(dataset: DatasetLabels, knn_distance: np.ndarray, centroid_distance: np.ndarray, seen: np.ndarray,
              min_z: float) -> list[Finding]:
    """Items whose k-NN distance is ``min_z`` robust deviations above their class's median."""
    positions = np.flatnonzero(seen & ~np.isnan(knn_distance))
    if len(positions) < 3:
        return []
    given, d = dataset.label_index[positions], knn_distance[positions].astype(np.float64)
    medians = np.zeros(len(dataset.labels))
    order = np.argsort(given, kind="stable")
    boundaries = np.flatnonzero(np.diff(given[order])) + 1
    for members in np.split(order, boundaries):
        medians[given[members[0]]] = np.median(d[members])
    deviation = d - medians[given]
    spread = 1.4826 * float(np.median(np.abs(deviation)))
    z = deviation / max(spread, 1e-6)
    flagged = sorted(((float(z[i]), int(positions[i])) for i in np.flatnonzero(z >= min_z).tolist()),
                     key=lambda t: (-t[0], t[1]))
    return [Finding("outlier", round(score, 4), details={
        "label": dataset.labels[dataset.label_index[p]], "knn_distance": round(float(knn_distance[p]), 4),
        "class_median_knn_distance": round(float(medians[dataset.label_index[p]]), 4),
        "centroid_distance": round(float(centroid_distance[p]), 4), "split": dataset.split_of(p),
        "item_id": int(dataset.item_ids[p])}) for score, p in flagged]


def _fill_paths(ctx: "IndexContext", findings: list[Finding]) -> None:
    """Sets ``path`` from an ``item_id`` detail and ``paths`` from ``item_ids``, in one catalog read."""
    wanted = {i for f in findings for i in ([f.details["item_id"]] if "item_id" in f.details else [])
              + f.details.get("item_ids", [])}
    uris = ctx.catalog.items.uris(sorted(wanted))
    for finding in findings:
        if "item_id" in finding.details:
            finding.path = uris.get(finding.details["item_id"], "?")
        if "item_ids" in finding.details:
            finding.paths = [uris.get(i, "?") for i in finding.details["item_ids"]]


def _confusable_labels(labels: list[str], text: np.ndarray, counts: np.ndarray, swaps: _Swaps,
                       options: AuditOptions) -> list[Finding]:
    """Label pairs with too-close prompt embeddings, or that the zero-shot model swaps on this data."""
    pairs: dict[tuple[int, int], float] = {}
    for start in range(0, len(labels), 1024):  # C x C similarities in blocks of rows
        block = text[start:start + 1024] @ text.T
        for r, c in zip(*np.nonzero(block >= options.confusable_threshold)):
            if start + r < c:
                pairs[(int(start + r), int(c))] = float(block[r, c])
    for a, b in {(min(key), max(key)) for key in swaps.counts}:
        if swaps.between(a, b) >= max(2.0, options.confusion_rate * int(counts[a] + counts[b])):
            pairs.setdefault((a, b), float(text[a] @ text[b]))
    findings = [Finding("confusable_labels", round(similarity, 4), paths=[], details={
        "labels": [labels[a], labels[b]], "text_similarity": round(similarity, 4),
        "swapped_items": swaps.between(a, b),
        "confusion_rate": round(swaps.between(a, b) / max(int(counts[a] + counts[b]), 1), 4),
        "item_ids": swaps.examples.get((a, b), []) + swaps.examples.get((b, a), [])})
        for (a, b), similarity in pairs.items()]
    return sorted(findings, key=lambda f: (-f.score, f.details["labels"]))


def _small_classes(dataset: DatasetLabels, seen: np.ndarray, counts: np.ndarray, min_size: int) -> list[Finding]:
    """Classes with fewer than ``min_size`` items, or fewer than a tenth of the median class."""
    present = counts[counts > 0]
    floor = max(float(min_size), 0.1 * float(np.median(present)) if len(present) else 0.0)
    small = np.flatnonzero(counts < floor)
    members = np.flatnonzero(seen & np.isin(dataset.label_index, small))
    examples: dict[int, list[int]] = {}
    for position in members.tolist():  # few: these classes are small
        kept = examples.setdefault(int(dataset.label_index[position]), [])
        if len(kept) < CLASS_EXAMPLES:
            kept.append(int(dataset.item_ids[position]))
    findings = [Finding("small_class", round(1.0 - int(counts[j]) / floor, 4), paths=[], details={
        "label": dataset.labels[j], "items": int(counts[j]), "item_ids": examples.get(j, [])})
        for j in small.tolist()]
    return sorted(findings, key=lambda f: (-f.score, f.details["label"]))
