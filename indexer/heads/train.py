"""Heads against an index: training from labelled items already in it (stored embeddings only, never an
image). Loading a stored head, refused when it belongs to another model, is ``query.head.load_head``."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Union

import numpy as np

from ..errors import HeadError
from ..query.labels import read_label_csv, read_text
from ..store.paths import uri_under
from ..query.head import METHODS, Head, load_head

if TYPE_CHECKING:
    from ..context import IndexContext

_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
UNLABELLED_LIMIT = 20_000  # unlabelled items EM reads at most (a seeded sample beyond)
# Training holds a few (dim x dim) matrices per class: 10,000 classes took 10 GB and over ten minutes.
MAX_CLASSES = 1000


def read_attributes(path: Union[str, Path], classes: Sequence[str]) -> np.ndarray:
    """(classes, k) vectors from a ``class,number,number,...`` CSV naming every class once (a header row
    whose numbers do not parse is skipped)."""
    rows: dict[str, list[float]] = {}
    try:
        for number, row in enumerate(csv.reader(io.StringIO(read_text(path, "attributes file"))), start=1):
            cells = [c.strip() for c in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            try:
                values = [float(c) for c in cells[1:]]
            except ValueError:
                if number == 1 and not rows:
                    continue  # a header row
                raise HeadError(f"{path}:{number}: expected 'class,number,number,...', got {row!r}") from None
            if not values:
                raise HeadError(f"{path}:{number}: class {cells[0]!r} has no numbers")
            rows[cells[0]] = values
    except csv.Error as exc:
        raise HeadError(f"attributes file {path} is not valid CSV: {exc}") from None
    missing = [c for c in classes if c not in rows]
    if missing:
        raise HeadError(f"attributes file {path} has no row for {len(missing)} classes, e.g. {missing[0]!r}")
    sizes = {len(rows[c]) for c in classes}
    if len(sizes) != 1:
        raise HeadError(f"attributes file {path}: every class needs the same number of values (got {sorted(sizes)})")
    matrix = np.array([rows[c] for c in classes], dtype=np.float32)
    if not np.isfinite(matrix).all() or (np.linalg.norm(matrix, axis=1) == 0).any():
        raise HeadError(f"attributes file {path}: every class needs finite values, not all zero")
    return matrix


def labelled_items(ctx: "IndexContext", labels_csv: Union[str, Path], classes: Sequence[str]
                   ) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
    """(stored embeddings, class positions, unreadable items left out, every labelled path) of a
    ``path,label`` CSV's items;
    relative paths are taken below the CSV's folder. Every item must be in the index."""
    labels_csv = Path(labels_csv)
    position = {c: i for i, c in enumerate(classes)}
    given: dict[str, str] = {}
    for number, item_path, label, _ in read_label_csv(labels_csv):
        if label not in position:
            raise HeadError(f"{labels_csv}:{number}: label {label!r} is not in the class list; add it there")
        path = item_path if "::" in item_path or os.path.isabs(item_path) else str(labels_csv.parent / item_path)
        uri = path if "::" in path else os.path.abspath(os.path.expanduser(path))
        if given.setdefault(uri, label) != label:
            raise HeadError(f"{labels_csv}:{number}: {item_path} is labelled both {given[uri]!r} and {label!r}")
    if not given:
        raise HeadError(f"{labels_csv} labels no item")
    uris = list(given)
    found, embeddings = ctx.catalog.embeddings.for_uris(uris)
    failed = set(ctx.catalog.items.failed_uris([u for u, ok in zip(uris, found) if not ok]))
    absent = [u for u, ok in zip(uris, found) if not ok and u not in failed]
    if absent:
        raise HeadError(f"{len(absent)} labelled items are not in the index at {ctx.path}, e.g. {absent[0]}; "
                        f"ingest them first (indexer ingest ... --index {ctx.path})")
    if not found.any():
        raise HeadError(f"none of the items of {labels_csv} could be read; nothing to train on")
    labels = np.array([position[given[u]] for u, ok in zip(uris, found) if ok], dtype=np.int64)
    return embeddings, labels, len(failed), uris


