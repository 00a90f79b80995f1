"""Every zero-shot method on every set, in one table: plain cosine, calibrated stacking, transductive
classification (guarded, and unguarded for reference), and each head with and without unlabelled items.

    python scripts/bench_transductive.py --work /tmp/zs-bench              # draw, ingest, measure: one table
    python scripts/bench_transductive.py --work /tmp/zs-bench --no-heads   # without the (slow) head rows
    python scripts/bench_transductive.py --work /tmp/zs-bench --guard      # also the guard cases
    python scripts/bench_transductive.py --work /tmp/zs-bench --no-heads --sets drawn,plain
                                         # the development sets alone (drawn, ingested and measured): where
                                         # settings are chosen, without a held-out figure on the screen

Sets (48 classes, the bundled model's 12 unseen; each drawn with one fixed seed into --work and ingested
with the bundled ``tiny-shapes`` model into one index):

  development (where the methods' settings were chosen):
    drawn  : indexer.synthetic (the model's own training generator), seed 2, 30 per class, 96 px jpg
    plain  : tests/plain_shapes.py, seed 3, 20 per class
  held out (tests/held_out_renderers.py; every setting frozen and committed before the first draw):
    sketch : seed FROZEN["seeds"]["sketch"], 30 per class
    field  : seed FROZEN["seeds"]["field"], 30 per class

Per set, for the heads (the issue's protocol): labels for 20 more pictures of each of the 36 seen classes of
that renderer (seed + 100), and an unlabelled pool of the set's test pictures plus 20 more pictures of each
unseen class (seed + 200), no label of which is read. Each head is trained with ``Index.train_head`` with
``unlabelled="none"`` and with ``unlabelled=<pool>``; measured on the set's test pictures (for the "+ pool"
rows these were among its unlabelled items: transductive figures, which is the setting the issue names).

Columns: top-1 (per picture, over all 48 labels), S, U, H (the protocol's per-class GZSL figures). The
transductive rows use only the set's own stored embeddings, no label. "Calibrated stacking" tunes its
constant by two-fold cross-validation on the measured set itself: a reference, not a competitor on equal
terms.

Guard cases (--guard): transductive top-1 against plain on collections where transduction has little to
work with, each drawn from the held-out sets' pictures (and the development sets', shown apart): 6 of the
48 classes present (labels: all 48), one class holding 80 % of the items (small: 30 of a class and a few
others; large: 240 more pictures of "blue square" or "red circle", seed + 300, and 60 others), a label set naming 12 classes
absent from the collection (items of 36 classes, 48 labels), and 50 items.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from indexer import open_index, synthetic  # noqa: E402
from indexer.query.evaluate import load_dataset  # noqa: E402
from indexer.query.gzsl import figures_of_predictions, tune_calibration  # noqa: E402
from indexer.query.scoring import LabelScores  # noqa: E402
from tests import held_out_renderers  # noqa: E402
from tests.plain_shapes import write_plain_folder  # noqa: E402

CLASSES = list(synthetic.ALL_CLASSES)
UNSEEN = list(synthetic.UNSEEN_CLASSES)
SEEDS = {"drawn": 2, "plain": 3, "sketch": held_out_renderers.FROZEN["seeds"]["sketch"],
         "field": held_out_renderers.FROZEN["seeds"]["field"]}
PER_CLASS = {"drawn": 30, "plain": 20, "sketch": 30, "field": 30}
HELD_OUT = ("sketch", "field")
UNSEEN_MASK = np.array([c in set(UNSEEN) for c in CLASSES])
LABELLED, POOL_UNSEEN = 20, 20
DOMINANT, DOMINANT_CLASSES = 240, ("blue square", "red circle")  # a seen and an unseen class, for the 80 % case


def _draw(name: str, root: Path, classes: list[str], per_class: int, seed: int) -> None:
    if name == "drawn":
        synthetic.write_labelled_folder(root, per_class, classes, seed=seed, size=96, image_format="jpg")
    elif name == "plain":
        write_plain_folder(root, classes, per_class=per_class, seed=seed)
    else:
        held_out_renderers.write_folder(name, root, classes, per_class, seed)


def build(work: Path, heads: bool, sets: list[str]) -> Path:
    """Draws each of ``sets`` (and, with ``heads``, its labelled and pool pictures) and ingests them; a
    set already ingested (its marker file in ``work``) is left as it is."""
    index_path = work / "index"

    def done(name: str, with_heads: bool) -> Path:
        return work / f"built-{name}{'-heads' if with_heads else ''}.json"

    todo = [name for name in sets if not (done(name, True).exists() or (not heads and done(name, False).exists()))]
    if not todo:
        return index_path
    started = time.perf_counter()
    sources = []
    for name in todo:
        seed = SEEDS[name]
        if not (work / name / "test").exists():
            _draw(name, work / name / "test", CLASSES, PER_CLASS[name], seed)
        sources.append(work / name / "test")
        if heads:
            if not (work / name / "labelled").exists():
                _draw(name, work / name / "labelled", list(synthetic.SEEN_CLASSES), LABELLED, seed + 100)
                pairs = load_dataset(work / name / "labelled")
                (work / name / "labelled.csv").write_text(
                    "path,label\n" + "".join(f"{p},{label}\n" for p, label in pairs))
            if not (work / name / "pool_unseen").exists():
                _draw(name, work / name / "pool_unseen", UNSEEN, POOL_UNSEEN, seed + 200)
            sources += [work / name / "labelled", work / name / "pool_unseen"]
    with open_index(index_path, model="tiny-shapes") as index:
        index.ingest(sources, progress=False)
    for name in todo:
        done(name, heads).write_text(json.dumps({name: SEEDS[name]}))
    print(f"# drew and ingested in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return index_path


def build_dominant(work: Path, index_path: Path, sets: list[str]) -> None:
    """240 more pictures of each of two classes per set (seed + 300), for large one-class-at-80 % cases."""
    todo = [name for name in sets if not (work / f"built-{name}-dominant.json").exists()]
    if not todo:
        return
    for name in todo:
        _draw(name, work / name / "dominant", list(DOMINANT_CLASSES), DOMINANT, SEEDS[name] + 300)
    with open_index(index_path) as index:
        index.ingest([work / name / "dominant" for name in todo], progress=False)
    for name in todo:
        (work / f"built-{name}-dominant.json").write_text(json.dumps({name: SEEDS[name]}))


def set_embeddings(index, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(stored embeddings, true class positions) of a labelled folder."""
    pairs = load_dataset(folder)
    found, embeddings = index.catalog.embeddings.for_uris([p for p, _ in pairs])
    truth = np.array([CLASSES.index(label) for (_, label), ok in zip(pairs, found) if ok])
    return embeddings, truth


