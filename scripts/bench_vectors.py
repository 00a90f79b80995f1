#!/usr/bin/env python
"""The vector index at scale: which layout is chosen, build time, recall@10 against exact search,
query latency, and growth without retraining.

    python scripts/bench_vectors.py --count 300000 --dim 512
    python scripts/bench_vectors.py --count 300000 --dim 512 --index-memory 40MB   # IVF-PQ
    python scripts/bench_vectors.py --count 1000000 --index-memory 152MB          # 16x: PQ128 of 2,048 B
    python scripts/bench_vectors.py --drawn --count 100000 --index-memory 4.5MB   # 16x: PQ32 of 512 B
    python scripts/bench_vectors.py --count 300000 --index-memory 46MB --ray 2    # layout encoded on Ray

Embeddings are synthetic but shaped like real ones (ANN recall on i.i.d. random vectors says
nothing): a shared direction, a few thousand clusters, items spread around their cluster. With
``--drawn`` they are real embeddings instead: the bundled tiny-shapes model (128-d) on freshly drawn
pictures of its 48 classes (``indexer.synthetic``), which crowd into few tight clusters, the hard case
for product quantisation. They go into a real catalog (SQLite, float16 blobs), and the index is built by
the same code as `indexer` (``--ray N``: encoded on a local Ray cluster of N CPUs, as a distributed
ingest does). Recall is reported with the index's exact re-rank (what a search returns) and, for IVF-PQ,
of the codes alone.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))



def real_like(count: int, dim: int, seed: int, clusters: int = 3000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    common = rng.normal(size=dim)
    centres = rng.normal(size=(clusters, dim)) + 1.5 * common
    sizes = rng.zipf(1.6, size=clusters).astype(float)  # some themes are far more common than others
    picks = rng.choice(clusters, size=count, p=sizes / sizes.sum())
    x = centres[picks] + rng.normal(scale=0.9, size=(count, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def drawn_embeddings(count: int, seed: int = 0) -> np.ndarray:
    """Embeddings of ``count`` freshly drawn pictures by the bundled model (OpenVINO on the CPU)."""
    from indexer import synthetic
    from indexer.models import ModelSpec, load_model

    embedder = load_model(ModelSpec("tiny-shapes"))
    rng = np.random.default_rng(seed)
    classes = list(synthetic.ALL_CLASSES)
    out = []
    for start in range(0, count, 256):
        batch = []
        for _ in range(min(256, count - start)):
            colour, shape = classes[rng.integers(len(classes))].split(" ", 1)
            batch.append(embedder.preprocess(synthetic.render(rng, colour, shape, 64)[0]))
        out.append(embedder.embed_images(np.stack(batch)))
    return np.concatenate(out).astype(np.float32)


def fill(path: Path, vectors: np.ndarray, first: int) -> None:
    from indexer.store.catalog import open_catalog
    from indexer.store.codec import vector_to_blob
    from indexer.store.schema import Embedding

    catalog = open_catalog(path)
    with catalog.begin() as conn:
        if first == 0:
            catalog.set_meta("model", {"name": "synthetic", "pretrained": None, "embed_dim": vectors.shape[1]}, conn)
        for start in range(0, len(vectors), 20000):
            conn.execute(Embedding.__table__.insert(), [
                {"sha256": f"{first + start + i:064x}", "vector": vector_to_blob(v), "created_at": 0.0}
                for i, v in enumerate(vectors[start:start + 20000])])
    catalog.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--index-memory", help="memory budget, e.g. 40MB (selects IVF-PQ when exceeded)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--drawn", action="store_true", help="real embeddings of drawn pictures (tiny-shapes)")
    parser.add_argument("--ray", type=int, metavar="CPUS", help="encode the layout on a local Ray cluster")
    args = parser.parse_args()
    from indexer import open_index
    from indexer.store.vectors import exact_top_k

    work = Path(tempfile.mkdtemp(prefix="bench-vectors-"))
    try:
        started = time.time()
        if args.drawn:
            data = drawn_embeddings(int(args.count * 1.05))
            args.dim = data.shape[1]
        else:
            data = real_like(int(args.count * 1.05), args.dim, seed=0)
        base, extra = data[: args.count], data[args.count:]
        fill(work / "index", base, 0)
        print(f"{args.count} {'drawn-picture' if args.drawn else 'synthetic'} vectors of {args.dim} d into the "
              f"catalog in {time.time() - started:.0f} s", flush=True)
        with open_index(work / "index") as index:
            if args.index_memory:
                index.set_memory_budget(args.index_memory)
            started = time.time()
            if args.ray:
                from indexer.distributed.cluster import ray_cluster
                from indexer.distributed.vectors import RayFiller

                with ray_cluster("local", num_cpus=args.ray) as ray:
                    started = time.time()  # the cluster's own start is not the build's
                    vectors = index.vectors(filler=RayFiller(ray, index.path, index.catalog, None))
            else:
                vectors = index.vectors()
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(f"built {vectors.layout.describe()} in {time.time() - started:.0f} s "
                  f"(file {(work / 'index' / 'vectors.faiss').stat().st_size / 2**20:.1f} MB, "
                  f"{vectors.layout.code_bytes(args.dim)} B a vector against {args.dim * 4} B of float32; "
                  f"peak RSS so far {rss:.0f} MB)", flush=True)
            rng = np.random.default_rng(5)
            queries = base[rng.choice(len(base), args.queries, replace=False)]
            queries = queries + rng.normal(0, 0.3 / np.sqrt(args.dim), size=queries.shape).astype(np.float32)
            queries /= np.linalg.norm(queries, axis=1, keepdims=True)
            truth = exact_top_k(index.catalog, queries, 10)
            times = []
            found = []
            for q in queries:
                t = time.perf_counter()
                _, ids = vectors.search(q[None], 10)
                times.append(time.perf_counter() - t)
                found.append(ids[0])
            recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth)])
            print(f"fresh queries: recall@10 {recall:.3f}, median latency {np.median(times) * 1e3:.2f} ms", flush=True)
            if vectors.layout.kind == "ivfpq":
                _, codes_only = vectors.index.search(queries, 10)
                recall = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(codes_only, truth)])
                print(f"the same from the PQ codes alone (no re-rank): recall@10 {recall:.3f}", flush=True)
            flat = base @ queries[:20].T  # exact search by brute force, for the latency comparison
            t = time.perf_counter()
            for q in queries[:20]:
                np.argpartition(-(base @ q), 10)[:10]
            print(f"exact brute force over the same vectors: {(time.perf_counter() - t) / 20 * 1e3:.1f} ms a query")
            del flat
        fill(work / "index", extra, args.count)
        with open_index(work / "index") as index:
            started = time.time()
            vectors = index.vectors()
            print(f"after adding {len(extra)} more: {vectors.ntotal} vectors in {time.time() - started:.1f} s, "
                  f"trained on {vectors.layout.trained_count} (not retrained: "
                  f"{vectors.layout.trained_count == args.count or vectors.layout.kind == 'flat'})")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
