"""Plain shapes drawn by other code than the bundled model's generator.

``indexer.synthetic`` draws PIL polygons with textured backgrounds, jittered colours and noise. This
module draws differently on purpose: implicit functions evaluated on a pixel grid (anti-aliased by
supersampling), the pure named colours of web palettes, smooth backgrounds (white, greys, black, a
gentle gradient), upright shapes of slightly different proportions, no noise. A model that only learnt
its generator's quirks would fail here.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

PURE_COLOURS = {
    "red": (255, 0, 0), "green": (0, 128, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0),
    "purple": (128, 0, 128), "orange": (255, 165, 0), "white": (255, 255, 255), "black": (0, 0, 0),
}
BACKGROUNDS = {"white": (255, 255, 255), "light grey": (211, 211, 211), "grey": (128, 128, 128),
               "dark grey": (64, 64, 64), "black": (0, 0, 0)}


def _inside(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Membership of points (x, y) in a shape of radius ~1 centred on the origin, y pointing down."""
    if shape == "circle":
        return x ** 2 + y ** 2 <= 1.0
    if shape == "square":
        return (np.abs(x) <= 0.8) & (np.abs(y) <= 0.8)
    if shape == "cross":
        arm = 0.3
        return ((np.abs(x) <= arm) & (np.abs(y) <= 1)) | ((np.abs(y) <= arm) & (np.abs(x) <= 1))
    angle = np.arctan2(x, -y)  # 0 at the top, clockwise
    radius = np.hypot(x, y)
    if shape in ("triangle", "hexagon"):
        sides = 3 if shape == "triangle" else 6
        offset = 0.0 if shape == "triangle" else math.pi / 6
        sector = 2 * math.pi / sides
        local = np.mod(angle + offset, sector) - sector / 2
        apothem = math.cos(math.pi / sides) * (1.1 if shape == "triangle" else 1.0)
        return radius * np.cos(local) <= apothem
    if shape == "star":
        # Even-odd ray casting against the ten vertices of a five-pointed star, tip up.
        vertices = [((1.05 if k % 2 == 0 else 0.42) * math.sin(k * math.pi / 5),
                     -(1.05 if k % 2 == 0 else 0.42) * math.cos(k * math.pi / 5)) for k in range(10)]
        inside = np.zeros(x.shape, dtype=bool)
        for (x1, y1), (x2, y2) in zip(vertices, vertices[1:] + vertices[:1]):
            crosses = (y1 > y) != (y2 > y)
            x_at = x1 + (y - y1) * (x2 - x1) / ((y2 - y1) if y2 != y1 else 1e-12)
            inside ^= crosses & (x < x_at)
        return inside
    raise ValueError(shape)


def draw(colour: str, shape: str, background: str = "white", size: int = 128, scale: float = 0.32,
         centre: tuple[float, float] = (0.5, 0.5), supersample: int = 4) -> Image.Image:
    n = size * supersample
    coords = (np.arange(n) + 0.5) / n
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    x, y = (xx - centre[0]) / scale, (yy - centre[1]) / scale
    mask = _inside(shape, x, y).astype(np.float32)
    mask = mask.reshape(size, supersample, size, supersample).mean(axis=(1, 3))[..., None]
    bg = np.array(BACKGROUNDS[background], dtype=np.float32)
    if background == "light grey":  # a gentle vertical gradient
        bg = bg[None, None, :] * (0.9 + 0.1 * coords[::supersample][:, None, None])
    pixels = bg * (1 - mask) + np.array(PURE_COLOURS[colour], dtype=np.float32) * mask
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_plain_folder(root: Path, classes: list[str], per_class: int = 3, seed: int = 0, size: int = 128
                       ) -> list[tuple[Path, str]]:
    """A labelled folder of plain shapes; backgrounds far from the shape's own colour."""
    rng = np.random.default_rng(seed)
    written = []
    for label in classes:
        colour, shape = label.split(" ", 1)
        folder = root / label.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        choices = [b for b, rgb in BACKGROUNDS.items()
                   if np.linalg.norm(np.subtract(rgb, PURE_COLOURS[colour])) > 150]
        for i in range(per_class):
            background = choices[rng.integers(len(choices))]
            image = draw(colour, shape, background, size, scale=float(rng.uniform(0.25, 0.38)),
                         centre=(float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6))))
            path = folder / f"plain_{i}.png"
            image.save(path)
            written.append((path, label))
    return written
