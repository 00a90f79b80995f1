"""Queries: text, image and combined, with weights and negative terms, over the vectors.

Query syntax: terms joined by `` + `` and `` - `` (spaces around the sign), each optionally weighted
as ``W:term``: ``"dog + beach - people"``, ``"2:red fox + snow"``. A term that names an existing image
file is an image term (reverse image search). The query vector is the normalised weighted sum of the
terms' normalised embeddings.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
from ..errors import QueryError
from ..media.entries import is_image_name
from ..store.codec import blobs_to_matrix
from ..store.paths import path_matches
from .images import image_embedding

if TYPE_CHECKING:
    from ..context import IndexContext
    from ..store.where import WhereClause

_SPLIT = re.compile(r"(?<=\s)([+-])(?=\s)")  # a sign between spaces; the spaces stay with the terms
_WEIGHT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*:\s*(.+)$")


@dataclass(frozen=True)
class QueryTerm:
    weight: float
    text: Optional[str] = None
    image: Optional[Path] = None


@dataclass
class SearchHit:
    """One result: the best-scoring path holding a matching content, and its other paths; what the
    catalog knows of the item (caption, date taken, camera, size in pixels). With ``hybrid``, ``score``
    is the fused reciprocal-rank score, not a cosine."""

    path: str
    score: float
    item_id: int
    duplicates: list[str] = field(default_factory=list)
    caption: Optional[str] = None
    taken: Optional[str] = None
    camera: Optional[str] = None
    width: Optional[int] = None
    height: Optional[int] = None
    content_id: Optional[int] = field(default=None, repr=False)  # the embedding id (internal)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("content_id")
        return data


MAX_WEIGHT = 1e6  # a term's weight; beyond it the others stop counting anyway


def parse_query(query: str, read_paths: bool = True) -> list[QueryTerm]:
    """``"2:dog + beach - people"`` -> weighted terms; image paths become image terms (with
    ``read_paths``; without, as for a query from a network client, every term is text)."""
    parts = _SPLIT.split(" " + query.strip() + " ")
    # parts: [first, sign, term, sign, term, ...]
    signed = [("+", parts[0])] + list(zip(parts[1::2], parts[2::2]))
    terms = []
    for sign, raw in signed:
        raw = raw.strip()
        if not raw:
            raise QueryError(f"empty term in query {query!r}")
        weight = 1.0
        match = _WEIGHT.match(raw)
        if match:
            weight, raw = float(match.group(1)), match.group(2).strip()
            if not (abs(weight) <= MAX_WEIGHT):  # inf, nan, 1e300: no meaningful sum
                raise QueryError(f"the weight {match.group(1)} of {raw!r} is not a number from -{MAX_WEIGHT:g} "
                                 f"to {MAX_WEIGHT:g}")
        if sign == "-":
            weight = -weight
        path = Path(raw).expanduser()
        if read_paths and is_image_name(raw) and _is_file(path):
            terms.append(QueryTerm(weight, image=path))
        else:
            terms.append(QueryTerm(weight, text=raw))
    return terms


def _is_file(path: Path) -> bool:
    """Whether a query term names a file; a term too long to be a path is text."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def query_vector(ctx: "IndexContext", terms: Sequence[QueryTerm],
                 vectors: Sequence[tuple[float, np.ndarray]] = ()) -> np.ndarray:
    """The normalised weighted sum of the terms' embeddings and of ``vectors`` ((weight, embedding)
    pairs already computed: an uploaded picture, a stored item)."""
    if not terms and not vectors:
        raise QueryError("give a query text, an image, or both")
    if all(t.weight <= 0 for t in terms) and all(w <= 0 for w, _ in vectors):
        raise QueryError("a query needs at least one positive term")
    texts = [t.text for t in terms if t.text is not None]
    text_vectors = dict(zip(texts, ctx.texts.embed(texts))) if texts else {}
    total = np.zeros(ctx.model.dim, dtype=np.float64)  # float64: weights up to MAX_WEIGHT never overflow
    for term in terms:
        vector = text_vectors[term.text] if term.text is not None else image_embedding(ctx, term.image)
        total += term.weight * vector
    for weight, vector in vectors:
        total += weight * np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(total))
    if not np.isfinite(norm) or norm < 1e-6:
        raise QueryError("the query terms cancel out; change their weights")
    return (total / norm).astype(np.float32)


