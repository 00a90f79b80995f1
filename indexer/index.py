"""``Index``: the library's main object, and a facade. The CLI and the service are thin layers over it.

    from indexer import open_index
    index = open_index("photos-index", model="tiny-shapes")
    index.ingest(["~/photos"])
    for hit in index.search("a red star", k=5):
        print(hit.path, hit.score)

Each verb assembles what it needs from the index's ``IndexContext`` (catalog, vectors, model, text
encoder, settings) and calls one domain function with it; nothing below calls back up. The model is
loaded only when something has to be embedded (new images, an uncached text, a query image that is not
in the catalog); everything else answers from the catalog and the vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np

from .config import DEFAULT_MODEL, DEFAULT_PRETRAINED, Settings, parse_size
from .context import IndexContext, empty_index, open_context
from .errors import HeadError, QueryError
from .models import ModelSpec

if TYPE_CHECKING:
    from .audit import AuditOptions, AuditResult, DatasetLabels
    from .audit.decisions import ExportSummary as LabelsExportSummary
    from .store.audits import Decision
    from .ingest import IngestSummary
    from .ingest.imported import ImportSummary
    from .query.export import ExportSummary
    from .query.classify import ClassifyResult
    from .query.evaluate import EvalReport
    from .query.head import Head
    from .query.search import SearchHit
    from .store.catalog import Catalog
    from .store.vectors import Filler, VectorIndex

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
        self.context: IndexContext = open_context(Path(path).expanduser(), as_spec(model), settings or Settings(),
                                                  create)

    # -- what the index is --------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The index folder (the SQLite catalog, unless it is on a server, and the FAISS files)."""
        return self.context.path

    @property
    def settings(self) -> Settings:
        """The settings it was opened with (limits, workers, catalog URL)."""
        return self.context.settings

    @property
    def catalog(self) -> "Catalog":
        return self.context.catalog

    @property
    def recorded_model(self) -> Optional[dict]:
        """The identity of the index's model as the catalog records it (None before the first embedding)."""
        return self.context.model.recorded

    @property
    def dim(self) -> int:
        """The embedding size of the index's model."""
        return self.context.model.dim

    def vectors(self, sync: bool = True, filler: Optional["Filler"] = None) -> "VectorIndex":
        """The FAISS index, caught up with the catalog (``sync``)."""
        return self.context.vectors.get(sync, filler)

    def set_memory_budget(self, budget: Union[int, str, None]) -> None:
        """The vectors' memory budget in bytes, or a size such as "4GB" (None: no limit); large indexes
        above it use IVF-PQ codes. Remembered by the index."""
        if isinstance(budget, str):
            try:
                budget = parse_size(budget)
            except ValueError as exc:
                raise QueryError(str(exc), param="index_memory") from None
        self.catalog.set_meta("vectors.memory_budget", budget)

    # -- the things users do ----------------------------------------------------------------------

    def ingest(self, sources: Iterable[Union[str, Path]], ray: Optional[str] = None, **options: Any) -> "IngestSummary":
        """Embeds every new or changed image under ``sources``; see ``indexer.ingest.run.run_ingest``.
        With ``ray`` (``"local"``, ``"auto"`` or ``"ray://HOST:PORT"``) on a Ray cluster instead; see
        ``indexer.distributed.run_distributed_ingest`` for its options."""
        if ray:
            from .distributed import run_distributed_ingest

            return run_distributed_ingest(self.context, (Path(s) for s in sources), ray_address=ray, **options)
        from .ingest.run import run_ingest

        return run_ingest(self.context, (Path(s) for s in sources), **options)

    def search(self, query: Optional[str] = None, images: Sequence[Union[str, Path]] = (), k: int = 10,
               path_filter: Optional[str] = None, min_score: Optional[float] = None, where: Optional[str] = None,
               hybrid: bool = False) -> list["SearchHit"]:
        """Top-``k`` hits for a text / image / combined query (``indexer.query.search`` has the syntax);
        ``where``: a filter expression (``indexer.store.where`` has the grammar); ``hybrid``: keyword
        ranking over captions and paths fused with the cosine ranking."""
        from .query.search import search

        self.context.require_embedded()
        return search(self.context, query, [Path(i) for i in images], k, path_filter, min_score, where, hybrid)

    def query_vector(self, query: Optional[str] = None, images: Sequence[Union[str, Path]] = (),
                     vectors: Sequence[tuple[float, np.ndarray]] = (), read_paths: bool = True) -> np.ndarray:
        """The normalised vector of a text / image / combined query (``indexer.query.search`` has the
        syntax), plus ``vectors`` ((weight, embedding) pairs: an uploaded picture, a stored item). Without
        ``read_paths`` no query term is read as a file (queries from a network client)."""
        from .query.search import QueryTerm, parse_query, query_vector

        terms = parse_query(query, read_paths) if query and query.strip() else []
        terms += [QueryTerm(1.0, image=Path(i)) for i in images]
        return query_vector(self.context, terms, vectors)

    def search_vector(self, vector: np.ndarray, k: int = 10, path_filter: Optional[str] = None,
                      min_score: Optional[float] = None, offset: int = 0,
                      where: Optional[str] = None, keywords: Optional[str] = None) -> list["SearchHit"]:
        """Top-``k`` hits for a query vector, after the ``offset`` best, among the items ``where`` keeps;
        with ``keywords``, the cosine ranking fused with their full-text ranking (hybrid)."""
        from .query.search import hybrid_search, search_vector

        # The loaded vectors say whether there is anything to search (counting items costs a scan).
        if self.context.vectors.get().ntotal == 0:
            raise empty_index(self.path)
        vector = np.asarray(vector, dtype=np.float32)
        if keywords:
            return hybrid_search(self.context, vector, keywords, k + offset, path_filter, min_score, where)[offset:]
        return search_vector(self.context, vector, k, path_filter, min_score, offset, where)

    def import_embeddings(self, folder: Union[str, Path], verify: int = 8,
                          progress: Optional[Callable[[int], None]] = None) -> "ImportSummary":
        """Registers the embeddings of a clip-retrieval output folder as embedded items (no picture decoded);
        ``verify``: pictures readable here embedded again to check the model (``indexer.ingest.imported``)."""
        from .ingest.imported import import_clip_retrieval

        return import_clip_retrieval(self.context, Path(folder), verify, progress)

    def export_embeddings(self, output: Union[str, Path], format: str = "clip-retrieval", part_size: int = 1_000_000,
                          where: Optional[str] = None,
                          progress: Optional[Callable[[int], None]] = None) -> "ExportSummary":
        """Writes the index's embeddings as clip-retrieval's folder or one Parquet table (``indexer.query.export``)."""
        from .query.export import export_embeddings

        return export_embeddings(self.context, Path(output), format, part_size, where, progress)

    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised embeddings of ``texts`` (cached by model and text)."""
        return self.context.texts.embed(texts)

    def embed_image_bytes(self, data: bytes, name: str = "the query image") -> np.ndarray:
        """The embedding of a picture given as bytes, decoded under the index's limits."""
        from .query.images import embed_image_bytes

        return embed_image_bytes(self.context, data, name)

    def classify(self, labels: Sequence[str], templates: str = "default", top_k: int = 1,
                 **options: Any) -> "ClassifyResult":
        """Zero-shot classification of every embedded item (``transductive=True``: the whole collection at
        once, label-free, guarded); see ``indexer.query.classify.classify``."""
        from .query.classify import classify

        return classify(self.context, labels, templates, top_k, **options)

    def evaluate(self, dataset: Union[str, Path], templates: str = "default",
                 unseen: Optional[Sequence[str]] = None, calibration: Union[float, str, None] = None,
                 mapping: Optional[dict[str, str]] = None, head: Optional[str] = None,
                 compare: bool = False, transductive: bool = False) -> "EvalReport":
        """Zero-shot accuracy (and GZSL figures with ``unseen``) on a labelled dataset this index holds,
        by plain cosine or a stored ``head``; ``compare`` adds every method's GZSL figures side by side;
        ``transductive`` classifies the dataset as one collection, label-free. See ``indexer.query.evaluate``."""
        from .query.evaluate import evaluate

        return evaluate(self.context, Path(dataset), templates, unseen, calibration, mapping, head, compare,
                        transductive)

    def audit(self, dataset: Optional["DatasetLabels"] = None, options: Optional["AuditOptions"] = None,
              progress: Optional[Callable[[str, int, int], None]] = None) -> "AuditResult":
        """Likely mislabels, duplicates, outliers and label-set problems; see ``indexer.audit``."""
        from .audit import audit

        return audit(self.context, dataset, options, progress)

    def audit_labels(self, labels_file: Union[str, Path, None] = None, root: Union[str, Path, None] = None,
                     run_id: Optional[int] = None, from_run: bool = False) -> "DatasetLabels":
        """The labels an audit checks: a ``path,label`` CSV, a stored classification run (``from_run``,
        the latest unless ``run_id``), or the items' folder names below ``root``."""
        from .audit.dataset import csv_labels, folder_labels, run_labels

        if from_run or run_id is not None:
            return run_labels(self.context, run_id)
        if labels_file is not None:
            return csv_labels(self.context, labels_file, root)
        return folder_labels(self.context, root)

    def audit_findings(self, folder: Union[str, Path, None] = None) -> list[dict]:
        """The findings of a stored audit (``findings.json`` in ``folder``, by default INDEX/audit)."""
        from .audit.report import read_findings

        return read_findings(Path(folder) if folder else self.path / "audit")

    def audit_decide(self, finding: str, action: str, label: Optional[str] = None) -> "Decision":
        """Records a decision on a finding of the latest audit; see ``indexer.audit.decisions``."""
        from .audit.decisions import decide

        return decide(self.context, finding, action, label)

    def audit_fill_hashes(self, progress: Optional[Callable[[str, int, int], None]] = None) -> tuple[int, int]:
        """Makes the perceptual hash of every content without one (no embedding redone); (made, unreadable)."""
        from .audit.hashes import fill_hashes

        return fill_hashes(self.context, progress)

    def audit_undo(self, finding: str) -> bool:
        """Forgets the decision on a finding; False when there was none."""
        return self.context.catalog.audits.undo(finding)

    def audit_decisions(self) -> list["Decision"]:
        """Every decision made on audit findings, oldest first."""
        return self.context.catalog.audits.decisions()

    def audit_export(self, output: Union[str, Path], dataset: Optional["DatasetLabels"] = None,
                     drop_duplicates: bool = False) -> "LabelsExportSummary":
        """Writes the corrected labels (decisions applied) to ``output``; see ``indexer.audit.decisions``."""
        from .audit.decisions import export

        return export(self.context, Path(output), dataset, drop_duplicates)

    # -- trained heads (indexer.heads) -------------------------------------------------------------

    def train_head(self, name: str, labels_csv: Union[str, Path], classes: Sequence[str], method: str = "generative",
                   **options: Any) -> "Head":
        """Trains a zero-shot head on the stored embeddings of the items labelled in ``labels_csv`` and
        stores it; see ``indexer.heads.train.train_head``."""
        from .heads.train import train_head

        return train_head(self.context, name, labels_csv, classes, method, **options)

    def head(self, name: str) -> "Head":
        """The stored head ``name`` (refused when trained for another model)."""
        from .query.head import load_head

        return load_head(self.catalog, self.context.model, name, self.path)

    def heads(self) -> list[dict[str, Any]]:
        """Every stored head, without weights; ``usable`` is False for a head of another model."""
        from .query.head import list_heads

        return list_heads(self.catalog, self.context.model)

    def delete_head(self, name: str) -> None:
        """Removes the stored head ``name``; an unknown name raises ``HeadError``."""
        if not self.catalog.heads.delete(name):
            raise HeadError(f"no head named {name!r} in the index at {self.path}")

    # -- what the index holds -----------------------------------------------------------------------

    def count_embedded(self) -> int:
        """How many live items have an embedding."""
        return self.catalog.count_embedded()

    def status(self) -> dict:
        """Counts, model, vectors and sizes: no model load, no vector load."""
        from .query.items import status

        return status(self.context)

    def failures(self, limit: Optional[int] = 100) -> list[dict]:
        """Items that could not be read, with their reason, most recent first."""
        return self.catalog.items.failures(limit)

    def item(self, item_id: int) -> Optional[dict]:
        """What the catalog holds about one item (path, state, size, sha256, ...), or None."""
        return self.catalog.items.get(item_id)

    def item_paths(self, item_ids: Sequence[int]) -> dict[int, str]:
        """item id -> path."""
        return self.catalog.items.uris(item_ids)

    def item_facts(self, item_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """item id -> its caption, date taken, camera, width, height, lat, lon (None where unknown)."""
        return self.catalog.facts(item_ids)

    def item_embedding(self, item_id: int) -> Optional[np.ndarray]:
        """The stored embedding of an embedded item, or None."""
        from .query.items import item_embedding

        return item_embedding(self.catalog, item_id)

    def same_content(self, item_id: int) -> list[tuple[int, str]]:
        """(item id, path) of the other embedded items holding the same content as ``item_id``."""
        from .query.items import same_content

        return same_content(self.catalog, item_id)

    def item_bytes(self, item_id: int) -> bytes:
        """The content of an item, read from where the catalog says it is (a file, an archive member)."""
        from .query.items import item_bytes

        return item_bytes(self.context, item_id)

    def ingest_sources(self) -> list[str]:
        """The sources named by the last finished ingest run (to ingest them again)."""
        return self.catalog.runs.last_ingest_sources()

    def close(self) -> None:
        """Closes the catalog (``with open_index(...) as index:`` does it for you)."""
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
    settings = settings or Settings()
    if catalog:
        settings = settings.replace(catalog=catalog)
    if isinstance(model, str) or pretrained or weights:
        model = as_spec(model if isinstance(model, str) else None, pretrained, weights)
    return Index(path, model=model, settings=settings, create=create)
