"""Audit sets with known problems, drawn by code of their own (not the bundled model's generator).

Each set: CLASSES x PER_CLASS pictures (the 48 colour-shape classes), drawn as rotated polygons of
jittered colour, random size and place, over two-colour gradients with a few faint strokes, 72-128 px,
saved as PNG; plus EXACT byte-for-byte copies and NEAR copies (resized to 0.8x and re-saved as JPEG
quality 80), each filed under the same label as its original. Three labels files flip labels on purpose:

- ``labels-random5.csv``: 5 % of the originals get another class at random;
- ``labels-random10.csv``: 10 %;
- ``labels-colour5.csv``: 5 % get another shape of the same colour (the hard case for zero-shot).

``truth.json`` lists each picture's true class, the flipped paths of each labels file and the planted
copy pairs. Copies are never flipped (they keep their original's label).

    python scripts/audit_sets.py /tmp/audit-sets/test-0 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (215, 30, 35), "green": (40, 160, 60), "blue": (35, 70, 210), "yellow": (240, 215, 40),
           "purple": (130, 50, 160), "orange": (245, 140, 25), "white": (245, 245, 245), "black": (15, 15, 15)}
SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon")
CLASSES = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)


def _outline(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "circle":
        points = [(math.cos(t), math.sin(t)) for t in np.linspace(0, 2 * math.pi, 48, endpoint=False)]
    elif shape == "square":
        points = [(-0.75, -0.75), (0.75, -0.75), (0.75, 0.75), (-0.75, 0.75)]
    elif shape == "triangle":
        points = [(math.cos(t), math.sin(t)) for t in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    elif shape == "hexagon":
        points = [(math.cos(t), math.sin(t)) for t in np.arange(6) * math.pi / 3]
    elif shape == "star":
        points = [((1.0 if i % 2 == 0 else 0.42) * math.cos(-math.pi / 2 + i * math.pi / 5),
                   (1.0 if i % 2 == 0 else 0.42) * math.sin(-math.pi / 2 + i * math.pi / 5)) for i in range(10)]
    else:  # cross
        a = 0.3
        points = [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a),
                  (-a, -a)]
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in points]


def draw(rng: np.random.Generator, colour: str, shape: str) -> Image.Image:
    size = int(rng.integers(72, 129))
    target = np.array(COLOURS[colour], dtype=float)
    while True:  # two background colours far from the shape's
        ends = rng.integers(0, 256, size=(2, 3)).astype(float)
        if min(np.linalg.norm(ends - target, axis=1)) > 140:
            break
    t = np.linspace(0, 1, size)[:, None, None]
    gradient = ends[0] * (1 - t) + ends[1] * t
    pixels = np.repeat(gradient, size, axis=1) if rng.random() < 0.5 else np.repeat(gradient, size, axis=1).transpose(1, 0, 2)
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    pen = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 4))):  # faint strokes
        shade = tuple(int(v) for v in np.clip(ends[0] + rng.normal(0, 25, 3), 0, 255))
        pen.line([tuple(rng.uniform(0, size, 2)), tuple(rng.uniform(0, size, 2))], fill=shade, width=int(rng.integers(1, 3)))
    r = size * float(rng.uniform(0.2, 0.36))
    cx, cy = (float(rng.uniform(r, size - r)) for _ in range(2))
    fill = tuple(int(v) for v in np.clip(target + rng.normal(0, 14, 3), 0, 255))
    pen.polygon(_outline(shape, cx, cy, r, float(rng.uniform(0, 2 * math.pi))), fill=fill)
    return image


def make_set(folder: Path, seed: int, per_class: int = 30, exact: int = 10, near: int = 10) -> dict:
    rng = np.random.default_rng(seed)
    if folder.exists():
        shutil.rmtree(folder)
    pictures = folder / "pictures"
    truth: dict[str, str] = {}
    for label in CLASSES:
        colour, shape = label.split(" ")
        (pictures / label.replace(" ", "_")).mkdir(parents=True)
        for i in range(per_class):
            path = pictures / label.replace(" ", "_") / f"p{i:03d}.png"
            draw(rng, colour, shape).save(path)
            truth[str(path.resolve())] = label
    originals = sorted(truth)
    chosen = rng.choice(len(originals), exact + near, replace=False)
    pairs = []
    for n, i in enumerate(chosen.tolist()):
        source = Path(originals[i])
        if n < exact:
            copy = source.with_name(source.stem + "_copy.png")
            shutil.copyfile(source, copy)
        else:
            with Image.open(source) as image:
                small = image.convert("RGB").resize((round(image.width * 0.8), round(image.height * 0.8)),
                                                    Image.Resampling.BICUBIC)
            buffer = io.BytesIO()
            small.save(buffer, "JPEG", quality=80)
            copy = source.with_name(source.stem + "_near.jpg")
            copy.write_bytes(buffer.getvalue())
        truth[str(copy.resolve())] = truth[str(source)]
        pairs.append({"kind": "exact" if n < exact else "near", "paths": [str(source), str(copy.resolve())]})
    flips = {}
    for name, share, same_colour in (("random5", 0.05, False), ("random10", 0.10, False), ("colour5", 0.05, True)):
        flip_rng = np.random.default_rng([seed, len(name), int(share * 100)])
        flipped = sorted(flip_rng.choice(len(originals), round(share * len(originals)), replace=False).tolist())
        given = dict(truth)
        for i in flipped:
            true = truth[originals[i]]
            colour = true.split(" ")[0]
            options = [c for c in CLASSES if c != true and (not same_colour or c.startswith(colour + " "))]
            given[originals[i]] = options[int(flip_rng.integers(len(options)))]
        with (folder / f"labels-{name}.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "label"])
            writer.writerows(sorted(given.items()))
        flips[name] = [originals[i] for i in flipped]
    data = {"seed": seed, "truth": truth, "flips": flips, "copies": pairs}
    (folder / "truth.json").write_text(json.dumps(data, indent=1))
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=30)
    args = parser.parse_args()
    data = make_set(args.folder, args.seed, args.per_class)
    print(f"{len(data['truth'])} pictures in {args.folder} (seed {args.seed})")


if __name__ == "__main__":
    main()
