"""Zero-shot heads against plain cosine and calibrated stacking on the bundled model, judged by GZSL.

    python scripts/bench_heads.py                                  # fresh seeds (the default): the honest figures
    python scripts/bench_heads.py --seeds 1 2 3 4 --head-seed 0    # the development seeds
    python scripts/bench_heads.py --wgan --attributes              # also the f-CLSWGAN and attribute heads
    python scripts/bench_heads.py --timing 10000 100000            # also training time and peak memory

Data, drawn afresh and ingested with the bundled `tiny-shapes` model into one index (temporary, or --work):
  train : 40 pictures of each of the 36 seen classes (indexer.synthetic, 96 px jpg; seed 1 of --seeds):
          the only labelled items, written to a path,label CSV for `Index.train_head`
  drawn : 40 fresh pictures of each of the 48 classes (seed 2), never used for training or choices
  plain : 10 plain shapes of each of the 48 classes drawn by other code (tests/plain_shapes.py, seed 3)
  pool  : the unlabelled collection: 20 pictures of each of the 48 classes (indexer.synthetic, seed 4)
          and 5 plain shapes of each (tests/plain_shapes.py, seed 4 + 1000); no label of theirs is read
Each head is trained with `Index.train_head` (hyper-parameters and calibration chosen on held-out seen
classes, --head-seed) twice: with `unlabelled="none"` (the labelled items alone) and, rows marked
"+ pool", with `unlabelled=<pool folder>` (transductive: EM on the pool's stored embeddings; never the
drawn or plain test pictures). Measured with `Index.evaluate(..., compare=True)`: S and U are average
per-class accuracies over all 48 classes, H = 2SU/(S+U), ZSL is unseen pictures over unseen classes.
"Calibrated stacking" tunes its constant by two-fold cross-validation on the measured set itself
(per-set calibration): a reference, not a competitor on equal terms.

Timing (--timing N ...): each head is selected and trained, in its own process, on N labelled items made
by replicating the real training embeddings with jitter (sigma 0.02, renormalised), and for the "+ pool"
heads as many unlabelled items (up to train_head's limit of 20,000) made the same way from the pool; wall
seconds and peak RSS (the process's, and its increase over the moment before training) are printed.
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

POOL_DRAWN, POOL_PLAIN = 20, 5  # unlabelled pool: pictures per class, drawn and plain
PLAIN_POOL_OFFSET = 1000  # the pool's plain shapes are drawn with seed POOL + this

SHOWN = ("reg", "widen", "clf_scale", "em_unseen_spread", "em_background_share", "pseudo_labelled_items")
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
    """Draws and ingests the four folders into ``work`` (reused when ``work`` holds them already)."""
    paths = {"index": work / "index", "labels": work / "train.csv", "classes": work / "classes.txt",
             "pool": work / "pool"}
    done = work / "built.json"
    if done.exists():
        if json.loads(done.read_text()) != seeds:
            raise SystemExit(f"{work} was built with seeds {done.read_text()}, not {seeds}; use another --work")
        return paths
    started = time.perf_counter()
    train = synthetic.write_labelled_folder(work / "train", 40, synthetic.SEEN_CLASSES, seed=seeds[0], size=96,
                                            image_format="jpg")
    synthetic.write_labelled_folder(work / "drawn", 40, synthetic.ALL_CLASSES, seed=seeds[1], size=96,
                                    image_format="jpg")
    write_plain_folder(work / "plain", list(synthetic.ALL_CLASSES), per_class=10, seed=seeds[2])
    synthetic.write_labelled_folder(work / "pool" / "drawn", POOL_DRAWN, synthetic.ALL_CLASSES, seed=seeds[3],
                                    size=96, image_format="jpg")
    write_plain_folder(work / "pool" / "plain", list(synthetic.ALL_CLASSES), per_class=POOL_PLAIN,
                       seed=seeds[3] + PLAIN_POOL_OFFSET)
    paths["labels"].write_text("path,label\n" + "".join(f"{Path(p).resolve()},{label}\n" for p, label in train))
    paths["classes"].write_text("\n".join(synthetic.ALL_CLASSES) + "\n")
    with open_index(paths["index"], model="tiny-shapes") as index:
        index.ingest([work / "train", work / "drawn", work / "plain", work / "pool"], progress=False)
    done.write_text(json.dumps(seeds))
    pool = 48 * (POOL_DRAWN + POOL_PLAIN)
    print(f"# drew and ingested {len(train)} + 1920 + 480 + {pool} (pool) pictures in "
          f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    return paths


def run_table(work: Path, paths: dict[str, Path], head_seed: int, heads: list[str], attributes: bool) -> list[dict]:
    classes = list(synthetic.ALL_CLASSES)
    with open_index(paths["index"]) as index:
        for name in heads:
            for described in (["text", "attributes"] if attributes else ["text"]):
                extra = {"attributes": attributes_csv(work / "attributes.csv")} if described == "attributes" else {}
                for pool, suffix in (("none", ""), (str(paths["pool"]), " + pool")):
                    head = index.train_head(f"{name}-{described}{suffix}", paths["labels"], classes, seed=head_seed,
                                            unlabelled=pool, replace=True, **HEADS[name], **extra)
                    print(f"# {head.name}: {head.figures['train_seconds']:.1f} s, calibration {head.calibration:.3f}, "
                          f"{ {k: v for k, v in head.hparams.items() if k in SHOWN} }", file=sys.stderr, flush=True)
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
            found, embeddings = index.catalog.embeddings.for_uris([p for p, _ in pairs])
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
    from indexer.query.head import normalise
    from indexer.heads.select import fit_head
    from indexer.heads.train import UNLABELLED_LIMIT

    arrays = dict(np.load(data))
    x, y, a, seen, pool = arrays["x"], arrays["y"], arrays["a"], arrays["seen"], arrays["pool"]
    rng = np.random.default_rng(0)
    pick = rng.integers(len(x), size=n)
    features = normalise(x[pick] + rng.normal(0, 0.02, size=(n, x.shape[1]))).astype(np.float32)
    unlabelled = None
    if method.endswith("+pool"):
        m = min(n, UNLABELLED_LIMIT)
        unlabelled = normalise(pool[rng.integers(len(pool), size=m)] + rng.normal(0, 0.02, size=(m, x.shape[1])))
    head = HEADS[method.removesuffix("+pool")]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    fitted = fit_head(features, y[pick], a, seen, head["method"], seed=0, generator=head.get("generator", "gaussian"),
                      unlabelled=unlabelled)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"head": method, "items": n, "unlabelled_items": 0 if unlabelled is None else len(unlabelled),
            "select_and_train_seconds": round(seconds, 1),
            "candidates": len(fitted.selection["candidates"]), "peak_rss_mib": round(after / 1024),
            "rss_increase_mib": round((after - before) / 1024)}


def run_timing(paths: dict[str, Path], work: Path, sizes: list[int], heads: list[str]) -> list[dict]:
    from indexer.query.scoring import label_embeddings

    classes = list(synthetic.ALL_CLASSES)
    rows = [line.split(",") for line in paths["labels"].read_text().splitlines()[1:]]
    with open_index(paths["index"]) as index:
        found, x = index.catalog.embeddings.for_uris([p for p, _ in rows])
        a = label_embeddings(index.context.texts, classes, "default")
        pool = [p for p, _ in load_dataset(paths["pool"] / "drawn") + load_dataset(paths["pool"] / "plain")]
        _, unlabelled = index.catalog.embeddings.for_uris(pool)
    y = np.array([classes.index(label) for (_, label), ok in zip(rows, found) if ok])
    data = work / "timing.npz"
    np.savez(data, x=x, y=y, a=a, seen=np.array([c in synthetic.SEEN_CLASSES for c in classes]), pool=unlabelled)
    out = []
    for name in [h + suffix for h in heads for suffix in ("", "+pool")]:
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
        lines += ["", "| head | labelled items | unlabelled items | select + train s | candidates | peak RSS MiB "
                  "| RSS increase MiB |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {t['head']} | {t['items']:,} | {t['unlabelled_items']:,} | {t['select_and_train_seconds']} | "
                  f"{t['candidates']} | {t['peak_rss_mib']} | {t['rss_increase_mib']} |" for t in timing]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs=4, default=[31, 32, 33, 34],
                        metavar=("TRAIN", "DRAWN", "PLAIN", "POOL"),
                        help="picture seeds (developed on 1 2 3 4)")
    parser.add_argument("--work", type=Path, help="keep the pictures and the index in this folder, and reuse them "
                                                  "when it holds them already (default: a temporary folder)")
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
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
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
