"""Two more renderers of the 48 coloured-shape classes, written independently of ``indexer.synthetic``
(the bundled model's training generator) and of ``tests.plain_shapes``: held-out test sets for
zero-shot figures that no setting was chosen on.

Every setting of both renderers (``FROZEN``) was fixed, and committed, before a single picture was drawn
from them; scripts/bench_transductive.py draws each with one fixed seed. Nothing in the project's
methods may be tuned on what they draw: their figures are the honest ones, the development sets
(``indexer.synthetic`` with a fresh seed, ``tests.plain_shapes``) are where settings are chosen.

- ``sketch``: shapes as a path of points, rotated, filled with a colour sampled from a hue/saturation/
  value range per colour name (not a palette), then an outline of another shade, on a background of
  low-frequency value noise in a random muted tint, partly covered by a random grey bar (occlusion),
  drawn at 80 px without anti-aliasing and saved as a low-quality JPEG (artefacts).
- ``field``: shapes as signed distance fields evaluated on the pixel grid (smooth edges from the field,
  not supersampling), sometimes hollow (a thick ring of the colour), with a soft drop shadow, a radial
  vignette background, a few small distractor dots of background-like colours, Gaussian pixel noise,
  rendered at 150 px and scaled to 100 px.
"""

from __future__ import annotations

import colorsys
import io
import math
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon")

FROZEN = {
    "sketch": {"size": 80, "jpeg_quality": (25, 60), "radius": (0.22, 0.4), "outline_width": (1, 4),
               "occlusion_probability": 0.5, "occlusion_cover": (0.08, 0.2), "noise_cells": (3, 9)},
    "field": {"canvas": 150, "size": 100, "radius": (0.2, 0.36), "hollow_probability": 0.25,
              "ring": (0.25, 0.4), "shadow": (0.02, 0.05), "dots": (0, 4), "pixel_noise": 6.0},
    "seeds": {"sketch": 7001, "field": 7002},
}

# Hue (degrees), saturation and value ranges per colour name; white and black by value alone.
_HSV = {
    "red": ((-8, 8), (0.75, 1.0), (0.7, 1.0)), "green": ((100, 140), (0.6, 1.0), (0.45, 0.85)),
    "blue": ((215, 240), (0.7, 1.0), (0.6, 1.0)), "yellow": ((52, 60), (0.75, 1.0), (0.9, 1.0)),
    "purple": ((280, 300), (0.55, 0.9), (0.45, 0.8)), "orange": ((25, 36), (0.85, 1.0), (0.9, 1.0)),
    "white": ((0, 360), (0.0, 0.05), (0.94, 1.0)), "black": ((0, 360), (0.0, 0.2), (0.0, 0.1)),
}


def colour_of(rng: np.random.Generator, name: str) -> np.ndarray:
    (h0, h1), (s0, s1), (v0, v1) = _HSV[name]
    h = (rng.uniform(h0, h1) % 360) / 360
    return np.array(colorsys.hsv_to_rgb(h, rng.uniform(s0, s1), rng.uniform(v0, v1))) * 255


def _far_tint(rng: np.random.Generator, avoid: np.ndarray, spread: float) -> np.ndarray:
    """A muted tint at least ``spread`` away from ``avoid`` in RGB."""
    for _ in range(200):
        tint = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0, 0.3), rng.uniform(0.15, 0.95))) * 255
        if np.linalg.norm(tint - avoid) > spread:
            return tint
    return np.full(3, 128.0) if np.linalg.norm(avoid - 128) > spread else np.full(3, 20.0)


# ---------------------------------------------------------------- sketch: paths of points


def _outline(shape: str, cx: float, cy: float, r: float, turn: float) -> list[tuple[float, float]]:
    if shape == "circle":
        points = [(math.cos(t), math.sin(t)) for t in np.linspace(0, 2 * math.pi, 64, endpoint=False)]
    elif shape == "square":
        points = [(-0.75, -0.75), (0.75, -0.75), (0.75, 0.75), (-0.75, 0.75)]
    elif shape == "triangle":
        points = [(math.cos(math.pi / 2 + k * 2 * math.pi / 3), -math.sin(math.pi / 2 + k * 2 * math.pi / 3))
                  for k in range(3)]
    elif shape == "hexagon":
        points = [(math.cos(k * math.pi / 3), math.sin(k * math.pi / 3)) for k in range(6)]
    elif shape == "star":
        points = [((1.0 if k % 2 == 0 else 0.4) * math.cos(-math.pi / 2 + k * math.pi / 5),
                   (1.0 if k % 2 == 0 else 0.4) * math.sin(-math.pi / 2 + k * math.pi / 5)) for k in range(10)]
    elif shape == "cross":
        a = 0.33
        points = [(-a, -1), (a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1), (-a, 1), (-a, a), (-1, a), (-1, -a),
                  (-a, -a)]
    else:
        raise ValueError(shape)
    c, s = math.cos(turn), math.sin(turn)
    return [(cx + r * (c * x - s * y), cy + r * (s * x + c * y)) for x, y in points]


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    grid = rng.uniform(size=(cells + 1, cells + 1))
    small = Image.fromarray((grid * 255).astype(np.uint8), "L")
    return np.asarray(small.resize((size, size), Image.BICUBIC), dtype=np.float32) / 255


