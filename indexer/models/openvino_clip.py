"""The OpenVINO runtime of the ``Embedder`` protocol: open_clip models on the CPU, without torch.

The first use of a model converts its two towers from torch (``convert_model``: loads the torch model,
exports both towers, checks that the converted towers and the torch-free tokenizer agree with torch,
and caches the result in the user's cache folder, keyed by the model identity and the OpenVINO
version). Every later use imports only ``openvino``, numpy, Pillow and the tokenizer: a search with a new
text, a classification with new labels, and ingestion never import torch.

Precision: ``auto`` computes in bf16 where the CPU has the units (AVX512-BF16, AMX), fp32 elsewhere;
``fp32`` and ``bf16`` force one; ``int8`` quantises the image tower with NNCF, calibrated on pictures of
the collection being ingested (``calibrate``), with its agreement to the float tower measured.
"""

from __future__ import annotations

import json
import logging
import pickle
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..config import cache_dir
from ..errors import ModelError, OpenVinoUnavailable, RuntimeUnsupported
from ..fileio import atomic_write
from . import bundled, numpy_text
from .embedder import ClipEmbedder, FeatureMatrix, ImageBatch
from .numpy_text import NUMPY_TEXT_ROWS, NumpyTextTower
from .openvino_runtime import (IMAGE_INT8_IR, META_FILE, PRECISIONS, OpenVinoTowers, convert, is_converted,
                               model_folder)
from .preprocess import PreprocessConfig, Preprocessor, as_model_input
from .spec import ModelSpec
from .tokenizer import ClipTokenizer, default_bpe_path

log = logging.getLogger(__name__)

AGREEMENT = 0.999  # the least cosine between a converted embedding and torch fp32's, per embedding
NUMPY_AGREEMENT = 0.99999  # the same for the numpy text tower: both compute in float32
NUMPY_CALLS_BEFORE_COMPILE = 3  # questions answered in numpy before a long-lived process compiles the tower
PROBE_TEXTS = ("a photo of a dog", "a red star on a blue background", "", "Ünïcode — émoji 🦊 and CJK 漢字",
               "a very long caption " * 12)
TOKENIZER_TABLES = "tokenizer-v2.pickle"  # v2: merge ranks keyed by "first second" strings


def openvino_cache() -> Path:
    """Where converted models are kept: ``openvino/`` in indexer's cache folder (``config.cache_dir``)."""
    return cache_dir() / "openvino"


def identity_key(spec: ModelSpec) -> str:
    """The converted model's name in the cache: the identity a catalog records (weights sha256 included)."""
    return json.dumps(spec.identity(), sort_keys=True)


def _model_config(spec: ModelSpec) -> dict[str, Any]:
    """The open_clip config of ``spec`` (its ``model_cfg``), read from the folder or open_clip's registry."""
    if spec.folder is not None:
        config = json.loads((spec.folder / "open_clip_config.json").read_text(encoding="utf-8"))
        return config.get("model_cfg", config)
    import open_clip

    return open_clip.get_model_config(spec.name) or {}


def _bpe_source(spec: ModelSpec) -> dict[str, Any]:
    """Where the tokenizer's merge list is, as stored beside the converted model (a bundled model's
    file is found again in the installed package, wherever that is)."""
    if spec.is_bundled:
        return {"bundled": spec.name}
    if spec.bpe_file is not None:
        return {"path": str(spec.bpe_file.resolve())}
    return {"default": True}


def _bpe_path(source: dict[str, Any]) -> Path:
    if "bundled" in source:
        return next(bundled.folder(source["bundled"]).glob("*.txt.gz"))
    if "path" in source:
        return Path(source["path"])
    return default_bpe_path()


