"""``indexer export``: an index's embeddings in the layouts other tools read (``store/exchange.py``):
clip-retrieval's output folder (float16 ``img_emb/img_emb_N.npy`` and ``metadata/metadata_N.parquet``
with ``image_path``, ``caption`` and the other facts), or one Parquet table (path, facts, vector).
Stored embeddings only: no picture is read. Every embedded item is one row (items sharing a content
share its vector), in item order; ``where`` narrows them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import numpy as np

from ..store.exchange import write_clip_retrieval_part, write_parquet_table

if TYPE_CHECKING:
    from ..context import IndexContext

FORMATS = ("clip-retrieval", "parquet")
PAGE = 8192
FACTS = ("caption", "taken", "camera", "width", "height", "lat", "lon")


@dataclass
class ExportSummary:
    format: str
    output: str
    rows: int = 0
    parts: int = 0
    dim: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def _pages(ctx: "IndexContext", where: Optional[str]) -> Iterator[tuple[dict[str, list[Any]], np.ndarray]]:
    """(columns, vectors) of the embedded items, page by page."""
    clause = ctx.catalog.filters.compile(where) if where is not None else None
    for item_ids, paths, vectors in ctx.catalog.items.iter_embedded(PAGE, clause):
        facts = ctx.catalog.facts(item_ids)
        columns: dict[str, list[Any]] = {"image_path": list(paths), "item_id": list(item_ids)}
        for name in FACTS:
            columns[name] = [facts.get(i, {}).get(name) for i in item_ids]
        yield columns, vectors


def export_embeddings(ctx: "IndexContext", output: Path, format: str = "clip-retrieval", part_size: int = 1_000_000,
                      where: Optional[str] = None, progress: Optional[Callable[[int], None]] = None) -> ExportSummary:
    """Writes the index's embeddings to ``output`` (a folder for clip-retrieval, a file for parquet)."""
    started = time.time()
    ctx.require_embedded()
    dim = ctx.catalog.dim()
    summary = ExportSummary(format, str(output), dim=dim)
    if format == "parquet":
        def renamed() -> Iterator[tuple[dict[str, list[Any]], np.ndarray]]:
            for columns, vectors in _pages(ctx, where):
                columns = {("path" if k == "image_path" else k): v for k, v in columns.items()}
                if progress:
                    progress(len(vectors))
                yield columns, vectors

        output.parent.mkdir(parents=True, exist_ok=True)
        summary.rows = write_parquet_table(output, renamed(), dim)
        summary.parts = 1
    else:
        pending_columns: dict[str, list[Any]] = {}
        pending: list[np.ndarray] = []
        held = 0

        def flush() -> None:
            nonlocal pending_columns, pending, held
            if not held:
                return
            write_clip_retrieval_part(output, summary.parts, np.concatenate(pending), pending_columns)
            summary.parts += 1
            pending_columns, pending, held = {}, [], 0

        for columns, vectors in _pages(ctx, where):
            start = 0
            while start < len(vectors):
                take = min(len(vectors) - start, part_size - held)
                for name, values in columns.items():
                    pending_columns.setdefault(name, []).extend(values[start:start + take])
                pending.append(vectors[start:start + take])
                held += take
                start += take
                summary.rows += take
                if held >= part_size:
                    flush()
            if progress:
                progress(len(vectors))
        flush()
    summary.seconds = round(time.time() - started, 3)
    return summary
