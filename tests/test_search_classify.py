"""Search and classification with the bundled model over real vectors and catalogs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from indexer import open_index
from indexer.query.classify import top_labels
from indexer.query.labels import read_labels
from indexer.errors import QueryError
from indexer.query.search import parse_query

from .conftest import PER_CLASS, TEST_CLASSES, catalog_rows


def label_of(path: str) -> str:
    return Path(path).parent.name.replace("_", " ")


def test_query_syntax_weights_and_negative_terms():
    terms = parse_query("2:red fox + snow - 0.5:people")
    assert [(t.weight, t.text) for t in terms] == [(2.0, "red fox"), (1.0, "snow"), (-0.5, "people")]
    assert [t.text for t in parse_query("black-and-white photo")] == ["black-and-white photo"]
    with pytest.raises(QueryError):
        parse_query("dog + ")


@pytest.mark.parametrize("query", ["red star", "blue square", "yellow circle"])
def test_text_search_ranks_the_matching_class_first(built_index, query):
    with open_index(built_index) as index:
        hits = index.search(f"a {query}", k=PER_CLASS)
    assert len(hits) == PER_CLASS
    assert [label_of(h.path) for h in hits].count(query) >= PER_CLASS - 1
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_negative_terms_push_results_away(built_index):
    with open_index(built_index) as index:
        plain = index.search("red", k=12)
        without_stars = index.search("red - star", k=6)
    assert any("star" in label_of(h.path) for h in plain)
    assert not any("star" in label_of(h.path) for h in without_stars)


def test_image_search_finds_the_same_picture_first_without_the_model(built_index, photos):
    query = photos / "green_square" / "green_square_0002.jpg"
    with open_index(built_index) as index:
        hits = index.search(images=[query], k=3)
        assert not index.context.model.loaded  # the query image's content is in the catalog already
    assert hits[0].path == str(query)
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_path_filter_and_min_score(built_index):
    with open_index(built_index) as index:
        filtered = index.search("a red star", k=5, path_filter="*/blue_*")
        assert filtered and all("/blue_" in h.path for h in filtered)
        substring = index.search("a red star", k=50, path_filter="green_circle")
        assert len(substring) == PER_CLASS
        strict = index.search("a red star", k=50, min_score=0.5)
        assert all(h.score >= 0.5 for h in strict)
        assert len(strict) < len(TEST_CLASSES) * PER_CLASS


def test_text_embeddings_are_cached_per_model_and_text(index_copy):
    with open_index(index_copy) as index:
        first = index.text_embeddings(["a red star"])
    assert catalog_rows(index_copy, "SELECT count(*) FROM text_embeddings WHERE text = 'a red star'")[0][0] == 1
    with open_index(index_copy) as index:
        again = index.text_embeddings(["a red star"])
        assert not index.context.model.loaded
    np.testing.assert_allclose(first, again, atol=1e-6)


def test_read_labels_inline_and_file(tmp_path):
    assert read_labels("cat, dog,,cat") == ["cat", "dog"]
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("# species\nfox\n\nwolf\n")
    assert read_labels("cat", labels_file) == ["cat", "fox", "wolf"]
    with pytest.raises(QueryError, match="two distinct labels"):
        read_labels("cat")


def test_top_labels_orders_best_first():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [0.8, 0.2, 0.3, 0.1]])
    assert top_labels(scores, 3).tolist() == [[1, 3, 2], [0, 2, 1]]
    assert top_labels(scores, 9).tolist() == [[1, 3, 2, 0], [0, 2, 1, 3]]


def test_classify_beats_chance_and_is_stored(index_copy):
    predictions = []
    with open_index(index_copy) as index:
        result = index.classify(list(TEST_CLASSES), templates="default", top_k=2,
                                on_predictions=predictions.extend)
    assert result.items == len(TEST_CLASSES) * PER_CLASS == len(predictions)
    accuracy = np.mean([p.labels[0][0] == label_of(p.path) for p in predictions])
    assert accuracy >= 0.7  # chance is 1/12
    assert all(p.labels[0][1] >= p.labels[1][1] for p in predictions)
    stored = catalog_rows(index_copy, "SELECT count(*), count(DISTINCT item_id) FROM classifications "
                                      "WHERE run_id = ?", result.run_id)[0]
    assert stored == (2 * result.items, result.items)


def test_classify_does_not_need_the_images(index_copy, photos_copy, tmp_path):
    with open_index(index_copy) as index:
        index.ingest([photos_copy])
    for item in list(photos_copy.iterdir()):
        if item.is_dir():
            for f in item.iterdir():
                f.unlink()
    (index_copy / "vectors.faiss").unlink()  # and the vectors come back from the catalog alone
    with open_index(index_copy) as index:
        result = index.classify(["red star", "blue circle"], store=False)
        hits = index.search("a red star", k=2)
    assert result.items == 2 * len(TEST_CLASSES) * PER_CLASS  # the fixture's pictures and the copies
    assert len(hits) == 2


def test_classify_cli_writes_csv_and_jsonl(index_copy, tmp_path):
    from click.testing import CliRunner

    from indexer.cli import main

    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(TEST_CLASSES))
    runner = CliRunner()
    out_csv = tmp_path / "labels.csv"
    result = runner.invoke(main, ["classify", "--index", str(index_copy), "--labels-file", str(labels),
                                  "--top-k", "3", "--output", str(out_csv)])
    assert result.exit_code == 0, result.output
    with out_csv.open() as f:
        table = list(csv.reader(f))
    assert table[0] == ["path", "label", "score", "label_2", "score_2", "label_3", "score_3"]
    assert len(table) == 1 + len(TEST_CLASSES) * PER_CLASS
    assert all(float(r[2]) >= float(r[4]) >= float(r[6]) for r in table[1:])

    out_jsonl = tmp_path / "labels.jsonl"
    result = runner.invoke(main, ["classify", "--index", str(index_copy), "--labels", "red star,blue circle",
                                  "--templates", "none", "-o", str(out_jsonl), "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    printed = json.loads(result.stdout)
    assert len(lines) == len(printed) == len(TEST_CLASSES) * PER_CLASS
    assert {line["label"] for line in lines} <= {"red star", "blue circle"}

    bad = runner.invoke(main, ["classify", "--index", str(index_copy), "--labels", "a,b", "-o", str(tmp_path / "x.xls")])
    assert bad.exit_code == 1
    assert ".csv or .jsonl" in bad.output


def test_path_filters_agree_between_the_exact_and_the_vector_paths(built_index, monkeypatch):
    import indexer.query.search as search_module

    with open_index(built_index) as index:
        exact = index.search("a red star", k=6, path_filter="*/green_*")
        substring = index.search("a red star", k=6, path_filter="yellow_")
        monkeypatch.setattr(search_module, "FILTERED_EXACT_MAX", 0)  # force the FAISS over-fetch path
        through_vectors = index.search("a red star", k=6, path_filter="*/green_*")
        substring_vectors = index.search("a red star", k=6, path_filter="yellow_")
    assert [h.path for h in exact] == [h.path for h in through_vectors]
    assert [h.path for h in substring] == [h.path for h in substring_vectors]
    assert all("/green_" in h.path for h in exact) and len(exact) == 6