FILTERED_EXACT_MAX = 50_000  # a path filter matching at most this many items is searched exactly


def _hits(rows: list[tuple[int, str, int]], ranked: list[tuple[int, float]], k: int, min_score: Optional[float],
          path_filter: Optional[str] = None) -> list[SearchHit]:
    """One hit per content of ``ranked`` ((embedding id, score), best first) that a live item holds:
    its first item's path, the others as duplicates."""
    paths: dict[int, list[tuple[int, str]]] = {}
    for item_id, uri, embedding_id in rows:
        if path_matches(uri, path_filter):
            paths.setdefault(embedding_id, []).append((item_id, uri))
    hits = []
    for embedding_id, score in ranked:
        found = paths.get(embedding_id)
        if not found or (min_score is not None and score < min_score):
            continue
        hits.append(SearchHit(path=found[0][1], score=round(float(score), 6), item_id=found[0][0],
                              duplicates=[uri for _, uri in found[1:]], content_id=embedding_id))
        if len(hits) == k:
            break
    return hits


def _search_filtered(ctx: "IndexContext", vector: np.ndarray, k: int, path_filter: str,
                     min_score: Optional[float]) -> Optional[list[SearchHit]]:
    """Exact search over the items a path filter selects, when they are few; None when they are many."""
    if ctx.catalog.items.count_matching(path_filter) > FILTERED_EXACT_MAX:
        return None
    rows, blobs = ctx.catalog.items.matching(path_filter)
    if not rows:
        return []
    contents = list(blobs)
    scores = blobs_to_matrix([blobs[c] for c in contents], ctx.model.dim) @ vector
    order = np.argsort(-scores)
    return _hits(rows, [(contents[i], float(scores[i])) for i in order], k, min_score)


def search_vector(ctx: "IndexContext", vector: np.ndarray, k: int = 10, path_filter: Optional[str] = None,
                  min_score: Optional[float] = None, offset: int = 0, where: Optional[str] = None) -> list[SearchHit]:
    """The top ``k`` live items for ``vector``, best first, one hit per distinct content, after
    skipping the ``offset`` best (pages of results); only items ``where`` keeps (``store.where``)."""
    if k < 1:
        raise QueryError("the number of results must be at least 1", param="k")
    if offset < 0:
        raise QueryError("the offset must be at least 0", param="offset")
    if offset:
        return search_vector(ctx, vector, k + offset, path_filter, min_score, where=where)[offset:]
    if where is not None:
        clause = ctx.catalog.filters.compile(where, path_filter)
        return with_facts(ctx, _search_where(ctx, vector, k, clause, min_score))
    if path_filter:
        exact = _search_filtered(ctx, vector, k, path_filter, min_score)
        if exact is not None:
            return with_facts(ctx, exact)
    vectors = ctx.vectors.get()
    total = vectors.ntotal
    fetch = min(total, max(4 * k, 32))
    hits: list[SearchHit] = []
    while True:
        scores, ids = vectors.search(vector[None, :], fetch)
        hits = _join(ctx, scores[0], ids[0], path_filter, min_score)
        short = len(hits) < k
        # Fewer than k survived the filters (deleted files, path filter): look further down the list.
        below_threshold = min_score is not None and len(scores[0]) and float(scores[0][-1]) < min_score
        if not short or fetch >= total or below_threshold:
            break
        fetch = min(total, fetch * 4)
    return with_facts(ctx, hits[:k])


# Nearest contents checked against a --where before its items are selected first. The check is one
# indexed look-up per content (about 5 us on a 1M-item catalog), so 8,192 cost about 40 ms; an IVF-PQ
# search also re-ranks every candidate from the catalog, so its list stays shorter.
POST_FILTER_MAX = {"flat": 8192, "ivf": 8192, "ivfpq": 4096}
POST_FILTER_FIRST = 256  # nearest contents checked in the first round
# At most this many items estimated to pass (from the first round's share), found through an index: they are
# selected and scored exactly at once (~10 µs each) instead of reading the nearest list further. More, and a
# second, longer round of the nearest costs less (a filter on camera = keeping 1.5 % of 1M items: 15,000
# items scored exactly took 166 ms, a second round 1 ms).
SELECTED_FIRST_AT_ONCE = 5000


