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
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from .config import DEFAULT_MODEL, DEFAULT_PRETRAINED, Settings, parse_size
from .errors import EmptyIndexError, HeadError, ModelError, ModelMismatchError, QueryError
from .index_items import IndexItems
from .models import Embedder, ModelSpec, bundled, load_model, same_model
from .models.spec import describe_identity, mismatch_message
from .store.codec import blobs_to_matrix, vector_to_blob
from .store.states import ItemState

if TYPE_CHECKING:
    from .audit import AuditOptions, AuditResult, DatasetLabels
    from .heads import Head
    from .ingest import IngestSummary
    from .query.classify import ClassifyResult
    from .query.evaluate import EvalReport
    from .query.search import SearchHit
    from .store.catalog import Catalog
    from .store.vectors import Filler, VectorIndex

ModelArg = Union[ModelSpec, str, None]

TEXT_MEMORY = 4096  # text embeddings kept in memory by an open Index (beside the catalog's cache)


def as_spec(model: ModelArg, pretrained: Optional[str] = None, weights: Optional[str] = None) -> Optional[ModelSpec]:
    if isinstance(model, ModelSpec):
        return model
    if model is None and pretrained is None and weights is None:
        return None
    name = model or DEFAULT_MODEL
    if pretrained is None and weights is None and name == DEFAULT_MODEL:
        pretrained = DEFAULT_PRETRAINED
    return ModelSpec(name=name, pretrained=pretrained, weights=weights)


def _open_catalog(path: Path, create: bool, url: Optional[str]) -> "Catalog":
    """The index's catalog: an existing SQLite one at this release's schema through ``store.quick`` (a
    search then never imports SQLAlchemy; other calls open the full catalog when first made), else the
    full ``Catalog``, which creates, migrates, refuses or explains."""
    if not url:
        from .store.quick import QuickCatalog

        quick = QuickCatalog.open(path)
        if quick is not None:
            return quick  # type: ignore[return-value]  # the same calls, the rest delegated
    from .store.catalog import open_catalog

    return open_catalog(path, create=create, url=url)


