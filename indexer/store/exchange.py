"""Embeddings in and out, in the layouts other tools read: clip-retrieval's output folder
(``img_emb/img_emb_N.npy`` beside ``metadata/metadata_N.parquet``, row i of one the row i of the other;
what ``clip-retrieval inference`` writes and autofaiss and clip-retrieval's back end read) and one
Parquet table (path, metadata and the vector in each row, for dataframe tools).

Files only, no catalog: the domains (``ingest/imported.py``, ``query/export.py``) decide what goes in and
out. Parquet is read and written with pyarrow (``pip install 'indexer[parquet]'``), imported on use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from ..errors import IndexerError, MissingExtraError
from ..fileio import atomic_write

PARQUET_EXTRA = "pip install 'indexer[parquet]'"
_PART = re.compile(r"^img_emb_(\d+)\.npy$")


class ExchangeError(IndexerError):
    """A folder or file that is not in the layout it should be in (the message says what is wrong)."""


def pyarrow_modules() -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet as parquet
    except ImportError:
        raise MissingExtraError(f"reading and writing Parquet needs pyarrow: {PARQUET_EXTRA}") from None
    return pyarrow, parquet


@dataclass(frozen=True)
class Part:
    """One part of a clip-retrieval folder: its embeddings and their metadata, checked to agree."""

    number: int
    embeddings: Path
    metadata: Path
    rows: int
    dim: int


def _npy_shape(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ExchangeError(f"{path} is not a readable .npy array ({exc})") from None
    return tuple(array.shape), array.dtype


def clip_retrieval_parts(folder: Path) -> list[Part]:
    """The parts of a clip-retrieval output folder, each checked: a 2-D float array whose row count is
    its parquet's, with an ``image_path`` column. Refuses the folder (before anything is read in) at the
    first part that disagrees."""
    _, parquet = pyarrow_modules()
    embeddings = folder / "img_emb"
    if not embeddings.is_dir():
        raise ExchangeError(f"{folder} has no img_emb/ folder: not clip-retrieval's output layout "
                            "(img_emb/img_emb_N.npy and metadata/metadata_N.parquet)")
    numbered = sorted((int(m.group(1)), p) for p in embeddings.iterdir() if (m := _PART.match(p.name)))
    if not numbered:
        raise ExchangeError(f"{embeddings} holds no img_emb_N.npy file")
    parts = []
    for number, path in numbered:
        metadata = folder / "metadata" / f"metadata_{number}.parquet"
        if not metadata.is_file():
            raise ExchangeError(f"{path.name} has no metadata/{metadata.name} beside it")
        shape, dtype = _npy_shape(path)
        if len(shape) != 2 or not np.issubdtype(dtype, np.floating):
            raise ExchangeError(f"{path} holds a {dtype} array of shape {shape}, not one vector per row")
        try:
            info = parquet.ParquetFile(metadata)
        except Exception as exc:  # pyarrow raises its own kinds for a file that is not Parquet
            raise ExchangeError(f"{metadata} is not a readable Parquet file ({exc})") from None
        if "image_path" not in info.schema_arrow.names:
            raise ExchangeError(f"{metadata} has no image_path column (it has {', '.join(info.schema_arrow.names)})")
        if info.metadata.num_rows != shape[0]:
            raise ExchangeError(f"{path.name} holds {shape[0]} vectors but {metadata.name} {info.metadata.num_rows} "
                                "rows; they must agree row for row (nothing was imported)")
        parts.append(Part(number, path, metadata, shape[0], shape[1]))
    widths = {p.dim for p in parts}
    if len(widths) > 1:
        raise ExchangeError(f"the parts of {folder} hold vectors of different widths ({sorted(widths)})")
    return parts


def read_part(part: Part, start: int, stop: int) -> tuple[np.ndarray, list[Optional[str]], list[Optional[str]]]:
    """Rows ``start``..``stop`` of a part: float32 vectors, image paths, captions (None without a column)."""
    _, parquet = pyarrow_modules()
    vectors = np.asarray(np.load(part.embeddings, mmap_mode="r", allow_pickle=False)[start:stop], dtype=np.float32)
    table = parquet.read_table(part.metadata, columns=[c for c in ("image_path", "caption")
                                                       if c in parquet.ParquetFile(part.metadata).schema_arrow.names])
    table = table.slice(start, stop - start)
    paths = [None if v is None else str(v) for v in table.column("image_path").to_pylist()]
    captions = ([None if v is None else str(v) for v in table.column("caption").to_pylist()]
                if "caption" in table.column_names else [None] * len(paths))
    return vectors, paths, captions


def write_clip_retrieval_part(folder: Path, number: int, vectors: np.ndarray, columns: dict[str, Sequence[Any]]) -> None:
    """Part ``number`` of a clip-retrieval folder: float16 vectors and their metadata, each file written
    whole or not at all."""
    pyarrow, parquet = pyarrow_modules()
    (folder / "img_emb").mkdir(parents=True, exist_ok=True)
    (folder / "metadata").mkdir(parents=True, exist_ok=True)
    table = pyarrow.table({name: list(values) for name, values in columns.items()})

    def save_npy(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(vectors, dtype=np.float16), allow_pickle=False)

    atomic_write(folder / "img_emb" / f"img_emb_{number}.npy", save_npy)
    atomic_write(folder / "metadata" / f"metadata_{number}.parquet", lambda tmp: parquet.write_table(table, tmp))


def write_parquet_table(path: Path, batches: Iterator[tuple[dict[str, Sequence[Any]], np.ndarray]], dim: int) -> int:
    """One Parquet table at ``path`` from ``batches`` of (metadata columns, vectors): a row group each,
    the vector as a fixed-size list of float32 in column ``embedding``. Returns the rows written."""
    pyarrow, parquet = pyarrow_modules()
    written = 0

    def write(tmp: Path) -> None:
        nonlocal written
        writer = None
        try:
            for columns, vectors in batches:
                flat = pyarrow.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
                embedding = pyarrow.FixedSizeListArray.from_arrays(flat, dim)
                table = pyarrow.table({**{n: list(v) for n, v in columns.items()}, "embedding": embedding})
                if writer is None:
                    writer = parquet.ParquetWriter(tmp, table.schema)
                writer.write_table(table)
                written += table.num_rows
            if writer is None:  # nothing to write: an empty table with the columns
                schema = pyarrow.schema([("path", pyarrow.string()), ("embedding", pyarrow.list_(pyarrow.float32(), dim))])
                parquet.write_table(schema.empty_table(), tmp)
        finally:
            if writer is not None:
                writer.close()

    atomic_write(path, write)
    return written
