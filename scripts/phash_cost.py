"""What the perceptual hash adds to ingestion's read step: the decode of a folder's pictures (as ingestion
decodes them) against the hash of the same decoded pictures (what ingestion now adds to each).

    python scripts/phash_cost.py /tmp/audit-sets/test-6/pictures --size 224
    python scripts/phash_cost.py /tmp/audit-sets/test-6/pictures --ingest 3   # whole ingests, hash on / off
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    from indexer.media.decode import decode_image
    from indexer.media.phash import perceptual_hash

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=224, help="Decode target (the model's input size).")
    parser.add_argument("--ingest", type=int, default=0, metavar="ROUNDS",
                        help="Also time whole ingests into fresh indexes, alternately with and without the hash.")
    args = parser.parse_args()
    if args.ingest:
        ingest_rounds(args.folder, args.ingest)
    files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    datas = [p.read_bytes() for p in files]
    started = time.perf_counter()
    decoded = [decode_image(d, args.size) for d in datas]
    decode_s = time.perf_counter() - started
    started = time.perf_counter()
    for d in decoded:
        perceptual_hash(d.image)
    hash_s = time.perf_counter() - started
    sizes = np.array([d.image.size for d in decoded])
    print(f"{len(files)} pictures ({int(np.median(sizes[:, 0]))} px median width): decode {1000 * decode_s / len(files):.3f} ms "
          f"each, hash {1000 * hash_s / len(files):.3f} ms each ({100 * hash_s / decode_s:.1f} % of the decode alone)")


def ingest_rounds(folder: Path, rounds: int) -> None:
    """Ingestion's read step (``load_item``: hash of the bytes, decode, preprocess and now the perceptual
    hash) over every picture, in this process, alternately with and without the perceptual hash; then one
    whole ingest with it, for scale (the embedding step is the same either way)."""
    import shutil
    import tempfile

    import indexer.ingest.read as read
    from indexer import open_index
    from indexer.config import Settings

    with open_index(Path(tempfile.mkdtemp()) / "index", model="tiny-shapes") as index:
        embedder = index.context.model.embedder()
        options = read.read_options(embedder, Settings())
        target = index.path
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    datas = [p.read_bytes() for p in files]
    real = read.perceptual_hash
    times: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for hashed in (True, False):
            read.perceptual_hash = real if hashed else (lambda image: None)
            started = time.perf_counter()
            for i, data in enumerate(datas):
                read.load_item(i, str(files[i]), data, lambda sha: None, options)
            times[hashed].append(time.perf_counter() - started)
    read.perceptual_hash = real
    on, off = np.median(times[True]), np.median(times[False])
    print(f"read step over {len(files)} pictures, median of {rounds}: with the hash {on:.2f} s, without {off:.2f} s "
          f"({100 * (on / off - 1):+.1f} %)")
    shutil.rmtree(target.parent)
    target = Path(tempfile.mkdtemp()) / "index"
    started = time.perf_counter()
    with open_index(target, model="tiny-shapes") as index:
        index.ingest([folder])
    print(f"one whole ingest (with the hash): {time.perf_counter() - started:.2f} s")
    shutil.rmtree(target.parent)


if __name__ == "__main__":
    main()
