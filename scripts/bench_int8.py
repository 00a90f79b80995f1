#!/usr/bin/env python
"""int8 against full precision, on the collection it is calibrated on and on pictures it never saw.

    python scripts/bench_int8.py                                   # the bundled model (trained weights)
    python scripts/bench_int8.py --model ViT-B-32-256 --pretrained datacomp_s34b_b86k --corpus /tmp/peers/corpus-400

For each precision (the float one this CPU runs, then int8) a fresh index ingests the collection in a
process of its own (``indexer ingest --precision P --json``): its wall time and peak RSS are measured,
so the int8 row carries the cost of calibrating on the collection (NNCF included). Then:

- the agreement figures the int8 run stored with its index (``indexer status``): cosine and recall@10
  of neighbour lists against the float tower, on held-out pictures of the collection;
- with the bundled model (whose embeddings mean something): zero-shot top-1 over all 48 classes on two
  held-out sets, the project's generator with a new seed and plain shapes drawn by other code
  (tests/plain_shapes.py), embedded by each index's own tower (the int8 index follows its decision);
- the image tower alone, float and int8, on the pixels ingestion sends it (img/s, same batch).

Every setting of the int8 path (calibration pictures, held-out pictures, thresholds) is fixed in
indexer/ingest/int8.py before this script runs; nothing here tunes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from indexer import open_index, synthetic  # noqa: E402


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    wanted = [f for f in ("avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(wanted) or 'none of avx512_vnni/bf16, amx'}"


def run_measured(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of one process."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if status != 0:
            raise SystemExit(f"{' '.join(command)} failed ({status}):\n{err.read()[-2000:]}")
        return elapsed, usage.ru_maxrss / 1024, out.read()


def tower_speed(index_dir: Path, pictures: np.ndarray, seconds: float) -> float:
    with open_index(index_dir) as index:
        embedder = index.context.model.embedder()
        if (index_dir / "int8" / "image-int8.xml").is_file():
            embedder.use_int8(index_dir / "int8")
        embedder.embed_images(pictures)
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            embedder.embed_images(pictures)
            done += len(pictures)
        return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny-shapes")
    parser.add_argument("--pretrained")
    parser.add_argument("--corpus", type=Path, help="the collection to ingest (default: 8 rendered pictures per class)")
    parser.add_argument("--seconds", type=float, default=10, help="duration of each tower-alone run")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    bundled = args.model == "tiny-shapes"
    collection = args.corpus
    if collection is None:
        collection = work / "collection"
        synthetic.write_labelled_folder(collection, 8, synthetic.ALL_CLASSES, seed=101, size=64, image_format="png")
    held_out = {}
    if bundled:
        from tests.plain_shapes import write_plain_folder

        held_out["generator, seed 777"] = work / "generator"
        synthetic.write_labelled_folder(work / "generator", 20, synthetic.ALL_CLASSES, seed=777, size=64,
                                        image_format="png")
        held_out["plain shapes (other code)"] = work / "plain"
        write_plain_folder(work / "plain", list(synthetic.ALL_CLASSES), per_class=10, seed=777)
    print(cpu_flags())
    indexer = str(Path(sys.executable).with_name("indexer"))
    model_args = ["--model", args.model] + (["--pretrained", args.pretrained] if args.pretrained else [])
    rows = {}
    from indexer.models.openvino_runtime import supports_bf16

    float_precision = "bf16" if supports_bf16() else "fp32"
    for precision in (float_precision, "int8"):
        index_dir = work / f"index-{precision}"
        seconds, peak, out = run_measured([indexer, "ingest", str(collection), "--index", str(index_dir), *model_args,
                                           "--precision", precision, "--json", "--no-progress"])
        row = {"ingest_s": round(seconds, 1), "peak_rss_mib": round(peak), "embedded": json.loads(out)["embedded"]}
        with open_index(index_dir) as index:
            row["int8"] = index.status().get("int8")
            for name, folder in held_out.items():
                index.ingest([folder])
                row[name] = round(index.evaluate(folder).top1, 4)
            embedder = index.context.model.embedder()
            from indexer.media.decode import decode_image

            files = sorted(p for p in collection.rglob("*") if p.is_file() and p.stat().st_size)[:64]
            pixels = []
            for p in files:
                try:
                    pixels.append(embedder.preprocess.pixels(decode_image(p.read_bytes(), embedder.image_size).image))
                except Exception:  # noqa: BLE001 - a broken file of the corpus
                    continue
        row["tower_img_s"] = round(tower_speed(index_dir, np.stack(pixels[:32]), args.seconds), 1)
        rows[precision] = row
        print(precision, json.dumps(row), flush=True)
    full, int8 = rows[float_precision], rows["int8"]
    figures = int8["int8"] or {}
    print(f"\n| figure | {float_precision} | int8 |\n| --- | ---: | ---: |")
    print(f"| ingest of the collection ({full['embedded']} pictures), whole process | {full['ingest_s']} s | "
          f"{int8['ingest_s']} s (calibration {figures.get('seconds', '?')} s) |")
    print(f"| peak RSS of that process | {full['peak_rss_mib']} MiB | {int8['peak_rss_mib']} MiB |")
    print(f"| image tower alone, batch 32 | {full['tower_img_s']} img/s | {int8['tower_img_s']} img/s |")
    print(f"| held-out cosine to {float_precision} (min / mean) | 1 | {figures.get('cosine_min')} / "
          f"{figures.get('cosine_mean')} |")
    print(f"| held-out recall@10 of neighbour lists | 1 | {figures.get('recall_at_10')} |")
    for name in held_out:
        print(f"| zero-shot top-1, 48 classes, {name} | {full[name]:.4f} | {int8[name]:.4f} "
              f"({int8[name] - full[name]:+.4f}) |")
    from indexer.ingest.int8 import AUTO_MIN_ITEMS, MIN_COSINE_MEAN, MIN_RECALL_AT_10

    clears = figures.get("recall_at_10", 0) >= MIN_RECALL_AT_10 and figures.get("cosine_mean", 0) >= MIN_COSINE_MEAN
    print(f"\n--precision auto on this collection: {'int8' if clears else 'stays ' + float_precision} "
          f"(needs recall@10 >= {MIN_RECALL_AT_10} and cosine mean >= {MIN_COSINE_MEAN}, and at least "
          f"{AUTO_MIN_ITEMS} items to embed)")


if __name__ == "__main__":
    main()