def _tokenizer(meta: dict[str, Any], folder: Optional[Path] = None) -> ClipTokenizer:
    """The model's tokenizer; with ``folder``, its tables are kept there once built (reading 49k merges
    costs a third of a second, loading the tables a few milliseconds)."""
    settings = meta["tokenizer"]
    tables = folder / TOKENIZER_TABLES if folder is not None else None
    if tables is not None and tables.is_file():
        try:
            with tables.open("rb") as handle:
                return pickle.load(handle)  # written by this code into this cache folder, below
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            pass  # rebuilt and written again
    tokenizer = ClipTokenizer(bpe_path=_bpe_path(settings["bpe"]), context_length=settings["context_length"],
                              clean=settings["clean"], additional_special_tokens=settings.get("special_tokens"))
    if tables is not None:
        def write(staging: Path) -> None:
            with staging.open("wb") as handle:
                pickle.dump(tokenizer, handle, protocol=pickle.HIGHEST_PROTOCOL)

        try:
            atomic_write(tables, write)
        except OSError:
            pass  # a read-only cache: the tokenizer is built again next time
    return tokenizer


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def convert_model(spec: ModelSpec, threads: Optional[int] = None) -> float:
    """Converts ``spec`` for OpenVINO into the cache (needs torch, once per model); returns the seconds.
    Refuses (``RuntimeUnsupported``) a model whose tokenizer is not CLIP's, or whose converted towers or
    tokenizer disagree with torch on probe inputs; nothing is cached then."""
    from .torch_clip import TorchClipEmbedder

    started = time.time()
    config = _model_config(spec)
    text_cfg = dict(config.get("text_cfg") or {})
    if text_cfg.get("hf_tokenizer_name") or (text_cfg.get("tokenizer_kwargs") or {}).get("reduction_mask"):
        raise RuntimeUnsupported(f"{spec.describe()} uses a tokenizer indexer does not reproduce without torch")
    reference = TorchClipEmbedder(spec, device="cpu", threads=threads)
    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    meta = {
        "preprocess": reference.preprocess_config.to_dict(),
        "logit_scale": reference.logit_scale,
        "tokenizer": {"bpe": _bpe_source(spec), "context_length": int(reference.model.context_length),
                      "clean": kwargs.get("clean", "lower"),
                      "special_tokens": kwargs.get("additional_special_tokens")},
    }
    tokenizer = _tokenizer(meta)
    probe = list(PROBE_TEXTS)
    if not np.array_equal(tokenizer(probe), reference.tokenizer(probe).numpy()):
        raise RuntimeUnsupported(f"the tokenizer of {spec.describe()} is not reproduced without torch")
    key, cache = identity_key(spec), openvino_cache()
    cfg = reference.preprocess_config
    # Weights stored as fp16: half the file and the memory, within 1e-5 of fp32 embeddings (tested).
    try:
        convert(reference.model, cache, key, cfg.size, int(reference.model.context_length), extra_meta=meta,
                compress_to_fp16=True)
    except OSError as exc:
        raise RuntimeUnsupported(f"cannot write the OpenVINO cache at {cache} ({exc.strerror or exc}); "
                                 "point INDEXER_CACHE at a writable folder") from None
    towers = OpenVinoTowers(cache, key, precision="fp32", threads=threads)
    images = np.random.default_rng(0).normal(0, 1, (2, 3, *cfg.size)).astype(np.float32)
    worst = min(float(_cosines(towers.embed_images(images), reference.embed_images(images)).min()),
                float(_cosines(towers.embed_texts(tokenizer(probe)), reference.embed_texts(probe)).min()))
    if worst < AGREEMENT:
        import shutil

        shutil.rmtree(model_folder(cache, key), ignore_errors=True)
        raise RuntimeUnsupported(f"{spec.describe()} converted for OpenVINO disagrees with torch (cosine {worst:.5f})")
    _export_numpy_text(reference, model_folder(cache, key), tokenizer(probe), reference.embed_texts(probe))
    return time.time() - started


def _export_numpy_text(reference: Any, folder: Path, tokens: np.ndarray, expected: np.ndarray) -> None:
    """Writes the text weights for ``numpy_text`` beside the IR, kept only where they give torch's
    embeddings of the probe texts (float32 on both sides: cosine above ``NUMPY_AGREEMENT``)."""
    reason = numpy_text.export(reference.model, folder)
    tower = NumpyTextTower.load(folder) if reason is None else None
    if tower is not None and float(_cosines(tower(tokens), expected).min()) >= NUMPY_AGREEMENT:
        return
    log.info("queries on %s use OpenVINO's text tower: %s", folder.name, reason or "the numpy tower disagrees")
    numpy_text.remove(folder)


