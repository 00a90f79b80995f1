"""CPU inference of open_clip models with OpenVINO, converted once and cached as OpenVINO IR.

Two halves:

* :func:`convert` (needs torch and the loaded open_clip model; run once per model) exports the image tower
  ``encode_image(x, normalize=True)`` and the text tower ``encode_text(tokens, normalize=True)`` with
  ``torch.export`` and a dynamic batch dimension, converts them with ``openvino.convert_model`` and saves
  them as IR files in a folder of the caller's cache directory, keyed by a model identity string and the
  OpenVINO version.
* :class:`OpenVinoTowers` (needs only ``openvino`` and numpy) loads that folder, compiles each tower on first
  use with OpenVINO's own compiled-model cache, and embeds numpy batches.

Layout of ``cache_dir``::

    <slug>-<key>/image.xml, image.bin, text.xml, text.bin, meta.json   (one folder per model identity)
    compiled/                                                           (OpenVINO's CACHE_DIR blobs)
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

import numpy as np

from ..errors import OpenVinoUnavailable
from ..fileio import atomic_folder, publish
from .embedder import PRECISIONS

if TYPE_CHECKING:  # only for annotations: importing torch here would defeat the module's purpose
    import openvino
    import torch

# Bumped whenever what convert() writes changes meaning, so that old folders are not reused.
IR_FORMAT_VERSION = 2  # 2: the numpy text weights (numpy_text) beside the IR
IMAGE_IR = "image.xml"
# Written by openvino_quantize.quantize_image_tower, optional.
IMAGE_INT8_IR = "image-int8.xml"
TEXT_IR = "text.xml"
META_FILE = "meta.json"
COMPILED_CACHE = "compiled"


@functools.lru_cache(maxsize=1)
def _openvino_version() -> str:
    """The installed OpenVINO release, "2026.4.1" (IR written by one release reads in the same release): a
    query answered without OpenVINO never imports it. Read from the name of the package's one
    ``openvino-VERSION.dist-info`` folder beside it (a few file-system reads, where parsing the package's
    metadata costs ~18 ms of a query's start); else from the metadata, else from the module."""
    import importlib.util

    spec = importlib.util.find_spec("openvino")
    for location in (spec.submodule_search_locations or []) if spec else []:
        found = [m.group(1) for info in Path(location).parent.glob("openvino-*.dist-info")
                 if (m := re.fullmatch(r"openvino-(\d[^-]*)\.dist-info", info.name))]
        if len(found) == 1:
            return found[0]
    from importlib import metadata

    try:
        return metadata.version("openvino").split("-")[0]
    except metadata.PackageNotFoundError:
        import openvino  # installed some other way: ask the module ("2026.4.1-22982-..." -> "2026.4.1")

        return openvino.__version__.split("-")[0]


def model_folder(cache_dir: Union[str, Path], identity: str) -> Path:
    """The folder holding the IR of the model named by ``identity`` for the installed OpenVINO."""
    key = hashlib.sha256(
        json.dumps([identity, _openvino_version(), IR_FORMAT_VERSION]).encode("utf-8")
    ).hexdigest()[:16]
    # A readable prefix helps whoever looks in the cache; the hash makes it unique.
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", identity).strip("-")[:48] or "model"
    return Path(cache_dir) / f"{slug}-{key}"


def is_converted(cache_dir: Union[str, Path], identity: str) -> bool:
    """Whether :func:`convert` has completed for this identity and OpenVINO version."""
    folder = model_folder(cache_dir, identity)
    return all((folder / name).is_file() for name in (IMAGE_IR, TEXT_IR, META_FILE))


def _tower_modules(model: "torch.nn.Module") -> tuple["torch.nn.Module", "torch.nn.Module"]:
    import torch

    class ImageTower(torch.nn.Module):
        """``encode_image(x, normalize=True)`` as a module of its own, for export."""

        def __init__(self, clip: torch.nn.Module) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.clip.encode_image(images, normalize=True)

    class TextTower(torch.nn.Module):
        """``encode_text(tokens, normalize=True)`` as a module of its own, for export."""

        def __init__(self, clip: torch.nn.Module) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.clip.encode_text(tokens, normalize=True)

    return ImageTower(model).eval(), TextTower(model).eval()


def _to_openvino(module: "torch.nn.Module", example: "torch.Tensor") -> tuple["openvino.Model", str]:
    """Converts one tower, trying ``torch.export`` first and TorchScript tracing as the fallback."""
    import openvino
    import torch

    try:
        # A batch of 2 as the example: with 1, export would specialise the batch dimension to a constant.
        batch = torch.export.Dim("batch", min=1, max=65536)
        exported = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        return openvino.convert_model(exported), "torch.export"
    except Exception as export_error:  # noqa: BLE001 - any export failure falls back to tracing
        try:
            return openvino.convert_model(module, example_input=example), "torchscript"
        except Exception as trace_error:
            raise RuntimeError(
                f"cannot convert {type(module).__name__}: torch.export failed ({export_error}); "
                f"tracing failed ({trace_error})"
            ) from trace_error


def convert(
    model: "torch.nn.Module",
    cache_dir: Union[str, Path],
    identity: str,
    image_size: Union[int, tuple[int, int]],
    context_length: int,
    *,
    extra_meta: Optional[Mapping[str, Any]] = None,
    compress_to_fp16: bool = False,
) -> Path:
    """Converts an open_clip model's two towers to OpenVINO IR under ``cache_dir``; needs torch. Returns
    the folder written (``model_folder``).

    ``image_size`` is the model input's side (or ``(height, width)``), ``context_length`` its token count;
    ``extra_meta`` (JSON-serialisable, e.g. the preprocessing config and tokenizer settings) is stored in
    ``meta.json`` for the torch-free side to read back. Weights stay float32 unless ``compress_to_fp16``:
    fp16 storage halves the files but costs agreement with torch.
    The folder is written under a temporary name and renamed at the end (``fileio.atomic_folder``), so a
    crash or a concurrent conversion never leaves a half-written folder that would look complete.
    """
    import openvino
    import torch

    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    folder = model_folder(cache_dir, identity)
    folder.parent.mkdir(parents=True, exist_ok=True)  # a cache that cannot be written fails before the work
    model = model.eval()
    image_tower, text_tower = _tower_modules(model)
    with torch.no_grad():
        image_model, image_route = _to_openvino(image_tower, torch.zeros(2, 3, height, width))
        # Token id 1 everywhere but an end-of-text-like maximum: the text tower pools at argmax(tokens).
        tokens = torch.ones(2, context_length, dtype=torch.long)
        tokens[:, -1] = 2
        text_model, text_route = _to_openvino(text_tower, tokens)
        with torch.inference_mode():
            embed_dim = int(model.encode_text(tokens[:1], normalize=True).shape[-1])

    # Only the batch is dynamic: static spatial / token dimensions let OpenVINO plan its kernels once.
    image_model.reshape({image_model.input(0): openvino.PartialShape([-1, 3, height, width])})
    text_model.reshape({text_model.input(0): openvino.PartialShape([-1, context_length])})

    try:
        with atomic_folder(folder) as staging:
            openvino.save_model(image_model, staging / IMAGE_IR, compress_to_fp16=compress_to_fp16)
            openvino.save_model(text_model, staging / TEXT_IR, compress_to_fp16=compress_to_fp16)
            meta = {
                "identity": identity,
                "openvino_version": _openvino_version(),
                "format_version": IR_FORMAT_VERSION,
                "image_size": [height, width],
                "context_length": int(context_length),
                "embed_dim": embed_dim,
                "weights": "fp16" if compress_to_fp16 else "fp32",
                "routes": {"image": image_route, "text": text_route},
                "extra": dict(extra_meta or {}),
            }
            (staging / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    except OSError:
        # Another process finished the same conversion first; its result is as good as ours.
        if not is_converted(cache_dir, identity):
            raise
    return folder


def supports_bf16(core: Optional["openvino.Core"] = None, device: str = "CPU") -> bool:
    """Whether the device computes natively in bfloat16 (e.g. AVX512_BF16 or AMX on x86)."""
    import openvino

    core = core or openvino.Core()
    try:
        return "BF16" in core.get_property(device, "OPTIMIZATION_CAPABILITIES")
    except RuntimeError:
        return False


def resolve_precision(precision: str, core: Optional["openvino.Core"] = None, device: str = "CPU") -> str:
    """``auto`` becomes ``bf16`` where the device supports it and ``fp32`` elsewhere; ``bf16`` asked for on a
    device without it is refused rather than silently emulated (emulation is slower than fp32). ``int8``
    (an image tower quantised apart, ``int8_image``) computes the rest as ``auto`` does."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "fp32":
        return "fp32"
    native = supports_bf16(core, device)
    if precision == "bf16" and not native:
        raise ValueError(f"{device} has no native bfloat16 support; use precision 'fp32' or 'auto'")
    return "bf16" if native else "fp32"


def _l2_normalise(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.maximum(norms, np.float32(1e-12))


def _with_pixel_input(model: "openvino.Model", mean: tuple[float, ...], std: tuple[float, ...]) -> "openvino.Model":
    """The image tower taking pixels: uint8 ``N×H×W×3`` in, the conversion to float, the scaling to
    ``[0, 1]``, ``mean`` and ``std`` and the change of layout inside the graph (OpenVINO's preprocessing
    API), in the order ``preprocess.normalise`` computes them. A decode worker then sends a quarter of
    the bytes, and the model's process spends nothing on normalising."""
    from openvino import Layout, Type
    from openvino.preprocess import PrePostProcessor

    ppp = PrePostProcessor(model)
    given = ppp.input(0)
    given.tensor().set_element_type(Type.u8).set_layout(Layout("NHWC"))
    given.model().set_layout(Layout("NCHW"))
    given.preprocess().convert_element_type(Type.f32).scale(255.0).mean(list(mean)).scale(list(std))
    return ppp.build()


class _Tower:
    """One compiled tower, compiled on first use. With ``pixels`` (the model's mean and std), an image
    tower takes uint8 pixels (``_with_pixel_input``) and is the bulk path of ingestion: compiled for
    throughput (one stream per group of cores, one thread each) and run with one request per stream at
    once, each on its share of the batch. A single-threaded stream does not stall when a decode worker
    takes its core for a moment, as the threads of one wide request do at every barrier (measured in
    ``scripts/bench_ingest.py``). Otherwise one request with every thread (latency): what a query wants."""

    def __init__(self, owner: "OpenVinoTowers", path: Path,
                 pixels: Optional[tuple[tuple[float, ...], tuple[float, ...]]] = None) -> None:
        self._owner = owner
        self._path = path
        self._pixels = pixels
        self._lock = threading.Lock()
        self._requests: list[Any] = []
        self.compile_seconds: Optional[float] = None

    def _ensure(self) -> list[Any]:
        if not self._requests:
            started = time.perf_counter()
            core, config = self._owner.core, dict(self._owner.config)
            if self._pixels is None:
                compiled = core.compile_model(str(self._path), self._owner.device, config)
            else:
                config["PERFORMANCE_HINT"] = "THROUGHPUT"
                compiled = core.compile_model(self._pixel_model(), self._owner.device, config)
            count = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")) if self._pixels else 1
            self._requests = [compiled.create_infer_request() for _ in range(max(1, count))]
            self.compile_seconds = time.perf_counter() - started
        return self._requests

    def _pixel_model(self) -> Union[str, "openvino.Model"]:
        """The pixel-input graph, as an IR file of its own beside the tower it wraps (written once): a
        model compiled from a path is found in OpenVINO's compiled-model cache by its file, where one
        built in memory is hashed weight by weight first (~0.6 s for ViT-B-32 on two cores)."""
        import openvino

        digest = hashlib.sha256(json.dumps(self._pixels).encode("utf-8")).hexdigest()[:8]
        path = self._path.with_name(f"{self._path.stem}-pixels-{digest}.xml")
        if path.is_file() and path.with_suffix(".bin").is_file():
            return str(path)
        model = _with_pixel_input(self._owner.core.read_model(str(self._path)), *self._pixels)
        try:
            with tempfile.TemporaryDirectory(prefix=".pixels.tmp-", dir=path.parent) as scratch:
                staging = Path(scratch) / path.name
                openvino.save_model(model, staging, compress_to_fp16=False)  # the weights stay as they were
                for written in (staging.with_suffix(".bin"), staging):  # weights first: never an xml alone
                    publish(written, path.with_name(written.name))
        except OSError:
            return model  # a read-only cache: compiled from memory, every time
        return str(path)

    @property
    def streams(self) -> int:
        """How many requests run at once (compiles the tower)."""
        with self._lock:
            return len(self._ensure())

    def compile(self) -> None:
        with self._lock:
            self._ensure()

    def run(self, batch: np.ndarray) -> np.ndarray:
        # Requests are used by one call at a time: an InferRequest must not run twice at once.
        with self._lock:
            requests = self._ensure()
            if len(requests) == 1 or len(batch) < 2:
                requests[0].infer({0: batch})
                return np.array(requests[0].get_output_tensor(0).data, dtype=np.float32, copy=True)
            parts = np.array_split(batch, min(len(requests), len(batch)))
            for request, part in zip(requests, parts):
                request.start_async({0: part})
            for request in requests[:len(parts)]:
                request.wait()
            return np.concatenate([np.array(r.get_output_tensor(0).data, dtype=np.float32, copy=True)
                                   for r in requests[:len(parts)]])


class OpenVinoTowers:
    """A converted open_clip model ready to embed on CPU with OpenVINO; needs no torch.

    ``cache_dir`` and ``identity`` name the folder :func:`convert` wrote. ``precision`` is ``auto`` (bf16
    where the CPU has it, else fp32), ``fp32`` or ``bf16``; ``threads`` caps OpenVINO's inference threads
    (``None``: OpenVINO's choice). ``int8_image`` uses the int8-quantised image tower written by
    ``openvino_quantize.quantize_image_tower`` (its float parts still follow ``precision``), from ``int8_folder`` when given (an index keeps the tower
    calibrated on its own collection) or else the model's folder. ``normalisation``
    (the model's mean and std) lets ``embed_images`` take uint8 pixels as well (normalised in the graph).
    Each tower compiles on first use, so a text-only query never pays for the image tower, and the pixel
    tower only when pixels come; compiled blobs are cached in ``cache_dir/compiled`` to make later compiles fast.
    Instances may be shared between threads (calls on one tower are serialised).
    """

    def __init__(
        self,
        cache_dir: Union[str, Path],
        identity: str,
        precision: str = "auto",
        threads: Optional[int] = None,
        device: str = "CPU",
        int8_image: bool = False,
        normalisation: Optional[tuple[tuple[float, ...], tuple[float, ...]]] = None,
        int8_folder: Optional[Path] = None,
    ) -> None:
        import openvino

        self.cache_dir = Path(cache_dir)
        self.identity = identity
        self.folder = model_folder(cache_dir, identity)
        meta_path = self.folder / META_FILE
        if not is_converted(cache_dir, identity):
            raise OpenVinoUnavailable(f"no OpenVINO model for {identity!r} in {self.cache_dir}; run convert() first")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        if self.meta.get("identity") != identity:
            raise OpenVinoUnavailable(f"{self.folder} holds {self.meta.get('identity')!r}, not {identity!r}")
        self.device = device
        self.core = openvino.Core()
        self.precision = resolve_precision(precision, self.core, device)
        self.threads = threads
        compiled_dir = self.cache_dir / COMPILED_CACHE
        compiled_dir.mkdir(parents=True, exist_ok=True)
        self.config: dict[str, Any] = {
            "CACHE_DIR": str(compiled_dir),
            "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
            # One stream, all threads on each request: ingest sends large batches one after another and a
            # query sends one text, so latency mode suits both.
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            self.config["INFERENCE_NUM_THREADS"] = int(threads)
        int8_path = (int8_folder or self.folder) / IMAGE_INT8_IR
        if int8_image and not int8_path.is_file():
            raise OpenVinoUnavailable(f"no int8 image tower in {int8_path.parent}; run quantize_image_tower() first")
        self.int8_image = int8_image
        image_ir = int8_path if int8_image else self.folder / IMAGE_IR
        self._image = _Tower(self, image_ir)
        self._image_pixels = _Tower(self, image_ir, normalisation) if normalisation is not None else None
        self._text = _Tower(self, self.folder / TEXT_IR)

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.meta["image_size"]
        return int(height), int(width)

    @property
    def context_length(self) -> int:
        return int(self.meta["context_length"])

    @property
    def embed_dim(self) -> int:
        return int(self.meta["embed_dim"])

    @property
    def compile_seconds(self) -> dict[str, Optional[float]]:
        """How long each tower took to compile (``None``: not compiled yet); small when cached."""
        return {"image": self._image.compile_seconds, "text": self._text.compile_seconds}

    def warm_up(self, image: bool = True, text: bool = True) -> None:
        """Compiles the towers now rather than on first use."""
        if image:
            (self._image_pixels or self._image).compile()
        if text:
            self._text.compile()

    def embed_images(self, batch: np.ndarray) -> np.ndarray:
        """Embeds preprocessed images (``N×3×H×W`` float32), or pixels (``N×H×W×3`` uint8, when the towers
        know the ``normalisation``); returns L2-normalised float32 rows."""
        if batch.dtype == np.uint8 and self._image_pixels is not None:
            expected = (*self.image_size, 3)
            if batch.ndim != 4 or batch.shape[1:] != expected:
                raise ValueError(f"expected pixels of shape N×{'×'.join(map(str, expected))}, got {batch.shape}")
            if batch.shape[0] == 0:
                return np.zeros((0, self.embed_dim), dtype=np.float32)
            return _l2_normalise(self._image_pixels.run(np.ascontiguousarray(batch)))
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        expected = (3, *self.image_size)
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(f"expected images of shape N×{'×'.join(map(str, expected))}, got {batch.shape}")
        if batch.shape[0] == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        # The towers normalise already; again here because bf16 arithmetic leaves norms slightly off 1.
        return _l2_normalise(self._image.run(batch))

    def embed_texts(self, tokens: np.ndarray) -> np.ndarray:
        """Embeds token ids (``N×context_length`` integers); returns L2-normalised float32 rows."""
        tokens = np.ascontiguousarray(tokens, dtype=np.int64)
        if tokens.ndim != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(f"expected token ids of shape N×{self.context_length}, got {tokens.shape}")
        if tokens.shape[0] == 0:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return _l2_normalise(self._text.run(tokens))
