"""Metadata kept at ingest: EXIF date taken, camera, GPS, size; captions from sidecar files and from
WebDataset samples; filled in for items embedded before it was kept; bad values skipped and named."""

from __future__ import annotations

import json
import os
import time

import pytest

from indexer import open_index

from .conftest import catalog_at_revision, catalog_dicts, catalog_execute
from .metadata_pictures import exif_jpeg, jpeg_bytes, webdataset_shard

GOOD_GPS = {1: "N", 2: (52.0, 30.0, 0.0), 3: "W", 4: (1.0, 15.0, 0.0)}


def items_by_name(index_dir):
    rows = catalog_dicts(index_dir, "SELECT * FROM items ORDER BY id")
    return {os.path.basename(r["uri"].split("::")[-1]): r for r in rows}


@pytest.fixture
def album(tmp_path):
    root = tmp_path / "album"
    exif_jpeg(root / "beach.jpg", gps=GOOD_GPS)
    (root / "beach.txt").write_text("a sandy beach at sunset\n", encoding="utf-8")
    exif_jpeg(root / "fox.jpg", colour=(230, 120, 20), taken=None, make="NIKON CORPORATION", model="NIKON D750")
    (root / "fox.json").write_text(json.dumps({"caption": "a red fox in the snow", "width": 3}), encoding="utf-8")
    exif_jpeg(root / "liar.jpg", colour=(20, 200, 20), taken="2100:01:01 00:00:00",
              gps={1: "N", 2: (95.0, 0.0, 0.0), 3: "E", 4: (1.0, 0.0, 0.0)})
    (root / "liar.txt").write_bytes(b"caf\xe9 in latin-1")  # not UTF-8
    exif_jpeg(root / "huge.jpg", colour=(20, 20, 200), taken="1900:01:01 00:00:00", make=None, model=None)
    with open(root / "huge.txt", "wb") as handle:  # a 20 MB sidecar
        handle.truncate(20 * 1024 * 1024)
    exif_jpeg(root / "plain.jpg", colour=(120, 120, 120), taken=None, make=None, model=None)
    (root / "notes.txt").write_text("a text file with no picture: never an item", encoding="utf-8")
    return root


def test_exif_gps_size_and_captions_are_kept_and_bad_values_skipped(tmp_path, album):
    warnings: list[str] = []
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        summary = index.ingest([album], warn=warnings.append)
    assert summary.embedded == 5 and summary.failed == 0
    items = items_by_name(tmp_path / "index")
    assert set(items) == {"beach.jpg", "fox.jpg", "liar.jpg", "huge.jpg", "plain.jpg"}
    beach = items["beach.jpg"]
    assert beach["taken"] == "2024-06-01 12:30:00" and beach["camera"] == "Canon EOS 5D"
    assert beach["lat"] == pytest.approx(52.5) and beach["lon"] == pytest.approx(-1.25)
    assert (beach["width"], beach["height"]) == (64, 48) and beach["size"] == os.path.getsize(album / "beach.jpg")
    assert beach["caption"] == "a sandy beach at sunset" and beach["meta_notes"] is None
    assert items["fox.jpg"]["caption"] == "a red fox in the snow"
    assert items["fox.jpg"]["camera"] == "NIKON D750"  # the model names the make already and items["fox.jpg"]["taken"] is None
    liar = items["liar.jpg"]
    assert liar["taken"] is None and liar["lat"] is None and liar["lon"] is None and liar["caption"] is None
    assert "implausible date" in liar["meta_notes"] and "gps: position out of range" in liar["meta_notes"]
    assert items["huge.jpg"]["taken"] is None and items["huge.jpg"]["caption"] is None
    assert "1900" in items["huge.jpg"]["meta_notes"]
    assert all(r["meta_at"] is not None for r in items.values())
    assert summary.metadata_skipped == 2
    assert any("liar.jpg" in w and "not UTF-8" in w for w in warnings)
    assert any("huge.jpg" in w and "larger than 64 kB" in w for w in warnings)


