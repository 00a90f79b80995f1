"""Duplicate groups: an exact copy is always an exact group, whatever its label, and near groups never
chain distinct pictures together."""

from __future__ import annotations

import shutil
from itertools import combinations

import numpy as np

from indexer import open_index
from indexer.audit import AuditOptions, audit
from indexer.audit.duplicates import DuplicateLinks, duplicate_groups
from indexer.audit.summary import summary_lines


def test_an_exact_copy_under_another_label_is_an_exact_group_ranked_first(tmp_path, photos):
    data = tmp_path / "data"
    shutil.copytree(photos, data)
    original = sorted((data / "red_star").iterdir())[0]
    copy = data / "blue_circle" / ("copy_of_" + original.name)
    shutil.copy(original, copy)
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        index.ingest([data])
        # A low threshold: the tiny model finds many renders of one class near one another.
        result = audit(index.context, options=AuditOptions(near_threshold=0.99))
    groups = result.of_type("duplicate")
    exact = [g for g in groups if g.details["kind"] == "exact"]
    assert [sorted(g.paths) for g in exact] == [sorted([str(original), str(copy)])]
    assert exact[0].details["label_conflict"] and exact[0].score == 1.0
    assert groups[0] is exact[0]
    assert any("(1 exact," in line for line in summary_lines(result))


def _links(similarities: dict[tuple[int, int], float], contents: int) -> DuplicateLinks:
    links = DuplicateLinks(np.arange(10, 10 + contents))
    a = np.array([10 + i for i, _ in similarities])
    b = np.array([10 + j for _, j in similarities])
    links.link(a, b, np.array(list(similarities.values()), dtype=np.float32))
    return links


def test_a_chain_of_near_pictures_is_not_one_group():
    # A~B~C~D~E~F, each only near the next: single linkage would make one group of six.
    chain = {(i, i + 1): 0.98 for i in range(5)}
    links = _links(chain, 6)
    groups = duplicate_groups(np.arange(10, 16), links)
    assert all(not g.exact for g in groups)
    for group in groups:
        for x, y in combinations(sorted(group.positions.tolist()), 2):
            assert (x, y) in chain  # every two members are near
    assert sorted(len(g.positions) for g in groups) == [2, 2, 2]


def test_near_groups_are_cliques_and_exact_copies_stay_exact():
    # A, B, C all near one another; C also near D (not near A or B); item 4 is a byte copy of item 0.
    near = {(0, 1): 0.99, (0, 2): 0.985, (1, 2): 0.98, (2, 3): 0.995}
    links = _links(near, 4)
    groups = duplicate_groups(np.array([10, 11, 12, 13, 10]), links)
    exact = [g for g in groups if g.exact]
    assert [g.positions.tolist() for g in exact] == [[0, 4]]
    near_groups = sorted((g.positions.tolist(), g.score) for g in groups if not g.exact)
    for positions, score in near_groups:
        contents = sorted({p % 4 for p in positions})
        for x, y in combinations(contents, 2):
            assert (x, y) in near
        assert score == min(near[(x, y)] for x, y in combinations(contents, 2))
    assert near_groups  # the clique of A, B, C (or C, D) is found
