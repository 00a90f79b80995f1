#!/usr/bin/env python
"""Ingest speed of two source trees, paired on one machine: the cost of what one adds (e.g. metadata).

    python scripts/bench_ingest_paired.py --corpus /tmp/exif-corpus --make 1000 \\
        --tree main=/work/main --tree meta=/work/wt-meta --rounds 5

Draws (with ``--make``) photo-like JPEGs that carry EXIF (date, camera, GPS) and, for half of them, a
caption file beside them, then runs ``indexer ingest CORPUS --index FRESH`` in a fresh process for each
tree in turn (ABAB..., the order flipped every round, so that a drift of the shared machine's speed
falls on both), each into a new index, and prints each run's wall time and the median ratio of the
trees' times. The model is the bundled tiny-shapes by default: decode-bound, the worst case for any
cost added beside decoding (a large model hides it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np


def make_corpus(folder: Path, count: int, width: int = 800, height: int = 600, seed: int = 0) -> None:
    from PIL import Image, ImageDraw, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
        image = Image.fromarray(coarse, "RGB").resize((width, height), Image.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 9))):
            x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.05, 0.25) * min(width, height)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 256, size=3)))
        image = image.filter(ImageFilter.GaussianBlur(1.5))
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Canon", "Canon EOS R5"
        exif.get_ifd(0x8769)[0x9003] = f"20{10 + i % 15}:0{1 + i % 9}:1{i % 10} 12:00:00"
        exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, float(i % 60)), 3: "E", 4: (2.0, 21.0, 0.0)})
        image.save(folder / f"img_{i:06d}.jpg", quality=90, exif=exif.tobytes())
        if i % 2 == 0:
            (folder / f"img_{i:06d}.txt").write_text(f"photo number {i} of a sunny day", encoding="utf-8")


def one_run(tree: Path, corpus: Path, work: Path, model: str, workers: Optional[int],
            pretrained: Optional[str] = None) -> tuple[float, dict]:
    index = work / f"index-{time.time_ns()}"
    env = dict(os.environ, PYTHONPATH=str(tree))
    script = Path(sys.executable).with_name("indexer")
    command = [str(script) if script.exists() else sys.executable, *([] if script.exists() else ["-m", "indexer"]),
               "ingest", str(corpus), "--index", str(index), "--model", model, "--json"]
    if workers is not None:
        command += ["--workers", str(workers)]
    if pretrained:
        command += ["--pretrained", pretrained]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=work)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{tree}: {result.stderr.strip()[-500:]}")
    shutil.rmtree(index)
    return elapsed, json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--make", type=int, help="first draw this many JPEGs (with EXIF and captions) into --corpus")
    parser.add_argument("--tree", action="append", required=True, help="NAME=PATH of a source tree (two of them)")
    parser.add_argument("--model", default="tiny-shapes")
    parser.add_argument("--pretrained", help="the model's pretrained tag (e.g. random-weight files in $HF_HOME)")
    parser.add_argument("--workers", type=int)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = [(name, Path(path)) for name, path in (t.split("=", 1) for t in args.tree)]
    if len(trees) != 2:
        raise SystemExit("give two --tree NAME=PATH")
    if args.make:
        make_corpus(args.corpus, args.make)
    files = len(list(args.corpus.glob("*.jpg")))
    for name, tree in trees:
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        print(f"{name}: {tree} at {commit.stdout.strip() or '?'}")
    print(f"corpus: {files} JPEGs, model {args.model}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="bench-paired-"))
    times: dict[str, list[float]] = {name: [] for name, _ in trees}
    try:
        one_run(trees[0][1], args.corpus, work, args.model, args.workers, args.pretrained)  # warm-up: caches, converted model
        one_run(trees[1][1], args.corpus, work, args.model, args.workers, args.pretrained)
        for round_ in range(args.rounds):
            order = trees if round_ % 2 == 0 else trees[::-1]
            line = []
            for name, tree in order:
                elapsed, summary = one_run(tree, args.corpus, work, args.model, args.workers, args.pretrained)
                times[name].append(elapsed)
                line.append(f"{name} {elapsed:6.2f} s ({summary['embedded']} embedded)")
            print(f"round {round_ + 1}: " + ", ".join(line), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (a, _), (b, _) = trees
    ratios = [tb / ta for ta, tb in zip(times[a], times[b])]
    print(f"median wall: {a} {statistics.median(times[a]):.2f} s, {b} {statistics.median(times[b]):.2f} s; "
          f"{b}/{a} per round: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    main()