def figures(scores: np.ndarray, truth: np.ndarray) -> dict:
    predicted = scores.argmax(axis=1)
    f = figures_of_predictions(predicted, truth, UNSEEN_MASK)
    return {"top1": float(np.mean(predicted == truth)), "S": f["seen_accuracy"], "U": f["unseen_accuracy"],
            "H": f["harmonic_mean"]}


def calibrated(scores: np.ndarray, truth: np.ndarray) -> dict:
    """Calibrated stacking, its constant two-fold cross-validated on the set itself."""
    fold = np.random.default_rng(0).permutation(len(truth)) % 2
    predicted = np.empty(len(truth), dtype=np.int64)
    for k in (0, 1):
        gamma = tune_calibration(scores[fold != k], truth[fold != k], UNSEEN_MASK)
        predicted[fold == k] = (scores[fold == k] - gamma * ~UNSEEN_MASK).argmax(axis=1)
    one_hot = np.eye(len(CLASSES))[predicted]
    return figures(one_hot, truth)


def method_rows(index, work: Path, heads: bool, sets: list[str]) -> dict[str, dict[str, dict]]:
    """{method: {set: figures}}."""
    scorer = LabelScores.build(index.context.texts, CLASSES)
    table: dict[str, dict[str, dict]] = {}
    for name in sets:
        x, y = set_embeddings(index, work / name / "test")
        plain = scorer.scores(x)
        table.setdefault("plain cosine", {})[name] = figures(plain, y)
        table.setdefault("calibrated stacking (per-set 2-fold)", {})[name] = calibrated(plain, y)
        guarded = scorer.transduced(x)
        row = figures(guarded.scores, y) | {"used": guarded.used}
        table.setdefault("transductive (default, guarded)", {})[name] = row
        table.setdefault("transductive, guard off", {})[name] = figures(scorer.transduced(x, guard=False).scores, y)
        if not heads:
            continue
        for method in ("generative", "projection"):
            for pool, suffix in (("none", ""), ("pool", " + pool")):
                unlabelled = "none" if pool == "none" else str(work / name)
                started = time.perf_counter()
                head = index.train_head(f"{name}-{method}{suffix}", work / name / "labelled.csv", CLASSES,
                                        method=method, unlabelled=unlabelled, replace=True)
                scores = LabelScores(CLASSES, None, 1.0, head).scores(x)
                table.setdefault(f"head {method}{suffix}", {})[name] = figures(scores, y) | {
                    "calibration": round(head.calibration, 3), "fallback": head.hparams.get("fallback")}
                print(f"# {name} {method}{suffix}: {time.perf_counter() - started:.0f} s, calibration "
                      f"{head.calibration:.3f}", file=sys.stderr, flush=True)
    return table


