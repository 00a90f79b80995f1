"""``Index``: the library's main object. The CLI is a thin layer over it.

    from indexer import open_index
    index = open_index("photos-index", model="tiny-shapes")
    index.ingest(["~/photos"])
    for hit in index.search("a red star", k=5):
        print(hit.path, hit.score)

The model is loaded only when something has to be embedded (new images, an uncached text, a query
image that is not in the catalog); everything else answers from the catalog and the vectors.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
from sqlalchemy import func, select

from .config import DEFAULT_MODEL, DEFAULT_PRETRAINED, Settings
from .errors import EmptyIndexError, ModelError, ModelMismatchError, QueryError
from .models import ModelSpec, bundled, load_model, same_model
from .store.catalog import Embedding, IngestRun, Item, ItemState, TextEmbedding, blobs_to_matrix, open_catalog, \
    vector_to_blob

ModelArg = Union[ModelSpec, str, None]


def as_spec(model: ModelArg, pretrained: Optional[str] = None, weights: Optional[str] = None) -> Optional[ModelSpec]:
    if isinstance(model, ModelSpec):
        return model
    if model is None and pretrained is None and weights is None:
        return None
    name = model or DEFAULT_MODEL
    if pretrained is None and weights is None and name == DEFAULT_MODEL:
        pretrained = DEFAULT_PRETRAINED
    return ModelSpec(name=name, pretrained=pretrained, weights=weights)


class Index:
    """An index folder: the catalog (source of truth), the FAISS vectors, and the model (lazily)."""

    def __init__(self, path: Union[str, Path], model: ModelArg = None, settings: Optional[Settings] = None,
                 create: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.settings = settings or Settings()
        self.catalog = open_catalog(self.path, create=create)
        self._requested = as_spec(model)
        self._embedder: Any = None
        self._recorded: Optional[dict] = None
        self._vectors: Any = None  # a VectorIndex once needed (FAISS is imported only then)
        recorded = self.recorded_model
        if recorded and self._requested is not None:
            identity = self._requested.identity()
            if not same_model(recorded, identity):
                raise ModelMismatchError(_mismatch_message(self.path, recorded, self._requested, identity))

    # -- model ------------------------------------------------------------------------------------

    @property
    def recorded_model(self) -> Optional[dict]:
        # Once recorded, an index's model never changes: read the catalog until then, not after.
        if self._recorded is None:
            self._recorded = self.catalog.get_meta("model")
        return self._recorded

    @property
    def model_spec(self) -> ModelSpec:
        """The index's model: the one recorded in the catalog, else the one asked for, else the default."""
        recorded = self.recorded_model
        if recorded:
            weights = self._requested.weights if self._requested and self._requested.weights else recorded.get("weights")
            if weights and not Path(weights).is_file():
                raise ModelError(f"the index's model weights {weights} are gone; pass --weights PATH to the same file")
            return ModelSpec(name=recorded["name"], pretrained=recorded.get("pretrained"), weights=weights)
        return self._requested or ModelSpec(DEFAULT_MODEL, DEFAULT_PRETRAINED)

    def embedder(self) -> Any:
        """The loaded model (imports torch and open_clip on first use)."""
        if self._embedder is None:
            spec = self.model_spec
            embedder = load_model(spec, device=self.settings.device, threads=self.settings.threads)
            identity = embedder.identity()
            identity["weights"] = str(Path(spec.weights).resolve()) if spec.weights else None
            recorded = self.recorded_model
            if recorded is None:
                with self.catalog.begin() as conn:
                    self.catalog.set_meta(conn, "model", identity)
                self._recorded = identity
            elif not same_model(recorded, identity) or int(recorded["embed_dim"]) != embedder.dim:
                raise ModelMismatchError(_mismatch_message(self.path, recorded, spec, identity))
            self._embedder = embedder
        return self._embedder

    @property
    def dim(self) -> int:
        recorded = self.recorded_model
        if not recorded:
            raise EmptyIndexError(f"no embedded items in {self.path}; run `indexer ingest` first")
        return int(recorded["embed_dim"])

    @property
    def logit_scale(self) -> float:
        recorded = self.recorded_model or {}
        return float(recorded.get("logit_scale", 100.0))

    def model_key(self) -> str:
        recorded = self.recorded_model
        if not recorded:
            raise EmptyIndexError(f"no embedded items in {self.path}; run `indexer ingest` first")
        key = {k: recorded.get(k) for k in ("name", "pretrained", "weights_sha256")}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]

    # -- embeddings -------------------------------------------------------------------------------

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised embeddings of ``texts``, from the cache or encoded (and cached) now."""
        key, dim = self.model_key(), self.dim
        unique = list(dict.fromkeys(texts))
        blobs: dict[str, bytes] = {}
        with self.catalog.read() as conn:
            for start in range(0, len(unique), 500):
                part = unique[start:start + 500]
                blobs.update(conn.execute(select(TextEmbedding.text, TextEmbedding.vector).where(
                    TextEmbedding.model_key == key, TextEmbedding.text.in_(part))).all())
        missing = [t for t in unique if t not in blobs]
        if missing:
            new = {t: vector_to_blob(v) for t, v in zip(missing, self.embedder().embed_texts(missing))}
            with self.catalog.begin() as conn:
                conn.execute(TextEmbedding.__table__.insert().prefix_with("OR IGNORE"),
                             [{"model_key": key, "text": t, "vector": blob} for t, blob in new.items()])
            blobs.update(new)
        # Cached or fresh, every vector goes through the same float16 round trip: same text, same answer.
        return blobs_to_matrix([blobs[t] for t in texts], dim)

    def image_embedding(self, path: Path) -> np.ndarray:
        """The embedding of an image file: the stored one when its content is in the catalog."""
        from .decode import decode_image
        from .errors import DecodeError
        from .sources import read_bytes

        try:
            data = read_bytes(str(path))
        except DecodeError as exc:
            raise QueryError(f"cannot read query image {path}: {exc.detail or exc.reason}") from None
        sha = hashlib.sha256(data).hexdigest()
        with self.catalog.read() as conn:
            blob = conn.execute(select(Embedding.vector).where(Embedding.sha256 == sha)).scalar()
        if blob is not None:
            return blobs_to_matrix([blob], self.dim)[0]
        embedder = self.embedder()
        try:
            decoded = decode_image(data, embedder.image_size, self.settings.max_pixels)
        except DecodeError as exc:
            raise QueryError(f"query image {path} is not readable: {exc}") from None
        return embedder.embed_images(embedder.preprocess(decoded.image)[None])[0]

    def vectors(self, sync: bool = True) -> Any:
        """The FAISS index (a ``VectorIndex``), brought in step with the catalog (``sync=False``: the
        file as it is)."""
        from .store.vectors import VectorIndex

        if self.recorded_model is None:
            raise EmptyIndexError(f"no embedded items in {self.path}; run `indexer ingest` first")
        if self._vectors is None:
            self._vectors = VectorIndex(self.path, self.catalog)
        self._vectors.load(sync=sync)
        return self._vectors

    def set_memory_budget(self, budget: Optional[int]) -> None:
        """The vectors' memory budget in bytes (None: no limit); large indexes above it use IVF-PQ."""
        with self.catalog.begin() as conn:
            self.catalog.set_meta(conn, "vectors.memory_budget", budget)

    def vectors_file_exists(self) -> bool:
        from .store.files import VECTORS_FILE

        return (self.path / VECTORS_FILE).exists()

    # -- the things users do ----------------------------------------------------------------------

    def ingest(self, sources: Iterable[Union[str, Path]], **options: Any):
        """Embeds every new or changed image under ``sources``; see ``indexer.ingest.run_ingest``."""
        from .ingest import run_ingest

        return run_ingest(self, (Path(s) for s in sources), **options)

    def search(self, query: Optional[str] = None, images: Sequence[Union[str, Path]] = (), k: int = 10,
               path_filter: Optional[str] = None, min_score: Optional[float] = None):
        """Top-``k`` hits for a text / image / combined query (``indexer.search`` has the syntax)."""
        from .search import search

        if self.count_embedded() == 0:
            raise EmptyIndexError(f"no embedded items in {self.path}; run `indexer ingest` first")
        return search(self, query, [Path(i) for i in images], k, path_filter, min_score)

    def classify(self, labels: Sequence[str], templates: str = "default", top_k: int = 1, **options: Any):
        """Zero-shot classification of every embedded item; see ``indexer.classify.classify``."""
        from .classify import classify

        return classify(self, labels, templates, top_k, **options)

    def count_embedded(self) -> int:
        with self.catalog.read() as conn:
            return int(conn.execute(select(func.count()).where(Item.state == ItemState.EMBEDDED.value)).scalar() or 0)

    def status(self) -> dict:
        """Counts, model, vectors and sizes: no model load, no vector load."""
        from .store.files import vectors_file_info

        with self.catalog.read() as conn:
            by_state = dict(conn.execute(select(Item.state, func.count()).group_by(Item.state)).all())
            failures = dict(conn.execute(
                select(Item.failure_reason, func.count()).where(Item.state == ItemState.FAILED.value)
                .group_by(Item.failure_reason)).all())
            contents = int(conn.execute(select(func.count(Embedding.id))).scalar() or 0)
            last = conn.execute(select(IngestRun).order_by(IngestRun.id.desc()).limit(1)).first()
        catalog_bytes = sum(p.stat().st_size for p in self.path.glob("catalog.sqlite*") if p.is_file())
        recorded = self.recorded_model
        return {
            "index": str(self.path),
            "items": sum(n for state, n in by_state.items() if state != ItemState.DELETED.value),
            "embedded": by_state.get(ItemState.EMBEDDED.value, 0),
            "pending": by_state.get(ItemState.PENDING.value, 0),
            "failed": by_state.get(ItemState.FAILED.value, 0),
            "deleted": by_state.get(ItemState.DELETED.value, 0),
            "failures_by_reason": failures,
            "distinct_contents": contents,
            "model": recorded,
            "model_description": _describe(recorded) if recorded else None,
            "vectors": vectors_file_info(self.path),
            "catalog_bytes": catalog_bytes,
            "last_ingest": {
                "started_at": last.started_at, "finished_at": last.finished_at,
                "counts": json.loads(last.counts) if last.counts else None,
            } if last else None,
        }

    def failures(self, limit: Optional[int] = 100) -> list[dict]:
        """Items that could not be read, with their reason, most recent first."""
        query = (select(Item.uri, Item.failure_reason, Item.failure_detail)
                 .where(Item.state == ItemState.FAILED.value).order_by(Item.updated_at.desc(), Item.id))
        if limit is not None:
            query = query.limit(limit)
        with self.catalog.read() as conn:
            return [{"path": uri, "reason": reason, "detail": detail} for uri, reason, detail in conn.execute(query)]

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _mismatch_message(path: Path, recorded: dict, requested: ModelSpec, identity: dict) -> str:
    if recorded.get("name") == identity.get("name") and recorded.get("pretrained") == identity.get("pretrained"):
        return (
            f"the weights of {requested.describe()} differ from those the index at {path} was built with "
            f"(sha256 {str(recorded.get('weights_sha256'))[:12]} then, {str(identity.get('weights_sha256'))[:12]} now), "
            "so their embeddings cannot be compared. Rebuild the index in a new --index folder with these weights, "
            "or use the original checkpoint with --weights PATH"
        )
    return (
        f"the index at {path} was built with {_describe(recorded)}, not {requested.describe()}. "
        "Embeddings of different models cannot be compared: leave out --model to use the index's own "
        f"model, or give {requested.describe()} its own --index folder"
    )


def _describe(recorded: dict) -> str:
    name = recorded.get("name", "?")
    if bundled.is_bundled(name):
        return f"{name} (bundled)"
    if recorded.get("pretrained"):
        return f"{name} ({recorded['pretrained']})"
    if recorded.get("weights_sha256"):
        return f"{name} (weights sha256 {recorded['weights_sha256'][:12]})"
    return name


def open_index(path: Union[str, Path], model: ModelArg = None, *, pretrained: Optional[str] = None,
               weights: Optional[str] = None, settings: Optional[Settings] = None, create: bool = True) -> Index:
    """Opens (or creates) the index in folder ``path``. ``model`` may be a name (``"tiny-shapes"``,
    ``"ViT-B-32"``) with ``pretrained``/``weights``, or a ``ModelSpec``; leave it out to use the
    model the index was built with."""
    if isinstance(model, str) or pretrained or weights:
        model = as_spec(model if isinstance(model, str) else None, pretrained, weights)
    return Index(path, model=model, settings=settings, create=create)