def _search_where(ctx: "IndexContext", vector: np.ndarray, k: int, clause: "WhereClause",
                  min_score: Optional[float]) -> list[SearchHit]:
    """The top ``k`` among the items ``clause`` keeps, in at most two FAISS searches and a few indexed
    reads. The nearest ``POST_FILTER_FIRST`` contents are checked against the filter (one read of their
    ids); when fewer than k pass, the share that passed says how far down the list k would pass, and the
    list is read that far once more, when that is within the layout's ``POST_FILTER_MAX``. Otherwise (or
    at once, when that share says the filter keeps at most ``SELECTED_FIRST_AT_ONCE`` items and the database
    finds them through an index) the filter is selective: its items are selected first (the index on ``taken``, the full-text
    index for ``caption ~``, one pass over the table otherwise) and scored exactly when at most
    ``FILTERED_EXACT_MAX``, else searched in FAISS restricted to their contents (an ``IDSelectorBatch``)."""
    vectors = ctx.vectors.get()
    total = vectors.ntotal
    longest = POST_FILTER_MAX.get(vectors.layout.kind, 4096)
    fetch = min(total, max(4 * k, POST_FILTER_FIRST))
    for _ in range(2):
        scores, ids = vectors.search(vector[None, :], fetch)
        ranked = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        rows = ctx.catalog.filters.for_embeddings([i for i, _ in ranked], clause) if ranked else []
        hits = _hits(rows, ranked, k, min_score)
        below_threshold = min_score is not None and ranked and ranked[-1][1] < min_score
        if len(hits) >= k or fetch >= total or below_threshold:
            return hits
        passed = len({r.embedding_id for r in rows})
        if total * (passed + 1) / fetch <= SELECTED_FIRST_AT_ONCE and ctx.catalog.filters.uses_index(clause):
            break  # few items, found through an index: selected first at once
        needed = int(fetch * k / max(passed, 0.5) * 1.5) + 1
        if needed > longest:
            break
        fetch = min(total, max(needed, 2 * fetch))
    few = ctx.catalog.filters.matching(clause, FILTERED_EXACT_MAX + 1)
    if len(few) <= FILTERED_EXACT_MAX:
        return _exact_hits(ctx, vector, few, k, min_score)
    allowed = np.unique(np.concatenate([np.asarray(part, dtype=np.int64)
                                        for part in ctx.catalog.filters.iter_matching_embedding_ids(clause)]))
    fetch = min(len(allowed), max(4 * k, 32))
    while True:
        scores, ids = vectors.search(vector[None, :], fetch, ids=allowed)
        ranked = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
        rows = ctx.catalog.filters.for_embeddings([i for i, _ in ranked], clause) if ranked else []
        hits = _hits(rows, ranked, k, min_score)
        if len(hits) >= k or fetch >= len(allowed):
            return hits
        fetch = min(len(allowed), fetch * 4)


def _exact_hits(ctx: "IndexContext", vector: np.ndarray, rows: list, k: int,
                min_score: Optional[float]) -> list[SearchHit]:
    """The top ``k`` of ``rows`` (live items), scored exactly from their stored embeddings."""
    if not rows:
        return []
    blobs = ctx.catalog.filters.blobs([r.embedding_id for r in rows])
    contents = list(blobs)
    scores = blobs_to_matrix([blobs[c] for c in contents], ctx.model.dim) @ vector
    order = np.argsort(-scores)
    return _hits(rows, [(contents[i], float(scores[i])) for i in order], k, min_score)


def with_facts(ctx: "IndexContext", hits: list[SearchHit]) -> list[SearchHit]:
    """``hits`` with what the catalog knows of each item (one read of at most k rows)."""
    if not hits:
        return hits
    facts = ctx.catalog.facts([h.item_id for h in hits])
    for hit in hits:
        for name, value in facts.get(hit.item_id, {}).items():
            if hasattr(hit, name):
                setattr(hit, name, value)
    return hits


