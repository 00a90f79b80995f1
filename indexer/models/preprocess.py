"""Torch-free image preprocessing that reproduces open_clip's evaluation transform.

open_clip builds its eval transform from a model's ``preprocess_cfg`` (size, mean, std, interpolation,
resize_mode, fill_color) out of torchvision transforms applied to PIL images. This module performs the same
steps with PIL and numpy only, in the same order and with the same rounding rules, so that its output equals
open_clip's tensor bit for bit (checked by the tests) while ingest avoids importing torch.

The steps, per ``resize_mode``:

* ``shortest``: resize the short side to the target (square target: long side ``int(size * long / short)``;
  non-square target: both sides ``round(side / min_ratio)``), then centre crop.
* ``longest``: resize so the long side fits (``round(side / max_ratio)``), then pad with ``fill_color``
  and centre crop to the exact target.
* ``squash``: resize straight to the target, ignoring the aspect ratio.

Then: convert to RGB, scale to ``[0, 1]``, subtract ``mean`` and divide by ``std``, all in float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence, Union

import numpy as np

if TYPE_CHECKING:  # Pillow is imported where a picture is resized: a text query never loads it
    from PIL import Image

# open_clip's defaults (OPENAI_DATASET_MEAN / _STD), used when a model's config names none.
OPENAI_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

_RESAMPLE = ("bicubic", "bilinear")  # Pillow's Image.Resampling, by name
_RESIZE_MODES = ("shortest", "longest", "squash")

SizeLike = Union[int, Sequence[int]]


def _as_hw(size: SizeLike) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    values = tuple(int(v) for v in size)
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2:
        raise ValueError(f"image size must be an int or (height, width), not {size!r}")
    return values[0], values[1]


def _as_triple(value: Union[float, Sequence[float]]) -> tuple[float, float, float]:
    if isinstance(value, (int, float)):
        return (float(value),) * 3
    values = tuple(float(v) for v in value)
    if len(values) != 3:
        raise ValueError(f"mean and std need one value per RGB channel, not {value!r}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class PreprocessConfig:
    """How to turn a picture into a model input: open_clip's ``preprocess_cfg`` in typed form.

    ``size`` is ``(height, width)``; an int given to the constructor means a square.
    """

    size: tuple[int, int] = (224, 224)
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"
    resize_mode: str = "shortest"
    fill_color: int = 0

    def __post_init__(self) -> None:
        # Normalise the convenient spellings (int size, list mean) so that equal configs compare equal.
        object.__setattr__(self, "size", _as_hw(self.size))
        object.__setattr__(self, "mean", _as_triple(self.mean))
        object.__setattr__(self, "std", _as_triple(self.std))
        if self.interpolation == "random":
            # open_clip treats 'random' (a training option) as bicubic at eval time.
            object.__setattr__(self, "interpolation", "bicubic")
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be bicubic or bilinear, not {self.interpolation!r}")
        if self.resize_mode not in _RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {', '.join(_RESIZE_MODES)}, not {self.resize_mode!r}")
        if any(s <= 0 for s in self.size):
            raise ValueError(f"image size must be positive, not {self.size!r}")

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> "PreprocessConfig":
        """Builds a config from an open_clip ``preprocess_cfg`` dict; missing or ``None`` keys take
        open_clip's defaults, unknown keys (``mode``) are ignored."""
        size = cfg.get("size") or 224
        return cls(
            size=_as_hw(size),
            mean=_as_triple(cfg.get("mean") or OPENAI_MEAN),
            std=_as_triple(cfg.get("std") or OPENAI_STD),
            interpolation=cfg.get("interpolation") or "bicubic",
            resize_mode=cfg.get("resize_mode") or "shortest",
            fill_color=int(cfg.get("fill_color") or 0),
        )

    @classmethod
    def from_open_clip(cls, model: Any) -> "PreprocessConfig":
        """Reads the config open_clip attached to a model (``model.visual.preprocess_cfg``), falling back
        to the legacy ``image_size`` / ``image_mean`` / ``image_std`` attributes as open_clip does."""
        visual = getattr(model, "visual", model)
        cfg = dict(getattr(visual, "preprocess_cfg", None) or {})
        if not cfg:
            for key, attr in (("size", "image_size"), ("mean", "image_mean"), ("std", "image_std")):
                value = getattr(visual, attr, None)
                if value is not None:
                    cfg[key] = value
        return cls.from_dict(cfg)

    @property
    def crops_centre(self) -> bool:
        """True when only a centred part is kept: a long strip can be cut before resizing."""
        return self.resize_mode == "shortest"

    @property
    def side(self) -> int:
        """The larger side of the model input: what a decoder must keep at least."""
        return max(self.size)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form, e.g. to store beside a converted model."""
        return {
            "size": list(self.size),
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": self.resize_mode,
            "fill_color": self.fill_color,
        }


def _resized_size(width: int, height: int, cfg: PreprocessConfig) -> tuple[int, int]:
    """The (width, height) the picture is resized to before cropping or padding."""
    target_h, target_w = cfg.size
    if cfg.resize_mode == "squash":
        return target_w, target_h
    if cfg.resize_mode == "shortest" and target_h == target_w:
        # torchvision's Resize(int): the short side becomes the target, the long side is truncated (int()).
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(target_h * long / short)
        return (target_h, new_long) if width <= height else (new_long, target_h)
    # open_clip's ResizeKeepRatio: one ratio for both sides, sizes rounded with Python's round().
    ratio_h, ratio_w = height / target_h, width / target_w
    ratio = max(ratio_h, ratio_w) if cfg.resize_mode == "longest" else min(ratio_h, ratio_w)
    return round(width / ratio), round(height / ratio)


def _resample(cfg: PreprocessConfig) -> "Image.Resampling":
    from PIL import Image

    if cfg.resize_mode == "shortest" and cfg.size[0] != cfg.size[1]:
        # open_clip builds ResizeKeepRatio without passing the interpolation here, so it is always bicubic.
        return Image.Resampling.BICUBIC
    return Image.Resampling[cfg.interpolation.upper()]


def _centre_crop_or_pad(pixels: np.ndarray, height: int, width: int, fill: int) -> np.ndarray:
    """Centre-crops an ``H×W×C`` array to ``height×width``, first padding with ``fill`` where it is smaller.

    Padding puts the odd pixel on the right / bottom and cropping rounds the offset half to even, as
    torchvision's ``center_crop`` does.
    """
    src_h, src_w = pixels.shape[:2]
    if height > src_h or width > src_w:
        pad_h, pad_w = max(height - src_h, 0), max(width - src_w, 0)
        padded = np.full((src_h + pad_h, src_w + pad_w, pixels.shape[2]), fill, dtype=pixels.dtype)
        top, left = pad_h // 2, pad_w // 2
        padded[top:top + src_h, left:left + src_w] = pixels
        pixels = padded
        src_h, src_w = pixels.shape[:2]
    top = int(round((src_h - height) / 2.0))
    left = int(round((src_w - width) / 2.0))
    return pixels[top:top + height, left:left + width]


def crop_pixels(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """The geometric half of the transform: one PIL picture resized, converted to RGB and centre-cropped
    (or padded) to the model input, as an ``H×W×3`` uint8 array, not normalised yet.

    This is what a decode worker sends to the model's process during ingestion: a quarter of the bytes
    of the float input, and the normalisation (``normalise``) runs where the batch is embedded, inside
    the OpenVINO graph or on the torch device. Any PIL mode is accepted; as in open_clip, the conversion
    to RGB happens after resizing, so an RGBA picture should be flattened by the caller first.
    """
    new_w, new_h = _resized_size(image.width, image.height, cfg)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), _resample(cfg))
    if image.mode != "RGB":
        # open_clip pads ('longest') before converting, with the fill in the picture's own mode; converting
        # first is equivalent for grey and colour modes (not for palette pictures, which callers convert).
        image = image.convert("RGB")
    pixels = np.asarray(image, dtype=np.uint8)
    return np.ascontiguousarray(_centre_crop_or_pad(pixels, cfg.size[0], cfg.size[1], cfg.fill_color))


def normalise(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """``crop_pixels`` output (``H×W×3`` or a batch ``N×H×W×3``, uint8) as model input: ``3×H×W`` (or
    ``N×3×H×W``) float32, scaled to ``[0, 1]``, minus ``mean``, divided by ``std``, in float32 and in the
    same order as ToTensor then Normalize, so the result equals open_clip's tensor."""
    single = pixels.ndim == 3
    batch = pixels[None] if single else pixels
    chw = batch.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    mean = np.asarray(cfg.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(cfg.std, dtype=np.float32).reshape(1, 3, 1, 1)
    out = np.ascontiguousarray((chw - mean) / std, dtype=np.float32)
    return out[0] if single else out


def as_model_input(batch: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """A batch an embedder was given, as normalised float32 ``N×3×H×W``: pixels (uint8 ``N×H×W×3``) are
    normalised, float input is taken as already preprocessed."""
    if batch.dtype == np.uint8:
        return normalise(batch, cfg)
    return np.ascontiguousarray(batch, dtype=np.float32)


def preprocess(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Turns one PIL picture into a model input: a ``3×H×W`` float32 array, normalised
    (``normalise(crop_pixels(image))``)."""
    return normalise(crop_pixels(image, cfg), cfg)


class Preprocessor:
    """``preprocess`` bound to one config: a picklable callable that decode workers receive.
    ``pixels`` is its geometric half alone (``crop_pixels``), what ingestion's workers send."""

    def __init__(self, cfg: PreprocessConfig) -> None:
        self.cfg = cfg

    def __call__(self, image: Image.Image) -> np.ndarray:
        return preprocess(image, self.cfg)

    def pixels(self, image: Image.Image) -> np.ndarray:
        return crop_pixels(image, self.cfg)


def preprocess_batch(images: Sequence[Image.Image], cfg: PreprocessConfig) -> np.ndarray:
    """Preprocesses several pictures into one ``N×3×H×W`` float32 batch."""
    height, width = cfg.size
    batch = np.empty((len(images), 3, height, width), dtype=np.float32)
    for i, image in enumerate(images):
        batch[i] = preprocess(image, cfg)
    return batch
