#!/usr/bin/env python
"""Many queries over one open ``Index``: what a notebook user or the service pays per query once the
index is open (the vectors are loaded once and kept, caught up only when something was committed).

    python scripts/bench_query_loop.py --count 100000 --queries 200

A synthetic catalog of real-like vectors (see bench_vectors.py) is filled once; then ``--queries``
searches by vector go through ``search_vector`` on one open index, and the loop's total and per-query
times are printed. Run it against another checkout with ``--code PATH`` to compare versions.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--code", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the checkout whose indexer package is measured (default: this one)")
    args = parser.parse_args()
    sys.path.insert(0, str(args.code))
    from indexer import open_index  # first: bench_vectors would put this checkout first on the path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_vectors import real_like

    from indexer.store.catalog import open_catalog

    try:  # this layout, or the one before the store had its query API
        search_vector = importlib.import_module("indexer.query.search").search_vector
        from indexer.store.codec import vector_to_blob
        from indexer.store.schema import Embedding
    except ImportError:
        search_vector = importlib.import_module("indexer.search").search_vector
        from indexer.store.catalog import Embedding, vector_to_blob  # type: ignore[attr-defined,no-redef]
    import indexer

    print(f"indexer from {Path(indexer.__file__).parent}")
    work = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    try:
        data = real_like(args.count, args.dim, seed=0)
        catalog = open_catalog(work / "index")
        model = {"name": "synthetic", "pretrained": None, "embed_dim": args.dim}
        with catalog.begin() as conn:
            conn.execute(Embedding.__table__.insert(), [{"sha256": f"{i:064x}", "vector": vector_to_blob(v),
                                                         "created_at": 0.0} for i, v in enumerate(data)])
            conn.exec_driver_sql("INSERT INTO meta(key, value) VALUES ('model', ?)",
                                 (__import__("json").dumps(model),))
            conn.exec_driver_sql(
                "INSERT INTO items(uri, size, mtime_ns, state, embedding_id, added_at, updated_at) "
                "SELECT '/synthetic/' || id || '.jpg', 1, 1, 'embedded', id, 0, 0 FROM embeddings")
        catalog.close()
        rng = np.random.default_rng(3)
        queries = data[rng.choice(len(data), args.queries)] + rng.normal(0, 0.02, (args.queries, args.dim))
        queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
        with open_index(work / "index") as index:
            started = time.perf_counter()
            search_vector(index, queries[0], k=10)  # builds (first open) the vectors file
            first = time.perf_counter() - started
            started = time.perf_counter()
            for q in queries:
                hits = search_vector(index, q, k=10)
            loop = time.perf_counter() - started
        print(f"{args.count} vectors x {args.dim} d: first query (builds vectors.faiss) {first:.2f} s; "
              f"{args.queries} queries in {loop:.2f} s = {1000 * loop / args.queries:.1f} ms a query "
              f"(last: {len(hits)} hits)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
