"""What the catalog answers about items and embeddings: counts, pages and look-ups by ids.

Two mechanisms serve every caller, so their limits live in one place:

- ``chunked``: long id or path lists are split under the database's cap on bound parameters;
- ``_pages``: keyset paging (``WHERE key > last ORDER BY key LIMIT n``), so a pass over millions of
  rows holds one page at a time and each page is a short read that never blocks a writer for long.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence, TypeVar

import numpy as np
from sqlalchemy import Select, func, select

from .codec import FeatureMatrix, blobs_to_matrix
from .dialect import contains_condition, glob_condition
from .paths import has_wildcards, path_matches, uri_under  # noqa: F401 - also read from here
from .schema import Embedding, IngestRun, Item, ItemState, Meta
from .states import PURGES_KEY

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy.engine import Connection, Row

T = TypeVar("T")

IN_CHUNK = 900  # values per IN (...) list: under SQLite's oldest limit of 999 bound parameters
PAGE = 8192  # rows per keyset page
EMBEDDED = ItemState.EMBEDDED.value


def chunked(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """``values`` in slices of at most ``size``: one IN list each."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


class CatalogReads:
    """Read queries over items and embeddings (mixed into ``Catalog``)."""

    def read(self) -> "AbstractContextManager[Connection]":  # provided by Catalog
        raise NotImplementedError

    def embedding_dim(self) -> Optional[int]:  # provided by Catalog
        raise NotImplementedError

    def _pages(self, statement: Select, key: Any, page: int = PAGE, after: Any = 0) -> Iterator[list["Row"]]:
        """Pages of ``statement``'s rows in ``key`` order; ``key`` must be the first selected column."""
        last = after
        while True:
            with self.read() as conn:
                rows = conn.execute(statement.where(key > last).order_by(key).limit(page)).all()
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def _dim(self) -> int:
        dim = self.embedding_dim()
        if dim is None:
            raise LookupError("the catalog holds no embeddings yet")
        return dim

    # -- counts ---------------------------------------------------------------------------------

    def has_embedded(self) -> bool:
        """Whether any item is embedded (one index look-up, not a count)."""
        with self.read() as conn:
            return conn.execute(select(Item.id).where(Item.state == EMBEDDED).limit(1)).first() is not None

    def count_embedded(self) -> int:
        with self.read() as conn:
            return int(conn.execute(select(func.count()).where(Item.state == EMBEDDED)).scalar() or 0)

    def counts_by_state(self) -> dict[str, int]:
        with self.read() as conn:
            return {state: int(n) for state, n in conn.execute(select(Item.state, func.count()).group_by(Item.state))}

    def failures_by_reason(self) -> dict[str, int]:
        with self.read() as conn:
            return {reason: int(n) for reason, n in conn.execute(
                select(Item.failure_reason, func.count()).where(Item.state == ItemState.FAILED.value)
                .group_by(Item.failure_reason))}

    def failures(self, limit: Optional[int] = 100) -> list[dict]:
        """Items that could not be read, with their reason, most recent first."""
        query = (select(Item.uri, Item.failure_reason, Item.failure_detail)
                 .where(Item.state == ItemState.FAILED.value).order_by(Item.updated_at.desc(), Item.id))
        if limit is not None:
            query = query.limit(limit)
        with self.read() as conn:
            return [{"path": uri, "reason": reason, "detail": detail} for uri, reason, detail in conn.execute(query)]

    def count_contents(self) -> int:
        with self.read() as conn:
            return int(conn.execute(select(func.count(Embedding.id))).scalar() or 0)

    def embeddings_version(self) -> tuple[int, int]:
        """(largest embedding id, number of purges): changes whenever embeddings are added or removed
        through indexer, and costs two index look-ups (``embedding_state`` counts every row)."""
        with self.read() as conn:
            max_id = conn.execute(select(func.max(Embedding.id))).scalar()
            purges = conn.execute(select(Meta.value).where(Meta.key == PURGES_KEY)).scalar()
        return int(max_id or 0), int(purges or 0)

    def embedding_state(self) -> tuple[int, int]:
        """(number of embeddings, largest embedding id): what the vectors must hold to be in step."""
        with self.read() as conn:
            count, max_id = conn.execute(select(func.count(Embedding.id), func.max(Embedding.id))).one()
        return int(count or 0), int(max_id or 0)

    def last_ingest_run(self) -> Optional[dict]:
        with self.read() as conn:
            run = conn.execute(select(IngestRun).order_by(IngestRun.id.desc()).limit(1)).first()
        if run is None:
            return None
        import json

        return {"started_at": run.started_at, "finished_at": run.finished_at,
                "counts": json.loads(run.counts) if run.counts else None}

    def last_ingest_sources(self) -> list[str]:
        """The sources the last finished ingest run named."""
        import json

        with self.read() as conn:
            sources = conn.execute(select(IngestRun.sources).where(IngestRun.finished_at.is_not(None))
                                   .order_by(IngestRun.id.desc()).limit(1)).scalar()
        return list(json.loads(sources)) if sources else []

    # -- embeddings -----------------------------------------------------------------------------

    def iter_embeddings(self, after_id: int = 0, page: int = PAGE, upto_id: Optional[int] = None
                        ) -> Iterator[tuple[np.ndarray, FeatureMatrix]]:
        """(ids, matrix) pages of the embeddings with ``after_id`` < id (<= ``upto_id``), in id order."""
        dim = self.embedding_dim()
        if dim is None:
            return
        statement = select(Embedding.id, Embedding.vector)
        if upto_id is not None:
            statement = statement.where(Embedding.id <= upto_id)
        for rows in self._pages(statement, Embedding.id, page, after_id):
            yield np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), \
                blobs_to_matrix([r[1] for r in rows], dim)

    def embeddings_by_id(self, ids: Sequence[int]) -> tuple[np.ndarray, FeatureMatrix]:
        """(ids found, their embeddings); ids the catalog does not hold are left out."""
        dim, found, blobs = self._dim(), [], []
        with self.read() as conn:
            for part in chunked([int(i) for i in ids]):
                for embedding_id, blob in conn.execute(select(Embedding.id, Embedding.vector)
                                                       .where(Embedding.id.in_(part))):
                    found.append(embedding_id)
                    blobs.append(blob)
        return np.array(found, dtype=np.int64), blobs_to_matrix(blobs, dim)

    def embedding_id_range(self) -> tuple[int, int]:
        with self.read() as conn:
            low, high = conn.execute(select(func.min(Embedding.id), func.max(Embedding.id))).one()
        return int(low or 0), int(high or 0)

    def embedding_for_content(self, sha256: str) -> Optional[np.ndarray]:
        """The stored embedding of the content with this sha256, if the catalog holds it."""
        with self.read() as conn:
            blob = conn.execute(select(Embedding.vector).where(Embedding.sha256 == sha256)).scalar()
        return None if blob is None else blobs_to_matrix([blob], self._dim())[0]

    def embedding_ids_for_contents(self, shas: Iterable[str]) -> dict[str, int]:
        """sha256 -> embedding id, for the contents the catalog already holds."""
        found: dict[str, int] = {}
        with self.read() as conn:
            for part in chunked(list(set(shas))):
                found.update(conn.execute(select(Embedding.sha256, Embedding.id).where(Embedding.sha256.in_(part))).all())
        return found

    # -- items ----------------------------------------------------------------------------------

    def iter_embedded_items(self, page: int = PAGE) -> Iterator[tuple[list[int], list[str], FeatureMatrix]]:
        """(item ids, paths, embeddings) of every embedded item, page by page, in item order."""
        dim = self._dim()
        statement = (select(Item.id, Item.uri, Embedding.vector).join(Embedding, Item.embedding_id == Embedding.id)
                     .where(Item.state == EMBEDDED))
        for rows in self._pages(statement, Item.id, page):
            yield [r[0] for r in rows], [r[1] for r in rows], blobs_to_matrix([r[2] for r in rows], dim)

    def iter_live_items(self, page: int = PAGE) -> Iterator[list[tuple[int, str, int]]]:
        """(item id, uri, embedding id) of every embedded item, page by page, in item order."""
        statement = select(Item.id, Item.uri, Item.embedding_id).where(Item.state == EMBEDDED,
                                                                      Item.embedding_id.is_not(None))
        for rows in self._pages(statement, Item.id, page):
            yield [(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    def items_by_uris(self, uris: Sequence[str]) -> dict[str, tuple[int, int]]:
        """uri -> (item id, embedding id) for the embedded items among ``uris``."""
        found: dict[str, tuple[int, int]] = {}
        with self.read() as conn:
            for part in chunked(list(uris)):
                for item_id, uri, content_id in conn.execute(
                        select(Item.id, Item.uri, Item.embedding_id).where(
                            Item.uri.in_(part), Item.state == EMBEDDED, Item.embedding_id.is_not(None))):
                    found[uri] = (int(item_id), int(content_id))
        return found

    def embeddings_for_uris(self, uris: Sequence[str]) -> tuple[np.ndarray, FeatureMatrix]:
        """(mask of ``uris`` that are embedded, their embeddings in ``uris`` order)."""
        dim = self._dim()
        position = {uri: i for i, uri in enumerate(uris)}
        found = np.zeros(len(uris), dtype=bool)
        matrix = np.zeros((len(uris), dim), dtype=np.float32)
        with self.read() as conn:
            for part in chunked(list(uris)):
                rows = conn.execute(select(Item.uri, Embedding.vector).join(Embedding, Item.embedding_id == Embedding.id)
                                    .where(Item.uri.in_(part), Item.state == EMBEDDED)).all()
                if rows:
                    for (uri, _), vector in zip(rows, blobs_to_matrix([r[1] for r in rows], dim)):
                        found[position[uri]] = True
                        matrix[position[uri]] = vector
        return found, matrix[found]

    def items_for_embeddings(self, embedding_ids: Sequence[int]) -> list[tuple[int, str, int]]:
        """(item id, uri, embedding id) of the embedded items holding these contents, in item order."""
        rows: list[tuple[int, str, int]] = []
        with self.read() as conn:
            for part in chunked([int(i) for i in embedding_ids]):
                # The state is checked here, not in SQL: given both, SQLite walks the state index (every
                # embedded item) instead of the embedding-id index (a few rows).
                rows += [(int(r[0]), str(r[1]), int(r[2])) for r in conn.execute(
                    select(Item.id, Item.uri, Item.embedding_id, Item.state).where(Item.embedding_id.in_(part)))
                    if r[3] == EMBEDDED]
        return sorted(rows)

    def failed_uris(self, uris: Sequence[str]) -> list[str]:
        """Those of ``uris`` that were ingested and could not be read."""
        failed: list[str] = []
        with self.read() as conn:
            for part in chunked(list(uris)):
                failed += [r[0] for r in conn.execute(select(Item.uri).where(
                    Item.uri.in_(part), Item.state == ItemState.FAILED.value))]
        return failed

    def item_uris(self, item_ids: Sequence[int]) -> dict[int, str]:
        """item id -> uri."""
        uris: dict[int, str] = {}
        with self.read() as conn:
            for part in chunked([int(i) for i in item_ids]):
                uris.update(conn.execute(select(Item.id, Item.uri).where(Item.id.in_(part))).all())
        return uris

    def item(self, item_id: int) -> Optional[dict[str, Any]]:
        """Everything the catalog knows about one item, as plain data."""
        with self.read() as conn:
            row = conn.execute(select(Item).where(Item.id == int(item_id))).first()
        if row is None:
            return None
        item = row
        return {"id": item.id, "path": item.uri, "state": item.state, "size": item.size, "sha256": item.sha256,
                "embedding_id": item.embedding_id, "width": item.width, "height": item.height, "format": item.format,
                "container": item.container, "failure_reason": item.failure_reason,
                "failure_detail": item.failure_detail, "added_at": item.added_at, "updated_at": item.updated_at}

    def _filter_condition(self, path_filter: str) -> Any:
        dialect: str = getattr(self, "dialect")
        if has_wildcards(path_filter):  # the same wildcards as fnmatch, case-sensitive
            return glob_condition(dialect, Item.uri, path_filter)
        return contains_condition(dialect, Item.uri, path_filter)

    def count_matching(self, path_filter: str) -> int:
        """Embedded items whose path matches ``path_filter`` (see ``path_matches``)."""
        with self.read() as conn:
            return int(conn.execute(select(func.count()).where(
                Item.state == EMBEDDED, Item.embedding_id.is_not(None), self._filter_condition(path_filter))
            ).scalar() or 0)

    def matching_items(self, path_filter: str) -> tuple[list[tuple[int, str, int]], dict[int, bytes]]:
        """The embedded items matching ``path_filter`` as (item id, uri, embedding id) in item order, and
        the stored vector blob of each of their contents."""
        with self.read() as conn:
            rows = conn.execute(select(Item.id, Item.uri, Item.embedding_id, Embedding.vector)
                                .join(Embedding, Item.embedding_id == Embedding.id)
                                .where(Item.state == EMBEDDED, self._filter_condition(path_filter))
                                .order_by(Item.id)).all()
        return [(int(r[0]), str(r[1]), int(r[2])) for r in rows], {int(r[2]): r[3] for r in rows}
