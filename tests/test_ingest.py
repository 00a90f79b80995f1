"""Ingestion against real catalogs: first run, re-runs, moves, deletions, bad files, model identity."""

from __future__ import annotations

import os
import shutil

import pytest

from indexer import open_index
from indexer.errors import IndexBusyError, ModelMismatchError
from indexer.ingest import IngestLock

from .conftest import PER_CLASS, TEST_CLASSES
from .conftest import catalog_rows as rows



def test_first_ingest_embeds_every_image_and_records_the_model(built_index, photos):
    total = len(TEST_CLASSES) * PER_CLASS
    states = dict(rows(built_index, "SELECT state, count(*) FROM items GROUP BY state"))
    assert states == {"embedded": total}
    assert rows(built_index, "SELECT count(*) FROM embeddings")[0][0] == total
    (uri,) = rows(built_index, "SELECT uri FROM items WHERE uri LIKE '%red_star_0001.jpg'")[0]
    assert uri == str(photos / "red_star" / "red_star_0001.jpg")
    width, height, fmt = rows(built_index, "SELECT width, height, format FROM items LIMIT 1")[0]
    assert (width, height, fmt) == (96, 96, "JPEG")
    with open_index(built_index) as index:
        assert index.recorded_model["name"] == "tiny-shapes"
        assert index.recorded_model["embed_dim"] == 128
        assert index.vectors().ntotal == total


def test_second_run_skips_unchanged_files_without_reading_them(index_copy, photos):
    with open_index(index_copy) as index:
        summary = index.ingest([photos])
    assert (summary.embedded, summary.reused, summary.failed) == (0, 0, 0)
    assert summary.unchanged == len(TEST_CLASSES) * PER_CLASS
    assert not index.context.model.loaded  # nothing was decoded: the model was never loaded


def test_moved_and_duplicated_files_reuse_their_embedding(index_copy, photos_copy, tmp_path):
    with open_index(index_copy) as index:
        index.ingest([photos_copy])  # the copy has the same contents: all reused
    before = rows(index_copy, "SELECT count(*) FROM embeddings")[0][0]
    moved = photos_copy / "renamed.jpg"
    (photos_copy / "red_star" / "red_star_0000.jpg").rename(moved)
    shutil.copy(photos_copy / "blue_square" / "blue_square_0001.jpg", photos_copy / "blue_copy.jpg")
    with open_index(index_copy) as index:
        summary = index.ingest([photos_copy])
    assert summary.embedded == 0
    assert summary.reused == 2
    assert summary.deleted == 1  # the old path of the moved file
    assert rows(index_copy, "SELECT count(*) FROM embeddings")[0][0] == before
    (state,) = rows(index_copy, "SELECT state FROM items WHERE uri = ?", str(moved))[0]
    assert state == "embedded"
    (state,) = rows(index_copy, "SELECT state FROM items WHERE uri = ?",
                    str(photos_copy / "red_star" / "red_star_0000.jpg"))[0]
    assert state == "deleted"


def test_deleted_file_is_kept_as_history_and_restored_without_re_embedding(index_copy, photos_copy):
    with open_index(index_copy) as index:
        index.ingest([photos_copy])
    victim = photos_copy / "green_circle" / "green_circle_0002.jpg"
    saved = victim.read_bytes()
    victim.unlink()
    with open_index(index_copy) as index:
        summary = index.ingest([photos_copy])
        assert summary.deleted == 1
        assert all(str(victim) != hit.path for hit in index.search("green circle", k=48))
    victim.write_bytes(saved)
    with open_index(index_copy) as index:
        summary = index.ingest([photos_copy])
    assert (summary.embedded, summary.reused) == (0, 1)
    assert rows(index_copy, "SELECT state FROM items WHERE uri = ?", str(victim))[0][0] == "embedded"


def test_changed_file_is_embedded_again(index_copy, photos_copy):
    with open_index(index_copy) as index:
        index.ingest([photos_copy])
    target = photos_copy / "red_circle" / "red_circle_0000.jpg"
    shutil.copy(photos_copy / "yellow_star" / "yellow_star_0003.jpg", target)
    os.utime(target, ns=(1, 1))
    with open_index(index_copy) as index:
        summary = index.ingest([photos_copy])
        assert summary.reused == 1  # its new content is another file's: no model run needed
        top = index.search(str(photos_copy / "yellow_star" / "yellow_star_0003.jpg"), k=1)[0]
    assert top.score > 0.999
    assert {top.path, *top.duplicates} >= {str(target)}


def test_bad_files_are_recorded_with_a_reason_and_the_run_goes_on(tmp_path, photos, strategy):
    folder = tmp_path / "mixed"
    shutil.copytree(photos / "red_star", folder)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.png").write_text("<html>not an image</html>")
    good = (folder / "red_star_0000.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "notes.txt").write_text("not an image name: not even scanned")
    warnings: list[str] = []
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        summary = index.ingest([folder], warn=warnings.append, **strategy)
        status = index.status()
    assert sorted(w.split(":")[0] for w in warnings) == [f"skipping {folder / name}"
                                                        for name in ("empty.jpg", "text.png", "truncated.jpg")]
    assert summary.embedded == PER_CLASS
    assert summary.failed == 3
    assert summary.failed_by_reason == {"empty_file": 1, "not_an_image": 1, "truncated": 1}
    assert status["failures_by_reason"] == summary.failed_by_reason
    assert status["items"] == PER_CLASS + 3
    # Failed files are not retried unless asked (or changed).
    with open_index(tmp_path / "index") as index:
        again = index.ingest([folder])
        assert (again.failed, again.unchanged) == (0, PER_CLASS + 3)
        retried = index.ingest([folder], retry_failed=True, warn=lambda message: None, **strategy)
        assert retried.failed == 3


def test_an_index_refuses_another_model(built_index):
    with pytest.raises(ModelMismatchError, match="tiny-shapes") as caught:
        open_index(built_index, model="ViT-B-32", pretrained="random")
    assert "--index" in str(caught.value)


def test_a_second_ingest_on_the_same_index_is_refused_while_one_runs(index_copy, photos):
    with IngestLock(index_copy):
        with pytest.raises(IndexBusyError, match=str(os.getpid())):
            with open_index(index_copy) as index:
                index.ingest([photos])


def test_missing_source_is_a_clear_error(tmp_path):
    from indexer.errors import SourceError

    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        with pytest.raises(SourceError, match="no such file or folder"):
            index.ingest([tmp_path / "nowhere"])


def test_the_same_file_named_twice_is_one_item(tmp_path, photos):
    listed = tmp_path / "list.txt"
    one = photos / "red_star" / "red_star_0001.jpg"
    listed.write_text(f"{one}\n{one}\n{photos / 'red_star'}\n")
    from indexer.media.sources import read_list

    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        summary = index.ingest(read_list(str(listed)), strict=False)
        again = index.ingest([photos / "red_star", photos / "red_star"])
    assert summary.embedded == PER_CLASS
    assert again.unchanged == PER_CLASS
    assert rows(tmp_path / "index", "SELECT count(*) FROM items") == [(PER_CLASS,)]
