"""The given labels of a dataset under audit: from folder names, a CSV file, or a classification run.

Whatever the source, the result is a ``DatasetLabels``: compact arrays aligned by item (item id,
content id, label index, split index), sorted by item id, so a million labelled items cost about
25 MB and every later pass over the catalog looks its rows up with a binary search.

Folder labels follow the ImageFolder layout: an item's class is its parent folder (``_`` read as a
space), skipping a split folder (``train``, ``val``, ``valid``, ``validation``, ``test``), and a split
folder anywhere below the root gives the split: ``root/red_star/x.jpg``, ``root/train/red_star/x.jpg``
and ``root/red_star/train/x.jpg`` all give the label ``red star``. An archive is read as a folder named
after it: ``root/train.tar::red_star/x.jpg`` is ``root/train/red_star/x.jpg``. Without an explicit root,
the root is the common folder of the items' parent folders (give one when the index holds more than
the dataset, or a single class folder); an item directly in the root has no label.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np
from ..errors import QueryError
from ..media.archives import split_member_uri, strip_archive_suffix
from ..query.labels import SPLIT_NAMES, label_from_folder_name, read_label_csv

if TYPE_CHECKING:
    from ..context import IndexContext

NO_SPLIT = -1
_CHUNK = 5000


@dataclass
class DatasetLabels:
    """Given labels (and splits) of the labelled items, as arrays aligned by item, sorted by item id."""

    labels: list[str]  # the label set, index = label index
    item_ids: np.ndarray  # int64, sorted
    content_ids: np.ndarray  # int64: the item's embedding id (equal ids = exact duplicates)
    label_index: np.ndarray  # int32 into ``labels``
    split_index: np.ndarray  # int16 into ``splits``, NO_SPLIT when none
    splits: list[str] = field(default_factory=list)
    source: str = "folders"  # a short description of where the labels came from
    root: Optional[str] = None  # folder labels: the root they were read below
    unlabelled: int = 0  # embedded items without a label (left out of the audit)
    unmatched: int = 0  # CSV rows naming no embedded item
    unmatched_examples: list[str] = field(default_factory=list)
    templates: Optional[str] = None  # a classification run's templates, the default for its audit
    recipe: dict = field(default_factory=dict)  # how to read these labels again (``labels_from_recipe``)

    @property
    def size(self) -> int:
        return int(len(self.item_ids))

    def positions(self, item_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """For each of ``item_ids``: whether it is labelled, and its position in the arrays."""
        ids = np.asarray(item_ids, dtype=np.int64)
        pos = np.searchsorted(self.item_ids, ids)
        found = pos < len(self.item_ids)
        found[found] = self.item_ids[pos[found]] == ids[found]
        return found, np.where(found, pos, 0)

    def subset(self, item_ids: Sequence[int]) -> "DatasetLabels":
        """The same labels for only the items among ``item_ids`` (an audit narrowed by ``--where``)."""
        keep = np.isin(self.item_ids, np.asarray(item_ids, dtype=np.int64))
        return replace(self, item_ids=self.item_ids[keep], content_ids=self.content_ids[keep],
                       label_index=self.label_index[keep], split_index=self.split_index[keep])

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.label_index, minlength=len(self.labels))

    def split_of(self, position: int) -> Optional[str]:
        index = int(self.split_index[position])
        return self.splits[index] if index != NO_SPLIT else None


class _Builder:
    """Collects (item, content, label, split) rows chunk by chunk into compact arrays."""

    def __init__(self, labels: Optional[Sequence[str]] = None) -> None:
        self.label_ids: dict[str, int] = {label: i for i, label in enumerate(labels or [])}
        self.split_ids: dict[str, int] = {}
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, rows: list[tuple[int, int, str, Optional[str]]]) -> None:
        if not rows:
            return
        label_index = [self.label_ids.setdefault(r[2], len(self.label_ids)) for r in rows]
        split_index = [self.split_ids.setdefault(r[3], len(self.split_ids)) if r[3] else NO_SPLIT for r in rows]
        self.parts.append((np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64),
                           np.array(label_index, np.int32), np.array(split_index, np.int16)))

    def build(self, source: str, sort_labels: bool, **extra: object) -> DatasetLabels:
        if self.parts:
            columns = [np.concatenate(c) for c in zip(*self.parts)]
        else:
            columns = [np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int16)]
        # Sort by item id; when an item is given twice (a CSV naming a path twice) the last row wins.
        order = np.lexsort((np.arange(len(columns[0])), columns[0]))
        columns = [c[order] for c in columns]
        keep = np.ones(len(order), dtype=bool)
        keep[:-1] = columns[0][1:] != columns[0][:-1]
        item_ids, content_ids, label_index, split_index = (c[keep] for c in columns)
        labels = list(self.label_ids)
        if sort_labels:  # a deterministic label order, whatever order the items came in
            labels = sorted(labels)
            new_index = {label: i for i, label in enumerate(labels)}
            remap = np.array([new_index[label] for label in self.label_ids], np.int32)
            label_index = remap[label_index] if len(label_index) else label_index
        splits = sorted(self.split_ids, key=self.split_ids.get)  # type: ignore[arg-type]
        return DatasetLabels(labels=labels, item_ids=item_ids, content_ids=content_ids, label_index=label_index,
                             split_index=split_index, splits=splits, source=source, **extra)  # type: ignore[arg-type]


def _as_path(uri: str) -> str:
    """An item's uri as a path: the member ``M`` of archive ``A.tar`` (uri ``A.tar::M``) becomes ``A/M``."""
    archive, member = split_member_uri(uri)
    if archive is None:
        return uri
    return os.path.join(strip_archive_suffix(archive), member.lstrip("/"))


