"""Optional int8 post-training quantisation of a converted image tower with NNCF.

Reads the float IR that ``openvino_runtime.convert`` wrote, calibrates activation ranges on the caller's
preprocessed images, and writes ``image-int8.xml`` beside it; ``OpenVinoTowers(..., int8_image=True)`` then
uses it. Needs the ``nncf`` package (not torch). Quantisation changes the embeddings: measure agreement
with the float tower on the caller's own pictures before trusting it for search.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from ..errors import OpenVinoUnavailable
from ..fileio import publish
from .openvino_runtime import IMAGE_INT8_IR, IMAGE_IR, is_converted, model_folder


def quantize_image_tower(
    cache_dir: Union[str, Path],
    identity: str,
    calibration_batches: Iterable[np.ndarray],
    subset_size: int = 300,
    fast_bias_correction: bool = True,
    destination: Optional[Path] = None,
) -> float:
    """Quantises the image tower of a converted model to int8; returns the seconds it took.

    ``calibration_batches`` yields preprocessed ``N×3×H×W`` float32 batches (a few hundred pictures
    like those the model will embed); ``subset_size`` caps how many pictures NNCF calibrates on (its
    peak memory grows with it). The int8 tower is written to ``destination`` (default: beside the float
    one, in the model's folder).
    """
    import nncf
    import openvino

    if not is_converted(cache_dir, identity):
        raise OpenVinoUnavailable(f"no OpenVINO model for {identity!r} in {cache_dir}; run convert() first")
    started = time.perf_counter()
    folder = model_folder(cache_dir, identity)
    model = openvino.Core().read_model(folder / IMAGE_IR)
    # One picture per item: NNCF's subset_size counts items, so batches would calibrate on too few pictures.
    samples = [
        np.ascontiguousarray(picture[None], dtype=np.float32) for batch in calibration_batches for picture in batch
    ]
    quantized = nncf.quantize(
        model,
        nncf.Dataset(samples),
        # Transformer mode keeps softmax / layer norm inputs in float: quantising them costs much accuracy.
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=subset_size,
        fast_bias_correction=fast_bias_correction,
    )
    target = Path(destination) if destination is not None else folder
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".int8.tmp-", dir=target) as scratch:
        staging = Path(scratch) / IMAGE_INT8_IR
        openvino.save_model(quantized, staging, compress_to_fp16=False)
        # The pair is published weights first, so a reader never finds an xml without its weights.
        for written in (staging.with_suffix(".bin"), staging):
            publish(written, target / written.name)
    return time.perf_counter() - started