RRF_K = 60  # the constant of reciprocal rank fusion: 1 / (RRF_K + rank)


def fuse(rankings: Sequence[Sequence[int]], k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: (key, score) of the best ``k`` keys over ``rankings`` (each best first),
    a key's score being the sum of 1 / (RRF_K + rank) over the rankings that hold it (rank from 1)."""
    scores: dict[int, float] = {}
    first_seen: dict[int, int] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            first_seen.setdefault(key, len(first_seen))
    return sorted(scores.items(), key=lambda kv: (-kv[1], first_seen[kv[0]]))[:k]


def hybrid_search(ctx: "IndexContext", vector: np.ndarray, keywords: str, k: int = 10,
                  path_filter: Optional[str] = None, min_score: Optional[float] = None,
                  where: Optional[str] = None, depth: Optional[int] = None) -> list[SearchHit]:
    """The cosine ranking and the keyword ranking of ``keywords`` (captions and paths, BM25 on SQLite,
    ``ts_rank`` on PostgreSQL) fused by reciprocal rank, per content; ``depth`` (default ``max(50, 4k)``)
    results are taken from each ranking. ``min_score`` bounds the cosine side only."""
    depth = depth or max(50, 4 * k)
    semantic = search_vector(ctx, vector, depth, path_filter, min_score, where=where)
    clause = ctx.catalog.filters.compile(where, path_filter)
    keyword_items = ctx.catalog.filters.keyword_ranked(keywords, depth, clause)
    by_content: dict[int, SearchHit] = {h.content_id: h for h in semantic if h.content_id is not None}
    keyword_order: list[int] = []
    for item in keyword_items:
        if item.embedding_id in by_content:
            if item.embedding_id not in keyword_order:
                keyword_order.append(item.embedding_id)
            continue
        by_content[item.embedding_id] = SearchHit(path=item.uri, score=0.0, item_id=item.item_id,
                                                  content_id=item.embedding_id)
        keyword_order.append(item.embedding_id)
    fused = fuse([[h.content_id for h in semantic], keyword_order], k)
    hits = []
    for content, score in fused:
        hit = by_content[content]
        hit.score = round(score, 6)
        hits.append(hit)
    return with_facts(ctx, hits)


def _join(ctx: "IndexContext", scores: np.ndarray, ids: np.ndarray, path_filter: Optional[str],
          min_score: Optional[float]) -> list[SearchHit]:
    ranked = [(int(i), float(s)) for i, s in zip(ids, scores) if i >= 0 and (min_score is None or s >= min_score)]
    if not ranked:
        return []
    rows = ctx.catalog.items_for_embeddings([i for i, _ in ranked])
    return _hits(rows, ranked, len(ranked), min_score, path_filter)


def search(ctx: "IndexContext", query: Optional[str] = None, images: Sequence[Path] = (), k: int = 10,
           path_filter: Optional[str] = None, min_score: Optional[float] = None, where: Optional[str] = None,
           hybrid: bool = False) -> list[SearchHit]:
    """Text, image or combined search; see the module docstring for the query syntax. ``where``: a
    filter expression (``store.where``); ``hybrid``: the query's positive text terms also ranked as
    keywords over captions and paths, fused with the cosine ranking."""
    terms = parse_query(query) if query and query.strip() else []
    for image in images:
        path = Path(image).expanduser()
        if not _is_file(path):
            raise QueryError(f"{image}: no such file", param="images")
        terms.append(QueryTerm(1.0, image=path))
    vector = query_vector(ctx, terms)
    if hybrid:
        keywords = " ".join(t.text for t in terms if t.text is not None and t.weight > 0)
        if not keywords:
            raise QueryError("a hybrid search needs a query text to rank as keywords", param="hybrid")
        return hybrid_search(ctx, vector, keywords, k, path_filter, min_score, where)
    return search_vector(ctx, vector, k, path_filter, min_score, where=where)
