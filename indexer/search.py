"""Queries: text, image and combined, with weights and negative terms, over the vectors.

Query syntax: terms joined by `` + `` and `` - `` (spaces around the sign), each optionally weighted
as ``W:term``: ``"dog + beach - people"``, ``"2:red fox + snow"``. A term that names an existing image
file is an image term (reverse image search). The query vector is the normalised weighted sum of the
terms' normalised embeddings.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
from sqlalchemy import func, select

from .errors import QueryError
from .sources import is_image_name
from .store.catalog import Embedding, Item, ItemState, blobs_to_matrix

if TYPE_CHECKING:
    from .index import Index

_SPLIT = re.compile(r"\s+([+-])\s+")
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


def parse_query(query: str) -> list[QueryTerm]:
    """``"2:dog + beach - people"`` -> weighted terms; image paths become image terms."""
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
        if sign == "-":
            weight = -weight
        path = Path(raw).expanduser()
        if is_image_name(raw) and path.is_file():
            terms.append(QueryTerm(weight, image=path))
        else:
            terms.append(QueryTerm(weight, text=raw))
    return terms


def query_vector(index: "Index", terms: Sequence[QueryTerm]) -> np.ndarray:
    if not terms:
        raise QueryError("give a query text, an --image, or both")
    if all(t.weight <= 0 for t in terms):
        raise QueryError("a query needs at least one positive term")
    texts = [t.text for t in terms if t.text is not None]
    text_vectors = dict(zip(texts, index.text_embeddings(texts))) if texts else {}
    total = np.zeros(index.dim, dtype=np.float32)
    for term in terms:
        vector = text_vectors[term.text] if term.text is not None else index.image_embedding(term.image)
        total += term.weight * vector
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise QueryError("the query terms cancel out; change their weights")
    return total / norm


def _matches(uri: str, path_filter: Optional[str]) -> bool:
    if not path_filter:
        return True
    if any(ch in path_filter for ch in "*?["):
        return fnmatch.fnmatch(uri, path_filter)
    return path_filter in uri


FILTERED_EXACT_MAX = 50_000  # a path filter matching at most this many items is searched exactly


def _filter_condition(path_filter: str) -> Any:
    if any(ch in path_filter for ch in "*?["):
        return Item.uri.op("GLOB")(path_filter)  # SQLite's GLOB: the same wildcards as fnmatch, case-sensitive
    return func.instr(Item.uri, path_filter) > 0


def _search_filtered(index: "Index", vector: np.ndarray, k: int, path_filter: str,
                     min_score: Optional[float]) -> Optional[list[SearchHit]]:
    """Exact search over the items a path filter selects, when they are few; None when they are many."""
    condition = _filter_condition(path_filter)
    live = (Item.state == ItemState.EMBEDDED.value, Item.embedding_id.is_not(None), condition)
    with index.catalog.read() as conn:
        if int(conn.execute(select(func.count()).where(*live)).scalar() or 0) > FILTERED_EXACT_MAX:
            return None
        rows = conn.execute(select(Item.id, Item.uri, Item.embedding_id, Embedding.vector)
                            .join(Embedding, Item.embedding_id == Embedding.id).where(*live).order_by(Item.id)).all()
    if not rows:
        return []
    contents: dict[int, int] = {}
    blobs = []
    for row in rows:
        if row.embedding_id not in contents:
            contents[row.embedding_id] = len(blobs)
            blobs.append(row.vector)
    scores = blobs_to_matrix(blobs, index.dim) @ vector
    paths: dict[int, list[tuple[int, str]]] = {}
    for row in rows:
        paths.setdefault(row.embedding_id, []).append((row.id, row.uri))
    order = np.argsort(-scores)[:k]
    embedding_ids = list(contents)
    hits = []
    for position in order:
        score = float(scores[position])
        if min_score is not None and score < min_score:
            break
        found = paths[embedding_ids[position]]
        hits.append(SearchHit(path=found[0][1], score=round(score, 6), item_id=found[0][0],
                              duplicates=[uri for _, uri in found[1:]]))
    return hits


def search_vector(index: "Index", vector: np.ndarray, k: int = 10, path_filter: Optional[str] = None,
                  min_score: Optional[float] = None) -> list[SearchHit]:
    """The top ``k`` live items for ``vector``, best first, one hit per distinct content."""
    if k < 1:
        raise QueryError("-k must be at least 1")
    if path_filter:
        exact = _search_filtered(index, vector, k, path_filter, min_score)
        if exact is not None:
            return exact
    vectors = index.vectors()
    total = vectors.ntotal
    fetch = min(total, max(4 * k, 32))
    hits: list[SearchHit] = []
    while True:
        scores, ids = vectors.search(vector[None, :], fetch)
        hits = _join(index, scores[0], ids[0], path_filter, min_score)
        short = len(hits) < k
        # Fewer than k survived the filters (deleted files, path filter): look further down the list.
        below_threshold = min_score is not None and len(scores[0]) and float(scores[0][-1]) < min_score
        if not short or fetch >= total or below_threshold:
            break
        fetch = min(total, fetch * 4)
    return hits[:k]


def _join(index: "Index", scores: np.ndarray, ids: np.ndarray, path_filter: Optional[str],
          min_score: Optional[float]) -> list[SearchHit]:
    wanted = [int(i) for i, s in zip(ids, scores) if i >= 0 and (min_score is None or s >= min_score)]
    if not wanted:
        return []
    rows = []
    with index.catalog.read() as conn:
        for start in range(0, len(wanted), 5000):  # SQLite caps the number of bound parameters
            rows += conn.execute(
                select(Item.id, Item.uri, Item.embedding_id)
                .where(Item.embedding_id.in_(wanted[start:start + 5000]), Item.state == ItemState.EMBEDDED.value)
            ).all()
    rows.sort(key=lambda row: row.id)
    paths: dict[int, list[tuple[int, str]]] = {}
    for row in rows:
        if _matches(row.uri, path_filter):
            paths.setdefault(row.embedding_id, []).append((row.id, row.uri))
    hits = []
    for embedding_id, score in zip(ids, scores):
        found = paths.get(int(embedding_id))
        if not found or (min_score is not None and score < min_score):
            continue
        hits.append(SearchHit(path=found[0][1], score=round(float(score), 6), item_id=found[0][0],
                              duplicates=[uri for _, uri in found[1:]]))
    return hits


def search(index: "Index", query: Optional[str] = None, images: Sequence[Path] = (), k: int = 10,
           path_filter: Optional[str] = None, min_score: Optional[float] = None) -> list[SearchHit]:
    """Text, image or combined search; see the module docstring for the query syntax."""
    terms = parse_query(query) if query and query.strip() else []
    for image in images:
        path = Path(image).expanduser()
        if not path.is_file():
            raise QueryError(f"--image {image}: no such file")
        terms.append(QueryTerm(1.0, image=path))
    return search_vector(index, query_vector(index, terms), k, path_filter, min_score)
