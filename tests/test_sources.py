"""Sources beyond folders: tar / tar.gz / zip archives, WebDataset shard ranges, lists; sync and purge."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import faiss
import pytest

from indexer import open_index
from indexer.media.sources import expand_braces

from .conftest import PER_CLASS, catalog_rows as rows



def make_tar(path: Path, files: list[Path], root: Path, mode: str = "w") -> None:
    with tarfile.open(path, mode) as tf:
        for f in files:
            tf.add(f, arcname=str(f.relative_to(root)))
        info = tarfile.TarInfo("notes/readme.txt")  # not an image: ignored
        data = b"hello"
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))


def test_tar_gz_and_zip_archives_are_streamed_and_addressed_as_archive_member(tmp_path, photos):
    reds = sorted((photos / "red_star").iterdir())
    blues = sorted((photos / "blue_circle").iterdir())
    make_tar(tmp_path / "reds.tar.gz", reds, photos, "w:gz")
    with zipfile.ZipFile(tmp_path / "blues.zip", "w") as zf:
        for f in blues:
            zf.write(f, arcname=f"pics/{f.name}")
        zf.writestr("__MACOSX/pics/._junk.jpg", b"resource fork")
    index = tmp_path / "index"
    with open_index(index, model="tiny-shapes") as opened:
        summary = opened.ingest([tmp_path / "reds.tar.gz", tmp_path / "blues.zip"])
        hits = opened.search("a red star", k=3)
    assert summary.embedded == 2 * PER_CLASS
    uris = {row[0] for row in rows(index, "SELECT uri FROM items")}
    assert f"{tmp_path / 'reds.tar.gz'}::red_star/{reds[0].name}" in uris
    assert f"{tmp_path / 'blues.zip'}::pics/{blues[0].name}" in uris
    assert hits[0].path.startswith(f"{tmp_path / 'reds.tar.gz'}::red_star/")
    assert not any(p.endswith(".txt") or "__MACOSX" in p for p in uris)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blues.zip", "index", "reds.tar.gz"]  # nothing extracted


def test_an_unchanged_archive_is_not_opened_again(tmp_path, photos):
    shard = tmp_path / "shard.tar"
    make_tar(shard, sorted((photos / "green_square").iterdir()), photos)
    index = tmp_path / "index"
    with open_index(index, model="tiny-shapes") as opened:
        opened.ingest([shard])
    # Same size and mtime, unreadable content: only a run that opens the archive would notice.
    stat = shard.stat()
    shard.write_bytes(b"\0" * stat.st_size)
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with open_index(index) as opened:
        summary = opened.ingest([shard])
    assert (summary.unchanged, summary.embedded, summary.reused, summary.failed) == (PER_CLASS, 0, 0, 0)
    assert rows(index, "SELECT members, complete FROM archives") == [(PER_CLASS, 1)]


def test_a_changed_archive_is_re_read_and_members_it_lost_are_deleted(tmp_path, photos):
    shard = tmp_path / "shard.tar"
    files = sorted((photos / "yellow_star").iterdir())
    make_tar(shard, files, photos)
    index = tmp_path / "index"
    with open_index(index, model="tiny-shapes") as opened:
        opened.ingest([shard])
        make_tar(shard, files[:2], photos)
        summary = opened.ingest([shard])
    assert summary.deleted == PER_CLASS - 2
    assert summary.unchanged == 2
    states = dict(rows(index, "SELECT state, count(*) FROM items GROUP BY state"))
    assert states == {"embedded": 2, "deleted": PER_CLASS - 2}


def test_a_broken_archive_is_reported_and_the_run_goes_on(tmp_path, photos, strategy):
    good = tmp_path / "good.tar"
    make_tar(good, sorted((photos / "red_circle").iterdir()), photos)
    broken = tmp_path / "broken.tar.gz"
    make_tar(broken, sorted((photos / "blue_star").iterdir()), photos, "w:gz")
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with open_index(tmp_path / "index", model="tiny-shapes") as opened:
        summary = opened.ingest([broken, good], warn=lambda m: None, **strategy)
    assert summary.embedded >= PER_CLASS
    assert summary.failed_by_reason.get("bad_archive", 0) + summary.failed_by_reason.get("bad_archive_member", 0) >= 1


def test_webdataset_shard_ranges_expand():
    assert expand_braces("train-{000..002}.tar") == ["train-000.tar", "train-001.tar", "train-002.tar"]
    assert expand_braces("a{1..2}-{0..1}") == ["a1-0", "a1-1", "a2-0", "a2-1"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_shards_given_as_a_range(tmp_path, photos):
    for n, folder in enumerate(["red_star", "blue_square"]):
        make_tar(tmp_path / f"shard-{n:03d}.tar", sorted((photos / folder).iterdir()), photos)
    with open_index(tmp_path / "index", model="tiny-shapes") as opened:
        summary = opened.ingest([tmp_path / "shard-{000..001}.tar"])
    assert summary.embedded == 2 * PER_CLASS


def test_from_list_on_stdin_through_the_cli(tmp_path, photos):
    listed = sorted((photos / "red_square").iterdir())[:3] + [tmp_path / "gone.jpg"]
    script = Path(sys.executable).with_name("indexer")
    result = subprocess.run([str(script), "ingest", "--from-list", "-", "--index", str(tmp_path / "index"),
                             "--model", "tiny-shapes", "--json"], input="\n".join(map(str, listed)) + "\n",
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '"embedded": 3' in result.stdout


def test_sync_purge_removes_deleted_items_and_their_vectors_without_a_rebuild(tmp_path, photos):
    folder = tmp_path / "photos"
    shutil.copytree(photos / "green_star", folder / "green_star")
    shutil.copytree(photos / "red_circle", folder / "red_circle")
    index = tmp_path / "index"
    with open_index(index, model="tiny-shapes") as opened:
        opened.ingest([folder])
    before = faiss.read_index(str(index / "vectors.faiss")).ntotal
    shutil.rmtree(folder / "green_star")
    from click.testing import CliRunner

    from indexer.cli import main

    result = CliRunner().invoke(main, ["sync", str(folder), "--index", str(index), "--purge", "--json"])
    assert result.exit_code == 0, result.output
    assert '"purged": 4' in result.stdout
    assert rows(index, "SELECT count(*) FROM items") == [(PER_CLASS,)]
    assert rows(index, "SELECT count(*) FROM embeddings") == [(PER_CLASS,)]
    vectors = faiss.read_index(str(index / "vectors.faiss"))
    assert vectors.ntotal == before - PER_CLASS
    ids = sorted(faiss.vector_to_array(vectors.id_map).tolist())
    assert ids == sorted(r[0] for r in rows(index, "SELECT id FROM embeddings"))


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems refuse non-UTF-8 names")
def test_non_utf8_file_names_are_embedded_and_shown_escaped(tmp_path, photos):
    folder = tmp_path / "odd"
    folder.mkdir()
    name = b"caf\xe9.jpg"
    with open(bytes(folder) + b"/" + name, "wb") as f:
        f.write((photos / "red_star" / "red_star_0000.jpg").read_bytes())
    index = tmp_path / "index"
    with open_index(index, model="tiny-shapes") as opened:
        summary = opened.ingest([folder])
        again = opened.ingest([folder])
    assert summary.embedded == 1 and again.unchanged == 1
    uri, raw = rows(index, "SELECT uri, raw_path FROM items")[0]
    assert uri.endswith("caf\\xe9.jpg")
    assert raw.endswith(name)