def print_table(table: dict[str, dict[str, dict]], sets: list[str]) -> None:
    header = "| method | " + " | ".join(f"{s}{' (held out)' if s in HELD_OUT else ' (dev)'} top-1 / S / U / H"
                                        for s in sets) + " |"
    print(header)
    print("| --- |" + " ---: |" * len(sets))
    for method, by_set in table.items():
        cells = []
        for s in sets:
            f = by_set.get(s)
            if f is None:
                cells.append("")
                continue
            note = "" if f.get("used", True) else " (fell back)"
            cells.append(f"{f['top1']:.3f} / {f['S']:.3f} / {f['U']:.3f} / **{f['H']:.3f}**{note}")
        print(f"| {method} | " + " | ".join(cells) + " |")


def guard_cases(index, work: Path, sets: list[str]) -> None:
    """Transductive (default, guarded) and plain top-1 on collections with little to work with."""
    scorer = LabelScores.build(index.context.texts, CLASSES)
    print("\n| set | case | items | plain top-1 | transductive top-1 | difference | guard off | guard |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for name in sets:
        x, y = set_embeddings(index, work / name / "test")
        rng = np.random.default_rng(11)
        cases = []
        for _ in range(3):
            m = np.isin(y, rng.choice(len(CLASSES), 6, replace=False))
            cases.append(("6 of 48 classes", np.flatnonzero(m)))
        for _ in range(3):
            c = int(rng.integers(len(CLASSES)))
            big, rest = np.flatnonzero(y == c), np.flatnonzero(y != c)
            cases.append(("one class 80 %", np.concatenate([big, rng.choice(rest, len(big) // 4, replace=False)])))
        dx, dy = set_embeddings(index, work / name / "dominant")
        for c in DOMINANT_CLASSES:  # 240 of one class and 60 of the others: 300 items, 80 % one class
            mine = np.flatnonzero(dy == CLASSES.index(c))
            others = rng.choice(np.flatnonzero(y != CLASSES.index(c)), len(mine) // 4, replace=False)
            cases.append((f"one class 80 % ({c}, large)", (np.concatenate([dx[mine], x[others]]),
                                                         np.concatenate([dy[mine], y[others]]))))
        for _ in range(3):
            m = np.isin(y, rng.choice(len(CLASSES), 36, replace=False))
            cases.append(("12 listed classes absent", np.flatnonzero(m)))
        for _ in range(3):
            cases.append(("50 items", rng.choice(len(y), 50, replace=False)))
        for case, idx in cases:
            cx, cy = idx if isinstance(idx, tuple) else (x[idx], y[idx])
            plain = float(np.mean(scorer.scores(cx).argmax(axis=1) == cy))
            t = scorer.transduced(cx)
            ours = float(np.mean(t.scores.argmax(axis=1) == cy))
            unguarded = float(np.mean(scorer.transduced(cx, guard=False).scores.argmax(axis=1) == cy))
            why = "used" if t.used else "fell back: " + t.guard["reason"].split(":")[0]
            print(f"| {name} | {case} | {len(cy)} | {plain:.3f} | {ours:.3f} | {ours - plain:+.3f} | {unguarded:.3f} | "
                  f"{why} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--no-heads", action="store_true")
    parser.add_argument("--guard", action="store_true")
    parser.add_argument("--guard-only", action="store_true", help="only the guard cases (implies --guard)")
    parser.add_argument("--sets", default=",".join(SEEDS),
                        help=f"comma-separated sets to draw, ingest and measure (default: all, {','.join(SEEDS)}; "
                             "the development sets alone: drawn,plain)")
    parser.add_argument("--dump", type=Path, help="write each set's embeddings, truth and text matrix to this .npz")
    args = parser.parse_args()
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in SEEDS]
    if unknown or not sets:
        parser.error(f"--sets: unknown set(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(SEEDS)}")
    args.guard |= args.guard_only
    args.work.mkdir(parents=True, exist_ok=True)
    index_path = build(args.work, heads=not args.no_heads, sets=sets)
    if args.guard:
        build_dominant(args.work, index_path, sets)
    with open_index(index_path) as index:
        if args.dump:
            from indexer.query.scoring import label_embeddings

            arrays = {"text": label_embeddings(index.context.texts, CLASSES),
                      "scale": np.array(index.context.texts.logit_scale),
                      "unseen": np.array([c in UNSEEN for c in CLASSES])}
            for name in sets:
                x, y = set_embeddings(index, args.work / name / "test")
                arrays[f"{name}_x"], arrays[f"{name}_y"] = x, y
            np.savez(args.dump, **arrays)
            print(f"# wrote {args.dump}", file=sys.stderr)
            return
        if not args.guard_only:
            print_table(method_rows(index, args.work, heads=not args.no_heads, sets=sets), sets)
        if args.guard:
            guard_cases(index, args.work, sets)


if __name__ == "__main__":
    main()
