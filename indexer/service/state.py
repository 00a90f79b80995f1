"""What the service holds while it runs: the open indexes, their caches, and background jobs.

Each served index is one ``Index`` opened once: its vectors stay loaded (caught up with what an ingest
running beside the service commits, at the next query), its model is loaded at the first query that
needs it, and texts asked before are answered from memory. Requests run on worker threads; the FAISS
index and the model are used under one lock per index (a search holds it for milliseconds), while a
classification encodes its labels in a job thread of its own, a few prompts per turn of the lock, and
reads stored embeddings without it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np

from ..errors import QueryError
from ..index import Index, open_index

if TYPE_CHECKING:
    from ..query.scoring import LabelScores

class NotFound(Exception):
    """An index, item or run the request names does not exist (HTTP 404)."""


THUMBNAILS_KEPT = 4096  # JPEG thumbnails kept in memory per index
JOBS_KEPT = 16  # classification runs kept in memory per index (the oldest finished ones go first)
LABEL_PROMPTS_PER_LOCK = 64  # label prompts encoded per turn of the index's lock


@dataclass
class ServiceConfig:
    """How ``indexer serve`` was started."""

    indexes: dict[str, Path]
    catalog: Optional[str] = None  # the one served index's catalog URL (None: the SQLite file in its folder)
    host: str = "127.0.0.1"
    port: int = 1234
    token: Optional[str] = None
    allowed_hosts: tuple[str, ...] = ()  # Host names answered besides the address, localhost and IPs ('*': any)
    allow_ingest: bool = False
    allow_decisions: bool = False  # POST /api/audit/decisions records decisions in the catalog
    max_upload_bytes: int = 20 * 2**20
    model: Optional[str] = None
    device: Optional[str] = None


class FairLock:
    """A reentrant lock handed over in the order it was asked for: a job that takes it again and again
    in small turns (a classification encoding its labels) cannot starve the requests waiting for it, as
    a plain lock lets the thread that just released it take it back before a waiter wakes."""

    def __init__(self) -> None:
        self._turns = threading.Condition(threading.Lock())
        self._owner: Optional[int] = None
        self._depth = 0
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> "FairLock":
        me = threading.get_ident()
        with self._turns:
            if self._owner == me:
                self._depth += 1
                return self
            ticket = self._next_ticket
            self._next_ticket += 1
            while self._serving != ticket or self._owner is not None:
                self._turns.wait()
            self._owner, self._depth = me, 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._turns:
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._serving += 1
                self._turns.notify_all()


class LRU:
    """A small thread-safe least-recently-used map."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: "OrderedDict[Any, Any]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)


@dataclass
class ClassifyJob:
    """One classification of a whole index over a label set, run in the background and kept in memory
    (the service never writes runs into the catalog): per item, its best label and that label's score."""

    id: str
    labels: list[str]
    templates: str
    total: int
    state: str = "running"  # running, done, failed
    done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    error: Optional[str] = None
    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    transductive: bool = False
    guard: Optional[dict] = None  # with transductive: the guard's record
    _item_ids: list[np.ndarray] = field(default_factory=list, repr=False)
    _labels: list[np.ndarray] = field(default_factory=list, repr=False)
    _scores: list[np.ndarray] = field(default_factory=list, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, predictions: Sequence[Any]) -> None:
        position = {label: i for i, label in enumerate(self.labels)}
        ids = np.fromiter((p.item_id for p in predictions), dtype=np.int64, count=len(predictions))
        best = np.fromiter((position[p.labels[0][0]] for p in predictions), dtype=np.int32, count=len(predictions))
        scores = np.fromiter((p.labels[0][1] for p in predictions), dtype=np.float32, count=len(predictions))
        with self._lock:
            self._item_ids.append(ids)
            self._labels.append(best)
            self._scores.append(scores)
            self.done += len(predictions)
            for i, n in zip(*np.unique(best, return_counts=True)):
                self.counts[self.labels[int(i)]] = self.counts.get(self.labels[int(i)], 0) + int(n)

    def page(self, label: str, offset: int, limit: int) -> tuple[int, list[tuple[int, float]]]:
        """(items with ``label`` as best label so far, the page of them by descending score)."""
        if label not in self.labels:
            raise QueryError(f"{label!r} is not one of this run's labels")
        with self._lock:
            if self._item_ids and len(self._item_ids) > 1:  # one array per chunk: merge them once
                self._item_ids = [np.concatenate(self._item_ids)]
                self._labels = [np.concatenate(self._labels)]
                self._scores = [np.concatenate(self._scores)]
            if not self._item_ids:
                return 0, []
            ids, best, scores = self._item_ids[0], self._labels[0], self._scores[0]
        mask = best == self.labels.index(label)
        chosen_ids, chosen_scores = ids[mask], scores[mask]
        order = np.argsort(-chosen_scores, kind="stable")[offset:offset + limit]
        return int(mask.sum()), [(int(chosen_ids[i]), float(chosen_scores[i])) for i in order]


