"""``indexer import`` / ``indexer export``: clip-retrieval's output layout and one Parquet table, round
trips through real indexes, the model check, and folders that lie."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from indexer import open_index
from indexer.ingest.imported import ModelDisagreesError
from indexer.store.exchange import ExchangeError

from .conftest import PER_CLASS, TEST_CLASSES, catalog_rows, run_cli


@pytest.fixture(scope="module")
def exported(built_index, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exported") / "embeddings"
    with open_index(built_index) as index:
        summary = index.export_embeddings(folder, "clip-retrieval", part_size=20)
    return folder, summary


def test_export_writes_clip_retrievals_layout(exported, built_index):
    folder, summary = exported
    total = PER_CLASS * len(TEST_CLASSES)
    assert summary.rows == total and summary.parts == -(-total // 20)
    parts = sorted((folder / "img_emb").iterdir())
    assert [p.name for p in parts] == [f"img_emb_{i}.npy" for i in range(summary.parts)]
    arrays = [np.load(p) for p in parts]
    assert all(a.dtype == np.float16 and a.shape[1] == summary.dim for a in arrays)
    tables = [pq.read_table(folder / "metadata" / f"metadata_{i}.parquet") for i in range(summary.parts)]
    assert [t.num_rows for t in tables] == [len(a) for a in arrays]
    assert {"image_path", "caption", "item_id", "taken", "camera", "width", "height"} <= set(tables[0].column_names)
    # Row i of a part is the vector of the item in row i of its metadata.
    stored = dict(catalog_rows(built_index, "SELECT items.uri, embeddings.vector FROM items JOIN embeddings "
                                            "ON items.embedding_id = embeddings.id"))
    for array, table in zip(arrays, tables):
        for vector, path in zip(array, table.column("image_path").to_pylist()):
            assert np.array_equal(vector, np.frombuffer(stored[path], dtype=np.float16))


def test_import_registers_every_row_and_search_classify_work_at_once(exported, tmp_path):
    folder, _ = exported
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        summary = index.import_embeddings(folder)
        total = PER_CLASS * len(TEST_CLASSES)
        assert summary.rows == total and summary.added == total and summary.skipped == {}
        assert summary.verified == 8 and summary.agreement >= 0.99  # the pictures are readable here
        assert "/red_star/" in index.search("a red star", k=1)[0].path
        result = index.classify(["red", "green", "blue", "yellow"], store=False)
        assert result.items == total
        again = index.import_embeddings(folder, verify=0)
    assert again.added == 0 and again.already == total
    rows = catalog_rows(tmp_path / "index", "SELECT count(*), count(DISTINCT embedding_id) FROM items "
                                            "WHERE state = 'embedded'")
    assert rows == [(total, total)]


def _folder(root, vectors, paths, captions=None, number=0):
    (root / "img_emb").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    np.save(root / "img_emb" / f"img_emb_{number}.npy", np.asarray(vectors))
    columns = {"image_path": paths}
    if captions is not None:
        columns["caption"] = captions
    pq.write_table(pa.table(columns), root / "metadata" / f"metadata_{number}.parquet")
    return root


def _unit(rows, dim, seed=0):
    vectors = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_bad_rows_are_skipped_and_counted_the_rest_imported(tmp_path, built_index):
    with open_index(built_index) as index:
        dim = index.dim
    vectors = _unit(5, dim)
    vectors[1] = np.nan
    vectors[2] = 0.0
    folder = _folder(tmp_path / "emb", vectors.astype(np.float16), ["s3://b/a.jpg", "s3://b/nan.jpg", "s3://b/zero.jpg",
                                                                    None, "s3://b/e.jpg"],
                     ["a cat", None, None, "no path", "  a  dog \n"])
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        summary = index.import_embeddings(folder)
        assert summary.added == 2 and summary.skipped == {"bad_vector": 2, "no_image_path": 1}
        assert summary.verified == 0  # URLs: only the width could be checked
        hits = index.search("a cat", k=5)
    assert {h.path for h in hits} == {"s3://b/a.jpg", "s3://b/e.jpg"}
    assert {h.caption for h in hits} == {"a cat", "a dog"}


@pytest.mark.parametrize("case, message", [
    ("rows", "holds 4 vectors but metadata_0.parquet 3 rows"),
    ("width", "vectors of width 7, but the index's model tiny-shapes makes"),
    ("no_metadata", "has no metadata/metadata_0.parquet beside it"),
    ("no_column", "has no image_path column"),
    ("not_npy", "is not a readable .npy array"),
    ("not_layout", "has no img_emb/ folder"),
    ("one_d", "not one vector per row"),
])
def test_a_folder_that_lies_is_refused_and_nothing_imported(tmp_path, built_index, case, message):
    with open_index(built_index) as index:
        dim = index.dim
    root = tmp_path / "emb"
    if case == "rows":
        _folder(root, _unit(4, dim), ["a", "b", "c"])
    elif case == "width":
        _folder(root, _unit(3, 7), ["a", "b", "c"])
    elif case == "no_metadata":
        _folder(root, _unit(3, dim), ["a", "b", "c"])
        (root / "metadata" / "metadata_0.parquet").unlink()
    elif case == "no_column":
        _folder(root, _unit(3, dim), ["a", "b", "c"])
        pq.write_table(pa.table({"url": ["a", "b", "c"]}), root / "metadata" / "metadata_0.parquet")
    elif case == "not_npy":
        _folder(root, _unit(3, dim), ["a", "b", "c"])
        (root / "img_emb" / "img_emb_0.npy").write_bytes(b"not an array")
    elif case == "not_layout":
        root.mkdir()
    else:
        _folder(root, np.zeros(3, dtype=np.float32), ["a", "b", "c"])
    # A second, good part: refused as well, since the folder is checked before anything is read in.
    if case not in ("not_layout",):
        _folder(root, _unit(2, 7 if case == "width" else dim), ["x", "y"], number=1)
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        with pytest.raises(ExchangeError, match=message.replace("(", r"\(").replace(")", r"\)")):
            index.import_embeddings(root)
    assert catalog_rows(tmp_path / "index", "SELECT count(*) FROM items") == [(0,)]


def test_vectors_from_another_model_are_caught_where_pictures_are_readable(exported, tmp_path):
    folder, _ = exported
    other = tmp_path / "other"
    shutil.copytree(folder, other)
    rotation = np.linalg.qr(np.random.default_rng(3).normal(size=(np.load(other / "img_emb" / "img_emb_0.npy").shape[1],) * 2))[0]
    for path in (other / "img_emb").iterdir():  # the same width, other vectors: as another model makes
        np.save(path, (np.load(path).astype(np.float32) @ rotation).astype(np.float16))
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        with pytest.raises(ModelDisagreesError, match="does not match this index's model tiny-shapes"):
            index.import_embeddings(other)
    assert catalog_rows(tmp_path / "index", "SELECT count(*) FROM items") == [(0,)]


def test_parquet_export_and_the_cli(built_index, tmp_path):
    out = tmp_path / "all.parquet"
    result = run_cli("export", "--index", str(built_index), "--format", "parquet", "-o", str(out), "--where",
                     "path ~ red_star", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["rows"] == PER_CLASS
    table = pq.read_table(out)
    assert table.num_rows == PER_CLASS and all("/red_star/" in p for p in table.column("path").to_pylist())
    vectors = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-2)
    result = run_cli("export", "--index", str(built_index), "--format", "parquet", "-o", str(tmp_path))
    assert result.returncode != 0 and "is a folder; give a .parquet file" in result.stderr
    result = run_cli("import", str(tmp_path), "--index", str(tmp_path / "new"), "--model", "tiny-shapes")
    assert result.returncode != 0 and "has no img_emb/ folder" in result.stderr
    assert result.stderr.count("\n") == 1
