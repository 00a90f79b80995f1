#!/usr/bin/env python
"""Compressed FAISS layouts on the synthetic clustered set (bench_vectors.real_like): recall@10 against
exact search, compression of float32, search latency, with and without exact re-ranking of the
candidates from the fp16 embeddings the catalog stores.

    python scripts/bench_compressed.py "IVF256,PQ128" "OPQ128_512,IVF256,PQ128"    # 100k x 512 (N=100000)

Set N for another count. One thread pair (2 OpenMP threads); figures from one run compare.
"""
import os, sys, time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vectors import real_like
n, d = int(os.environ.get("N", 100_000)), 512
x = real_like(int(n), d, seed=0)
x16 = x.astype(np.float16).astype(np.float32)
rng = np.random.default_rng(5)
q = x[rng.choice(n, 200, replace=False)]
q = q + rng.normal(0, 0.3/np.sqrt(d), size=q.shape).astype(np.float32); q /= np.linalg.norm(q, axis=1, keepdims=True)
truth = np.argsort(-(q @ x.T), axis=1)[:, :10]
faiss.omp_set_num_threads(2)
def rec(found): return np.mean([len(set(f[:10]) & set(t)) / 10 for f, t in zip(found, truth)])
for spec in sys.argv[1:]:
    t = time.time()
    idx = faiss.index_factory(d, spec, faiss.METRIC_INNER_PRODUCT)
    if spec.startswith("OPQ"):
        opq = faiss.downcast_VectorTransform(idx.chain.at(0)); opq.niter = 8; opq.max_train_points = 20000
    idx.train(x[rng.choice(n, min(n, 40000), replace=False)])
    idx.add(x)
    bt = time.time() - t
    ivf = faiss.extract_index_ivf(idx)
    code = idx.sa_code_size() if hasattr(idx, "sa_code_size") else 0
    for nprobe in (32, 64):
        ivf.nprobe = nprobe
        for rr in (1, 10, 30):
            t = time.perf_counter(); _, c = idx.search(q, 10 * rr); st = (time.perf_counter() - t) / len(q)
            if rr > 1:
                out = []
                for row, cand in zip(q, c):
                    cand = cand[cand >= 0]; s = x16[cand] @ row; out.append(cand[np.argsort(-s)[:10]])
            else:
                out = c
            print(f"{spec:30s} code {code}B ({d*4/max(code,1):.0f}x) nprobe {nprobe:3d} rerank {rr:3d}: recall {rec(out):.3f} search {st*1e3:.2f} ms build {bt:.0f}s", flush=True)
