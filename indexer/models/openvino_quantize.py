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


def quantize_apart(cache_dir: Union[str, Path], identity: str, samples: np.ndarray, destination: Path) -> float:
    """``quantize_image_tower`` on ``samples`` (preprocessed float32 ``N×3×H×W``) in a process of its own,
    so that NNCF's working memory (about 2 GB for a ViT-B-32 image tower, whatever the number of
    pictures) is given back when it ends instead of staying in the ingesting process, and nothing NNCF
    prints can reach this process's standard output. Returns the seconds; raises ``ModelError`` with
    the child's last words when it fails."""
    import subprocess
    import sys

    from ..errors import ModelError

    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".calibration-", dir=destination) as scratch:
        path = Path(scratch) / "samples.npy"
        np.save(path, np.ascontiguousarray(samples, dtype=np.float32))
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", __name__, str(cache_dir), identity, str(path), str(destination)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(nothing)"])[-1]
            raise ModelError(f"int8 calibration failed (exit {done.returncode}): {last[:300]}")
        return time.perf_counter() - started


def _main(argv: list[str]) -> None:
    cache_dir, identity, samples, destination = argv
    pictures = np.load(samples, mmap_mode="r")
    quantize_image_tower(cache_dir, identity, [pictures], subset_size=len(pictures), destination=Path(destination))


if __name__ == "__main__":
    import os
    import sys

    os.dup2(2, 1)  # whatever NNCF or its progress bars print goes to standard error
    _main(sys.argv[1:])
