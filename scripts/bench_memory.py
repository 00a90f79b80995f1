#!/usr/bin/env python
"""Peak memory of an ingest against the number of files: it must not grow with the collection.

    python scripts/bench_memory.py --files 10000 100000 --model tiny-shapes

For each size, draws that many small distinct PNGs (random 32x32 pictures: every one is embedded,
none is a duplicate), ingests them into a fresh index in this process, and prints the peak RSS of the
main process (VmHWM) and of the largest decode worker, plus the size of the FAISS vectors, which are
the one part that has to grow with the collection (``count x dim x 4`` bytes for the exact layout).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer import open_index  # noqa: E402
from indexer.config import Settings  # noqa: E402


def _draw(args: tuple[Path, int, int]) -> None:
    from PIL import Image

    folder, start, count = args
    rng = np.random.default_rng(start)
    for i in range(start, start + count):
        sub = folder / f"{i // 1000:04d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)).save(sub / f"{i:07d}.png")


def draw_files(folder: Path, count: int) -> None:
    step = 5000
    with multiprocessing.Pool(2) as pool:
        pool.map(_draw, [(folder, s, min(step, count - s)) for s in range(0, count, step)])


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--model", default="tiny-shapes")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # internal: measure in this process
    args = parser.parse_args()
    if args.one:
        print(measure(args.one, args.files[0], args.model, args.workers), flush=True)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        for size in args.files:
            # One process per size: a peak is a high-water mark and never comes down.
            subprocess.run([sys.executable, __file__, "--one", str(work / str(size)), "--files", str(size),
                            "--model", args.model, "--workers", str(args.workers)], check=True)
    finally:
        shutil.rmtree(work)


def measure(folder: Path, size: int, model: str, workers: int) -> str:
    folder.mkdir(parents=True)
    started = time.time()
    draw_files(folder / "files", size)
    drawn = time.time() - started
    before = peak_rss_mb()
    started = time.time()
    with open_index(folder / "index", model, settings=Settings(workers=workers)) as index:
        summary = index.ingest([folder / "files"])
        vectors_mb = (folder / "index" / "vectors.faiss").stat().st_size / 2 ** 20
    elapsed = time.time() - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return (f"{size:>7} files (drawn in {drawn:.0f} s): {summary.embedded} embedded in {elapsed:.0f} s "
            f"({summary.embedded / elapsed:.0f} img/s); peak RSS main process {peak_rss_mb():.0f} MB "
            f"(before ingest {before:.0f} MB), largest worker {children:.0f} MB; vectors file {vectors_mb:.1f} MB")


if __name__ == "__main__":
    main()
