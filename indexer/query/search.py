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

_SPLIT = re.compile(r"(?<=\s)([+-])(?=\s)")  # a sign between spaces; the spaces stay with the terms
_WEIGHT = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*:\s*(.+)$")


@dataclass(frozen=True)
class QueryTerm:
    weight: float
    text: Optional[str] = None
    image: Optional[Path] = None


@dataclass
class SearchHit:
    """One result: the best-scoring path holding a matching content, and its other paths."""

    path: str
    score: float
    item_id: int
    duplicates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


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
                              duplicates=[uri for _, uri in found[1:]]))
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
                  min_score: Optional[float] = None, offset: int = 0) -> list[SearchHit]:
    """The top ``k`` live items for ``vector``, best first, one hit per distinct content, after
    skipping the ``offset`` best (pages of results)."""
    if k < 1:
        raise QueryError("the number of results must be at least 1", param="k")
    if offset < 0:
        raise QueryError("the offset must be at least 0", param="offset")
    if offset:
        return search_vector(ctx, vector, k + offset, path_filter, min_score)[offset:]
    if path_filter:
        exact = _search_filtered(ctx, vector, k, path_filter, min_score)
        if exact is not None:
            return exact
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
    return hits[:k]


def _join(ctx: "IndexContext", scores: np.ndarray, ids: np.ndarray, path_filter: Optional[str],
          min_score: Optional[float]) -> list[SearchHit]:
    ranked = [(int(i), float(s)) for i, s in zip(ids, scores) if i >= 0 and (min_score is None or s >= min_score)]
    if not ranked:
        return []
    rows = ctx.catalog.items_for_embeddings([i for i, _ in ranked])
    return _hits(rows, ranked, len(ranked), min_score, path_filter)


def search(ctx: "IndexContext", query: Optional[str] = None, images: Sequence[Path] = (), k: int = 10,
           path_filter: Optional[str] = None, min_score: Optional[float] = None) -> list[SearchHit]:
    """Text, image or combined search; see the module docstring for the query syntax."""
    terms = parse_query(query) if query and query.strip() else []
    for image in images:
        path = Path(image).expanduser()
        if not _is_file(path):
            raise QueryError(f"{image}: no such file", param="images")
        terms.append(QueryTerm(1.0, image=path))
    return search_vector(ctx, query_vector(ctx, terms), k, path_filter, min_score)
