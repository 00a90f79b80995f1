"""Searching with what the catalog knows: ``--where`` on search, classify and audit, full text and
``--hybrid`` (reciprocal rank fusion), the facts in ``--json`` and the API, on real indexes."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest

from indexer import open_index
from indexer.query.search import RRF_K, fuse

from .conftest import catalog_rows, render_folder, run_cli
from .live_server import live_server
from .metadata_pictures import exif_jpeg


@pytest.fixture
def captioned(tmp_path_factory):
    """An index of rendered shapes with dates, cameras and captions: red shapes taken in 2024 with a
    Canon, the others in 2019 with a Nikon; one green circle captioned with a unique word."""
    root = tmp_path_factory.mktemp("captioned") / "photos"
    rendered = render_folder(root, per_class=3, classes=("red circle", "red square", "green circle", "blue star"))
    for path, label in rendered:  # the same pixels again, with EXIF; the rendered file replaced
        from PIL import Image

        with Image.open(path) as image:
            colour = image.getpixel((image.width // 2, image.height // 2))
        red = label.startswith("red")
        exif_jpeg(path, colour=colour, taken="2024:05:01 10:00:00" if red else "2019:01:01 10:00:00",
                  make="Canon" if red else "NIKON", model="EOS R5" if red else "D750", size=(96, 96))
        path.with_suffix(".txt").write_text(f"a photo of a {label}", encoding="utf-8")
    special = sorted((root / "green_circle").glob("*.jpg"))[0]
    special.with_suffix(".txt").write_text("zebrafish in the aquarium", encoding="utf-8")
    index_dir = root.parent / "index"
    with open_index(index_dir, model="tiny-shapes") as index:
        index.ingest([root])
    return index_dir, root, special


def test_where_narrows_search_and_json_carries_the_facts(captioned):
    index_dir, root, _ = captioned
    with open_index(index_dir) as index:
        plain = index.search("a red circle", k=20)
        hits = index.search("a red circle", k=20, where="taken < 2020 and camera ~ nikon")
        dated = index.search("a red circle", k=3, where="taken = 2024-05-01")
    assert len(plain) == 12
    assert len(hits) == 6 and all("/red_" not in h.path for h in hits)
    assert all(h.taken == "2019-01-01 10:00:00" and h.camera == "NIKON D750" for h in hits)
    assert len(dated) == 3 and all("/red_" in h.path for h in dated)
    assert all(h.caption and h.caption.startswith("a photo of") or "zebrafish" in (h.caption or "") for h in plain)
    result = run_cli("search", "a red circle", "--index", str(index_dir), "--where", "width = 96 and caption ~ square",
                     "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 3 and all(set(r) >= {"caption", "taken", "camera", "width", "height"} for r in rows)
    assert all(r["caption"] == "a photo of a red square" and r["width"] == 96 and r["height"] == 96 for r in rows)


def test_a_bad_where_is_one_line_naming_the_flag_and_column(captioned):
    index_dir, _, _ = captioned
    result = run_cli("search", "a red circle", "--index", str(index_dir), "--where", "camera ~ canon and (width > 3")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "Error: --where: expected ')' to close the '(' at column 20, found the end at column 30"]
    result = run_cli("classify", "--labels", "a,b", "--index", str(index_dir), "--where", "(" * 500 + "width > 1" + ")" * 500)
    assert result.returncode != 0 and "--where: brackets and 'not' nested more than 32 deep at column 34" in result.stderr
    result = run_cli("audit", "--index", str(index_dir), "--no-report", "--where", "size > " + "9" * 5000)
    assert result.returncode != 0 and "--where: the expression is longer than 4096 characters" in result.stderr


def test_hybrid_puts_a_caption_keyword_match_first(captioned):
    index_dir, _, special = captioned
    with open_index(index_dir) as index:
        semantic = index.search("zebrafish", k=12)
        hybrid = index.search("zebrafish", k=12, hybrid=True)
        narrowed = index.search("zebrafish", k=12, hybrid=True, where="camera ~ canon")
    assert hybrid[0].path == str(special) and hybrid[0].caption == "zebrafish in the aquarium"
    assert hybrid[0].score == pytest.approx(1 / (RRF_K + 1) + 1 / (RRF_K + [h.path for h in semantic].index(str(special)) + 1), abs=1e-6)
    assert str(special) not in [h.path for h in narrowed] and len(narrowed) == 6
    # File names are indexed too: a word of the folder name ranks its files first.
    with open_index(index_dir) as index:
        by_name = index.search("blue_star", k=3, hybrid=True)
    assert all("/blue_star/" in h.path for h in by_name)


def test_reciprocal_rank_fusion():
    fused = fuse([[1, 2, 3], [3, 4]], 4)
    assert [key for key, _ in fused] == [3, 1, 2, 4]
    assert fused[0][1] == pytest.approx(1 / 63 + 1 / 61)
    assert fuse([[], []], 3) == []


def test_classify_and_audit_take_where(captioned, tmp_path):
    index_dir, root, _ = captioned
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    with open_index(copy) as index:
        result = index.classify(["red", "green", "blue"], where="camera ~ canon")
        assert result.items == 6
        stored = catalog_rows(copy, "SELECT count(DISTINCT item_id) FROM classifications WHERE run_id = ?", result.run_id)
        assert stored == [(6,)]
        from indexer.audit import AuditOptions

        audited = index.audit(index.audit_labels(root=root), AuditOptions(where="taken < 2020", min_class_size=1))
        assert audited.items == 6 and set(audited.labels) >= {"green circle", "blue star"}
        assert sum(audited.class_counts.get(label, 0) for label in ("red circle", "red square")) == 0
        red = {uri for (uri,) in catalog_rows(copy, "SELECT uri FROM items JOIN classifications ON item_id = id "
                                                     "WHERE run_id = ? AND rank = 1 AND label = 'red'", result.run_id)}
        assert red and {h.path for h in index.search("a red circle", k=20, where="label = red")} == red


def test_the_api_and_the_clip_routes_carry_where_hybrid_and_captions(captioned):
    index_dir, _, special = captioned
    with live_server({"shapes": index_dir}) as url, httpx.Client(base_url=url, timeout=60) as client:
        body = client.get("/api/search", params={"q": "a red circle", "k": 20, "where": "camera ~ nikon"}).json()
        assert len(body["hits"]) == 6 and all(h["camera"] == "NIKON D750" and h["taken"] for h in body["hits"])
        body = client.get("/api/search", params={"q": "zebrafish", "k": 5, "hybrid": "true"}).json()
        assert body["hits"][0]["path"] == str(special) and body["hits"][0]["caption"] == "zebrafish in the aquarium"
        bad = client.get("/api/search", params={"q": "a", "where": "width >> 3"})
        assert bad.status_code == 400 and "column 8" in bad.text
        huge = client.get("/api/search", params={"q": "a", "where": "width > " + "1" * 5000})
        assert huge.status_code == 400 and "longer than 4096" in huge.text
        item = client.get(f"/api/items/{body['hits'][0]['id']}").json()
        assert item["caption"] == "zebrafish in the aquarium" and item["taken"] == "2019-01-01 10:00:00"
        knn = client.post("/knn-service", json={"text": "zebrafish", "num_images": 12, "indice_name": "shapes"}).json()
        assert any(r["caption"] == "zebrafish in the aquarium" for r in knn)
        meta = client.post("/metadata", json={"ids": [body["hits"][0]["id"]], "indice_name": "shapes"}).json()
        assert meta[0]["metadata"]["caption"] == "zebrafish in the aquarium"
