"""Zero-shot evaluation of an index's model on a labelled image folder (or a CSV of path,label).

The dataset must be in the index (``indexer eval`` ingests it first, incrementally, and says so); each
picture is scored against every class name, and the figures are computed from stored embeddings:
top-1 / top-5 accuracy, mean per-class recall, a per-class table and the costliest confusions. With
a list of *unseen* classes (never shown to the model in training) it also reports the generalized
zero-shot figures: accuracy on seen classes S and on unseen classes U (both over all labels at once),
their harmonic mean H = 2SU/(S+U), and classic ZSL accuracy (unseen pictures, unseen labels only).

Calibrated stacking subtracts a constant from the seen classes' scores before the arg-max, to undo the
bias of a model towards the classes it was trained on. The constant is given, or ``auto``: chosen by
two-fold cross-validation on the evaluation set (tuned on one half to maximise H, applied to the
other half, and the other way round), so no picture is scored with a constant tuned on itself.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import numpy as np
from ..errors import QueryError
from ..media.entries import is_image_name
from ..store.paths import uri_under
from .head import Head, list_heads, load_head
from .scoring import LabelScores
from .gzsl import cross_validated_calibration, gzsl_figures, zsl_accuracy
from .labels import label_from_folder_name, read_label_csv

if TYPE_CHECKING:
    from ..context import IndexContext


# ---------------------------------------------------------------- the dataset


def load_dataset(dataset: Path, mapping: Optional[dict[str, str]] = None) -> list[tuple[str, str]]:
    """(absolute path, class name) pairs from a folder of class sub-folders or a ``path,label`` CSV
    (relative paths are taken below the CSV's folder)."""
    dataset = Path(dataset).expanduser()
    pairs: list[tuple[str, str]] = []
    if dataset.is_dir():
        for folder in sorted(p for p in dataset.iterdir() if p.is_dir() and not p.name.startswith(".")):
            label = label_from_folder_name(folder.name, mapping)
            for path in sorted(folder.rglob("*")):
                if path.is_file() and is_image_name(path.name) and not path.name.startswith("."):
                    pairs.append((str(path.resolve()), label))
    elif dataset.is_file() and dataset.suffix.lower() == ".csv":
        for _, item_path, label, _ in read_label_csv(dataset):
            path = Path(item_path).expanduser()
            if not path.is_absolute():
                path = dataset.parent / path
            pairs.append((os.path.abspath(path), label_from_folder_name(label, mapping)))
    elif not dataset.exists():
        raise QueryError(f"no such dataset: {dataset}")
    else:
        raise QueryError(f"{dataset}: give a folder with one sub-folder per class, or a CSV of path,label")
    if not pairs:
        raise QueryError(f"no labelled images found in {dataset}")
    if len({label for _, label in pairs}) < 2:
        raise QueryError(f"{dataset} has a single class; zero-shot evaluation needs at least two")
    return pairs


def dataset_sources(dataset: Path, pairs: list[tuple[str, str]]) -> list[Path]:
    """What to ingest so that the index holds the dataset: its folder, or the files its CSV names."""
    dataset = Path(dataset).expanduser()
    sources = [dataset] if dataset.is_dir() else sorted({Path(p) for p, _ in pairs})
    missing = [p for p in sources if not p.exists()]
    if missing:
        raise QueryError(f"{len(missing)} files of the dataset do not exist, e.g. {missing[0]}")
    return sources


# ---------------------------------------------------------------- the figures


@dataclass
class EvalReport:
    """Every figure of one evaluation; ``to_dict`` is what ``eval --json`` prints."""

    images: int
    classes: int
    templates: str
    top1: float
    top5: float
    mean_per_class_recall: float
    per_class: list[dict[str, Any]]
    confusions: list[dict[str, Any]]
    unreadable: int = 0
    gzsl: Optional[dict[str, Any]] = None
    extra: dict[str, Any] = field(default_factory=dict)
    confusion_matrix: Optional[np.ndarray] = field(default=None, repr=False)  # (classes, classes) true x predicted
    class_names: list[str] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        hidden = ("extra", "confusion_matrix", "class_names")
        return {k: v for k, v in self.__dict__.items() if k not in hidden} | self.extra


def top_k_accuracy(scores: np.ndarray, truth: np.ndarray, k: int) -> float:
    k = min(k, scores.shape[1])
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    return float(np.mean(np.any(best == truth[:, None], axis=1)))


def per_class_table(predicted: np.ndarray, truth: np.ndarray, classes: Sequence[str]) -> list[dict[str, Any]]:
    table = []
    for c, name in enumerate(classes):
        mine = predicted[truth == c]
        if len(mine) == 0:
            continue
        wrong = Counter(int(p) for p in mine if p != c)
        confused = classes[wrong.most_common(1)[0][0]] if wrong else None
        table.append({"class": name, "images": int(len(mine)), "recall": round(float(np.mean(mine == c)), 4),
                      "most_confused_with": confused})
    return table


def costliest_confusions(predicted: np.ndarray, truth: np.ndarray, classes: Sequence[str], top: int = 10
                         ) -> list[dict[str, Any]]:
    pairs = Counter((int(t), int(p)) for t, p in zip(truth, predicted) if t != p)
    return [{"true": classes[t], "predicted": classes[p], "images": n} for (t, p), n in pairs.most_common(top)]


def compute_report(scores: np.ndarray, truth: np.ndarray, classes: Sequence[str], templates: str,
                   unseen: Optional[set[str]] = None, calibration: Union[float, str, None] = None) -> EvalReport:
    """All figures from a (pictures x classes) score matrix and the true class indices."""
    predicted = scores.argmax(axis=1)
    table = per_class_table(predicted, truth, classes)
    report = EvalReport(
        images=int(len(truth)), classes=len(classes), templates=templates,
        top1=round(float(np.mean(predicted == truth)), 4), top5=round(top_k_accuracy(scores, truth, 5), 4),
        mean_per_class_recall=round(float(np.mean([row["recall"] for row in table])), 4),
        per_class=table, confusions=costliest_confusions(predicted, truth, classes),
        class_names=list(classes),
    )
    if len(classes) <= 2000:  # the report's confusion plot
        report.confusion_matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
        np.add.at(report.confusion_matrix, (truth, predicted), 1)
    if unseen:
        unknown = sorted(unseen - set(classes))
        if unknown:
            raise QueryError(f"names classes that are not in the dataset: {', '.join(unknown[:5])}", param="unseen")
        unseen_mask = np.array([c in unseen for c in classes])
        if unseen_mask.all():
            raise QueryError("lists every class; GZSL needs seen classes too", param="unseen")
        on_unseen = unseen_mask[truth]
        zsl, zsl_per_picture = zsl_accuracy(scores, truth, unseen_mask)
        gzsl: dict[str, Any] = {
            "unseen_classes": int(unseen_mask.sum()), "seen_classes": int((~unseen_mask).sum()),
            "uncalibrated": gzsl_figures(scores, truth, unseen_mask),
            "zsl_unseen_accuracy": zsl if on_unseen.any() else None,
            "zsl_unseen_accuracy_per_picture": zsl_per_picture if on_unseen.any() else None,
            "unseen_predicted_as_seen": round(float(np.mean(~unseen_mask[predicted[on_unseen]])), 4)
            if on_unseen.any() else None,
        }
        if calibration == "auto":
            gzsl["calibrated"] = {"method": "two-fold cross-validated", **cross_validated_calibration(
                scores, truth, unseen_mask)}
        elif calibration is not None:
            gzsl["calibrated"] = {"method": "given", "constant": float(calibration),
                                  **gzsl_figures(scores, truth, unseen_mask, float(calibration))}
        report.gzsl = gzsl
    return report


# ---------------------------------------------------------------- against an index


def evaluate(ctx: "IndexContext", dataset: Path, templates: str = "default", unseen: Optional[Sequence[str]] = None,
             calibration: Union[float, str, None] = None, mapping: Optional[dict[str, str]] = None,
             head: Optional[str] = None, compare: bool = False, transductive: bool = False) -> EvalReport:
    """Evaluates the index's model on ``dataset``, whose pictures the index must hold (ingest it first).
    Pictures that could not be read are counted as ``unreadable`` and left out.

    With ``head`` the scores are the stored head's over the dataset's classes (every one must be among
    the head's), and ``unseen`` defaults to the head's unseen classes. With ``compare`` the report gets
    a ``comparison``: plain cosine, calibrated stacking and every stored head of this model, on the
    same pictures and the same unseen classes.

    With ``transductive`` the dataset's pictures are classified as one collection, without any label
    (``query.transduce``; labels are read only to score the answers): ``transductive`` in the report says
    whether the guard let transduction answer or fell back to plain zero-shot, and why."""
    if transductive and head is not None:
        raise QueryError("transductive evaluation scores by the labels' text embeddings; it does not take a head",
                         param="transductive")
    pairs = load_dataset(dataset, mapping)
    found, embeddings = ctx.catalog.embeddings.for_uris([p for p, _ in pairs])
    if not found.any():
        raise QueryError(f"the index at {ctx.path} holds none of the pictures of {dataset}; ingest them first "
                         f"(indexer ingest {dataset} --index {ctx.path}), or use `indexer eval`, which does")
    failed = set(ctx.catalog.items.failed_uris([p for p, ok in zip((p for p, _ in pairs), found) if not ok]))
    absent = int((~found).sum()) - len(failed)
    if absent:
        raise QueryError(f"{absent} pictures of {dataset} are not in the index at {ctx.path}; ingest the dataset "
                         "first (`indexer eval` does)")
    classes = sorted({label for _, label in pairs})
    truth = np.array([classes.index(label) for (_, label), ok in zip(pairs, found) if ok], dtype=np.int64)
    scorer = LabelScores.build(ctx.texts, classes, templates)
    plain = scorer.scores(embeddings)
    scores = plain
    extra: dict[str, Any] = {}
    if transductive:
        transduced = scorer.transduced(embeddings)
        scores = transduced.scores
        extra["transductive"] = transduced.guard
    # The measured pictures' items, read once for every head's check of its unlabelled training items.
    stored = ctx.catalog.items.by_uris([p for (p, _), ok in zip(pairs, found) if ok]) \
        if head is not None or compare else {}
    if head is not None:
        trained = load_head(ctx.catalog, ctx.model, head, ctx.path)
        scores = LabelScores(classes, None, ctx.model.logit_scale, trained).scores(embeddings)
        if unseen is None:
            unseen = [c for c in classes if c in set(trained.unseen_classes)] or None
        extra["head"] = {"name": trained.name, "method": trained.method, "calibration": round(trained.calibration, 6)}
        overlap = unlabelled_overlap(trained, stored)
        if overlap:
            extra["head"]["warning"] = overlap
    report = compute_report(scores, truth, classes, templates, set(unseen) if unseen else None, calibration)
    report.unreadable = len(failed)
    if compare:
        if not unseen:
            raise QueryError("needs the unseen classes: give them, or a head (whose unseen classes are then used)",
                             param="compare")
        unseen_mask = np.array([c in set(unseen) for c in classes])
        extra["comparison"] = comparison(ctx, embeddings, truth, classes, plain, unseen_mask, stored)
    report.extra.update(extra)
    return report


def unlabelled_overlap(head: "Head", stored: Mapping[str, tuple[int, int]]) -> Optional[str]:
    """A warning when pictures about to be scored by ``head`` (``stored``: their uri -> (item id, content
    id), as ``items_by_uris`` gives) may have been among its unlabelled training items (in its
    ``--unlabelled`` scope and stored before it was trained): its figures on them are then transductive,
    not held out. None when none can have been."""
    choice = head.hparams.get("unlabelled", "none")
    upto = int(head.figures.get("unlabelled_upto_embedding_id", 0) or 0)
    if choice in (None, "none"):
        return None
    inside = sum(1 for uri, (_, content) in stored.items()
                 if content is not None and (upto == 0 or content <= upto) and (choice == "all" or uri_under(uri, choice)))
    if not inside:
        return None
    return (f"{inside} of these {len(stored)} pictures were in the index, within this head's --unlabelled scope "
            f"({choice}), when it was trained: those it was not given labels for were among its unlabelled "
            "training items, so its figures on them are transductive, not held out; for a held-out figure "
            "train it with --unlabelled naming another folder, or none")


def comparison_figures(scores: np.ndarray, truth: np.ndarray, unseen_mask: np.ndarray) -> dict[str, Any]:
    """The protocol's S, U, H and ZSL of one scorer (per class), with the per-picture figures beside."""
    zsl, zsl_per_picture = zsl_accuracy(scores, truth, unseen_mask)
    return {**gzsl_figures(scores, truth, unseen_mask), "zsl_unseen_accuracy": zsl,
            "zsl_unseen_accuracy_per_picture": zsl_per_picture}


def comparison(ctx: "IndexContext", embeddings: np.ndarray, truth: np.ndarray, classes: Sequence[str], plain: np.ndarray,
               unseen_mask: np.ndarray, stored: Optional[Mapping[str, tuple[int, int]]] = None
               ) -> list[dict[str, Any]]:
    """One row per scorer on the same pictures: plain cosine, calibrated stacking (two-fold
    cross-validated on these pictures: a per-set calibration), transductive zero-shot (these pictures
    as one collection, label-free), and each stored head that covers the classes. A head of another model, or one missing a class, gets a row saying why it was skipped."""
    cross_validated = cross_validated_calibration(plain, truth, unseen_mask)
    constants = cross_validated.pop("constants")
    rows: list[dict[str, Any]] = [
        {"method": "plain cosine", "head": None, "calibration": 0.0, **comparison_figures(plain, truth, unseen_mask)},
        {"method": "calibrated stacking", "head": None, "calibration": f"per-set, two-fold cross-validated {constants}",
         **cross_validated, **dict(zip(("zsl_unseen_accuracy", "zsl_unseen_accuracy_per_picture"),
                                       zsl_accuracy(plain, truth, unseen_mask)))},
    ]
    transduced = LabelScores.build(ctx.texts, classes).transduced(embeddings)
    rows.append({"method": "transductive", "head": None, "calibration": 0.0,
                 **comparison_figures(transduced.scores, truth, unseen_mask),
                 **({} if transduced.used else {"warning": "fell back to plain zero-shot: " + transduced.guard["reason"]})})
    unseen = {c for c, u in zip(classes, unseen_mask) if u}
    for listed in list_heads(ctx.catalog, ctx.model):
        name = listed["name"]
        if not listed["usable"]:
            rows.append({"method": listed["method"], "head": name, "skipped": "trained for another model"})
            continue
        head = load_head(ctx.catalog, ctx.model, name, ctx.path)
        missing = [c for c in classes if c not in set(head.classes)]
        if missing:
            rows.append({"method": head.method, "head": name, "skipped": f"does not know the class {missing[0]!r}"})
            continue
        row = {"method": head.method, "head": name, "calibration": round(head.calibration, 4),
               **comparison_figures(LabelScores(classes, None, 1.0, head).scores(embeddings), truth, unseen_mask)}
        leaked = sorted(unseen & set(head.seen_classes))
        warnings = [f"trained on items of {len(leaked)} classes counted unseen here, e.g. {leaked[0]!r}"] if leaked else []
        overlap = unlabelled_overlap(head, stored or {})
        if overlap:
            warnings.append(overlap)
        if warnings:
            row["warning"] = "; ".join(warnings)
        rows.append(row)
    return rows
