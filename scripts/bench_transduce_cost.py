"""Time and peak memory of transductive zero-shot classification (query/transduce.py) on synthetic
embeddings: N unit vectors in 48 noisy clusters, 512 dimensions (a ViT-B/32's size), 48 labels whose text
vectors sit off the clusters. Each size runs in its own process; the embeddings are made before the clock
starts and counted in the peak RSS (4 bytes x 512 per item).

    python scripts/bench_transduce_cost.py                 # 100,000 and 1,000,000 items
    python scripts/bench_transduce_cost.py --sizes 10000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one(n: int, d: int, labels: int) -> dict:
    import numpy as np

    from indexer.query.transduce import transduce

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((labels, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    text = centres + 0.2 * np.roll(centres, -1, axis=0) + 0.3 * rng.standard_normal((labels, d)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    items = np.empty((n, d), np.float32)
    truth = rng.integers(labels, size=n)
    for i in range(0, n, 8192):  # made in small blocks: the peak is the transduction's, not the maker's
        noise = rng.standard_normal((len(truth[i:i + 8192]), d), dtype=np.float32)
        block = centres[truth[i:i + 8192]] + 0.6 / np.sqrt(d) * noise
        items[i:i + 8192] = block / np.linalg.norm(block, axis=1, keepdims=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = transduce(items, text, scale=100.0)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    plain = float(np.mean((items @ text.T).argmax(axis=1) == truth))
    return {"items": n, "dim": d, "labels": labels, "seconds": round(seconds, 1), "used": result.used,
            "peak_rss_mib": round(peak / 1024), "rss_before_mib": round(before / 1024), "guard": result.guard,
            "embeddings_mib": round(items.nbytes / 2 ** 20),
            "plain_top1": round(plain, 4), "transductive_top1": round(float(np.mean(result.scores.argmax(axis=1) == truth)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--labels", type=int, default=48)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.dim, args.labels)))
        return
    for n in args.sizes:
        done = subprocess.run([sys.executable, __file__, "--one", str(n), "--dim", str(args.dim), "--labels",
                               str(args.labels)], capture_output=True, text=True, check=True)
        print(done.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
