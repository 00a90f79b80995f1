"""What the catalog answers about items: counts by state, failures, pages of embedded items, look-ups by
uri or id, path filters (``catalog.items``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from sqlalchemy import func, select, text

from .catalog import EMBEDDED, PAGE, chunked, pages
from .codec import FeatureMatrix, blobs_to_matrix
from .dialect import contains_condition, glob_condition
from .paths import has_wildcards
from .rows import LiveItem
from .schema import Embedding, Item, ItemState

if TYPE_CHECKING:
    from .catalog import Catalog
    from .where import WhereClause


class CatalogItems:
    """Read queries over items."""

    def __init__(self, catalog: "Catalog") -> None:
        self.catalog = catalog

    def counts_by_state(self) -> dict[str, int]:
        with self.catalog.read() as conn:
            return {state: int(n) for state, n in conn.execute(select(Item.state, func.count()).group_by(Item.state))}

    def failures_by_reason(self) -> dict[str, int]:
        with self.catalog.read() as conn:
            return {reason: int(n) for reason, n in conn.execute(
                select(Item.failure_reason, func.count()).where(Item.state == ItemState.FAILED.value)
                .group_by(Item.failure_reason))}

    def failures(self, limit: Optional[int] = 100) -> list[dict]:
        """Items that could not be read, with their reason, most recent first."""
        query = (select(Item.uri, Item.failure_reason, Item.failure_detail)
                 .where(Item.state == ItemState.FAILED.value).order_by(Item.updated_at.desc(), Item.id))
        if limit is not None:
            query = query.limit(limit)
        with self.catalog.read() as conn:
            return [{"path": uri, "reason": reason, "detail": detail} for uri, reason, detail in conn.execute(query)]

    def iter_embedded(self, page: int = PAGE, where: Optional["WhereClause"] = None
                      ) -> Iterator[tuple[list[int], list[str], FeatureMatrix]]:
        """(item ids, paths, embeddings) of every embedded item (that ``where`` keeps), page by page, in
        item order."""
        dim = self.catalog.dim()
        statement = (select(Item.id, Item.uri, Embedding.vector).join(Embedding, Item.embedding_id == Embedding.id)
                     .where(Item.state == EMBEDDED))
        if where is not None:
            statement = statement.where(text(where.sql).bindparams(**where.params))
        for rows in pages(self.catalog, statement, Item.id, page):
            yield [r[0] for r in rows], [r[1] for r in rows], blobs_to_matrix([r[2] for r in rows], dim)

    def iter_live(self, page: int = PAGE) -> Iterator[list[LiveItem]]:
        """Every embedded item, page by page, in item order."""
        statement = select(Item.id, Item.uri, Item.embedding_id).where(Item.state == EMBEDDED,
                                                                      Item.embedding_id.is_not(None))
        for rows in pages(self.catalog, statement, Item.id, page):
            yield [LiveItem(int(r[0]), str(r[1]), int(r[2])) for r in rows]

    def by_uris(self, uris: Sequence[str]) -> dict[str, tuple[int, int]]:
        """uri -> (item id, embedding id) for the embedded items among ``uris``."""
        found: dict[str, tuple[int, int]] = {}
        with self.catalog.read() as conn:
            for part in chunked(list(uris)):
                for item_id, uri, content_id in conn.execute(
                        select(Item.id, Item.uri, Item.embedding_id).where(
                            Item.uri.in_(part), Item.state == EMBEDDED, Item.embedding_id.is_not(None))):
                    found[uri] = (int(item_id), int(content_id))
        return found

    def failed_uris(self, uris: Sequence[str]) -> list[str]:
        """Those of ``uris`` that were ingested and could not be read."""
        failed: list[str] = []
        with self.catalog.read() as conn:
            for part in chunked(list(uris)):
                failed += [r[0] for r in conn.execute(select(Item.uri).where(
                    Item.uri.in_(part), Item.state == ItemState.FAILED.value))]
        return failed

    def uris(self, item_ids: Sequence[int]) -> dict[int, str]:
        """item id -> uri."""
        uris: dict[int, str] = {}
        with self.catalog.read() as conn:
            for part in chunked([int(i) for i in item_ids]):
                uris.update(conn.execute(select(Item.id, Item.uri).where(Item.id.in_(part))).all())
        return uris

    def get(self, item_id: int) -> Optional[dict[str, Any]]:
        """Everything the catalog knows about one item, as plain data."""
        with self.catalog.read() as conn:
            row = conn.execute(select(Item).where(Item.id == int(item_id))).first()
        if row is None:
            return None
        item = row
        return {"id": item.id, "path": item.uri, "state": item.state, "size": item.size, "sha256": item.sha256,
                "embedding_id": item.embedding_id, "width": item.width, "height": item.height, "format": item.format,
                "container": item.container, "failure_reason": item.failure_reason,
                "failure_detail": item.failure_detail, "added_at": item.added_at, "updated_at": item.updated_at,
                "caption": item.caption, "taken": item.taken, "camera": item.camera, "lat": item.lat, "lon": item.lon,
                "mtime_ns": item.mtime_ns, "meta_notes": item.meta_notes}

    def _filter_condition(self, path_filter: str) -> Any:
        dialect: str = self.catalog.dialect
        if has_wildcards(path_filter):  # the same wildcards as fnmatch, case-sensitive
            return glob_condition(dialect, Item.uri, path_filter)
        return contains_condition(dialect, Item.uri, path_filter)

    def count_matching(self, path_filter: str) -> int:
        """Embedded items whose path matches ``path_filter`` (see ``path_matches``)."""
        with self.catalog.read() as conn:
            return int(conn.execute(select(func.count()).where(
                Item.state == EMBEDDED, Item.embedding_id.is_not(None), self._filter_condition(path_filter))
            ).scalar() or 0)

    def matching(self, path_filter: str) -> tuple[list[LiveItem], dict[int, bytes]]:
        """The embedded items matching ``path_filter`` in item order, and the stored vector blob of each of
        their contents."""
        with self.catalog.read() as conn:
            rows = conn.execute(select(Item.id, Item.uri, Item.embedding_id, Embedding.vector)
                                .join(Embedding, Item.embedding_id == Embedding.id)
                                .where(Item.state == EMBEDDED, self._filter_condition(path_filter))
                                .order_by(Item.id)).all()
        return [LiveItem(int(r[0]), str(r[1]), int(r[2])) for r in rows], {int(r[2]): r[3] for r in rows}