def unlabelled_items(ctx: "IndexContext", unlabelled: str, labelled_uris: Sequence[str], seed: int = 0,
                     limit: int = UNLABELLED_LIMIT) -> tuple[Optional[np.ndarray], str, int]:
    """(stored embeddings of up to ``limit`` unlabelled items, the choice as stored, how many matched).

    ``unlabelled`` is ``none`` (no embeddings), ``all`` (every embedded item of the index but the labelled
    ones) or a path: the items below a folder, in an archive, or that file (resolved as the labels' paths
    are). A content labelled anywhere is left out everywhere (the same picture under another name); one
    content stored under several names counts once. Beyond ``limit`` a seeded sample is drawn."""
    if unlabelled == "none":
        return None, "none", 0
    prefix = None
    if unlabelled != "all":
        prefix = unlabelled if "::" in unlabelled else os.path.abspath(os.path.expanduser(unlabelled))
    labelled = {content for _, content in ctx.catalog.items.by_uris(list(labelled_uris)).values()}
    contents: set[int] = set()
    for page in ctx.catalog.items.iter_live():
        contents.update(content for _, uri, content in page
                        if content not in labelled and (prefix is None or uri_under(uri, prefix)))
    if prefix is not None and not contents:
        raise HeadError(f"{unlabelled}: no unlabelled item of the index at {ctx.path} is at or "
                        f"below {prefix}; give a folder, an archive or a file already ingested (indexer ingest), "
                        "'all' or 'none'", param="unlabelled")
    ids = sorted(contents)
    if len(ids) > limit:
        ids = sorted(np.random.default_rng(seed).choice(ids, limit, replace=False).tolist())
    _, embeddings = ctx.catalog.embeddings.by_ids(ids)
    return (embeddings if len(ids) else None), (prefix or "all"), len(contents)


def _safe_layer(fitted: Any, pool: np.ndarray, descriptions: np.ndarray, seen: np.ndarray, logit_scale: float
                ) -> tuple[np.ndarray, np.ndarray, float, Optional[str]]:
    """(weight, bias, calibration, why it fell back or None): the trained layer, or plain cosine's when
    the head is more biased towards the seen classes than plain zero-shot on the collection itself.

    Validation on held-out seen classes cannot see that bias (they are easy for a backbone trained on
    them); the unlabelled items can, without a label: a head that gives a smaller share of them to the
    unseen classes than plain zero-shot does has taken unseen pictures for seen classes, which is the
    failure a head must never add."""
    from ..query.head import normalise as unit

    u = unit(np.asarray(pool, dtype=np.float32))
    plain = float(np.mean(~seen[(u @ descriptions.T).argmax(axis=1)]))
    scores = fitted.layer.logits(u) - np.float32(fitted.calibration) * seen.astype(np.float32)
    head = float(np.mean(~seen[scores.argmax(axis=1)]))
    if head >= plain:
        return fitted.layer.weight, fitted.layer.bias, fitted.calibration, None
    why = (f"plain cosine: the trained head gave {head:.1%} of the {len(u)} unlabelled items to unseen classes, "
           f"plain zero-shot {plain:.1%}; a head more biased towards the seen classes than plain zero-shot is not "
           "kept")
    return (np.float32(logit_scale) * descriptions.astype(np.float32), np.zeros(len(seen), np.float32), 0.0, why)


