"""The reads behind ``--where``, full-text ranking and the facts shown with a hit (``catalog.filters``).

Plain SQL through ``Catalog.rows``: on SQLite at head they run on the standard library's ``sqlite3``,
like the other reads a search makes, so a filtered search imports no SQLAlchemy either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from . import fulltext
from .catalog import EMBEDDED, chunked, in_list
from .rows import LiveItem
from .where import BoolOp, Comparison, Node, WhereClause, compile_where, indexed_terms, parse, path_filter_node

if TYPE_CHECKING:
    from .catalog import Catalog

_LIVE = "items.state = :state AND items.embedding_id IS NOT NULL"
# The same, with SQLite told not to walk the state index for it (nearly every item is embedded): the
# filter's own index (``taken``, the full text) or one pass over the table, in id order, is faster.
_LIVE_SCAN = {"sqlite": "+items.state = :state AND items.embedding_id IS NOT NULL", "postgresql": _LIVE}
# How many items of one term are counted, at most, to tell which of a filter's indexed terms is narrowest.
PROBE_LIMIT = 20_000


class CatalogFilters:
    def __init__(self, catalog: "Catalog") -> None:
        self.catalog = catalog

    def compile(self, where: Optional[str], path_filter: Optional[str] = None) -> Optional[WhereClause]:
        """``where`` (and ``path_filter``, as ``path ~ TEXT``) compiled for this catalog; None for neither."""
        nodes = []
        if path_filter:
            nodes.append(path_filter_node(path_filter))
        if where is not None:
            nodes.append(parse(where))
        if not nodes:
            return None
        node = nodes[0] if len(nodes) == 1 else BoolOp("and", tuple(nodes))
        return compile_where(node, where or "", self.catalog.dialect, self.latest_classification_run,
                             self._broader_terms(node))

    def _broader_terms(self, node: Node) -> frozenset[Comparison]:
        """Of two or more indexed terms a filter requires (``size < 100kB and taken < 2005``), all but the
        narrowest. SQLite keeps no statistics of value ranges, so it may walk the broader term's index (a
        fifth of a catalog, where the other keeps a hundredth); each term is counted through its own index,
        up to ``PROBE_LIMIT`` items (a few milliseconds), and the others are then checked on the rows the
        narrowest finds. PostgreSQL's planner has the statistics: nothing is probed there."""
        terms = list(dict.fromkeys(indexed_terms(node)))
        if self.catalog.dialect != "sqlite" or len(terms) < 2:
            return frozenset()
        counts = []
        for term in terms:
            alone = compile_where(term, "", "sqlite", self.latest_classification_run)
            counts.append(int(self.catalog.rows(
                f"SELECT count(*) FROM (SELECT 1 FROM items WHERE {alone.sql} LIMIT {PROBE_LIMIT})", alone.params)[0][0]))
        narrowest = counts.index(min(counts))
        return frozenset(term for i, term in enumerate(terms) if i != narrowest)

    def latest_classification_run(self) -> Optional[int]:
        row = self.catalog.rows("SELECT max(id) FROM classification_runs WHERE completed_at IS NOT NULL")
        return int(row[0][0]) if row and row[0][0] is not None else None

    def _params(self, clause: WhereClause, **more: Any) -> dict[str, Any]:
        return {**clause.params, "state": EMBEDDED, **more}

    def uses_index(self, clause: WhereClause) -> bool:
        """Whether the database finds the items ``clause`` keeps through an index (the one on ``taken``,
        the full text) rather than by reading the whole table. SQLite's plan says; on PostgreSQL, False."""
        if self.catalog.dialect != "sqlite":
            return False
        plan = self.catalog.rows(f"EXPLAIN QUERY PLAN SELECT items.id FROM items WHERE {_LIVE_SCAN['sqlite']} "
                                 f"AND ({clause.sql})", self._params(clause))
        return not any(str(row[-1]).startswith("SCAN items") and not str(row[-1]).startswith("SCAN items_fts")
                       for row in plan)

    def matching(self, clause: WhereClause, limit: int) -> list[LiveItem]:
        """Up to ``limit`` embedded items that ``clause`` keeps, in item order."""
        return [LiveItem(int(r[0]), str(r[1]), int(r[2])) for r in self.catalog.rows(
            f"SELECT items.id, items.uri, items.embedding_id FROM items WHERE {_LIVE_SCAN[self.catalog.dialect]} "
            # "+items.id": the order is not taken from the table's own order (which would make SQLite read the
            # whole table in id order to skip a sort); the filter's index finds the few items, then they are sorted.
            f"AND ({clause.sql}) ORDER BY +items.id LIMIT :limit", self._params(clause, limit=int(limit)))]

    def matching_item_ids(self, clause: WhereClause) -> list[int]:
        return [int(r[0]) for r in self.catalog.rows(
            f"SELECT items.id FROM items WHERE {_LIVE_SCAN[self.catalog.dialect]} AND ({clause.sql}) ORDER BY +items.id",
            self._params(clause))]

    def iter_matching_embedding_ids(self, clause: WhereClause, page: int = 65536) -> Iterator[list[int]]:
        """The embedding ids of the items ``clause`` keeps, page by page (keyset on the item id)."""
        last = 0
        while True:
            rows = self.catalog.rows(
                f"SELECT items.id, items.embedding_id FROM items WHERE {_LIVE_SCAN[self.catalog.dialect]} AND items.id > :after "
                f"AND ({clause.sql}) ORDER BY items.id LIMIT :limit", self._params(clause, after=last, limit=page))
            if not rows:
                return
            yield [int(r[1]) for r in rows]
            last = int(rows[-1][0])

    def for_embeddings(self, embedding_ids: Sequence[int], clause: WhereClause) -> list[LiveItem]:
        """The embedded items holding these contents that ``clause`` keeps, in item order."""
        found: list[LiveItem] = []
        # SQLite: the items are looked up by content, never found by walking an index of the filter's
        # (``width = 640`` keeps a sixth of a catalog: walking it cost 160 ms at 1M, the lookups 1 ms).
        table = "items INDEXED BY ix_items_embedding_id" if self.catalog.dialect == "sqlite" else "items"
        for part in chunked([int(i) for i in embedding_ids]):
            ids, params = in_list("e", part)
            found += [LiveItem(int(r[0]), str(r[1]), int(r[2])) for r in self.catalog.rows(
                f"SELECT items.id, items.uri, items.embedding_id FROM {table} WHERE items.embedding_id IN {ids} "
                f"AND {_LIVE_SCAN[self.catalog.dialect]} AND ({clause.sql})", {**self._params(clause), **params})]
        return sorted(found)

    def keyword_ranked(self, text: str, limit: int, clause: Optional[WhereClause] = None) -> list[LiveItem]:
        """Embedded items whose caption or path holds words of ``text``, best keyword match first."""
        extra = f" AND {_LIVE_SCAN[self.catalog.dialect]}" + (f" AND ({clause.sql})" if clause is not None else "")
        sql, params = fulltext.ranked_sql(self.catalog.dialect, text, "fts", extra)
        if not params:
            return []
        ranked = [int(r[0]) for r in self.catalog.rows(sql, {**(clause.params if clause else {}), **params,
                                                                 "state": EMBEDDED, "limit": int(limit)})]
        rows = {}
        for part in chunked(ranked):
            ids, id_params = in_list("i", part)
            rows.update({int(r[0]): LiveItem(int(r[0]), str(r[1]), int(r[2])) for r in self.catalog.rows(
                f"SELECT id, uri, embedding_id FROM items WHERE id IN {ids}", id_params)})
        return [rows[i] for i in ranked if i in rows]

    def blobs(self, embedding_ids: Sequence[int]) -> dict[int, bytes]:
        """embedding id -> its stored vector blob."""
        found: dict[int, bytes] = {}
        for part in chunked(sorted({int(i) for i in embedding_ids})):
            ids, params = in_list("e", part)
            found.update({int(r[0]): r[1] for r in self.catalog.rows(
                f"SELECT id, vector FROM embeddings WHERE id IN {ids}", params)})
        return found