class Index(IndexItems):
    """An index folder: the catalog (source of truth), the FAISS vectors, and the model (lazily)."""

    def __init__(self, path: Union[str, Path], model: ModelArg = None, settings: Optional[Settings] = None,
                 create: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.settings = settings or Settings()
        self.catalog = _open_catalog(self.path, create, self.settings.catalog)
        self._requested = as_spec(model)
        self._embedder: Optional[Embedder] = None
        self._recorded: Optional[dict] = None
        self._vectors: Optional["VectorIndex"] = None  # once needed (FAISS is imported only then), then kept
        # Texts asked again (a resident service, a notebook) skip the catalog: text -> float32 vector.
        self._texts: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._texts_lock = threading.Lock()
        recorded = self.recorded_model
        if recorded and self._requested is not None:
            identity = self._requested.identity()
            if not same_model(recorded, identity):
                raise ModelMismatchError(mismatch_message(self.path, recorded, self._requested, identity))

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
            if weights and bundled.is_bundled(recorded["name"]):
                raise ModelError(f"the index's model {recorded['name']} comes with its own weights: leave out --weights")
            if weights and not Path(weights).is_file():
                raise ModelError(f"the index's model weights {weights} are gone; pass --weights PATH to the same file")
            return ModelSpec(name=recorded["name"], pretrained=recorded.get("pretrained"), weights=weights)
        return self._requested or ModelSpec(DEFAULT_MODEL, DEFAULT_PRETRAINED)

    def embedder(self) -> Embedder:
        """The loaded model (on the CPU: OpenVINO, converted with torch on first use; on a GPU: torch)."""
        if self._embedder is None:
            spec = self.model_spec
            embedder = load_model(spec, device=self.settings.device, threads=self.settings.threads,
                                  runtime=self.settings.runtime, precision=self.settings.precision)
            self.record_model(embedder.identity())
            self._embedder = embedder
        return self._embedder

    def record_model(self, identity: dict) -> None:
        """Records a loaded model's ``identity`` in a new index; refuses one other than the index's own
        (also used for the models that distributed workers load)."""
        spec = self.model_spec
        identity = dict(identity, weights=str(Path(spec.weights).resolve()) if spec.weights else None)
        recorded = self.recorded_model
        if recorded is None:
            self.catalog.set_meta("model", identity)
            self._recorded = identity
        elif not same_model(recorded, identity) or int(recorded["embed_dim"]) != int(identity["embed_dim"]):
            raise ModelMismatchError(mismatch_message(self.path, recorded, spec, identity))

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
        """Normalised embeddings of ``texts``, from memory, the catalog's cache, or encoded (and cached) now."""
        with self._texts_lock:
            known = {t: self._texts[t] for t in texts if t in self._texts}
            for t in known:
                self._texts.move_to_end(t)
        if len(known) == len(set(texts)):
            return np.stack([known[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
        key, dim = self.model_key(), self.dim
        wanted = [t for t in dict.fromkeys(texts) if t not in known]
        blobs = self.catalog.cached_texts(key, wanted)
        missing = [t for t in wanted if t not in blobs]
        if missing:
            new = {t: vector_to_blob(v) for t, v in zip(missing, self.embedder().embed_texts(missing))}
            if not self.catalog.readonly:  # on read-only media they stay in this process's memory only
                self.catalog.cache_texts(key, new)
            blobs.update(new)
        # Cached or fresh, every vector goes through the same float16 round trip: same text, same answer.
        fresh = dict(zip(wanted, blobs_to_matrix([blobs[t] for t in wanted], dim)))
        with self._texts_lock:
            for t, vector in fresh.items():
                self._texts[t] = vector
            while len(self._texts) > TEXT_MEMORY:
                self._texts.popitem(last=False)
        fresh.update(known)
        return np.stack([fresh[t] for t in texts])

    def image_embedding(self, path: Union[str, Path]) -> np.ndarray:
        """The embedding of an image file: the stored one when its content is in the catalog."""
        from .errors import DecodeError
        from .media.sources import read_bytes

        try:
            data = read_bytes(str(path), max_bytes=self.settings.max_file_size)
        except DecodeError as exc:
            raise QueryError(f"cannot read query image {path}: {exc.detail or exc.reason}") from None
        return self.embed_image_bytes(data, str(path))

    def embed_image_bytes(self, data: bytes, name: str = "the query image") -> np.ndarray:
        """The embedding of a picture given as bytes (a stored one when its content is in the catalog),
        decoded under the index's pixel and time limits."""
        from .errors import DecodeError
        from .media.decode import decode_image, limit_aspect, time_limit

        stored = self.catalog.embedding_for_content(hashlib.sha256(data).hexdigest())
        if stored is not None:
            return stored
        embedder = self.embedder()
        try:
            with time_limit(self.settings.decode_seconds):
                decoded = decode_image(data, embedder.image_size, self.settings.max_pixels)
        except DecodeError as exc:
            raise QueryError(f"{name} is not a readable image: {exc}") from None
        image = limit_aspect(decoded.image) if embedder.preprocess_config.crops_centre else decoded.image
        return embedder.embed_images(embedder.preprocess(image)[None])[0]

    def vectors(self, sync: bool = True, filler: Optional["Filler"] = None) -> "VectorIndex":
        """The FAISS index (a ``VectorIndex``), loaded once and kept; with ``sync`` it is first caught up
        with what was committed since (one short catalog query when nothing was). ``filler`` fills a
        layout that has to be built anew (the distributed runner's encodes on the cluster)."""
        from .store.vectors import VectorIndex

        if self.recorded_model is None:
            raise EmptyIndexError(f"no embedded items in {self.path}; run `indexer ingest` first")
        if self._vectors is None:
            self._vectors = VectorIndex(self.path, self.catalog, self.settings.flat_max).load(sync=False)
        if sync:
            self._vectors.sync(filler=filler)
        return self._vectors

    def remove_vectors(self, embedding_ids: Sequence[int]) -> None:
        """Removes from the vectors the embeddings just purged from the catalog (no rebuild)."""
        if embedding_ids and self.vectors_file_exists():
            # The file as it is, not caught up: a catch-up would see the deletions and rebuild.
            self.vectors(sync=False).remove(embedding_ids)

    def set_memory_budget(self, budget: Union[int, str, None]) -> None:
        """The vectors' memory budget in bytes, or a size such as "4GB" (None: no limit); large indexes
        above it use IVF-PQ codes. Remembered by the index."""
        if isinstance(budget, str):
            try:
                budget = parse_size(budget)
            except ValueError as exc:
                raise QueryError(f"--index-memory: {exc}") from None
        self.catalog.set_meta("vectors.memory_budget", budget)

    def vectors_file_exists(self) -> bool:
        from .store.files import VECTORS_FILE

        return (self.path / VECTORS_FILE).exists()

    # -- the things users do ----------------------------------------------------------------------

    def ingest(self, sources: Iterable[Union[str, Path]], ray: Optional[str] = None, **options: Any) -> "IngestSummary":
        """Embeds every new or changed image under ``sources``; see ``indexer.ingest.run.run_ingest``.
        With ``ray`` (``"local"``, ``"auto"`` or ``"ray://HOST:PORT"``) on a Ray cluster instead; see
        ``indexer.distributed.run_distributed_ingest`` for its options."""
        if ray:
            from .distributed import run_distributed_ingest

            return run_distributed_ingest(self, (Path(s) for s in sources), ray_address=ray, **options)
        from .ingest.run import run_ingest

        return run_ingest(self, (Path(s) for s in sources), **options)

    def search(self, query: Optional[str] = None, images: Sequence[Union[str, Path]] = (), k: int = 10,
               path_filter: Optional[str] = None, min_score: Optional[float] = None) -> list["SearchHit"]:
        """Top-``k`` hits for a text / image / combined query (``indexer.query.search`` has the syntax)."""
        from .query.search import search

        if not self.catalog.has_embedded():
            raise EmptyIndexError(f"no embedded items in {self.path}; run `indexer ingest` first")
        return search(self, query, [Path(i) for i in images], k, path_filter, min_score)

    def classify(self, labels: Sequence[str], templates: str = "default", top_k: int = 1,
                 **options: Any) -> "ClassifyResult":
        """Zero-shot classification of every embedded item; see ``indexer.query.classify.classify``."""
        from .query.classify import classify

        return classify(self, labels, templates, top_k, **options)

    def evaluate(self, dataset: Union[str, Path], templates: str = "default",
                 unseen: Optional[Sequence[str]] = None, calibration: Union[float, str, None] = None,
                 mapping: Optional[dict[str, str]] = None, head: Optional[str] = None,
                 compare: bool = False) -> "EvalReport":
        """Zero-shot accuracy (and GZSL figures with ``unseen``) on a labelled dataset this index holds,
        by plain cosine or a stored ``head``; ``compare`` adds every method's GZSL figures side by side.
        See ``indexer.query.evaluate``."""
        from .query.evaluate import evaluate

        return evaluate(self, Path(dataset), templates, unseen, calibration, mapping, head, compare)

    def audit(self, dataset: Optional["DatasetLabels"] = None, options: Optional["AuditOptions"] = None,
              progress: Optional[Callable[[str, int, int], None]] = None) -> "AuditResult":
        """Likely mislabels, duplicates, outliers and label-set problems; see ``indexer.audit``."""
        from .audit import audit

        return audit(self, dataset, options, progress)

    def query_vector(self, query: Optional[str] = None, images: Sequence[Union[str, Path]] = (),
                     vectors: Sequence[tuple[float, np.ndarray]] = (), read_paths: bool = True) -> np.ndarray:
        """The normalised vector of a text / image / combined query (``indexer.query.search`` has the
        syntax), plus ``vectors`` ((weight, embedding) pairs: an uploaded picture, a stored item). Without
        ``read_paths`` no query term is read as a file (queries from a network client)."""
        from .query.search import QueryTerm, parse_query, query_vector

        terms = parse_query(query, read_paths) if query and query.strip() else []
        terms += [QueryTerm(1.0, image=Path(i)) for i in images]
        return query_vector(self, terms, vectors)

    def search_vector(self, vector: np.ndarray, k: int = 10, path_filter: Optional[str] = None,
                      min_score: Optional[float] = None, offset: int = 0) -> list["SearchHit"]:
        """Top-``k`` hits for a query vector, after the ``offset`` best."""
        from .query.search import search_vector

        # The loaded vectors say whether there is anything to search (counting items costs a scan).
        if self.vectors().ntotal == 0:
            raise EmptyIndexError(f"no embedded items in {self.path}; run `indexer ingest` first")
        return search_vector(self, np.asarray(vector, dtype=np.float32), k, path_filter, min_score, offset)

    # -- trained heads (indexer.heads) -------------------------------------------------------------

    def train_head(self, name: str, labels_csv: Union[str, Path], classes: Sequence[str], method: str = "generative",
                   **options: Any) -> "Head":
        """Trains a zero-shot head on the stored embeddings of the items labelled in ``labels_csv`` and
        stores it; see ``indexer.heads.train.train_head``."""
        from .heads.train import train_head

        return train_head(self, name, labels_csv, classes, method, **options)

    def head(self, name: str) -> "Head":
        """The stored head ``name`` (refused when trained for another model)."""
        from .heads.train import load_head

        return load_head(self, name)

    def heads(self) -> list[dict[str, Any]]:
        """Every stored head, without weights; ``usable`` is False for a head of another model."""
        key = self.model_key() if self.recorded_model else None
        return [{"name": r.name, "method": r.method, "classes": len(r.classes),
                 "unseen_classes": r.figures.get("unseen_classes"), "items": r.figures.get("items"),
                 "descriptions": r.hparams.get("descriptions"), "calibration": r.hparams.get("calibration"),
                 "created_at": r.created_at, "weights_bytes": r.weights_bytes, "usable": r.model_key == key}
                for r in self.catalog.head_rows()]

    def delete_head(self, name: str) -> None:
        if not self.catalog.delete_head(name):
            raise HeadError(f"no head named {name!r} in the index at {self.path}")

    def count_embedded(self) -> int:
        return self.catalog.count_embedded()

    def status(self) -> dict:
        """Counts, model, vectors and sizes: no model load, no vector load."""
        from .store.files import vectors_file_info

        by_state = self.catalog.counts_by_state()
        recorded = self.recorded_model
        return {
            "index": str(self.path),
            "items": sum(n for state, n in by_state.items() if state != ItemState.DELETED.value),
            "embedded": by_state.get(ItemState.EMBEDDED.value, 0),
            "pending": by_state.get(ItemState.PENDING.value, 0),
            "failed": by_state.get(ItemState.FAILED.value, 0),
            "deleted": by_state.get(ItemState.DELETED.value, 0),
            "failures_by_reason": self.catalog.failures_by_reason(),
            "distinct_contents": self.catalog.count_contents(),
            "model": recorded,
            "model_description": describe_identity(recorded) if recorded else None,
            "runtimes": self.catalog.get_meta("runtimes", {}),
            "vectors": vectors_file_info(self.path),
            "catalog_bytes": self.catalog.size_bytes(),
            "last_ingest": self.catalog.last_ingest_run(),
        }

    def failures(self, limit: Optional[int] = 100) -> list[dict]:
        """Items that could not be read, with their reason, most recent first."""
        return self.catalog.failures(limit)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_index(path: Union[str, Path], model: ModelArg = None, *, pretrained: Optional[str] = None,
               weights: Optional[str] = None, settings: Optional[Settings] = None, create: bool = True,
               catalog: Optional[str] = None) -> Index:
    """Opens (or creates) the index in folder ``path``. ``model`` may be a name (``"tiny-shapes"``,
    ``"ViT-B-32"``) with ``pretrained``/``weights``, or a ``ModelSpec``; leave it out to use the
    model the index was built with. ``catalog`` is a database URL (``postgresql+psycopg://…``) for a
    catalog on a server; the FAISS files stay in ``path``."""
    if catalog:
        settings = settings or Settings()
        settings.catalog = catalog
    if isinstance(model, str) or pretrained or weights:
        model = as_spec(model if isinstance(model, str) else None, pretrained, weights)
    return Index(path, model=model, settings=settings, create=create)
