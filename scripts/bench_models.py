#!/usr/bin/env python
"""Image-tower throughput of candidate default models, side by side, random weights.

Compute does not depend on the weights, so random initialisation measures what a downloaded model
would cost. Accuracy figures are the published ImageNet zero-shot top-1 of the pretrained tags
(open_clip's results table), quoted for the trade-off; nothing here measures accuracy.

    python scripts/bench_models.py --threads 2 --seconds 15
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import open_clip
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from indexer.models.torch_clip import reparameterize  # noqa: E402

# (architecture, pretrained tag, published ImageNet zero-shot top-1 of that tag)
CANDIDATES = [
    ("ViT-B-32", "laion2b_s34b_b79k", 0.666),
    ("ViT-B-32-256", "datacomp_s34b_b86k", 0.728),
    ("MobileCLIP2-S0", "dfndr2b", 0.715),
    ("MobileCLIP-S1", "datacompdr", 0.726),
    ("MobileCLIP-S2", "datacompdr", 0.744),
    ("ViT-B-16", "dfn2b", 0.762),
]


def throughput(name: str, batch: int, seconds: float) -> tuple[float, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _, _ = open_clip.create_model_and_transforms(name, pretrained=None)
    model.eval()
    model = reparameterize(model).to(memory_format=torch.channels_last)  # as indexer loads it
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model.encode_image(x)  # warm-up
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            model.encode_image(x)
            done += batch
    return done / (time.perf_counter() - started), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--only", nargs="*", help="architectures to measure (default: all candidates)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, fp32, CPU")
    print(f"{'model':<16} {'tag':<20} {'px':>4} {'img/s':>7} {'IN top-1':>9}")
    for name, tag, top1 in CANDIDATES:
        if args.only and name not in args.only:
            continue
        try:
            rate, size = throughput(name, args.batch, args.seconds)
        except Exception as exc:  # an architecture this open_clip / timm cannot build
            print(f"{name:<16} {tag:<20} cannot build: {exc}")
            continue
        print(f"{name:<16} {tag:<20} {size:>4} {rate:>7.1f} {top1:>9.1%}", flush=True)


if __name__ == "__main__":
    main()