def label_from_path(path: str, root: str) -> tuple[Optional[str], Optional[str]]:
    """(label, split) of the file at ``path`` below ``root``; (None, None) when it has no class folder."""
    relative = os.path.relpath(path, root)
    parts = relative.split(os.sep)
    if relative.startswith(os.pardir) or len(parts) < 2:
        return None, None
    folders = parts[:-1]
    split = next((SPLIT_NAMES[f.lower()] for f in reversed(folders) if f.lower() in SPLIT_NAMES), None)
    if split is None and os.path.basename(root).lower() in SPLIT_NAMES:
        split = SPLIT_NAMES[os.path.basename(root).lower()]
    label = next((f for f in reversed(folders) if f.lower() not in SPLIT_NAMES), None)
    if label is None:
        return None, split
    return label_from_folder_name(label) or None, split


def common_root(ctx: "IndexContext") -> Optional[str]:
    """The deepest folder holding every embedded item's parent folder (one pass over the uris)."""
    root: Optional[str] = None
    for rows in ctx.catalog.items.iter_live(_CHUNK):
        for _, uri, _ in rows:
            parent = os.path.dirname(_as_path(uri))
            root = parent if root is None else os.path.commonpath([root, parent])
    return root


def folder_labels(ctx: "IndexContext", root: Union[str, Path, None] = None) -> DatasetLabels:
    """Labels from class folder names below ``root`` (default: the items' common root)."""
    if root is not None:
        root_text = os.path.abspath(os.path.expanduser(str(root)))
        if not os.path.isdir(root_text):
            raise QueryError(f"{root}: no such folder", param="root")
    else:
        derived = common_root(ctx)
        if derived is None:
            return _Builder().build("folders", sort_labels=True)
        root_text = derived
    builder = _Builder()
    unlabelled = 0
    for rows in ctx.catalog.items.iter_live(_CHUNK):
        chunk = []
        for item_id, uri, content_id in rows:
            label, split = label_from_path(_as_path(uri), root_text)
            if label is None:
                unlabelled += 1
            else:
                chunk.append((item_id, content_id, label, split))
        builder.add(chunk)
    return builder.build(f"folder names below {root_text}", sort_labels=True, root=root_text, unlabelled=unlabelled,
                         recipe={"kind": "folders", "root": root_text})