@dataclass
class IngestJob:
    """An ingest of the index's recorded sources, started through the API (``--allow-ingest`` only)."""

    sources: list[str]
    state: str = "running"
    embedded: int = 0
    summary: Optional[dict] = None
    error: Optional[str] = None


class ServedIndex:
    """One index as the service holds it."""

    def __init__(self, name: str, path: Path, config: ServiceConfig) -> None:
        from ..config import Settings

        settings = Settings().replace(device=config.device, catalog=config.catalog)
        self.name = name
        self.path = path
        self.index: Index = open_index(path, config.model, settings=settings, create=False)
        # Clients' texts are kept in memory (bounded), never written: no client grows the catalog, and a
        # full disk never fails a search.
        self.index.context.texts.persist = False
        self.lock = FairLock()  # the FAISS index and the model: one user at a time, in turn
        self.thumbnails = LRU(THUMBNAILS_KEPT)
        self.jobs: "OrderedDict[str, ClassifyJob]" = OrderedDict()
        self.ingest_job: Optional[IngestJob] = None
        self._jobs_lock = threading.Lock()

    # -- queries ----------------------------------------------------------------------------------

    def query_vector(self, text: Optional[str], vectors: Sequence[tuple[float, np.ndarray]] = ()) -> np.ndarray:
        """A query's vector; a text is never read as a file name (the client's paths are not ours)."""
        with self.lock:
            return self.index.query_vector(text, vectors=vectors, read_paths=False)

    def search(self, vector: np.ndarray, k: int, offset: int = 0, path_filter: Optional[str] = None,
               min_score: Optional[float] = None, where: Optional[str] = None,
               keywords: Optional[str] = None) -> list:
        """Hits for ``vector``; with ``keywords``, fused with their full-text ranking (hybrid)."""
        with self.lock:
            return self.index.search_vector(vector, k, path_filter, min_score, offset, where, keywords)

    def image_vector(self, data: bytes, name: str = "the uploaded image") -> np.ndarray:
        """An uploaded picture's embedding, decoded under the index's pixel and time limits."""
        with self.lock:
            return self.index.embed_image_bytes(data, name)

    def item_vector(self, item_id: int) -> np.ndarray:
        vector = self.index.item_embedding(item_id)
        if vector is None:
            raise NotFound(f"no embedded item {item_id} in index {self.name!r}")
        return vector

    def thumbnail(self, item_id: int, size: int) -> Optional[bytes]:
        """A JPEG thumbnail of an item (None when its content cannot be decoded)."""
        from ..media.thumbnails import thumbnail_jpeg

        cached = self.thumbnails.get((item_id, size))
        if cached is not None:
            return cached
        jpeg = thumbnail_jpeg(self.index.item_bytes(item_id), size, max_pixels=self.index.settings.max_pixels)
        if jpeg is not None:
            self.thumbnails.put((item_id, size), jpeg)
        return jpeg

    # -- classification jobs ----------------------------------------------------------------------

    def start_classify(self, labels: list[str], templates: str, pool: ThreadPoolExecutor,
                       transductive: bool = False) -> ClassifyJob:
        job = ClassifyJob(id=uuid.uuid4().hex[:12], labels=labels, templates=templates,
                          total=self.index.count_embedded(), counts={label: 0 for label in labels},
                          transductive=transductive)
        with self._jobs_lock:
            self.jobs[job.id] = job
            finished = [key for key, old in self.jobs.items() if old.state != "running"]
            while len(self.jobs) > JOBS_KEPT and finished:
                del self.jobs[finished.pop(0)]
        pool.submit(self._classify, job)
        return job

    def _label_scores(self, labels: list[str], templates: str) -> "LabelScores":
        """The labels' scorer, their prompts encoded a few at a time under the lock: a search or an
        upload waits for one small batch of texts, never for the whole label set (80 prompts a label
        with the ensemble templates)."""
        from ..models.templates import prompts_for
        from ..query.scoring import LabelScores, label_embeddings

        texts = self.index.context.texts
        per_label = max(1, len(prompts_for(labels[0], templates)))
        step = max(1, LABEL_PROMPTS_PER_LOCK // per_label)
        rows = []
        for start in range(0, len(labels), step):
            with self.lock:
                rows.append(label_embeddings(texts, labels[start:start + step], templates))
        return LabelScores(labels, np.concatenate(rows), texts.logit_scale)

    def _classify(self, job: ClassifyJob) -> None:
        try:
            scorer = self._label_scores(job.labels, job.templates)
            result = self.index.classify(job.labels, job.templates, 1, on_predictions=job.add, store=False,
                                         scorer=scorer, transductive=job.transductive)
            job.total, job.guard = result.items, result.transductive
            job.state = "done"
        except Exception as exc:  # reported to the client through the job's state, never lost
            job.state, job.error = "failed", str(exc)
        job.seconds = round(time.time() - job.started, 3)

    def job(self, job_id: str) -> ClassifyJob:
        with self._jobs_lock:
            job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no classification run {job_id!r} in index {self.name!r} (runs are kept in memory)")
        return job

    # -- ingest (only with --allow-ingest) ---------------------------------------------------------

    def start_ingest(self, pool: ThreadPoolExecutor) -> IngestJob:
        if self.ingest_job is not None and self.ingest_job.state == "running":
            return self.ingest_job
        sources = self.index.ingest_sources()
        if not sources:
            raise QueryError(f"index {self.name!r} records no finished ingest to repeat; run `indexer ingest` first")
        relative = [source for source in sources if not Path(source).is_absolute()]
        if relative:  # recorded by an older indexer: they would be read from wherever the service runs
            raise QueryError(f"index {self.name!r} recorded its sources as relative paths ({relative[0]}); run "
                             "`indexer ingest` once with absolute paths, then ingest through the service")
        job = IngestJob(sources)
        self.ingest_job = job
        pool.submit(self._ingest, job)
        return job

    def _ingest(self, job: IngestJob) -> None:
        def progress(_stage: str, done: int, _total: int) -> None:
            job.embedded += done

        try:
            # Its own Index: the served one keeps answering and catches up with each commit.
            with open_index(self.path, create=False, settings=self.index.settings) as index:
                summary = index.ingest(job.sources, progress=progress, warn=lambda message: None, strict=False)
            job.summary = {"embedded": summary.embedded, "unchanged": summary.unchanged,
                           "reused": summary.reused, "failed": summary.failed}
            job.state = "done"
        except Exception as exc:
            job.state, job.error = "failed", str(exc)

    def close(self) -> None:
        self.index.close()


class Registry:
    """The served indexes by name, and the threads their background jobs run on."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.indexes: dict[str, ServedIndex] = {}
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="indexer-job")
        try:
            for name, path in config.indexes.items():
                self.indexes[name] = ServedIndex(name, path, config)
        except BaseException:
            self.close()
            raise

    @property
    def names(self) -> list[str]:
        return list(self.indexes)

    def get(self, name: Optional[str]) -> ServedIndex:
        if not name:
            return next(iter(self.indexes.values()))
        served = self.indexes.get(name)
        if served is None:
            raise NotFound(f"no index named {name!r}; this service has {', '.join(self.indexes)}")
        return served

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        for served in self.indexes.values():
            served.close()
