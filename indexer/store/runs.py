"""The text-embedding cache and the stored classification runs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from sqlalchemy import insert, select, update

from .dialect import insert_for
from .reads import PAGE, chunked
from .schema import Classification, ClassificationRun, Item, ItemState, TextEmbedding

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy.engine import Connection, Row
    from sqlalchemy.sql import Select


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
    """Text cache and classification runs (mixed into ``Catalog``)."""

    def read(self) -> "AbstractContextManager[Connection]":  # provided by Catalog
        raise NotImplementedError

    def begin(self) -> "AbstractContextManager[Connection]":  # provided by Catalog
        raise NotImplementedError

    def _pages(self, statement: "Select", key: Any, page: int = PAGE, after: Any = 0) -> Iterator[list["Row"]]:
        raise NotImplementedError  # provided by CatalogReads

    # -- text cache -----------------------------------------------------------------------------

    def cached_texts(self, model_key: str, texts: Sequence[str]) -> dict[str, bytes]:
        """text -> stored vector blob, for the texts already encoded by the model ``model_key``."""
        found: dict[str, bytes] = {}
        with self.read() as conn:
            for part in chunked(list(dict.fromkeys(texts))):
                found.update(conn.execute(select(TextEmbedding.text, TextEmbedding.vector).where(
                    TextEmbedding.model_key == model_key, TextEmbedding.text.in_(part))).all())
        return found

    def cache_texts(self, model_key: str, blobs: dict[str, bytes]) -> None:
        if not blobs:
            return
        with self.begin() as conn:
            conn.execute(insert_for(getattr(self, "dialect"), TextEmbedding).on_conflict_do_nothing(
                index_elements=[TextEmbedding.model_key, TextEmbedding.text]),
                         [{"model_key": model_key, "text": t, "vector": blob} for t, blob in blobs.items()])

    # -- classification runs --------------------------------------------------------------------

    def start_classification_run(self, labels: Sequence[str], templates: str, top_k: int) -> int:
        with self.begin() as conn:
            return int(conn.execute(insert(ClassificationRun).values(
                created_at=time.time(), labels=json.dumps(list(labels)), templates=templates, top_k=top_k,
                item_count=0)).inserted_primary_key[0])

    def add_classifications(self, run_id: int, rows: Sequence[tuple[int, int, str, float]]) -> None:
        """(item id, rank, label, score) rows of one run, in one transaction."""
        if not rows:
            return
        with self.begin() as conn:
            conn.execute(insert(Classification), [
                {"run_id": run_id, "item_id": item_id, "rank": rank, "label": label, "score": score}
                for item_id, rank, label, score in rows])

    def finish_classification_run(self, run_id: int, item_count: int) -> None:
        with self.begin() as conn:
            conn.execute(update(ClassificationRun).where(ClassificationRun.id == run_id)
                         .values(item_count=item_count, completed_at=time.time()))

    def classification_run(self, run_id: Optional[int] = None) -> Optional[RunInfo]:
        """The run ``run_id``, or the latest complete one when ``None`` (an interrupted run is never
        the latest)."""
        query = select(ClassificationRun)
        query = query.where(ClassificationRun.id == run_id) if run_id is not None else \
            query.where(ClassificationRun.completed_at.is_not(None)).order_by(ClassificationRun.id.desc()).limit(1)
        with self.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        run = row
        return RunInfo(run.id, json.loads(run.labels), run.templates, run.top_k, run.item_count, run.created_at,
                       run.completed_at is not None)

    def iter_run_labels(self, run_id: int, page: int = PAGE) -> Iterator[list[tuple[int, int, str]]]:
        """(item id, embedding id, best label) of the still-embedded items of a run, page by page."""
        statement = (select(Classification.item_id, Item.embedding_id, Classification.label)
                     .join(Item, Item.id == Classification.item_id)
                     .where(Classification.run_id == run_id, Classification.rank == 1,
                            Item.state == ItemState.EMBEDDED.value, Item.embedding_id.is_not(None)))
        for rows in self._pages(statement, Classification.item_id, page):
            yield [(int(r[0]), int(r[1]), str(r[2])) for r in rows]
