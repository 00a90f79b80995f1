"""Runs: ingest runs (when, which sources, what they counted) and stored classification runs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional, Sequence

from sqlalchemy import insert, select, update

from .catalog import PAGE, pages
from .schema import Classification, ClassificationRun, IngestRun, Item, ItemState

if TYPE_CHECKING:
    from .catalog import Catalog


@dataclass(frozen=True)
class RunInfo:
    """A stored classification run."""

    id: int
    labels: list[str]
    templates: str
    top_k: int
    item_count: int
    created_at: float
    complete: bool


class CatalogRuns:
    """Ingest runs and stored classification runs (``catalog.runs``)."""

    def __init__(self, catalog: "Catalog") -> None:
        self.catalog = catalog

    def start_ingest(self) -> int:
        with self.catalog.begin() as conn:
            return int(conn.execute(insert(IngestRun).values(started_at=time.time(), sources="[]"))
                       .inserted_primary_key[0])

    def finish_ingest(self, run_id: int, sources: list[str], counts: dict) -> None:
        with self.catalog.begin() as conn:
            conn.execute(update(IngestRun).where(IngestRun.id == run_id).values(
                finished_at=time.time(), sources=json.dumps(sources), counts=json.dumps(counts)))

    def last_ingest(self) -> Optional[dict]:
        with self.catalog.read() as conn:
            run = conn.execute(select(IngestRun).order_by(IngestRun.id.desc()).limit(1)).first()
        if run is None:
            return None
        import json

        return {"started_at": run.started_at, "finished_at": run.finished_at,
                "counts": json.loads(run.counts) if run.counts else None}

    def last_ingest_sources(self) -> list[str]:
        """The sources the last finished ingest run named."""
        import json

        with self.catalog.read() as conn:
            sources = conn.execute(select(IngestRun.sources).where(IngestRun.finished_at.is_not(None))
                                   .order_by(IngestRun.id.desc()).limit(1)).scalar()
        return list(json.loads(sources)) if sources else []

    def start_classification(self, labels: Sequence[str], templates: str, top_k: int) -> int:
        with self.catalog.begin() as conn:
            return int(conn.execute(insert(ClassificationRun).values(
                created_at=time.time(), labels=json.dumps(list(labels)), templates=templates, top_k=top_k,
                item_count=0)).inserted_primary_key[0])

    def add_classifications(self, run_id: int, rows: Sequence[tuple[int, int, str, float]]) -> None:
        """(item id, rank, label, score) rows of one run, in one transaction."""
        if not rows:
            return
        with self.catalog.begin() as conn:
            conn.execute(insert(Classification), [
                {"run_id": run_id, "item_id": item_id, "rank": rank, "label": label, "score": score}
                for item_id, rank, label, score in rows])

    def finish_classification(self, run_id: int, item_count: int) -> None:
        with self.catalog.begin() as conn:
            conn.execute(update(ClassificationRun).where(ClassificationRun.id == run_id)
                         .values(item_count=item_count, completed_at=time.time()))

    def classification(self, run_id: Optional[int] = None) -> Optional[RunInfo]:
        """The run ``run_id``, or the latest complete one when ``None`` (an interrupted run is never
        the latest)."""
        query = select(ClassificationRun)
        query = query.where(ClassificationRun.id == run_id) if run_id is not None else \
            query.where(ClassificationRun.completed_at.is_not(None)).order_by(ClassificationRun.id.desc()).limit(1)
        with self.catalog.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        run = row
        return RunInfo(run.id, json.loads(run.labels), run.templates, run.top_k, run.item_count, run.created_at,
                       run.completed_at is not None)

    def iter_labels(self, run_id: int, page: int = PAGE) -> Iterator[list[tuple[int, int, str]]]:
        """(item id, embedding id, best label) of the still-embedded items of a run, page by page."""
        statement = (select(Classification.item_id, Item.embedding_id, Classification.label)
                     .join(Item, Item.id == Classification.item_id)
                     .where(Classification.run_id == run_id, Classification.rank == 1,
                            Item.state == ItemState.EMBEDDED.value, Item.embedding_id.is_not(None)))
        for rows in pages(self.catalog, statement, Classification.item_id, page):
            yield [(int(r[0]), int(r[1]), str(r[2])) for r in rows]