def csv_labels(ctx: "IndexContext", path: Union[str, Path], root: Union[str, Path, None] = None) -> DatasetLabels:
    """Labels from a CSV of ``path,label`` (optional ``split`` column; a header row is optional).
    Relative paths are taken below ``root``, or else below the CSV file's folder."""
    path = Path(path).expanduser()
    base = Path(root).expanduser().resolve() if root is not None else path.resolve().parent
    builder = _Builder()
    unmatched, examples = 0, []

    def flush(pending: dict[str, tuple[str, Optional[str]]]) -> None:
        nonlocal unmatched
        found = ctx.catalog.items.by_uris(list(pending))
        rows = []
        for uri, (label, split) in pending.items():
            if uri in found:
                rows.append((*found[uri], label, split))
            else:
                unmatched += 1
                if len(examples) < 5:
                    examples.append(uri)
        builder.add(rows)

    pending: dict[str, tuple[str, Optional[str]]] = {}
    for _, item_path, label, split in read_label_csv(path):
        uri = item_path if os.path.isabs(item_path) else os.path.abspath(os.path.join(base, item_path))
        pending[uri] = (label, split)
        if len(pending) >= _CHUNK:
            flush(pending)
            pending = {}
    flush(pending)
    dataset = builder.build(f"labels file {path}", sort_labels=True, unmatched=unmatched,
                            unmatched_examples=examples,
                            recipe={"kind": "csv", "path": str(path.resolve()), "root": str(base)})
    dataset.unlabelled = max(0, ctx.catalog.count_embedded() - dataset.size)
    return dataset


def run_labels(ctx: "IndexContext", run_id: Optional[int] = None) -> DatasetLabels:
    """Labels from a stored ``classify`` run (its best label per item); ``None`` takes the latest run."""
    run = ctx.catalog.runs.classification(run_id)
    if run is None:
        raise QueryError(f"no classification run {run_id} in {ctx.path}; `indexer classify` stores one"
                         if run_id is not None else
                         f"no classification run in {ctx.path} that finished; run `indexer classify` first, "
                         "or give labels")
    if not run.complete:
        raise QueryError(f"classification run {run.id} was interrupted before every item was classified; run "
                         "`indexer classify` again (or give --from-run with a complete run)")
    builder = _Builder(run.labels)
    for rows in ctx.catalog.runs.iter_labels(run.id, _CHUNK):
        builder.add([(item_id, content_id, label, None) for item_id, content_id, label in rows])
    dataset = builder.build(f"classification run {run.id}", sort_labels=False, templates=run.templates,
                            recipe={"kind": "run", "run_id": run.id})
    dataset.unlabelled = max(0, ctx.catalog.count_embedded() - dataset.size)
    return dataset


def labels_from_recipe(ctx: "IndexContext", recipe: dict) -> DatasetLabels:
    """The labels a ``DatasetLabels.recipe`` names, read again (the export reads the audited labels so)."""
    kind = recipe.get("kind")
    if kind == "folders":
        return folder_labels(ctx, recipe.get("root"))
    if kind == "csv":
        if not os.path.isfile(recipe["path"]):
            raise QueryError(f"the labels file the audit read, {recipe['path']}, is gone; give the labels (--labels)")
        return csv_labels(ctx, recipe["path"], recipe.get("root"))
    if kind == "run":
        return run_labels(ctx, int(recipe["run_id"]))
    raise QueryError("the stored audit does not say which labels it read; give them (--labels, --root or --from-run)")


def labels_key(dataset: DatasetLabels) -> str:
    """A fingerprint of the labels: which items carry which label (two label files that give every item
    the same label have the same key)."""
    import hashlib

    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(dataset.item_ids, dtype="<i8").tobytes())
    names = np.array([len(label) for label in dataset.labels], dtype="<i8")  # the label set, unambiguously
    digest.update(names.tobytes() + "".join(dataset.labels).encode("utf-8", "surrogateescape"))
    digest.update(np.ascontiguousarray(dataset.label_index, dtype="<i4").tobytes())
    return digest.hexdigest()[:16]
