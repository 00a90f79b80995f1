"""Duplicate groups of a dataset: exact (the same content hash, hence the same embedding id) and near
(cosine similarity at or above a threshold, found with the FAISS index's k-NN search chunk by chunk).

Near-duplicate pairs are merged as they arrive into a union-find over the dataset's distinct contents,
so memory is one integer and one float per content, whatever the number of pairs found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DuplicateGroup:
    """Items (positions in the dataset arrays) that hold the same or nearly the same picture."""

    positions: np.ndarray
    score: float  # 1.0 for exact duplicates; else the weakest similarity that links the group
    exact: bool  # True when every member has the same content


class DuplicateLinks:
    """A union-find over distinct contents (sorted embedding ids), linked by near-duplicate pairs."""

    def __init__(self, contents: np.ndarray) -> None:
        self.contents = contents
        self.parent = np.arange(len(contents), dtype=np.int64)
        self.weakest = np.ones(len(contents), dtype=np.float32)  # per root: the weakest link inside

    def _find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    def link(self, content_a: np.ndarray, content_b: np.ndarray, similarity: np.ndarray) -> None:
        """Merges the groups of each pair (content ids of the dataset) with its similarity."""
        a = np.searchsorted(self.contents, content_a)
        b = np.searchsorted(self.contents, content_b)
        for i, j, s in zip(a.tolist(), b.tolist(), similarity.tolist()):
            root_i, root_j = self._find(i), self._find(j)
            weakest = min(float(self.weakest[root_i]), float(self.weakest[root_j]), s)
            if root_i != root_j:
                self.parent[root_j] = root_i
            self.weakest[root_i] = weakest

    def roots(self) -> np.ndarray:
        """The group (root position) of every content."""
        roots = self.parent.copy()
        while True:  # pointer jumping until every entry points at a root
            parents = roots[roots]
            if np.array_equal(parents, roots):
                return roots
            roots = parents


def duplicate_groups(content_ids: np.ndarray, links: DuplicateLinks) -> list[DuplicateGroup]:
    """Groups of two or more items: items sharing a content, merged along the near-duplicate links."""
    if not len(content_ids):
        return []
    content_position = np.searchsorted(links.contents, content_ids)
    roots = links.roots()
    group_of_item = roots[content_position]
    order = np.argsort(group_of_item, kind="stable")
    boundaries = np.flatnonzero(np.diff(group_of_item[order])) + 1
    groups = []
    for members in np.split(order, boundaries):
        if len(members) < 2:
            continue
        root = int(group_of_item[members[0]])
        exact = bool(np.all(content_ids[members] == content_ids[members[0]]))
        score = 1.0 if exact else round(float(links.weakest[root]), 6)
        groups.append(DuplicateGroup(positions=members, score=score, exact=exact))
    return groups