def draw_sketch(rng: np.random.Generator, colour: str, shape: str) -> Image.Image:
    f = FROZEN["sketch"]
    n = f["size"]
    fill = colour_of(rng, colour)
    tint = _far_tint(rng, fill, 140)
    noise = _value_noise(rng, n, int(rng.integers(*f["noise_cells"])))
    background = np.clip(tint[None, None, :] * (0.75 + 0.5 * noise[..., None]), 0, 255)
    image = Image.fromarray(background.astype(np.uint8), "RGB")
    pen = ImageDraw.Draw(image)
    r = rng.uniform(*f["radius"]) * n
    cx, cy = rng.uniform(r, n - r), rng.uniform(r, n - r)
    # An outline a shade darker (lighter for black) than the fill.
    edge = np.clip(fill * 0.6 if colour != "black" else fill + 70, 0, 255)
    pen.polygon(_outline(shape, cx, cy, r, rng.uniform(-0.35, 0.35) if shape != "circle" else 0.0),
                fill=tuple(int(v) for v in fill), outline=tuple(int(v) for v in edge),
                width=int(rng.integers(*f["outline_width"])))
    if rng.uniform() < f["occlusion_probability"]:
        w = rng.uniform(*f["occlusion_cover"]) * n
        grey = int(rng.integers(90, 170))
        if rng.uniform() < 0.5:
            x0 = rng.uniform(cx - r, cx + r - w)
            pen.rectangle([x0, 0, x0 + w, n], fill=(grey, grey, grey))
        else:
            y0 = rng.uniform(cy - r, cy + r - w)
            pen.rectangle([0, y0, n, y0 + w], fill=(grey, grey, grey))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(*f["jpeg_quality"])))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


# ---------------------------------------------------------------- field: signed distances


def _distance(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) to a shape of radius ~1 at the origin."""
    if shape == "circle":
        return np.hypot(x, y) - 1
    if shape == "square":
        qx, qy = np.abs(x) - 0.78, np.abs(y) - 0.78
        return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    if shape == "cross":
        def box(bx: float, by: float) -> np.ndarray:
            qx, qy = np.abs(x) - bx, np.abs(y) - by
            return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
        return np.minimum(box(1.0, 0.3), box(0.3, 1.0))
    if shape in ("triangle", "hexagon"):
        sides = 3 if shape == "triangle" else 6
        angle = np.arctan2(y, x) + (math.pi / 2 if shape == "triangle" else 0.0)
        sector = 2 * math.pi / sides
        local = np.mod(angle + sector / 2, sector) - sector / 2
        return np.hypot(x, y) * np.cos(local) - math.cos(math.pi / sides) * (1.05 if sides == 3 else 0.95)
    if shape == "star":
        angle = np.arctan2(y, x) + math.pi / 2
        sector = 2 * math.pi / 5
        local = np.abs(np.mod(angle + sector / 2, sector) - sector / 2) / (sector / 2)  # 0 at a tip, 1 between
        return np.hypot(x, y) - (1.0 - 0.6 * local)
    raise ValueError(shape)


def draw_field(rng: np.random.Generator, colour: str, shape: str) -> Image.Image:
    f = FROZEN["field"]
    n = f["canvas"]
    fill = colour_of(rng, colour)
    inner, outer = _far_tint(rng, fill, 150), _far_tint(rng, fill, 150)
    coords = (np.arange(n) + 0.5) / n
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    rad = np.clip(np.hypot(xx - 0.5, yy - 0.5) / 0.71, 0, 1)[..., None]
    pixels = inner * (1 - rad) + outer * rad
    for _ in range(int(rng.integers(*f["dots"]))):
        dx, dy, dr = rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95), rng.uniform(0.01, 0.03)
        dot = (np.hypot(xx - dx, yy - dy) < dr)[..., None]
        pixels = np.where(dot, _far_tint(rng, fill, 150), pixels)
    r = rng.uniform(*f["radius"])
    cx, cy = rng.uniform(r + 0.05, 0.95 - r), rng.uniform(r + 0.05, 0.95 - r)
    turn = rng.uniform(-0.3, 0.3)
    c, s = math.cos(turn), math.sin(turn)

    def field_at(ox: float, oy: float) -> np.ndarray:
        x, y = (xx - cx - ox) / r, (yy - cy - oy) / r
        return _distance(shape, c * x + s * y, -s * x + c * y)

    edge = 1.2 / (n * r)  # about a pixel of smoothing, in the shape's units
    shadow_offset = rng.uniform(*f["shadow"])
    shadow = np.clip(0.5 - field_at(shadow_offset, shadow_offset) / (4 * edge), 0, 1)[..., None] * 0.35
    pixels = pixels * (1 - shadow)
    d = field_at(0.0, 0.0)
    if rng.uniform() < f["hollow_probability"]:
        d = np.abs(d + rng.uniform(*f["ring"]) / 2) - rng.uniform(*f["ring"]) / 2
    cover = np.clip(0.5 - d / (2 * edge), 0, 1)[..., None]
    pixels = pixels * (1 - cover) + fill * cover
    pixels = pixels + rng.normal(0, f["pixel_noise"], pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return image.resize((f["size"], f["size"]), Image.LANCZOS).filter(ImageFilter.SMOOTH_MORE)


RENDERERS: dict[str, Callable[[np.random.Generator, str, str], Image.Image]] = {
    "sketch": draw_sketch, "field": draw_field}


def write_folder(renderer: str, root: Path, classes: list[str], per_class: int, seed: int) -> list[tuple[Path, str]]:
    """``per_class`` pictures of each class under ``root/<class>/``, PNG (the sketch's JPEG artefacts are
    baked into its pixels already)."""
    draw = RENDERERS[renderer]
    rng = np.random.default_rng(seed)
    written = []
    for label in classes:
        colour, shape = label.split(" ", 1)
        folder = Path(root) / label.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = folder / f"{renderer}_{i}.png"
            draw(rng, colour, shape).save(path)
            written.append((path, label))
    return written