def test_a_changed_sidecar_updates_its_caption_without_embedding_anything(tmp_path, album):
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        index.ingest([album])
        (album / "beach.txt").write_text("a stormy beach", encoding="utf-8")
        os.utime(album / "beach.txt", ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
        (album / "plain.txt").write_text("a grey square", encoding="utf-8")  # a sidecar added
        (album / "fox.json").unlink()  # a sidecar removed
        again = index.ingest([album])
    assert again.embedded == 0 and again.reused == 0 and again.unchanged == 5
    items = items_by_name(tmp_path / "index")
    assert items["beach.jpg"]["caption"] == "a stormy beach"
    assert items["plain.jpg"]["caption"] == "a grey square"
    assert items["fox.jpg"]["caption"] is None


def test_webdataset_captions_join_their_images_by_sample_key(tmp_path):
    shard = webdataset_shard(tmp_path / "shard-000.tar", [
        ("000001", jpeg_bytes((200, 0, 0)), {".txt": "a red square".encode(), ".json": b'{"caption": "ignored"}'}),
        ("000002", jpeg_bytes((0, 200, 0)), {".json": json.dumps({"text": "a green square"}).encode()}),
        ("000003", jpeg_bytes((0, 0, 200)), {".txt": b"\xff\xfe not utf-8"}),
        ("000004", jpeg_bytes((200, 200, 0)), {}),
    ])
    warnings: list[str] = []
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        summary = index.ingest([shard], warn=warnings.append)
    assert summary.embedded == 4
    items = items_by_name(tmp_path / "index")
    assert set(items) == {"000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"}  # the text files are no items
    assert items["000001.jpg"]["caption"] == "a red square"
    assert items["000002.jpg"]["caption"] == "a green square"
    assert items["000003.jpg"]["caption"] is None and items["000004.jpg"]["caption"] is None
    assert summary.metadata_skipped == 1 and any("000003.jpg" in w for w in warnings)


def test_items_embedded_before_metadata_was_kept_are_filled_in_without_embedding(tmp_path, album):
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        index.ingest([album])
    # As an index upgraded from schema 0005 holds them: embedded, with no metadata read.
    catalog_execute(tmp_path / "index", "UPDATE items SET taken = NULL, camera = NULL, lat = NULL, lon = NULL, "
                                        "meta_at = NULL, meta_notes = NULL")
    with open_index(tmp_path / "index") as index:
        summary = index.ingest([album])
    assert summary.embedded == 0 and summary.reused == 0 and summary.metadata_filled == 5
    items = items_by_name(tmp_path / "index")
    assert items["beach.jpg"]["taken"] == "2024-06-01 12:30:00" and items["beach.jpg"]["lat"] == pytest.approx(52.5)
    assert all(r["meta_at"] is not None for r in items.values())
    with open_index(tmp_path / "index") as index:
        assert index.ingest([album]).metadata_filled == 0  # once only


def test_a_catalog_at_0005_with_rows_is_upgraded_in_place_with_full_text(tmp_path, catalog_url):
    """The columns are added in place, archives are marked for one more listing (their samples' captions),
    and the rows already there are found by full text."""
    catalog = catalog_at_revision(tmp_path, catalog_url, "0005_ingest_leases", [
        ("INSERT INTO embeddings (sha256, vector, created_at) VALUES ('ab', :v, 0)", {"v": b"\0\0"}),
        ("INSERT INTO items (uri, size, mtime_ns, state, embedding_id, added_at, updated_at) "
         "VALUES ('/photos/lighthouse_at_dawn.jpg', 10, 20, 'embedded', 1, 0, 0)", {}),
        ("INSERT INTO archives (uri, size, mtime_ns, members, complete, scanned_at) "
         "VALUES ('/shards/a.tar', 1, 2, 3, :yes, 0)", {"yes": True})])
    try:
        assert [i.uri for i in catalog.filters.keyword_ranked("lighthouse", 5)] == ["/photos/lighthouse_at_dawn.jpg"]
        assert catalog.worklist.facts_missing() == [(1, "/photos/lighthouse_at_dawn.jpg", None, None)]
        assert catalog.worklist.archive("/shards/a.tar").complete is False
        catalog.write("UPDATE items SET caption = :c WHERE id = 1", [{"c": "a red lighthouse"}])
        assert [i.item_id for i in catalog.filters.keyword_ranked("red", 5)] == [1]  # the trigger followed
        assert catalog.filters.keyword_ranked("dawn", 5)[0].item_id == 1
    finally:
        catalog.close()



def test_a_catalog_at_0007_gets_the_filter_indexes_and_a_selective_camera_filter_uses_one(tmp_path, catalog_url):
    from sqlalchemy import create_engine, inspect

    catalog = catalog_at_revision(tmp_path, catalog_url, "0007_metadata", [
        ("INSERT INTO embeddings (sha256, vector, created_at) VALUES ('ab', :v, 0)", {"v": b"\0\0"}),
        ("INSERT INTO items (uri, size, mtime_ns, state, embedding_id, added_at, updated_at, camera, width, height) "
         "VALUES ('/p/a.jpg', 10, 20, 'embedded', 1, 0, 0, 'NIKON D750', 640, 480)", {})])
    server = None if catalog_url.startswith("sqlite") else catalog_url
    try:
        clause = catalog.filters.compile("camera = 'nikon d750' and width = 640 and height = 480")
        assert catalog.filters.matching_item_ids(clause) == [1]
        if server is None:
            plan = " ".join(str(r[-1]) for r in catalog.rows(
                f"EXPLAIN QUERY PLAN SELECT id FROM items WHERE {clause.sql}", clause.params))
            assert "USING INDEX ix_items_" in plan, plan
        else:
            names = {i["name"] for i in inspect(create_engine(server)).get_indexes("items")}
            assert {"ix_items_width", "ix_items_height", "ix_items_camera_lower"} <= names
    finally:
        catalog.close()


def test_the_exif_reader_agrees_with_pillows_and_takes_garbage_calmly(tmp_path):
    import struct

    from hypothesis import given, settings, strategies as st
    from PIL import Image

    from indexer.media.metadata import ExifError, picture_facts, read_exif_block

    path = exif_jpeg(tmp_path / "a.jpg", gps=GOOD_GPS)
    with Image.open(path) as image:
        ifd0, sub, gps = read_exif_block(image.info["exif"])
        pillow = image.getexif()
        assert ifd0[0x0110].rstrip(b"\0").decode() == pillow[0x0110]
        assert sub[0x9003].rstrip(b"\0").decode() == pillow.get_ifd(0x8769)[0x9003]
        assert gps[2] == tuple(float(v) for v in pillow.get_ifd(0x8825)[2])
    # A PNG's eXIf chunk, and a big-endian ("MM") block written by hand.
    png = tmp_path / "b.png"
    with Image.open(path) as image:
        image.save(png, exif=image.getexif())
    with Image.open(png) as image:
        assert picture_facts(image).camera == "Canon EOS 5D"
    text = b"2020:02:02 10:00:00\0"
    block = (b"MM" + struct.pack(">HI", 42, 8) + struct.pack(">H", 1)
             + struct.pack(">HHII", 0x0132, 2, len(text), 26) + struct.pack(">I", 0) + text)
    assert read_exif_block(block)[0][0x0132] == text

    entry = st.tuples(st.sampled_from([0x010F, 0x0132, 0x8769, 0x8825, 1, 2, 0x9003]), st.integers(0, 12),
                      st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)).map(lambda e: struct.pack("<HHII", *e))
    ifd = st.lists(entry, max_size=6).map(lambda es: struct.pack("<H", len(es)) + b"".join(es))

    @settings(max_examples=500, deadline=None)
    @given(st.binary(max_size=200) | st.binary(max_size=40).map(lambda b: b"II*\0\x08\0\0\0" + b)
           | st.tuples(ifd, st.binary(max_size=60)).map(lambda t: b"II*\0\x08\0\0\0" + t[0] + t[1]))
    def garbage(data):
        try:
            read_exif_block(data)
        except (ExifError, struct.error):
            pass

    garbage()
