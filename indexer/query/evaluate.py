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
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np
from ..errors import QueryError
from ..media.entries import is_image_name
from .classify import label_embeddings
from .labels import label_from_folder_name, read_label_csv

if TYPE_CHECKING:
    from ..index import Index


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

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "extra"} | self.extra


def harmonic_mean(s: float, u: float) -> float:
    return 2 * s * u / (s + u) if s + u > 0 else 0.0


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


def gzsl_figures(scores: np.ndarray, truth: np.ndarray, unseen_mask: np.ndarray, calibration: float = 0.0
                 ) -> dict[str, float]:
    """S, U, H over all labels at once; ``calibration`` is subtracted from the seen labels' scores."""
    adjusted = scores - calibration * (~unseen_mask)[None, :]
    predicted = adjusted.argmax(axis=1)
    on_unseen = unseen_mask[truth]
    s = float(np.mean(predicted[~on_unseen] == truth[~on_unseen])) if (~on_unseen).any() else 0.0
    u = float(np.mean(predicted[on_unseen] == truth[on_unseen])) if on_unseen.any() else 0.0
    return {"seen_accuracy": round(s, 4), "unseen_accuracy": round(u, 4), "harmonic_mean": round(harmonic_mean(s, u), 4)}


def tune_calibration(scores: np.ndarray, truth: np.ndarray, unseen_mask: np.ndarray) -> float:
    """The constant (on a grid over the score range) that maximises H on these pictures."""
    spread = float(np.ptp(scores)) or 1.0
    grid = np.linspace(-0.25 * spread, 0.5 * spread, 151)
    values = [gzsl_figures(scores, truth, unseen_mask, g)["harmonic_mean"] for g in grid]
    return float(grid[int(np.argmax(values))])


def cross_validated_calibration(scores: np.ndarray, truth: np.ndarray, unseen_mask: np.ndarray, seed: int = 0
                                ) -> dict[str, Any]:
    """Two-fold: tune on one half, measure on the other; the pooled figures and both constants."""
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(truth)) % 2
    predicted = np.empty(len(truth), dtype=np.int64)
    constants = []
    for k in (0, 1):
        tune, test = fold != k, fold == k
        gamma = tune_calibration(scores[tune], truth[tune], unseen_mask)
        constants.append(round(gamma, 4))
        predicted[test] = (scores[test] - gamma * (~unseen_mask)[None, :]).argmax(axis=1)
    on_unseen = unseen_mask[truth]
    s = float(np.mean(predicted[~on_unseen] == truth[~on_unseen])) if (~on_unseen).any() else 0.0
    u = float(np.mean(predicted[on_unseen] == truth[on_unseen])) if on_unseen.any() else 0.0
    return {"seen_accuracy": round(s, 4), "unseen_accuracy": round(u, 4),
            "harmonic_mean": round(harmonic_mean(s, u), 4), "constants": constants}


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
    )
    if unseen:
        unknown = sorted(unseen - set(classes))
        if unknown:
            raise QueryError(f"--unseen names classes that are not in the dataset: {', '.join(unknown[:5])}")
        unseen_mask = np.array([c in unseen for c in classes])
        if unseen_mask.all():
            raise QueryError("--unseen lists every class; GZSL needs seen classes too")
        on_unseen = unseen_mask[truth]
        unseen_ids = np.flatnonzero(unseen_mask)
        zsl_pred = unseen_ids[scores[on_unseen][:, unseen_ids].argmax(axis=1)]
        gzsl: dict[str, Any] = {
            "unseen_classes": int(unseen_mask.sum()), "seen_classes": int((~unseen_mask).sum()),
            "uncalibrated": gzsl_figures(scores, truth, unseen_mask),
            "zsl_unseen_accuracy": round(float(np.mean(zsl_pred == truth[on_unseen])), 4) if on_unseen.any() else None,
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


def evaluate(index: "Index", dataset: Path, templates: str = "default", unseen: Optional[Sequence[str]] = None,
             calibration: Union[float, str, None] = None, mapping: Optional[dict[str, str]] = None) -> EvalReport:
    """Evaluates the index's model on ``dataset``, whose pictures the index must hold (ingest it first).
    Pictures that could not be read are counted as ``unreadable`` and left out."""
    pairs = load_dataset(dataset, mapping)
    found, embeddings = index.catalog.embeddings_for_uris([p for p, _ in pairs])
    if not found.any():
        raise QueryError(f"the index at {index.path} holds none of the pictures of {dataset}; ingest them first "
                         f"(indexer ingest {dataset} --index {index.path}), or use `indexer eval`, which does")
    failed = set(index.catalog.failed_uris([p for p, ok in zip((p for p, _ in pairs), found) if not ok]))
    absent = int((~found).sum()) - len(failed)
    if absent:
        raise QueryError(f"{absent} pictures of {dataset} are not in the index at {index.path}; ingest the dataset "
                         "first (`indexer eval` does)")
    classes = sorted({label for _, label in pairs})
    truth = np.array([classes.index(label) for (_, label), ok in zip(pairs, found) if ok], dtype=np.int64)
    scores = embeddings @ label_embeddings(index, classes, templates).T
    report = compute_report(scores, truth, classes, templates, set(unseen) if unseen else None, calibration)
    report.unreadable = len(failed)
    return report
