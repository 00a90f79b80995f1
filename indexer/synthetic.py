"""Procedurally drawn, captioned images of coloured shapes.

This generator is what the bundled ``tiny-shapes`` model was trained on, and what the demo and the
tests draw their collections from. Every picture is one filled shape of a named colour on a textured
background whose colours are kept far from the shape's, with random size, position, rotation, edge
softness and noise. A caption names the colour and the shape (and sometimes the size and background).

A fixed quarter of the (colour, shape) pairs is never drawn for training (``UNSEEN_CLASSES``), while
every colour word and every shape word still occurs in other pairs: the model meets those classes only
through their names, which is what zero-shot classification is about.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange", "white", "black")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross", "hexagon")

# A few reference renderings of each colour name; each drawing jitters one of them.
_COLOUR_VARIANTS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "red": ((220, 35, 35), (255, 0, 0), (200, 20, 45), (235, 50, 30)),
    "green": ((40, 170, 60), (0, 128, 0), (0, 200, 0), (60, 180, 75)),
    "blue": ((30, 70, 220), (0, 0, 255), (20, 90, 200), (40, 40, 200)),
    "yellow": ((245, 225, 40), (255, 255, 0), (250, 235, 60), (240, 215, 0)),
    "purple": ((140, 50, 180), (128, 0, 128), (160, 60, 220), (120, 40, 160)),
    "orange": ((250, 140, 20), (255, 165, 0), (240, 120, 10), (255, 150, 40)),
    "white": ((245, 245, 245), (255, 255, 255), (232, 232, 226), (250, 250, 240)),
    "black": ((15, 15, 15), (0, 0, 0), (35, 35, 40), (25, 20, 20)),
}
_BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "striped", "checkered", "noisy")


def _is_unseen(colour_index: int, shape_index: int) -> bool:
    # Two colours per shape, one or two shapes per colour: 12 of the 48 pairs.
    return (colour_index + shape_index) % 4 == 0


ALL_CLASSES: tuple[str, ...] = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
UNSEEN_CLASSES: tuple[str, ...] = tuple(
    f"{c} {s}" for ci, c in enumerate(COLOURS) for si, s in enumerate(SHAPES) if _is_unseen(ci, si)
)
SEEN_CLASSES: tuple[str, ...] = tuple(c for c in ALL_CLASSES if c not in UNSEEN_CLASSES)


@dataclass(frozen=True)
class Drawing:
    """What one rendered picture shows, enough to caption it."""

    colour: str
    shape: str
    size: str  # "small", "medium" or "large"
    background: str

    @property
    def label(self) -> str:
        return f"{self.colour} {self.shape}"


def _jitter_colour(rng: np.random.Generator, colour: str) -> np.ndarray:
    variants = _COLOUR_VARIANTS[colour]
    base = np.array(variants[rng.integers(len(variants))], dtype=np.float32)
    return np.clip(base + rng.uniform(-14, 14, size=3), 0, 255)


def _background_colour(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """A muted colour (grey-ish, pastel or dark) far from ``avoid`` in RGB."""
    for _ in range(100):
        value = rng.uniform(0.12, 1.0)
        saturation = rng.uniform(0.0, 0.35)
        hue = rng.uniform(0.0, 1.0)
        rgb = np.array(_hsv_to_rgb(hue, saturation, value), dtype=np.float32) * 255
        if np.linalg.norm(rgb - avoid) > 120:
            return rgb
    return np.full(3, 128.0 if avoid.mean() < 100 or avoid.mean() > 180 else 20.0, dtype=np.float32)


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def _background(rng: np.random.Generator, kind: str, size: int, avoid: np.ndarray) -> np.ndarray:
    a = _background_colour(rng, avoid)
    b = _background_colour(rng, avoid)
    if kind == "plain":
        return np.broadcast_to(a, (size, size, 3)).copy()
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, math.pi)
    along = xx * math.cos(angle) + yy * math.sin(angle)
    if kind == "gradient":
        t = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
        return a * (1 - t[..., None]) + b * t[..., None]
    if kind == "striped":
        period = rng.uniform(0.08, 0.25)
        t = (np.floor(along / (period / 2)) % 2)[..., None]
        return a * (1 - t) + b * t
    if kind == "checkered":
        cell = rng.uniform(0.07, 0.2)
        t = ((np.floor(xx / cell) + np.floor(yy / cell)) % 2)[..., None]
        return a * (1 - t) + b * t
    # noisy: smooth random blotches between the two colours
    coarse = rng.uniform(0, 1, size=(rng.integers(3, 9),) * 2).astype(np.float32)
    t = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC))
    t = (t.astype(np.float32) / 255)[..., None]
    return a * (1 - t) + b * t


def _polygon(shape: str, cx: float, cy: float, radius: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        points = [(math.cos(k * math.pi / 2), math.sin(k * math.pi / 2)) for k in range(4)]
    elif shape == "triangle":
        points = [(math.cos(k * 2 * math.pi / 3), math.sin(k * 2 * math.pi / 3)) for k in range(3)]
    elif shape == "hexagon":
        points = [(math.cos(k * math.pi / 3), math.sin(k * math.pi / 3)) for k in range(6)]
    elif shape == "star":
        points = []
        for k in range(10):
            r = 1.0 if k % 2 == 0 else 0.42
            points.append((r * math.cos(k * math.pi / 5), r * math.sin(k * math.pi / 5)))
    elif shape == "cross":
        w = 0.34
        points = [(w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w), (-w, -1), (w, -1), (w, -w),
                  (1, -w), (1, w)]
    else:
        raise ValueError(f"no polygon for shape {shape!r}")
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    return [(cx + radius * (x * cos_a - y * sin_a), cy + radius * (x * sin_a + y * cos_a)) for x, y in points]


# Shapes look smaller or larger than a circle of the same circumradius; these even them out.
_RADIUS_SCALE = {"circle": 0.9, "square": 1.0, "triangle": 1.15, "star": 1.1, "cross": 1.0, "hexagon": 0.95}


def render(rng: np.random.Generator, colour: str, shape: str, size: int = 64) -> tuple[Image.Image, Drawing]:
    """Draws one ``colour`` ``shape`` on a random background, as an RGB image of ``size`` pixels."""
    if colour not in _COLOUR_VARIANTS or shape not in _RADIUS_SCALE:
        raise ValueError(f"unknown class {colour!r} {shape!r}")
    fill = _jitter_colour(rng, colour)
    background_kind = _BACKGROUNDS[rng.integers(len(_BACKGROUNDS))]
    canvas = _background(rng, background_kind, size, fill)

    relative_radius = rng.uniform(0.2, 0.42)
    size_word = "small" if relative_radius < 0.26 else "large" if relative_radius > 0.35 else "medium"
    radius = relative_radius * size * _RADIUS_SCALE[shape]
    margin = relative_radius * size * 0.85
    cx, cy = rng.uniform(margin, size - margin, size=2)
    angle = rng.uniform(0, 2 * math.pi)

    # Draw the mask at a higher resolution and box-filter it down: anti-aliased, varied edges.
    scale = int(rng.choice([1, 2, 4]))
    mask = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "circle":
        r = radius * scale
        draw.ellipse([cx * scale - r, cy * scale - r, cx * scale + r, cy * scale + r], fill=255)
    else:
        draw.polygon([(x * scale, y * scale) for x, y in _polygon(shape, cx, cy, radius, angle)], fill=255)
    if scale > 1:
        mask = mask.resize((size, size), Image.BOX)
    alpha = (np.asarray(mask, dtype=np.float32) / 255)[..., None]
    shading = 1 + rng.uniform(-0.08, 0.08) * (np.linspace(-1, 1, size, dtype=np.float32)[None, :, None])
    pixels = canvas * (1 - alpha) + np.clip(fill * shading, 0, 255) * alpha

    noise = rng.uniform(0, 10)
    if noise > 2:
        pixels = pixels + rng.normal(0, noise, size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    blur = rng.uniform(0, 1.0)
    if blur > 0.5:
        image = image.filter(ImageFilter.GaussianBlur(radius=(blur - 0.5) * size / 64))
    return image, Drawing(colour, shape, size_word, background_kind)


_CAPTION_TEMPLATES: tuple[str, ...] = (
    "{label}",
    "a {label}",
    "a {label}.",
    "a {size} {label}",
    "a {label} on a {background} background",
    "a {size} {label} on a {background} background",
    "a picture of a {label}",
    "a photo of a {label}.",
    "a drawing of a {label}.",
    "an image of a {label}",
    "the {label}",
    "a {label} shape",
)


def caption(
    rng: np.random.Generator, drawing: Drawing, extra_templates: Sequence[Callable[[str], str]] = ()
) -> str:
    """One caption for ``drawing``, from a template chosen at random.

    ``extra_templates`` (such as CLIP's ImageNet prompt templates: functions of the class name) are
    drawn a third of the time, so prompt ensembles at query time use words the model has seen.
    """
    if extra_templates and rng.uniform() < 1 / 3:
        return extra_templates[rng.integers(len(extra_templates))](drawing.label)
    template = _CAPTION_TEMPLATES[rng.integers(len(_CAPTION_TEMPLATES))]
    size = drawing.size if drawing.size != "medium" else "mid-sized"
    return template.format(label=drawing.label, size=size, background=drawing.background)


def sample_classes(
    rng: np.random.Generator, count: int, classes: Sequence[str] = SEEN_CLASSES
) -> list[tuple[str, str]]:
    """``count`` (colour, shape) pairs drawn uniformly from ``classes`` ("colour shape" strings)."""
    picks = rng.integers(len(classes), size=count)
    return [tuple(classes[i].split(" ", 1)) for i in picks]  # type: ignore[misc]


def write_labelled_folder(
    root: Path,
    per_class: int,
    classes: Sequence[str] = ALL_CLASSES,
    seed: int = 0,
    size: int = 64,
    image_format: str = "png",
) -> list[tuple[Path, str]]:
    """Renders ``per_class`` images of each class into ``root/<colour_shape>/``; returns (path, label)."""
    rng = np.random.default_rng(seed)
    written: list[tuple[Path, str]] = []
    for label in classes:
        colour, shape = label.split(" ", 1)
        folder = root / label.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image, _ = render(rng, colour, shape, size)
            path = folder / f"{colour}_{shape}_{i:04d}.{image_format}"
            image.save(path)
            written.append((path, label))
    return written


def iter_drawings(seed: int, count: int, classes: Sequence[str], size: int = 64) -> Iterator[tuple[Image.Image, Drawing]]:
    """A reproducible stream of ``count`` drawings of classes picked uniformly from ``classes``."""
    rng = np.random.default_rng(seed)
    for colour, shape in sample_classes(rng, count, classes):
        yield render(rng, colour, shape, size)
