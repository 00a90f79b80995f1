"""Duplicate groups of a dataset: exact (the same content hash, hence the same embedding id) and near
(cosine similarity at or above a threshold, found with the FAISS index's k-NN search chunk by chunk).

Exact duplicates are always their own groups: a byte-identical copy is never hidden in a near group.
Near groups are built over distinct contents without chaining: a picture joins a group only when it
is near every picture already in it (complete linkage), seeded greedily from the contents with the most
near neighbours. Single linkage (union-find) would chain A~B~C~D into one group although A and D
look nothing alike. Only pairs the k-NN search found count as near, so the near pairs are kept: at
most one per (item, neighbour), and in practice a few per duplicated picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DuplicateGroup:
    """Items (positions in the dataset arrays) that hold the same or nearly the same picture."""

    positions: np.ndarray
    score: float  # 1.0 for exact duplicates; else the lowest similarity between two members
    exact: bool  # True when every member has the same content


class NearCandidates:
    """Pairs of contents (embedding ids) the k-NN search found at or above the ``gate`` cosine: near
    duplicates once their perceptual hashes agree (``audit.hashes.confirm``)."""

    def __init__(self, gate: float, median_knn_distance: float) -> None:
        self.gate, self.median_knn_distance = gate, median_knn_distance
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, content_a: np.ndarray, content_b: np.ndarray, similarity: np.ndarray) -> None:
        if len(content_a):
            self._parts.append((np.asarray(content_a, np.int64), np.asarray(content_b, np.int64),
                                np.asarray(similarity, np.float32)))

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(content a, content b, similarity), each unordered pair once (a < b)."""
        if not self._parts:
            empty = np.zeros(0, np.int64)
            return empty, empty, np.zeros(0, np.float32)
        a, b, s = (np.concatenate(c) for c in zip(*self._parts))
        low, high = np.minimum(a, b), np.maximum(a, b)
        keep = low != high
        low, high, s = low[keep], high[keep], s[keep]
        order = np.lexsort((-s, high, low))
        low, high, s = low[order], high[order], s[order]
        first = np.ones(len(low), dtype=bool)
        first[1:] = (low[1:] != low[:-1]) | (high[1:] != high[:-1])
        return low[first], high[first], s[first]


class DuplicateLinks:
    """Near-duplicate pairs between distinct contents (sorted embedding ids), as the k-NN search finds them."""

    def __init__(self, contents: np.ndarray) -> None:
        self.contents = contents
        self._pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def link(self, content_a: np.ndarray, content_b: np.ndarray, similarity: np.ndarray) -> None:
        """Records near pairs (content ids of the dataset) with their similarity."""
        a = np.searchsorted(self.contents, content_a)
        b = np.searchsorted(self.contents, content_b)
        keep = a != b
        if keep.any():
            self._pairs.append((a[keep], b[keep], np.asarray(similarity, dtype=np.float32)[keep]))

    def neighbours(self) -> dict[int, dict[int, float]]:
        """content position -> {near content position: similarity}, both ways."""
        near: dict[int, dict[int, float]] = {}
        for a, b, s in self._pairs:
            for i, j, sim in zip(a.tolist(), b.tolist(), s.tolist()):
                for x, y in ((i, j), (j, i)):
                    row = near.setdefault(x, {})
                    row[y] = max(row.get(y, -1.0), sim)
        return near

    def near_groups(self) -> list[tuple[list[int], float]]:
        """Groups of content positions in which every two members are near, with the lowest similarity
        between two of them. Greedy: the content with the most unassigned near neighbours first."""
        near = self.neighbours()
        assigned: set[int] = set()
        groups = []
        for centre in sorted(near, key=lambda c: (-len(near[c]), c)):
            if centre in assigned:
                continue
            members, weakest = [centre], 1.0
            for candidate, sim in sorted(near[centre].items(), key=lambda kv: (-kv[1], kv[0])):
                if candidate in assigned:
                    continue
                links = [near[candidate].get(m) for m in members]
                if all(link is not None for link in links):
                    members.append(candidate)
                    weakest = min([weakest] + links)  # type: ignore[operator]
            if len(members) > 1:
                assigned.update(members)
                groups.append((members, round(float(min(weakest, 1.0)), 6)))
        return groups


def duplicate_groups(content_ids: np.ndarray, links: DuplicateLinks) -> list[DuplicateGroup]:
    """Exact groups (two or more items sharing a content), then near groups (items whose contents are
    all near one another; an exact group's items are all in the near group of their content)."""
    if not len(content_ids):
        return []
    content_position = np.searchsorted(links.contents, content_ids)
    order = np.argsort(content_position, kind="stable")
    boundaries = np.flatnonzero(np.diff(content_position[order])) + 1
    items_of: dict[int, np.ndarray] = {}
    groups = []
    for members in np.split(order, boundaries):
        items_of[int(content_position[members[0]])] = members
        if len(members) > 1:
            groups.append(DuplicateGroup(positions=np.sort(members), score=1.0, exact=True))
    for contents, score in links.near_groups():
        present = [items_of[c] for c in contents if c in items_of]
        if len(present) > 1:
            groups.append(DuplicateGroup(positions=np.sort(np.concatenate(present)), score=score, exact=False))
    return groups
