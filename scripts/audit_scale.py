"""Time and memory of `indexer audit` on a large synthetic catalog (no pictures: stored embeddings only).

Builds (once) an index of N items whose embeddings are drawn around 48 class directions (the bundled
tiny-shapes model's label embeddings, blurred with noise), labelled by fake ImageFolder paths
``/scale/{train,val}/<class>/<n>.png``, with 1 % exact duplicates, 1 % near duplicates and 2 % flipped
labels; then audits it in a fresh process and prints the wall time, the peak resident memory and what
was found.

    python scripts/audit_scale.py --items 100000
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sqlalchemy import insert


def build(index_dir: Path, items: int, seed: int = 0) -> None:
    from indexer import open_index, synthetic
    from indexer.query.scoring import label_embeddings
    from indexer.store.codec import vector_to_blob
    from indexer.store.schema import Embedding, Item, ItemState

    labels = list(synthetic.ALL_CLASSES)
    rng = np.random.default_rng(seed)
    with open_index(index_dir, model="tiny-shapes") as index:
        index.context.model.embedder()  # records the model's identity in the catalog
        centres = label_embeddings(index.context.texts, labels, "default")
        chunk, embedding_id, now = 20000, 0, time.time()
        for start in range(0, items, chunk):
            n = min(chunk, items - start)
            truth = rng.integers(len(labels), size=n)
            vectors = centres[truth] + rng.normal(0, 0.08, size=(n, centres.shape[1])).astype(np.float32)
            given = truth.copy()
            flip = rng.random(n) < 0.02
            given[flip] = (truth[flip] + rng.integers(1, len(labels), size=int(flip.sum()))) % len(labels)
            near = rng.random(n) < 0.01  # a near copy of the previous item
            near[0] = False
            jitter = rng.normal(0, 0.002, size=(int(near.sum()), centres.shape[1]))
            vectors[near] = vectors[np.flatnonzero(near) - 1] + jitter
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            exact = rng.random(n) < 0.01  # the same content as the previous item
            exact[0] = False
            embedding_rows, item_rows, ids = [], [], []
            for i in range(n):
                if not exact[i]:
                    embedding_id += 1
                    sha = hashlib.sha256(f"{start + i}".encode()).hexdigest()
                    embedding_rows.append({"id": embedding_id, "sha256": sha, "vector": vector_to_blob(vectors[i]),
                                           "created_at": now})
                split = "val" if (start + i) % 5 == 0 else "train"
                item_rows.append({"id": start + i + 1, "uri": f"/scale/{split}/{labels[given[i]].replace(' ', '_')}/"
                                  f"{start + i:08d}.png", "size": 1, "mtime_ns": 0, "state": ItemState.EMBEDDED.value,
                                  "sha256": sha, "embedding_id": embedding_id, "added_at": now, "updated_at": now})
            with index.catalog.begin() as conn:
                conn.execute(insert(Embedding), embedding_rows)
                conn.execute(insert(Item), item_rows)
        index.vectors()  # builds the FAISS file


def peak_memory_mb() -> float:
    """This process's peak resident memory. VmHWM, because ru_maxrss survives exec() on Linux and would
    report the parent's peak (the build loads torch)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_audit(index_dir: Path, chunk: int) -> None:
    from indexer import open_index
    from indexer.audit import AuditOptions, audit

    started = time.time()
    with open_index(index_dir) as index:
        result = audit(index.context, options=AuditOptions(near_threshold=0.999, chunk=chunk))
    peak = peak_memory_mb()
    print(f"audited {result.items} items in {time.time() - started:.1f} s, peak memory {peak:.0f} MB "
          f"(chunk {chunk}): {result.counts()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="Items in the synthetic catalog.")
    parser.add_argument("--work", type=Path, default=Path("/tmp/indexer-audit-scale"), help="Where to build it.")
    parser.add_argument("--chunk", type=int, default=4096, help="Items per audit chunk.")
    parser.add_argument("--audit-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    index_dir = args.work / f"index-{args.items}"
    if args.audit_only:
        run_audit(index_dir, args.chunk)
        return
    if not (index_dir / "vectors.faiss").exists():
        started = time.time()
        build(index_dir, args.items)
        print(f"built a synthetic index of {args.items} items in {time.time() - started:.1f} s")
    # A fresh process, so that the peak memory is the audit's own (no model loaded: texts are cached).
    subprocess.run([sys.executable, __file__, "--items", str(args.items), "--work", str(args.work),
                    "--chunk", str(args.chunk), "--audit-only"], check=True)


if __name__ == "__main__":
    main()
