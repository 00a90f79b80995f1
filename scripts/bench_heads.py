"""Zero-shot heads against plain cosine and calibrated stacking on the bundled model, judged by GZSL.

    python scripts/bench_heads.py                                  # fresh seeds (the default): the honest figures
    python scripts/bench_heads.py --seeds 1 2 3 --head-seed 0      # the prototype's development seeds
    python scripts/bench_heads.py --wgan --attributes              # also the f-CLSWGAN and attribute heads
    python scripts/bench_heads.py --timing 10000 100000            # also training time and peak memory

Data, drawn afresh and ingested with the bundled `tiny-shapes` model into one temporary index:
  train : 40 pictures of each of the 36 seen classes (indexer.synthetic, 96 px jpg; seed 1 of --seeds):
          the only labelled items, written to a path,label CSV for `Index.train_head`
  drawn : 40 fresh pictures of each of the 48 classes (seed 2), never used for training or choices
  plain : 10 plain shapes of each of the 48 classes drawn by other code (tests/plain_shapes.py, seed 3)
Each head is trained with `Index.train_head` (hyper-parameters and calibration chosen on held-out seen
classes, --head-seed) and measured with `Index.evaluate(..., compare=True)`: S and U are average
per-class accuracies over all 48 classes, H = 2SU/(S+U), ZSL is unseen pictures over unseen classes.
"Calibrated stacking" tunes its constant by two-fold cross-validation on the measured set itself
(per-set calibration): a reference, not a competitor on equal terms.

Timing (--timing N ...): each head is selected and trained, in its own process, on N labelled items made
by replicating the real training embeddings with jitter (sigma 0.02, renormalised); wall seconds and
peak RSS (the process's, and its increase over the moment before training) are printed.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from indexer import open_index, synthetic  # noqa: E402
from indexer.query.evaluate import comparison_figures, load_dataset  # noqa: E402
from tests.plain_shapes import write_plain_folder  # noqa: E402

HEADS = {"projection": {"method": "projection"}, "generative": {"method": "generative"},
         "wgan": {"method": "generative", "generator": "wgan"}}


def attributes_csv(path: Path) -> Path:
    """A one-hot colour (8) + shape (6) vector per class."""
    lines = []
    for label in synthetic.ALL_CLASSES:
        colour, shape = label.split(" ", 1)
        vector = [float(c == colour) for c in synthetic.COLOURS] + [float(s == shape) for s in synthetic.SHAPES]
        lines.append(label + "," + ",".join(f"{v:g}" for v in vector))
    path.write_text("\n".join(lines) + "\n")
    return path


def build(work: Path, seeds: list[int]) -> dict[str, Path]:
    started = time.perf_counter()
    train = synthetic.write_labelled_folder(work / "train", 40, synthetic.SEEN_CLASSES, seed=seeds[0], size=96,
                                            image_format="jpg")
    synthetic.write_labelled_folder(work / "drawn", 40, synthetic.ALL_CLASSES, seed=seeds[1], size=96,
                                    image_format="jpg")
    write_plain_folder(work / "plain", list(synthetic.ALL_CLASSES), per_class=10, seed=seeds[2])
    labels = work / "train.csv"
    labels.write_text("path,label\n" + "".join(f"{Path(p).resolve()},{label}\n" for p, label in train))
    classes = work / "classes.txt"
    classes.write_text("\n".join(synthetic.ALL_CLASSES) + "\n")
    with open_index(work / "index", model="tiny-shapes") as index:
        index.ingest([work / "train", work / "drawn", work / "plain"], progress=False)
    print(f"# drew and ingested {len(train)} + 1920 + 480 pictures in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)
    return {"index": work / "index", "labels": labels, "classes": classes}


def run_table(work: Path, paths: dict[str, Path], head_seed: int, heads: list[str], attributes: bool) -> list[dict]:
    classes = list(synthetic.ALL_CLASSES)
    with open_index(paths["index"]) as index:
        for name in heads:
            for described in (["text", "attributes"] if attributes else ["text"]):
                extra = {"attributes": attributes_csv(work / "attributes.csv")} if described == "attributes" else {}
                head = index.train_head(f"{name}-{described}", paths["labels"], classes, seed=head_seed,
                                        **HEADS[name], **extra)
                print(f"# {head.name}: {head.figures['train_seconds']:.1f} s, calibration {head.calibration:.3f}, "
                      f"{ {k: v for k, v in head.hparams.items() if k in ('reg', 'widen', 'clf_scale')} }",
                      file=sys.stderr)
        rows: dict[str, dict] = {}
        for measured in ("drawn", "plain"):
            report = index.evaluate(work / measured, "default", synthetic.UNSEEN_CLASSES, compare=True)
            for row in report.to_dict()["comparison"]:
                key = f"{row['method']} {row['head'] or ''}".strip()
                rows.setdefault(key, {"method": row["method"], "head": row["head"],
                                      "calibration": row.get("calibration")})[measured] = {
                    k: row[k] for k in ("seen_accuracy", "unseen_accuracy", "harmonic_mean", "zsl_unseen_accuracy")}
            # Each head again with its calibration constant forced to 0: what the head does on its own.
            pairs = load_dataset(work / measured)
            found, embeddings = index.catalog.embeddings_for_uris([p for p, _ in pairs])
            truth = np.array([classes.index(label) for (_, label), ok in zip(pairs, found) if ok])
            unseen = np.array([c in synthetic.UNSEEN_CLASSES for c in classes])
            for listed in index.heads():
                head = index.head(listed["name"])
                figures = comparison_figures(head.logits(embeddings)[:, head.columns(classes)], truth, unseen)
                rows.setdefault(f"{head.method} {head.name} uncalibrated", {
                    "method": head.method, "head": f"{head.name} (constant forced to 0)",
                    "calibration": 0.0})[measured] = {
                    k: figures[k] for k in ("seen_accuracy", "unseen_accuracy", "harmonic_mean", "zsl_unseen_accuracy")}
    return list(rows.values())


def time_one(data: Path, method: str, n: int) -> dict:
    from indexer.heads.head import normalise
    from indexer.heads.select import fit_head

    arrays = dict(np.load(data))
    x, y, a, seen = arrays["x"], arrays["y"], arrays["a"], arrays["seen"]
    rng = np.random.default_rng(0)
    pick = rng.integers(len(x), size=n)
    features = normalise(x[pick] + rng.normal(0, 0.02, size=(n, x.shape[1]))).astype(np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    fitted = fit_head(features, y[pick], a, seen, HEADS[method]["method"], seed=0,
                      generator=HEADS[method].get("generator", "gaussian"))
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"head": method, "items": n, "select_and_train_seconds": round(seconds, 1),
            "candidates": len(fitted.selection["candidates"]), "peak_rss_mib": round(after / 1024),
            "rss_increase_mib": round((after - before) / 1024)}


def run_timing(paths: dict[str, Path], work: Path, sizes: list[int], heads: list[str]) -> list[dict]:
    from indexer.query.classify import label_embeddings

    classes = list(synthetic.ALL_CLASSES)
    rows = [line.split(",") for line in paths["labels"].read_text().splitlines()[1:]]
    with open_index(paths["index"]) as index:
        found, x = index.catalog.embeddings_for_uris([p for p, _ in rows])
        a = label_embeddings(index, classes, "default")
    y = np.array([classes.index(label) for (_, label), ok in zip(rows, found) if ok])
    data = work / "timing.npz"
    np.savez(data, x=x, y=y, a=a, seen=np.array([c in synthetic.SEEN_CLASSES for c in classes]))
    out = []
    for name in heads:
        for n in sizes:
            result = subprocess.run([sys.executable, __file__, "--time-one", str(data), name, str(n)],
                                    capture_output=True, text=True, check=True)
            out.append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"# timing {out[-1]}", file=sys.stderr, flush=True)
    return out


def markdown(rows: list[dict], timing: list[dict]) -> str:
    lines = ["| method | head | calibration | drawn S | drawn U | drawn H | drawn ZSL | plain S | plain U | plain H "
             "| plain ZSL |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        calibration = r["calibration"] if isinstance(r["calibration"], (int, float)) else "per-set CV"
        cells = [f"{r[s][k]:.3f}" if s in r else "-" for s in ("drawn", "plain")
                 for k in ("seen_accuracy", "unseen_accuracy", "harmonic_mean", "zsl_unseen_accuracy")]
        lines.append(f"| {r['method']} | {r['head'] or ''} | {calibration} | " + " | ".join(cells) + " |")
    if timing:
        lines += ["", "| head | items | select + train s | candidates | peak RSS MiB | RSS increase MiB |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {t['head']} | {t['items']:,} | {t['select_and_train_seconds']} | {t['candidates']} | "
                  f"{t['peak_rss_mib']} | {t['rss_increase_mib']} |" for t in timing]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs=3, default=[31, 32, 33], metavar=("TRAIN", "DRAWN", "PLAIN"),
                        help="picture seeds (the prototype was developed on 1 2 3)")
    parser.add_argument("--head-seed", type=int, default=5, help="training seed (the prototype's: 0)")
    parser.add_argument("--wgan", action="store_true", help="also the f-CLSWGAN head (about a minute more)")
    parser.add_argument("--attributes", action="store_true", help="also heads on one-hot colour+shape attributes")
    parser.add_argument("--timing", type=int, nargs="*", default=[], metavar="N")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--time-one", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.time_one:
        print(json.dumps(time_one(Path(args.time_one[0]), args.time_one[1], int(args.time_one[2]))))
        return
    heads = ["projection", "generative"] + (["wgan"] if args.wgan else [])
    with tempfile.TemporaryDirectory(prefix="bench-heads-") as tmp:
        work = Path(tmp)
        paths = build(work, args.seeds)
        rows = run_table(work, paths, args.head_seed, heads, args.attributes)
        timing = run_timing(paths, work, args.timing, heads) if args.timing else []
    print(f"seeds: pictures {args.seeds}, heads {args.head_seed}")
    print(markdown(rows, timing))
    if args.json:
        args.json.write_text(json.dumps({"seeds": args.seeds, "head_seed": args.head_seed, "rows": rows,
                                         "timing": timing}, indent=1))


if __name__ == "__main__":
    main()
