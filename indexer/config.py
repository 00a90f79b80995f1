"""Settings: which device and runtime, how big the batches, what limits a read — and the one reader of the
environment below the face.

Each setting has a default here, an ``INDEXER_*`` environment variable, and a CLI flag; the flag wins.
``Settings()`` reads the environment once, when it is made; it is frozen, and travels as an object (to
decode workers, to Ray actors). ``settings.replace(device="cpu")`` is a copy with changes.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Optional, TypeVar

from .errors import ConfigError

# The decoder's limits (media.decode), here so that settings are read without importing Pillow.
DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: ten times a phone photo, far below a decompression bomb
DEFAULT_DECODE_SECONDS = 30.0

# The default model for real use (docs/figures.md, "Choosing the default model", for the measurements behind the choice).
DEFAULT_MODEL = "ViT-B-32-256"
DEFAULT_PRETRAINED = "datacomp_s34b_b86k"
BUNDLED_MODEL = "tiny-shapes"


T = TypeVar("T")

DEFAULT_MAX_FILE_SIZE = 256 << 20  # 256 MiB: far above any photo, far below what would exhaust memory
DEFAULT_FLAT_MAX = 200_000  # embeddings up to which the vectors stay a flat (exact) index
DEFAULT_LEASE_SECONDS = 60.0  # the term of the ingest lease on a server catalog, renewed every third of it
# How much lower than the model's process the decode workers run. 0: with the bulk image tower's
# single-thread streams a worker no longer stalls the model when it takes a core, and at a lower priority
# it starved while both streams ran, then decoded alone on one core while the other idled (measured on
# 2 cores, ViT-B-32-256 bf16: end-to-end / tower alone 0.52 at nice 10, 0.59 at nice 0; scripts/bench_ingest.py).
DEFAULT_WORKER_NICE = 0


def _env(name: str, parse: Callable[[str], T], what: str) -> Optional[T]:
    """``$name`` read with ``parse`` (None when unset or empty); a bad value is a clear error."""
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        problem = what or str(exc)
        raise ConfigError(f"${name} is {value[:40]!r}: {problem}; fix or unset it") from None


def _env_int(name: str) -> Optional[int]:
    return _env(name, int, "not a whole number")


def _env_int_or(name: str, default: int) -> int:
    value = _env_int(name)
    return default if value is None else value


def _env_float(name: str, default: float) -> float:
    value = _env(name, float, "not a number")
    return default if value is None else value


def _env_size(name: str) -> Optional[int]:
    return _env(name, parse_size, "")


@dataclass(frozen=True)
class Settings:
    """How an index does its work. ``None`` means: choose from the machine."""

    device: Optional[str] = field(default_factory=lambda: os.environ.get("INDEXER_DEVICE"))
    runtime: str = field(default_factory=lambda: os.environ.get("INDEXER_RUNTIME") or "auto")
    precision: str = field(default_factory=lambda: os.environ.get("INDEXER_PRECISION") or "auto")
    # The catalog's database URL (postgresql+psycopg://…); None: the SQLite file in the index folder.
    catalog: Optional[str] = field(default_factory=lambda: os.environ.get("INDEXER_CATALOG") or None)
    batch_size: Optional[int] = field(default_factory=lambda: _env_int("INDEXER_BATCH_SIZE"))
    workers: Optional[int] = field(default_factory=lambda: _env_int("INDEXER_WORKERS"))
    threads: Optional[int] = field(default_factory=lambda: _env_int("INDEXER_THREADS"))
    max_pixels: int = field(default_factory=lambda: _env_int("INDEXER_MAX_PIXELS") or DEFAULT_MAX_PIXELS)
    decode_seconds: float = field(default_factory=lambda: _env_float("INDEXER_DECODE_SECONDS", DEFAULT_DECODE_SECONDS))
    # Files and archive members larger than this fail as too_large, from their size, before any read.
    max_file_size: int = field(default_factory=lambda: _env_size("INDEXER_MAX_FILE_SIZE") or DEFAULT_MAX_FILE_SIZE)
    # Above this many embeddings the vectors get a trained (IVF) layout.
    flat_max: int = field(default_factory=lambda: _env_int("INDEXER_FLAT_MAX") or DEFAULT_FLAT_MAX)
    lease_seconds: float = field(default_factory=lambda: _env_float("INDEXER_LEASE_SECONDS", DEFAULT_LEASE_SECONDS))
    # The decode workers' niceness increment (os.nice); 0 runs them at the model's priority.
    worker_nice: int = field(default_factory=lambda: _env_int_or("INDEXER_WORKER_NICE", DEFAULT_WORKER_NICE))

    def replace(self, **changes: object) -> "Settings":
        """A copy with ``changes`` (a value of None leaves that setting as it is)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def resolved_batch_size(self, device: str) -> int:
        return self.batch_size or (256 if device.startswith("cuda") else 32)

    def resolved_workers(self, device: str) -> int:
        """Decode workers. On a CPU the model needs the cores: one worker (JPEG draft decoding is ~7x
        faster than the model) unless there are many cores; a GPU wants several."""
        if self.workers is not None:
            return self.workers
        cores = os.cpu_count() or 1
        if device.startswith("cuda"):
            return min(8, max(1, cores - 1))
        return 0 if cores <= 1 else max(1, cores // 4)


def parse_size(text: str) -> int:
    """``"512MB"``, ``"4G"``, ``"4Gi"``, ``"1.5GiB"`` or a plain byte count, in bytes (units are binary)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])i?)?b?\s*", text.lower(), flags=re.ASCII)
    value = float(match.group(1)) if match else math.inf
    if not math.isfinite(value) or value > 1 << 60:
        raise ValueError(f"not a size: {text[:40]!r} (try 512MB or 4GB)")
    factor = {None: 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[match.group(2)]
    return int(value * factor)


def cache_dir() -> pathlib.Path:
    """Where indexer keeps what it derives once per model (converted OpenVINO models): ``$INDEXER_CACHE``,
    else ``$XDG_CACHE_HOME/indexer``, else ``~/.cache/indexer``. Read at each call: a cache moved while a
    process runs (the tests do) is followed."""
    configured = os.environ.get("INDEXER_CACHE")
    if configured:
        return pathlib.Path(configured).expanduser()
    return pathlib.Path(os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "indexer"


def library_env(name: str) -> Optional[str]:
    """A variable that a library indexer drives reads itself (``HF_ENDPOINT``, ``HF_HUB_OFFLINE``,
    ``CUDA_VISIBLE_DEVICES``, ``OMP_WAIT_POLICY``): read here too, where indexer must know it beforehand,
    so that the environment is read in one module."""
    return os.environ.get(name)
