#!/usr/bin/env python
"""Ingest throughput: model-only, decode-only and end-to-end, side by side on one corpus and model.

    python scripts/bench_ingest.py --make 2000 --corpus /tmp/corpus-1280   # draws 2,000 JPEGs first
    python scripts/bench_ingest.py --corpus /tmp/corpus-1280 --model ViT-B-32 --pretrained random
    python scripts/bench_ingest.py --corpus /tmp/corpus-1280 --model tiny-shapes

- model-only: images/s of the image tower alone on the pixels ingestion sends it (no I/O, no decode);
- decode-only: images/s of read + decode (+ DCT-domain reduction) + resize and crop, in one process;
- end-to-end: images/s of a real ingest into a fresh index (scan, hash, decode workers, embed,
  commit, vectors), the model being loaded before the clock starts;
- the ratio end-to-end / model-only, and the wall time of a whole `indexer ingest` process re-run
  over the unchanged corpus.

Compare figures from one run only: the machine is shared and its speed varies.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer import open_index  # noqa: E402
from indexer.config import Settings  # noqa: E402


def make_corpus(folder: Path, count: int, width: int, height: int, seed: int = 0) -> None:
    """Photo-like JPEGs: smooth colour fields, a few shapes, texture noise; quality 90."""
    from PIL import Image, ImageDraw, ImageFilter

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        coarse = rng.uniform(0, 255, size=(6, 8, 3)).astype(np.uint8)
        image = Image.fromarray(coarse, "RGB").resize((width, height), Image.BICUBIC)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 9))):
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            r = rng.uniform(0.05, 0.25) * min(width, height)
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            (draw.ellipse if rng.uniform() < 0.5 else draw.rectangle)([x - r, y - r, x + r, y + r], fill=colour)
        image = image.filter(ImageFilter.GaussianBlur(1.5))
        pixels = np.asarray(image, dtype=np.int16) + rng.normal(0, 6, size=(height, width, 3)).astype(np.int16)
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"img_{i:06d}.jpg", quality=90)


def model_only(embedder, preprocessed, batch: int, seconds: float) -> float:
    x = preprocessed[:batch]
    embedder.embed_images(x)  # warm-up
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        embedder.embed_images(x)
        done += len(x)
    return done / (time.perf_counter() - started)


def decode_only(files: list[Path], preprocess, target: int, seconds: float) -> float:
    from indexer.media.decode import decode_image, limit_aspect

    done, started = 0, time.perf_counter()
    from indexer.errors import DecodeError

    for path in files:
        try:
            preprocess(limit_aspect(decode_image(path.read_bytes(), target).image))
        except DecodeError:
            continue  # the corpus's broken files: not a picture to time
        done += 1
        if time.perf_counter() - started > seconds:
            break
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--make", type=int, help="first draw this many JPEGs into --corpus")
    parser.add_argument("--size", default="1280x960", help="size of the drawn JPEGs (WxH)")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="random")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--limit", type=int, help="ingest only the first N files of the corpus")
    parser.add_argument("--seconds", type=float, default=20, help="duration of the model-only and decode-only runs")
    parser.add_argument("--rounds", type=int, default=4, help="the end-to-end run, cut in rounds between model runs")
    args = parser.parse_args()

    if args.make:
        width, height = (int(v) for v in args.size.lower().split("x"))
        started = time.time()
        make_corpus(args.corpus, args.make, width, height)
        print(f"drew {args.make} JPEGs of {width}x{height} in {time.time() - started:.0f} s")
    files = sorted(p for p in args.corpus.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if args.limit:
        files = files[: args.limit]
    sizes = [p.stat().st_size for p in files]
    print(f"corpus: {len(files)} files, median {statistics.median(sizes) / 1e3:.0f} kB")

    settings = Settings(batch_size=args.batch_size, workers=args.workers, threads=args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    corpus = args.corpus
    if args.limit:
        corpus = work / "corpus"
        corpus.mkdir()
        for p in files:
            os.symlink(p, corpus / p.name)
    pretrained = None if args.model == "tiny-shapes" else args.pretrained
    index = open_index(work / "index", args.model, pretrained=pretrained, settings=settings)
    embedder = index.context.model.embedder()
    import torch

    batch = settings.resolved_batch_size(embedder.device)
    workers = settings.resolved_workers(embedder.device)
    print(f"model {args.model} ({pretrained or 'bundled'}), {embedder.image_size} px, device {embedder.device}, "
          f"batch {batch}, decode workers {workers}, torch threads {torch.get_num_threads()}")

    from indexer.media.decode import decode_image

    # What ingestion hands the model: pixels (uint8, resized and cropped), normalised where they are embedded.
    sample = np.stack([embedder.preprocess.pixels(decode_image(p.read_bytes(), embedder.image_size).image)
                       for p in files[:batch * 2] if p.stat().st_size][:batch])
    model_rate = model_only(embedder, sample, batch, args.seconds)
    print(f"model-only:  {model_rate:7.1f} img/s (pixels in, the bulk path ingestion uses)")
    if embedder.runtime == "openvino":
        from indexer.models.preprocess import normalise

        floats = normalise(sample, embedder.preprocess_config)
        print(f"model-only:  {model_only(embedder, floats, batch, args.seconds):7.1f} img/s (float input, one "
              "request with every thread: what a query uses, and what ingestion used before)")
    decode_rate = decode_only(files, embedder.preprocess.pixels, embedder.image_size, args.seconds)
    print(f"decode-only: {decode_rate:7.1f} img/s (one process)")

    # The machine's speed drifts over minutes: ingest the corpus in rounds, each between two model-only
    # measurements, and compare each round with the mean of the two around it.
    parts = [files[i::args.rounds] for i in range(args.rounds)]
    ratios, embedded, elapsed_total = [], 0, 0.0
    before = model_rate
    for n, part in enumerate(parts):
        folder = work / f"round-{n}"
        folder.mkdir()
        for p in part:
            os.symlink(p.resolve(), folder / p.name)
        started = time.perf_counter()
        summary = index.ingest([folder])
        elapsed = time.perf_counter() - started
        after = model_only(embedder, sample, batch, args.seconds)
        rate = summary.embedded / elapsed
        ratios.append(rate / ((before + after) / 2))
        print(f"round {n + 1}: end-to-end {rate:5.1f} img/s ({summary.embedded} in {elapsed:.0f} s), "
              f"model-only {before:5.1f} before, {after:5.1f} after: ratio {ratios[-1]:.2f}", flush=True)
        embedded += summary.embedded
        elapsed_total += elapsed
        before = after
    print(f"end-to-end:  {embedded / elapsed_total:7.1f} img/s ({embedded} embedded in {elapsed_total:.1f} s)")
    print(f"ratio end-to-end / model-only: median {statistics.median(ratios):.2f} over {len(ratios)} rounds "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
    index.close()

    script = Path(sys.executable).with_name("indexer")
    started = time.perf_counter()
    rerun = subprocess.run([str(script), "ingest", *[str(work / f"round-{n}") for n in range(args.rounds)],
                            "--index", str(work / "index"), "--json"], capture_output=True, text=True)
    print(f"re-run over the unchanged corpus, whole process: {time.perf_counter() - started:.2f} s "
          f"(exit {rerun.returncode})")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
