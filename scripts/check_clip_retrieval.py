#!/usr/bin/env python
"""indexer import / export against clip-retrieval itself, each in its own environment.

    python scripts/check_clip_retrieval.py --venv /tmp/cr-venv --images /tmp/cr-in \\
        --model ViT-B-32-256 --pretrained datacomp_s34b_b86k      # with HF_HOME holding those weights

1. ``clip-retrieval inference`` (PyPI's clip-retrieval, in the venv given) embeds the pictures of
   ``--images`` (with ``--captions``, their .txt captions too) into clip-retrieval's output layout;
2. ``indexer import`` reads that folder into a fresh index with the same model: every row must become an
   item, the model check must re-embed pictures and agree, and a caption must be searchable;
3. ``indexer export --format clip-retrieval`` writes the index back out, and clip-retrieval's own
   ``clip-retrieval index`` (autofaiss) must build its FAISS index from that folder; the exported vectors
   must equal the imported ones.

The model files may have random weights (as ``../shared/peers/make_fake_models.py`` writes them): both
tools then compute the same meaningless embeddings, which is all a check of the layout and of the model
check needs. Prints each step's figures; exits 1 at the first disagreement.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("$ " + " ".join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        print(result.stdout[-2000:], result.stderr[-4000:], sep="\n")
        raise SystemExit(f"failed: {command[0]} (exit {result.returncode})")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, required=True, help="a venv with clip-retrieval installed")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--model", default="ViT-B-32-256")
    parser.add_argument("--pretrained", default="datacomp_s34b_b86k")
    parser.add_argument("--captions", action="store_true",
                        help="also embed the .txt captions (clip-retrieval 2.45.0's files reader fails on them: "
                             "KeyError on the .txt name)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="check-clip-retrieval-"))
    try:
        out = work / "cr-output"
        run([str(args.venv / "bin" / "clip-retrieval"), "inference", "--input_dataset", str(args.images),
             "--output_folder", str(out), "--input_format", "files", "--clip_model",
             f"open_clip:{args.model}/{args.pretrained}", "--enable_text", str(args.captions),
             "--enable_metadata", "True",
             "--batch_size", "8", "--num_prepro_workers", "1", "--enable_wandb", "False"])
        parts = sorted((out / "img_emb").glob("*.npy"))
        rows = sum(len(np.load(p)) for p in parts)
        print(f"clip-retrieval wrote {len(parts)} part(s), {rows} rows of width {np.load(parts[0]).shape[1]} "
              f"({np.load(parts[0]).dtype})")
        indexer = [sys.executable, "-m", "indexer"]
        index = work / "index"
        result = run(indexer + ["import", str(out), "--index", str(index), "--model", args.model,
                                "--pretrained", args.pretrained, "--json"])
        summary = json.loads(result.stdout)
        print(f"indexer import: {json.dumps(summary)}")
        if summary["added"] != rows or summary["verified"] == 0 or summary["agreement"] < 0.99:
            raise SystemExit("the import did not take every row, or the model check did not pass")
        captions = sorted(args.images.glob("*.txt")) if args.captions else []
        if captions:
            word = captions[0].read_text().split()[-1]
            hits = json.loads(run(indexer + ["search", word, "--index", str(index), "--hybrid", "-k", "3",
                                             "--json"]).stdout)
            print(f"hybrid search for {word!r}: {[(Path(h['path']).name, h['caption']) for h in hits]}")
            if not hits or word not in (hits[0]["caption"] or ""):
                raise SystemExit("the imported caption was not found first")
        exported = work / "exported"
        run(indexer + ["export", "--index", str(index), "--format", "clip-retrieval", "-o", str(exported)])
        mine = np.concatenate([np.load(p) for p in sorted((exported / "img_emb").glob("*.npy"))])
        theirs = np.concatenate([np.load(p) for p in parts]).astype(np.float32)
        theirs /= np.linalg.norm(theirs, axis=1, keepdims=True)
        import pyarrow.parquet as pq

        order = {p: i for i, p in enumerate(pq.read_table(out / "metadata" / "metadata_0.parquet")
                                            .column("image_path").to_pylist())}
        exported_paths = pq.read_table(exported / "metadata" / "metadata_0.parquet").column("image_path").to_pylist()
        cosines = np.sum(mine.astype(np.float32) * theirs[[order[p] for p in exported_paths]], axis=1)
        print(f"exported vectors against clip-retrieval's: lowest cosine {cosines.min():.5f}")
        if cosines.min() < 0.999:
            raise SystemExit("the exported vectors are not the imported ones")
        run([str(args.venv / "bin" / "clip-retrieval"), "index", "--embeddings_folder", str(exported),
             "--index_folder", str(work / "cr-index")])
        built = sorted(p.name for p in (work / "cr-index").iterdir())
        print(f"clip-retrieval index built from the export: {built}")
        if "image.index" not in built:
            raise SystemExit("clip-retrieval index did not build an image index from the export")
        print("all checks passed")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