class OpenVinoClipEmbedder(ClipEmbedder):
    """A converted open_clip model on OpenVINO: the ``Embedder`` protocol, on the CPU, without torch."""

    runtime = "openvino"
    device = "cpu"
    precisions = PRECISIONS

    def __init__(self, spec: ModelSpec, device: Optional[str] = None, threads: Optional[int] = None,
                 precision: str = "auto") -> None:
        """``device`` is the CPU whatever is given (``choose_runtime`` sends only CPU work here)."""
        self.check_precision(precision)
        self.spec = spec
        key, cache = identity_key(spec), openvino_cache()
        if not is_converted(cache, key):
            log.warning("converting %s for OpenVINO, once (it is cached in %s)", spec.describe(), cache)
            seconds = convert_model(spec, threads)
            log.warning("converted in %.0f s", seconds)
        self.asked_precision = precision
        self._precision = precision
        self._int8_folder: Optional[Path] = None  # set by use_int8 / calibrate: the index's own int8 tower
        self.threads = threads
        self.folder = model_folder(cache, key)
        self._towers: Optional[OpenVinoTowers] = None
        self._towers_lock = threading.Lock()
        # meta.json is what convert() wrote: read without starting OpenVINO (a query may never need it).
        meta = json.loads((self.folder / META_FILE).read_text(encoding="utf-8"))
        if meta.get("identity") != key:
            raise ModelError(f"{self.folder} holds another model ({meta.get('identity')}); delete that folder")
        self.meta = meta
        extra = meta["extra"]
        self.preprocess_config = PreprocessConfig.from_dict(extra["preprocess"])
        self.preprocess = Preprocessor(self.preprocess_config)
        self._normalisation = (self.preprocess_config.mean, self.preprocess_config.std)
        if precision in ("bf16", "int8"):
            _ = self.towers  # an explicit precision is checked against this CPU now, not mid-run
        self.tokenizer = _tokenizer(extra, self.folder)
        self.logit_scale = float(extra["logit_scale"])
        self.image_size = self.preprocess_config.side
        self.dim = int(meta["embed_dim"])
        # The few texts of a query run in numpy over the same weights: no runtime to start (numpy_text).
        self.text_numpy = NumpyTextTower.load(self.folder)
        self._numpy_calls = 0
        self.text_compiled = threading.Event()  # set once OpenVINO's text tower is ready
        if spec.is_random:
            warnings.warn(f"{spec.name} with random weights: embeddings are meaningless; for benchmarks and tests "
                          "only (converted once: every load gives the same random weights)", stacklevel=3)

    @property
    def towers(self) -> OpenVinoTowers:
        """The OpenVINO towers, started on first use (a question answered in numpy never starts them)."""
        with self._towers_lock:
            if self._towers is None:
                try:
                    self._towers = self._make_towers()
                except ValueError as exc:  # bf16 asked for on a CPU without it
                    raise ModelError(f"--precision {self._precision}: {exc}") from None
                except OpenVinoUnavailable as exc:  # the converted folder went away or broke since the load
                    raise OpenVinoUnavailable(f"the OpenVINO conversion of {self.spec.describe()} in {self.folder} "
                                              "is missing or damaged; run the command again to convert it "
                                              "anew") from exc
            return self._towers

    def _make_towers(self) -> OpenVinoTowers:
        return OpenVinoTowers(openvino_cache(), identity_key(self.spec), precision=self._precision,
                              threads=self.threads, int8_image=self._int8_folder is not None,
                              normalisation=self._normalisation, int8_folder=self._int8_folder)

    def _compile_text(self) -> None:
        try:
            self.towers.warm_up(image=False, text=True)
        except Exception as exc:  # noqa: BLE001 - numpy goes on answering; the next batch will say what is wrong
            log.info("the text tower did not compile aside: %s", exc)
            return
        self.text_compiled.set()

    @property
    def precision(self) -> str:
        return ("int8+" if self.towers.int8_image else "") + self.towers.precision

    def embed_images(self, batch: ImageBatch) -> FeatureMatrix:
        return self.towers.embed_images(batch)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> FeatureMatrix:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        tokens = self.tokenizer(list(texts))  # once, whichever tower runs them
        if self.text_numpy is not None and not self.text_compiled.is_set() \
                and self.text_numpy.rows(tokens) <= NUMPY_TEXT_ROWS:
            self._numpy_calls += 1
            if self._numpy_calls == NUMPY_CALLS_BEFORE_COMPILE:
                # A process that keeps asking (a service, a notebook) is better served by the compiled
                # tower (about twice as fast once started): start it aside, switch once it is ready.
                threading.Thread(target=self._compile_text, name="compile-text-tower", daemon=True).start()
            return self.text_numpy(tokens)
        out = [self.towers.embed_texts(tokens[start:start + batch_size]) for start in range(0, len(tokens), batch_size)]
        self.text_compiled.set()  # compiled by this batch: later questions run on it too
        return np.concatenate(out)

    def int8_unavailable(self) -> Optional[str]:
        """Why int8 cannot run here (None: it can): NNCF not installed, or a CPU without int8 units."""
        import importlib.util

        if importlib.util.find_spec("nncf") is None:
            return "int8 needs NNCF (pip install 'indexer[int8]')"
        if "INT8" not in self.towers.core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            return "this CPU has no int8 units"
        return None

    def use_int8(self, folder: Path) -> bool:
        """Switches to the int8 image tower an index keeps in ``folder``; False when there is none."""
        if not (folder / IMAGE_INT8_IR).is_file():
            return False
        with self._towers_lock:
            self._int8_folder = folder
            self._towers = self._make_towers()
        return True

    def use_float(self) -> None:
        """Back to the float image tower (what ``auto`` does when int8 did not prove itself)."""
        with self._towers_lock:
            self._int8_folder = None
            self._towers = self._make_towers()

    def calibrate(self, pictures: np.ndarray, held_out: np.ndarray, folder: Path) -> dict[str, Any]:
        """Quantises the image tower to int8 on ``pictures`` (pixels or preprocessed, from the collection
        being ingested) into ``folder``, switches to it, and measures it against the float tower on
        ``held_out`` pictures of the same collection it was not calibrated on: cosine of each embedding
        (min, mean) and ``recall_at_10``, how many of each held-out picture's 10 nearest neighbours among
        the held-out set the int8 tower finds as the float one does (what a search would return). Needs
        NNCF: ``pip install 'indexer[int8]'``."""
        import importlib.util

        from .openvino_quantize import quantize_apart

        if importlib.util.find_spec("nncf") is None:
            raise ModelError("--precision int8 needs NNCF: pip install 'indexer[int8]'")
        started = time.time()
        self.use_float()
        reference = self.towers.embed_images(held_out)
        # NNCF calibrates the float graph, on float input, in a process of its own (its memory is given back)
        quantize_apart(openvino_cache(), identity_key(self.spec), as_model_input(pictures, self.preprocess_config),
                       folder)
        self.use_int8(folder)
        quantised = self.towers.embed_images(held_out)
        cosines = _cosines(quantised, reference)
        return {"calibrated_on": int(len(pictures)), "held_out": int(len(held_out)),
                "seconds": round(time.time() - started, 1), "cosine_min": round(float(cosines.min()), 5),
                "cosine_mean": round(float(cosines.mean()), 5),
                "recall_at_10": round(neighbour_recall(reference, quantised, 10), 4)}


def neighbour_recall(reference: np.ndarray, other: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's ``k`` nearest neighbours (by cosine, itself left out) under ``reference``
    that ``other`` finds too: 1.0 when every neighbour list agrees."""
    k = min(k, len(reference) - 1)
    if k < 1:
        return 1.0

    def neighbours(rows: np.ndarray) -> np.ndarray:
        rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        similarity = rows @ rows.T
        np.fill_diagonal(similarity, -np.inf)
        return np.argsort(-similarity, axis=1)[:, :k]

    ours, theirs = neighbours(reference), neighbours(other)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ours, theirs)]))
