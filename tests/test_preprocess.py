"""indexer.models.preprocess against open_clip's own eval transform, pixel for pixel."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from indexer.models import bundled
from indexer.models.preprocess import PreprocessConfig, preprocess, preprocess_batch

open_clip_transform = pytest.importorskip("open_clip.transform")

# (width, height): odd, thin, exact-size, off-by-one and large pictures.
SIZES = [
    (17, 300), (300, 17), (640, 480), (480, 640), (224, 224), (64, 64), (1, 1), (2, 3), (225, 224),
    (223, 224), (100, 333), (333, 100), (999, 1000), (63, 65), (257, 256), (1280, 720),
]
CONFIGS: list[dict[str, Any]] = [
    dict(size=224),
    dict(size=64),
    dict(size=256, interpolation="bilinear"),
    dict(size=224, resize_mode="longest"),
    dict(size=224, resize_mode="longest", fill_color=128),
    dict(size=224, resize_mode="squash"),
    dict(size=224, resize_mode="squash", interpolation="bilinear"),
    dict(size=(224, 160)),
    dict(size=(160, 224), resize_mode="longest"),
    dict(size=384, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
]


def _picture(width: int, height: int, mode: str, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    # Smooth gradients plus noise: resampling errors show on both edges and flat areas.
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / max(width - 1, 1), yy * 255 / max(height - 1, 1), (xx + yy) % 256], axis=-1)
    noisy = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    picture = Image.fromarray(noisy, "RGB")
    if mode == "L":
        return picture.convert("L")
    if mode == "RGBA->RGB":
        rgba = picture.convert("RGBA")
        rgba.putalpha(Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)))
        return rgba.convert("RGB")  # what the caller is expected to do with transparency
    return picture


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_matches_open_clip_exactly(cfg: dict[str, Any]) -> None:
    reference = open_clip_transform.image_transform_v2(open_clip_transform.PreprocessCfg(**cfg), is_train=False)
    ours = PreprocessConfig.from_dict(cfg)
    worst = 0.0
    for seed, (width, height) in enumerate(SIZES):
        for mode in ("RGB", "L", "RGBA->RGB"):
            picture = _picture(width, height, mode, seed)
            expected = reference(picture).numpy()
            got = preprocess(picture, ours)
            assert got.dtype == np.float32 and got.shape == expected.shape, (width, height, mode)
            worst = max(worst, float(np.abs(got - expected).max()))
    assert worst == 0.0


def test_config_from_models() -> None:
    import open_clip

    for name in (f"local-dir:{bundled.folder('tiny-shapes')}", "ViT-B-32-256"):
        model, _, transform = open_clip.create_model_and_transforms(name, pretrained=None)
        cfg = PreprocessConfig.from_open_clip(model)
        side = model.visual.image_size
        side = side[0] if isinstance(side, (tuple, list)) else side
        assert cfg.size == (side, side)
        picture = _picture(301, 177, "RGB", 7)
        assert np.array_equal(preprocess(picture, cfg), transform(picture).numpy())


def test_batch_and_validation() -> None:
    cfg = PreprocessConfig(size=32)
    batch = preprocess_batch([_picture(40, 50, "RGB", 1), _picture(50, 40, "L", 2)], cfg)
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == np.float32
    assert PreprocessConfig(size=32) == PreprocessConfig(size=(32, 32))
    with pytest.raises(ValueError):
        PreprocessConfig(resize_mode="crop")
    with pytest.raises(ValueError):
        PreprocessConfig(interpolation="lanczos")
    assert PreprocessConfig(interpolation="random").interpolation == "bicubic"


@pytest.mark.parametrize("cfg", CONFIGS[:4] + CONFIGS[-2:], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_pixels_then_normalise_is_the_whole_transform(cfg: dict[str, Any]) -> None:
    """What ingestion's workers send (uint8 pixels) normalised where it is embedded gives, bit for bit,
    the float input the whole transform gives, one picture or a batch at a time."""
    from indexer.models.preprocess import as_model_input, crop_pixels, normalise

    ours = PreprocessConfig.from_dict(cfg)
    pictures = [_picture(w, h, "RGB", seed) for seed, (w, h) in enumerate(SIZES[:8])]
    pixels = np.stack([crop_pixels(p, ours) for p in pictures])
    assert pixels.dtype == np.uint8 and pixels.shape == (len(pictures), *ours.size, 3)
    expected = np.stack([preprocess(p, ours) for p in pictures])
    assert np.array_equal(normalise(pixels, ours), expected)
    assert np.array_equal(normalise(pixels[0], ours), expected[0])
    assert np.array_equal(as_model_input(pixels, ours), expected)
    assert as_model_input(expected, ours) is not None and np.array_equal(as_model_input(expected, ours), expected)
