#!/usr/bin/env python
"""Warm text-query latency through HTTP (``indexer serve`` in its own process), p50 and p99, with
recall@10 against exact search, at several collection sizes.

    python scripts/bench_serve.py --sizes 10000 100000 1000000 --queries 200

Each size gets a catalog of synthetic 128-d embeddings shaped like the bundled model's: a few hundred
cluster centres that are the ``tiny-shapes`` text tower's own embeddings of captions ("a small red
star on a striped background"), items spread around them. The index records ``tiny-shapes`` as its
model, so a text query runs the real text tower. Two kinds of query are timed:

- cached: the same 20 texts asked again and again (answered from the service's memory);
- new: texts never asked before (the text tower runs for each), each asked once.

Recall@10 compares the service's top 10 for each new text with an exact search over all vectors.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "white", "black")
SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon")
SIZES = ("small", "large", "")
TEMPLATES = ("a photo of a {}.", "a picture of a {}.", "a drawing of a {}.", "an image of a {}.", "a {}.",
             "a photo of the {}.", "a rendering of a {}.", "a close-up photo of a {}.", "a bright photo of a {}.",
             "a cropped photo of a {}.", "a photo of one {}.", "a painting of a {}.", "a dark photo of a {}.",
             "a good photo of a {}.", "a blurry photo of a {}.", "a sketch of a {}.")


def captions() -> list[str]:
    """Every distinct caption the benchmark uses, in a fixed shuffled order."""
    texts = [t.format(" ".join(w for w in (size, colour, shape) if w))
             for t, size, colour, shape in itertools.product(TEMPLATES, SIZES, COLOURS, SHAPES)]
    np.random.default_rng(0).shuffle(texts)
    return texts


def build(path: Path, count: int, centres_texts: list[str], seed: int) -> np.ndarray:
    """A catalog of ``count`` items around the text embeddings of ``centres_texts``; returns the
    vectors as stored (float16 round trip)."""
    from indexer import open_index
    from indexer.store.codec import vector_to_blob
    from indexer.store.schema import Embedding

    with open_index(path, model="tiny-shapes") as index:
        centres = index.context.model.embedder().embed_texts(centres_texts)  # records tiny-shapes as the index's model
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(centres), size=count, p=(w := rng.zipf(1.6, len(centres)).astype(float)) / w.sum())
        dim = centres.shape[1]
        stored = np.empty((count, dim), dtype=np.float32)
        with index.catalog.begin() as conn:
            for start in range(0, count, 50_000):
                part = centres[picks[start:start + 50_000]]
                x = part + rng.normal(scale=0.6 / np.sqrt(dim), size=part.shape)
                x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
                stored[start:start + len(x)] = x.astype(np.float16).astype(np.float32)
                conn.execute(Embedding.__table__.insert(), [
                    {"sha256": f"{start + i:064x}", "vector": vector_to_blob(v), "created_at": 0.0}
                    for i, v in enumerate(x)])
            conn.exec_driver_sql(
                "INSERT INTO items(uri, size, mtime_ns, state, embedding_id, added_at, updated_at) "
                "SELECT '/synthetic/' || id || '.jpg', 1, 1, 'embedded', id, 0, 0 FROM embeddings ORDER BY id")
    return stored


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(times: list[float]) -> str:
    ms = np.asarray(times) * 1000
    return f"p50 {np.percentile(ms, 50):6.1f} ms  p99 {np.percentile(ms, 99):6.1f} ms"


def measure(count: int, queries: int, work: Path) -> dict:
    import httpx

    texts = captions()
    centre_texts, cached_texts, new_texts = texts[:400], texts[400:420], texts[420:420 + queries]
    if len(new_texts) < queries:
        raise SystemExit(f"only {len(texts) - 420} distinct new texts; ask for fewer --queries")
    path = work / f"index-{count}"
    started = time.time()
    stored = build(path, count, centre_texts, seed=count)
    built = time.time() - started
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    server = subprocess.Popen([sys.executable, "-m", "indexer", "serve", "--index", f"bench={path}", "--port", str(port)],
                              env=env, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            while True:
                try:
                    client.get("/api/healthz")
                    break
                except httpx.TransportError:
                    if server.poll() is not None:
                        raise SystemExit(server.stderr.read())
                    time.sleep(0.1)
            started = time.time()
            client.get("/api/search", params={"q": "a red star", "k": 10}).raise_for_status()  # vectors + model
            first = time.time() - started
            for text in cached_texts:
                client.get("/api/search", params={"q": text, "k": 10}).raise_for_status()
            cached = []
            for text in itertools.islice(itertools.cycle(cached_texts), queries):
                t = time.perf_counter()
                client.get("/api/search", params={"q": text, "k": 10}).raise_for_status()
                cached.append(time.perf_counter() - t)
            new, found = [], []
            for text in new_texts:
                t = time.perf_counter()
                response = client.get("/api/search", params={"q": text, "k": 10})
                new.append(time.perf_counter() - t)
                response.raise_for_status()
                found.append([hit["id"] for hit in response.json()["hits"]])
            kind = client.get("/api/status").json()["vectors"].get("kind")
    finally:
        server.terminate()
        server.wait(30)
    from indexer import open_index

    with open_index(path) as index:
        vectors = index.text_embeddings(new_texts)
    truth = np.argsort(-(vectors @ stored.T), axis=1)[:, :10] + 1  # item id = embedding id = row + 1
    recall = float(np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth)]))
    row = {"count": count, "layout": kind, "build_s": round(built, 1), "first_query_s": round(first, 2),
           "cached": percentiles(cached), "new": percentiles(new), "recall_at_10": round(recall, 3)}
    shutil.rmtree(path, ignore_errors=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200, help="timed queries of each kind (at most 1,700 new)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    try:
        for count in args.sizes:
            row = measure(count, args.queries, work)
            print(f"{row['count']:>9,} vectors  {row['layout']}  (catalog built in {row['build_s']} s, first query "
                  f"{row['first_query_s']} s)\n"
                  f"    cached texts: {row['cached']}\n"
                  f"    new texts:    {row['new']}   recall@10 {row['recall_at_10']:.3f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