def train_head(ctx: "IndexContext", name: str, labels_csv: Union[str, Path], classes: Sequence[str],
               method: str = "generative", attributes: Optional[Union[str, Path]] = None,
               templates: str = "default", seed: int = 0, generator: str = "gaussian", replace: bool = False,
               grid: Optional[Sequence[Mapping[str, Any]]] = None, unlabelled: str = "all") -> Head:
    """Trains a head named ``name`` over ``classes`` (those without labelled items are its unseen ones)
    from the stored embeddings of the items labelled in ``labels_csv``, and stores it in the catalog.

    Classes are described by their prompts' text embeddings (``templates``), or by the vectors of an
    ``attributes`` CSV. Hyper-parameters and the calibration constant are chosen on held-out seen
    classes (``select.fit_head``); ``grid`` replaces the default candidates.

    ``unlabelled`` (``all``, ``none`` or a path; see ``unlabelled_items``) names the collection's items
    whose stored embeddings refine the head transductively (``transductive``): none of their labels is
    known or needed. With ``all`` and nothing unlabelled in the index, the head is trained without."""
    from .select import fit_head  # imports torch

    if not _NAME.match(name or ""):
        raise HeadError("a head's name is 1 to 128 printable characters")
    if method not in METHODS:
        raise HeadError(f"unknown head method {method!r}: {' or '.join(METHODS)}")
    classes = list(dict.fromkeys(classes))
    if len(classes) < 3:
        raise HeadError("a head needs at least three classes")
    if len(classes) > MAX_CLASSES:
        raise HeadError(f"a head is trained over at most {MAX_CLASSES:,} classes ({len(classes):,} given): its "
                        "time and memory grow with every class; train heads over smaller class lists, or "
                        "classify without a head (cosine scores take any number of labels)")
    if not replace and ctx.catalog.heads.get(name) is not None:
        raise HeadError(f"a head named {name!r} exists already; choose another name, delete it "
                        f"(indexer heads delete {name}) or pass --replace")
    features, labels, unreadable, uris = labelled_items(ctx, labels_csv, classes)
    pool, choice, matching = unlabelled_items(ctx, unlabelled, uris, seed)
    seen = np.zeros(len(classes), dtype=bool)
    seen[np.unique(labels)] = True
    if seen.all():
        raise HeadError("every class has labelled items; list the unseen classes in the class list too")
    if attributes is not None:
        descriptions = read_attributes(attributes, classes)
    else:
        from ..query.scoring import label_embeddings

        descriptions = label_embeddings(ctx.texts, classes, templates)
    found, start = None, "none"
    if pool is not None and attributes is None:
        # Label-free transduction of the unlabelled items over the head's classes: where each class's
        # cluster is, the start of EM for the unseen classes (transductive.start_means).
        from ..query.scoring import LabelScores
        from .fit import check_unlabelled

        transduced = LabelScores(classes, descriptions, ctx.texts.logit_scale).transduced(
            check_unlabelled(pool, descriptions.shape[1]))
        found = transduced.found_means()
        start = "transduced" if found is not None else f"regressed (transduction fell back: {transduced.guard['reason']})"
    elif pool is not None:
        start = "regressed (attribute descriptions: no text classifier to transduce with)"
    fitted = fit_head(features, labels, descriptions, seen, method, seed=seed, grid=grid, generator=generator,
                      unlabelled=pool, found_means=found)
    weight, bias, calibration, fallback = fitted.layer.weight, fitted.layer.bias, fitted.calibration, None
    if pool is not None and attributes is None:
        weight, bias, calibration, fallback = _safe_layer(fitted, pool, descriptions, seen, ctx.texts.logit_scale)
    hparams = {**fitted.layer.hparams, "calibration": round(calibration, 6), "seed": seed, "unlabelled": choice,
               "em_start": start, "fallback": fallback,
               "descriptions": "attributes" if attributes is not None else "text",
               "templates": None if attributes is not None else templates}
    figures = {"items": int(len(labels)), "unreadable_items_left_out": unreadable, "seen_classes": int(seen.sum()),
               "unseen_classes": int((~seen).sum()), "train_seconds": fitted.seconds,
               "unlabelled_items": 0 if pool is None else int(len(pool)), "unlabelled_matching": matching,
               # Contents stored by then (ids only grow): what an evaluation checks its pictures against.
               "unlabelled_upto_embedding_id": 0 if pool is None else int(ctx.catalog.embeddings.id_range()[1]),
               "validation": fitted.selection}
    head = Head(name=name, method=method, classes=classes, weight=weight, bias=bias,
                seen_mask=seen, model_key=ctx.model.key, calibration=calibration, hparams=hparams,
                figures=figures)
    ctx.catalog.heads.save(name, method, classes, hparams, head.model_key, figures, head.weights_blob(),
                            replace=replace)
    return load_head(ctx.catalog, ctx.model, name, ctx.path)
