#!/usr/bin/env python
"""``--where`` at scale: the time a filter adds to a search over a large catalog.

    python scripts/bench_where.py --count 1000000            # 1M items, the layout indexer picks
    python scripts/bench_where.py --count 1000000 --flat     # the exact (flat) layout

Builds a real SQLite catalog of ``--count`` embedded items with synthetic metadata (dates from 2000 to
2025 with a tenth missing, 60 camera models, sizes, positions, and captions of words drawn from a 2,000-word
vocabulary on half of them, full-text indexed by the catalog's own triggers) and synthetic, clustered
embeddings; then times ``Index.search_vector`` (k=10) with no filter and with each filter below, as the
median of ``--queries`` fresh queries after a warm-up, and prints the median time added by each filter,
with the share of items it keeps (``--only EXPR``: that filter alone). How each is answered (``query/search.py``): the nearest contents are
checked against the filter first (one indexed read of their ids), and only when fewer than k pass (a
selective filter) are the filter's items selected first (an index on ``taken``, the full-text index for
``caption ~``, a scan otherwise) and scored exactly, or searched in FAISS through an ``IDSelectorBatch``.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FILTERS = [
    "taken >= 2024-06-01",
    "taken = 2021-03-15",
    "camera ~ 'nikon d7'",
    "width >= 3000 and height >= 2000",
    "not camera ~ canon",
    "caption ~ zebra",
    "caption ~ 'w17 w18'",
    "size < 100kB and taken < 2005",
    "lat > 89.9",
    "path ~ '*/2019/07/*'",
    "camera = 'SONY ILCE-7'",
    "width = 640 and height = 4000",
    "camera = 'SONY ILCE-7' and width = 640 and height = 4000",
]


def clustered(count: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(size=(2000, dim)) + 1.5 * rng.normal(size=dim)
    x = centres[rng.integers(0, 2000, size=count)] + rng.normal(scale=0.9, size=(count, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def build(index_dir: Path, count: int, dim: int, seed: int = 0) -> None:
    from indexer.store.catalog import open_catalog

    open_catalog(index_dir).close()  # created at head: the schema and the full-text triggers
    rng = np.random.default_rng(seed)
    conn = sqlite3.connect(str(index_dir / "catalog.sqlite"))
    conn.execute("INSERT INTO meta (key, value) VALUES ('model', ?)",
                 ('{"name": "synthetic", "pretrained": null, "embed_dim": %d}' % dim,))
    cameras = [f"Canon EOS {n}D" for n in range(20)] + [f"NIKON D{n}" for n in range(700, 720)] + \
              [f"SONY ILCE-{n}" for n in range(20)]
    vocabulary = [f"w{i}" for i in range(1999)] + ["zebra"]
    step = 50_000
    for start in range(0, count, step):
        n = min(step, count - start)
        vectors = clustered(n, dim, rng).astype(np.float16)
        conn.executemany("INSERT INTO embeddings (id, sha256, vector, created_at) VALUES (?, ?, ?, 0)",
                         [(start + i + 1, f"{start + i:064x}", vectors[i].tobytes()) for i in range(n)])
        days = rng.integers(0, 26 * 365, size=n)
        rows = []
        for i in range(n):
            taken = None if rng.random() < 0.1 else time.strftime(
                "%Y-%m-%d %H:%M:%S", time.gmtime(946684800 + int(days[i]) * 86400 + int(rng.integers(0, 86400))))
            year = taken[:4] if taken else "undated"
            month = taken[5:7] if taken else "00"
            caption = " ".join(rng.choice(vocabulary, size=int(rng.integers(5, 11)))) if rng.random() < 0.5 else None
            rows.append((start + i + 1, f"/photos/{year}/{month}/img_{start + i:07d}.jpg", int(rng.integers(20_000, 9_000_000)),
                         int(rng.choice([640, 1280, 1920, 3000, 4000, 6000])), int(rng.choice([480, 960, 1080, 2000, 3000, 4000])),
                         start + i + 1, taken, cameras[int(rng.integers(0, len(cameras)))] if rng.random() < 0.9 else None,
                         float(rng.uniform(-90, 90)), float(rng.uniform(-180, 180)), caption))
        conn.executemany(
            "INSERT INTO items (id, uri, size, mtime_ns, state, width, height, embedding_id, taken, camera, lat, lon, "
            "caption, added_at, updated_at, meta_at) VALUES (?, ?, ?, 0, 'embedded', ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0)", rows)
        conn.commit()
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=15)
    parser.add_argument("--flat", action="store_true", help="keep the exact flat layout at any size")
    parser.add_argument("--keep", type=Path, help="build (or reuse) the catalog in this folder and keep it")
    parser.add_argument("--only", action="append", help="time this filter only (repeatable; default: the list above)")
    args = parser.parse_args()
    from indexer import open_index
    from indexer.config import Settings

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-where-"))
    index_dir = work / "index"
    try:
        if not (index_dir / "catalog.sqlite").exists():
            started = time.time()
            build(index_dir, args.count, args.dim)
            print(f"{args.count} items with metadata and {args.dim}-d embeddings in {time.time() - started:.0f} s",
                  flush=True)
        settings = Settings(flat_max=10 ** 9) if args.flat else Settings()
        with open_index(index_dir, settings=settings) as index:
            started = time.time()
            vectors = index.vectors()
            print(f"vectors: {vectors.layout.describe()}, ready in {time.time() - started:.0f} s", flush=True)
            total = index.count_embedded()
            rng = np.random.default_rng(7)
            queries = clustered(args.queries + 2, args.dim, rng)

            def timed(where):
                index.search_vector(queries[0], 10, where=where)  # warm-up: pages in the catalog's pages
                index.search_vector(queries[1], 10, where=where)
                times, found = [], 0
                for q in queries[2:]:
                    t = time.perf_counter()
                    hits = index.search_vector(q, 10, where=where)
                    times.append(time.perf_counter() - t)
                    found += len(hits)
                return statistics.median(times) * 1e3, found / args.queries

            plain, _ = timed(None)
            print(f"plain search (k=10): median {plain:.1f} ms over {args.queries} queries")
            print(f"{'filter':<36} {'keeps':>8} {'median ms':>10} {'added ms':>9} {'hits':>5}")
            for where in args.only or FILTERS:
                clause = index.catalog.filters.compile(where)
                keeps = len(index.catalog.filters.matching_item_ids(clause)) / total
                ms, hits = timed(where)
                print(f"{where:<36} {keeps:>8.4%} {ms:>10.1f} {ms - plain:>9.1f} {hits:>5.1f}", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
