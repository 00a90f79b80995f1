"""``indexer import``: embeddings made elsewhere (clip-retrieval's output folder) registered as embedded
items, with no picture decoded, so that search, classify and audit work on them at once.

What is checked that the vectors come from the index's model: (1) their width is the model's embedding
size; (2) where some ``image_path`` values are files readable here, up to ``verify`` of them are read
and embedded with the model, and each stored vector must agree with the model's (cosine at least
``MIN_AGREEMENT``): another model, other weights or another preprocessing fails it. What cannot be
checked: when no picture is readable here (URLs, another machine's paths), only the width is; two
models of the same width (ViT-B-32 with OpenAI's or LAION's weights) are then told apart by nobody.

Rows are taken as they are otherwise: a row with no path or a vector that is not finite (or zero) is
skipped and counted; a path the index holds already keeps its item. The item's content key is a hash
of the vector (no file is read), so equal vectors share an embedding, as equal files do; an item
ingested from its file later (``indexer ingest``) is embedded from it then, under its real hash.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from ..errors import IndexerError
from ..media.sources import read_bytes
from ..store.codec import vector_to_blob
from ..store.exchange import ExchangeError, Part, clip_retrieval_parts, read_part
from .read import load_item, read_options

if TYPE_CHECKING:
    from ..context import IndexContext

CHUNK = 4096
MIN_AGREEMENT = 0.99  # cosine of an imported vector with the model's own for the same picture


class ModelDisagreesError(IndexerError):
    """The imported vectors were not made by the index's model."""


@dataclass
class ImportSummary:
    parts: int = 0
    rows: int = 0
    added: int = 0
    already: int = 0  # paths the index held before
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    verified: int = 0  # pictures read here and embedded to check the model
    agreement: Optional[float] = None  # the lowest cosine among them
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skipped[reason] = self.skipped.get(reason, 0) + count


def _content_key(blob: bytes) -> str:
    return hashlib.sha256(b"imported-vector:" + blob).hexdigest()


def verify_model(ctx: "IndexContext", parts: list[Part], verify: int, summary: ImportSummary) -> None:
    """Embeds up to ``verify`` of the parts' pictures that are readable files here and compares."""
    if verify <= 0:
        return
    embedder = ctx.model.embedder()
    options = read_options(embedder, ctx.settings)
    for part in parts:
        vectors, paths, _ = read_part(part, 0, min(part.rows, 64 * verify))
        for vector, path in zip(vectors, paths):
            if summary.verified >= verify:
                return
            if not path or not Path(path).is_file():
                continue
            try:
                record = load_item(0, path, read_bytes(path, max_bytes=ctx.settings.max_file_size),
                                   lambda sha: None, options)
            except Exception:  # unreadable here: not a picture to check with
                continue
            if record.kind != "ok" or record.pixels is None:
                continue
            mine = embedder.embed_images(record.pixels[None])[0]
            norm = float(np.linalg.norm(vector))
            cosine = float(np.dot(mine, vector) / norm) if norm else 0.0
            summary.verified += 1
            summary.agreement = cosine if summary.agreement is None else min(summary.agreement, cosine)
            if cosine < MIN_AGREEMENT:
                raise ModelDisagreesError(
                    f"the vector of {path} does not match this index's model {ctx.model.spec.name} (cosine "
                    f"{cosine:.3f} < {MIN_AGREEMENT}): the folder was made with another model, other weights or "
                    "another preprocessing; give --model the one that made it. Nothing was imported")


def import_clip_retrieval(ctx: "IndexContext", folder: Path, verify: int = 8,
                          progress: Optional[Callable[[int], None]] = None) -> ImportSummary:
    """Imports a clip-retrieval output folder into the index; see the module docstring."""
    started = time.time()
    summary = ImportSummary()
    parts = clip_retrieval_parts(Path(folder))
    dim = ctx.model.embedder().dim if ctx.model.recorded is None else ctx.model.dim
    if parts[0].dim != dim:
        raise ExchangeError(f"{parts[0].embeddings} holds vectors of width {parts[0].dim}, but the index's model "
                            f"{ctx.model.spec.name} makes {dim}; give --model the one that made them. Nothing was "
                            "imported")
    verify_model(ctx, parts, verify, summary)
    catalog = ctx.catalog
    for part in parts:
        summary.parts += 1
        for start in range(0, part.rows, CHUNK):
            vectors, paths, captions = read_part(part, start, min(part.rows, start + CHUNK))
            summary.rows += len(paths)
            norms = np.linalg.norm(vectors, axis=1)
            good = np.isfinite(vectors).all(axis=1) & np.isfinite(norms) & (norms > 1e-6)
            rows: dict[str, tuple[str, Optional[str], str, bytes]] = {}
            for i, (path, caption) in enumerate(zip(paths, captions)):
                if not path:
                    summary.skip("no_image_path")
                elif not good[i]:
                    summary.skip("bad_vector")
                elif path in rows:
                    summary.skip("duplicate_path")
                else:
                    blob = vector_to_blob(vectors[i] / norms[i])
                    caption = " ".join(caption.split())[:4000] or None if caption else None
                    rows[path] = (path, caption, _content_key(blob), blob)
            added = catalog.worklist.import_embedded(list(rows.values()))
            summary.added += added
            summary.already += len(rows) - added
            if progress:
                progress(len(paths))
    if summary.added:
        ctx.vectors.get()  # the FAISS file brought in step with the catalog
    summary.seconds = round(time.time() - started, 3)
    return summary
