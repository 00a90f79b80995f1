"""The HTTP service over real HTTP (uvicorn on 127.0.0.1): clip-retrieval's contract field for field,
the native API, the guards (token, upload size, read-only, no client paths), and catching up with an
ingest that commits beside it."""

from __future__ import annotations

import base64
import io
import shutil

import httpx
import pytest
from PIL import Image

from indexer import open_index

from .conftest import render_folder, run_cli
from .live_server import live_server

CLIP_CLIENT_BODY = {  # what clip-retrieval's ClipClient posts, with its defaults
    "text": "a red star", "image": None, "image_url": None, "embedding_input": None, "deduplicate": True,
    "use_safety_model": True, "use_violence_detector": True, "indice_name": "shapes", "use_mclip": False,
    "aesthetic_score": 9, "aesthetic_weight": 0.5, "modality": "image", "num_images": 3, "num_result_ids": 3,
}


@pytest.fixture
def service(index_copy):
    with live_server({"shapes": index_copy}) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def jpeg_ok(b64: str) -> tuple[int, int]:
    data = base64.b64decode(b64)
    assert data[:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def test_clip_retrieval_contract(service, photos, index_copy):
    assert service.get("/indices-list").json() == ["shapes"]

    # The client's body as it sends it: a JSON string with no content type; safety/aesthetic fields ignored.
    import json
    body = dict(CLIP_CLIENT_BODY, num_images=3, num_result_ids=7)
    response = service.post("/knn-service", content=json.dumps(body))
    assert response.status_code == 200, response.text
    results = response.json()
    assert len(results) == 7
    similarities = [r["similarity"] for r in results]
    assert similarities == sorted(similarities, reverse=True)
    for r in results[:3]:
        assert set(r) == {"id", "similarity", "image_path", "caption", "image"}
        assert isinstance(r["id"], int) and r["caption"] is None and "/red_star/" in r["image_path"]
        assert max(jpeg_ok(r["image"])) == 96  # the pictures are 96 px: a thumbnail never enlarges
    for r in results[3:]:
        assert set(r) == {"id", "similarity"}
    assert len({r["id"] for r in results}) == 7  # deduplicated: one result per content

    # By picture (base64): the picture itself first.
    picture = sorted((photos / "blue_square").iterdir())[2]
    by_image = service.post("/knn-service", json=dict(CLIP_CLIENT_BODY, text=None,
                                                     image=base64.b64encode(picture.read_bytes()).decode())).json()
    assert by_image[0]["image_path"] == str(picture) and by_image[0]["similarity"] > 0.999

    # By embedding: an item's stored embedding finds the item.
    with open_index(index_copy) as index:
        item_id = by_image[1]["id"]
        vector = index.item_embedding(item_id)
    by_vector = service.post("/knn-service", json=dict(CLIP_CLIENT_BODY, text=None,
                                                      embedding_input=[float(x) for x in vector])).json()
    assert by_vector[0]["id"] == item_id

    # /metadata: the same ids back, with path, caption and thumbnail; an unknown id gets empty metadata.
    ids = [r["id"] for r in results[3:]] + [10**9]
    metas = service.post("/metadata", json={"ids": ids, "indice_name": "shapes"}).json()
    assert [m["id"] for m in metas] == ids
    for m, r in zip(metas, results[3:]):
        assert set(m["metadata"]) == {"image_path", "caption", "image"} and m["metadata"]["caption"] is None
        jpeg_ok(m["metadata"]["image"])
    assert metas[-1]["metadata"] == {}

    # What it refuses, with a message.
    refused = service.post("/knn-service", json=dict(CLIP_CLIENT_BODY, text=None, image_url="http://127.0.0.1:9/x.jpg"))
    assert refused.status_code == 400 and "never fetches" in refused.json()["detail"]
    assert service.post("/knn-service", json=dict(CLIP_CLIENT_BODY, modality="text")).status_code == 400
    assert service.post("/knn-service", json=dict(CLIP_CLIENT_BODY, indice_name="nope")).status_code == 404
    assert service.post("/knn-service", json=dict(CLIP_CLIENT_BODY, text=None, image="not base64!")).status_code == 400
    assert service.post("/knn-service", json=dict(CLIP_CLIENT_BODY, text=None,
                                                  embedding_input=[0.1, 0.2])).status_code == 400


def test_search_api(service, photos):
    hits = service.get("/api/search", params={"q": "a green circle", "k": 5}).json()["hits"]
    assert len(hits) == 5 and all("/green_circle/" in h["path"] for h in hits[:4])
    page2 = service.get("/api/search", params={"q": "a green circle", "k": 5, "offset": 5}).json()["hits"]
    everything = service.get("/api/search", params={"q": "a green circle", "k": 10}).json()["hits"]
    assert [h["id"] for h in hits + page2] == [h["id"] for h in everything]

    combined = service.get("/api/search", params={"q": "a star - yellow - red", "k": 6}).json()["hits"]
    assert all("_star/" in h["path"] and "/yellow_" not in h["path"] and "/red_" not in h["path"]
               for h in combined[:4]), [h["path"] for h in combined]

    only_blue = service.get("/api/search", params={"q": "a star", "path_filter": "*/blue_*", "k": 50}).json()["hits"]
    assert only_blue and all("/blue_" in h["path"] for h in only_blue)
    above = service.get("/api/search", params={"q": "a red star", "min_score": 0.6, "k": 50}).json()["hits"]
    assert above and all(h["score"] >= 0.6 for h in above) and len(above) < 48

    # "More like this": an item's stored embedding, combined with a text term.
    first = hits[0]
    like = service.get("/api/search", params={"like": first["id"], "k": 3}).json()["hits"]
    assert like[0]["id"] == first["id"] and like[0]["score"] > 0.999

    # A text naming an indexed picture's file is text: the service never opens a path a client names.
    path = sorted((photos / "red_square").iterdir())[0]
    as_text = service.get("/api/search", params={"q": str(path), "k": 1}).json()["hits"]
    assert as_text[0]["score"] < 0.99

    # An uploaded picture, optionally with text; broken and empty uploads are refused with 400.
    picture = sorted((photos / "yellow_star").iterdir())[1]
    upload = service.post("/api/search", files={"image": (picture.name, picture.read_bytes(), "image/jpeg")},
                          data={"k": "3"}).json()["hits"]
    assert upload[0]["path"] == str(picture)
    broken = service.post("/api/search", files={"image": ("x.jpg", b"\xff\xd8\xff\xe0 not a jpeg", "image/jpeg")})
    assert broken.status_code == 400 and "not a readable image" in broken.json()["detail"]
    assert service.post("/api/search", files={"image": ("x.jpg", b"", "image/jpeg")}).status_code == 400
    assert service.get("/api/search").status_code == 400
    assert service.get("/api/search", params={"q": "a star", "k": 0}).status_code == 422
    assert service.get("/api/search", params={"q": "x", "index": "nope"}).status_code == 404


def test_items_classify_status_metrics(service, photos, index_copy):
    hit = service.get("/api/search", params={"q": "a blue circle", "k": 1}).json()["hits"][0]
    item = service.get(f"/api/items/{hit['id']}").json()
    assert item["path"] == hit["path"] and item["state"] == "embedded" and item["width"] == 96
    assert len(item["neighbours"]) == 12 and all(n["id"] != hit["id"] for n in item["neighbours"])
    assert "/blue_circle/" in item["neighbours"][0]["path"]
    thumbnail = service.get(f"/api/items/{hit['id']}/thumbnail", params={"size": 48})
    assert thumbnail.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(thumbnail.content)).size) == 48
    original = service.get(f"/api/items/{hit['id']}/image")
    assert original.content == open(hit["path"], "rb").read()
    assert service.get("/api/items/999999").status_code == 404
    assert service.get("/api/items/999999/image").status_code == 404
    assert service.get("/api/items/..%2F..%2Fetc%2Fpasswd/image").status_code in (404, 422)
    assert service.get("/api/items/-1/thumbnail").status_code == 422

    # Classification: progress, counts, pages of items per label, best first.
    run = service.post("/api/classify", json={"labels": ["red star", "blue circle", "green square"]})
    assert run.status_code == 202
    run_id = run.json()["id"]
    for _ in range(200):
        state = service.get(f"/api/classify/{run_id}").json()
        if state["state"] != "running":
            break
    assert state["state"] == "done" and state["done"] == state["total"] == 48
    assert sum(state["counts"].values()) == 48 and state["counts"]["blue circle"] >= 4
    page = service.get(f"/api/classify/{run_id}/items", params={"label": "blue circle", "limit": 3}).json()
    assert page["total"] == state["counts"]["blue circle"] and len(page["items"]) == 3
    assert all("/blue_circle/" in i["path"] for i in page["items"])
    assert [i["score"] for i in page["items"]] == sorted((i["score"] for i in page["items"]), reverse=True)
    rest = service.get(f"/api/classify/{run_id}/items", params={"label": "blue circle", "offset": 3, "limit": 100}).json()
    assert len(rest["items"]) == page["total"] - 3
    assert service.get(f"/api/classify/{run_id}/items", params={"label": "cat"}).status_code == 400
    assert service.get("/api/classify/abc123").status_code == 404
    assert service.post("/api/classify", json={"labels": [" ", ""]}).status_code == 400
    # The service stored nothing: runs are kept in memory.
    with open_index(index_copy) as index:
        assert index.catalog.runs.classification() is None

    # Status has the keys of `status --json`; metrics count what was answered.
    status = service.get("/api/status").json()
    cli = run_cli("status", "--index", str(index_copy), "--json")
    import json
    assert set(status) == set(json.loads(cli.stdout)) and status["embedded"] == 48
    assert service.get("/api/healthz").json() == {"status": "ok", "indexes": ["shapes"]}
    metrics = service.get("/metrics").text
    assert 'indexer_http_requests_total{method="GET",route="/api/items/{item_id}",status="200"} 1' in metrics
    assert 'indexer_http_request_seconds_bucket{route="/api/search",le="+Inf"}' in metrics
    assert "# TYPE indexer_query_seconds histogram" in metrics


def test_audit_findings(service, index_copy):
    assert service.get("/api/audit").status_code == 404
    from indexer.audit.report import write_report

    with open_index(index_copy) as index:
        result = index.audit()
    write_report(result, index_copy / "audit", thumbnails=False)
    findings = service.get("/api/audit", params={"limit": 1000}).json()
    assert findings["total"] == len(result.findings) > 0
    kind = result.findings[0].type
    only = service.get("/api/audit", params={"type": kind}).json()
    assert only["total"] == len(result.of_type(kind)) and all(f["type"] == kind for f in only["findings"])


def test_guards_token_upload_limit_read_only(index_copy, photos):
    with live_server({"shapes": index_copy}, token="s3cret", max_upload_bytes=4096) as url:
        with httpx.Client(base_url=url) as client:
            refused = client.get("/api/search", params={"q": "a star"})
            assert refused.status_code == 401 and "token" in refused.json()["detail"]
            assert client.get("/api/healthz").status_code == 200  # health checks need no token
            ok = client.get("/api/search", params={"q": "a star"}, headers={"authorization": "Bearer s3cret"})
            assert ok.status_code == 200
            landed = client.get("/", params={"token": "s3cret", "view": "labels"})  # sets the cookie
            assert landed.status_code == 303 and landed.headers["location"] == "/?view=labels"  # token out of the URL
            assert "HttpOnly" in landed.headers["set-cookie"] and "SameSite=Strict" in landed.headers["set-cookie"]
            assert client.get("/").status_code == 200
            assert client.get("/api/search", params={"q": "a star"}).status_code == 200
        with httpx.Client(base_url=url, headers={"authorization": "Bearer s3cret"}) as client:
            big = client.post("/api/search", files={"image": ("big.png", b"\x89PNG" + b"0" * 10_000, "image/png")})
            assert big.status_code == 413 and "limit" in big.json()["detail"]

            def chunks():
                for _ in range(10):
                    yield b"x" * 1000
            streamed = client.post("/knn-service", content=chunks())  # no Content-Length: counted as it comes
            assert streamed.status_code == 413
            assert client.post("/api/ingest").status_code == 403


def test_allow_ingest_and_commits_beside(index_copy, tmp_path):
    new = tmp_path / "more"
    render_folder(new, per_class=1, classes=("purple hexagon",), seed=99)
    with live_server({"shapes": index_copy}) as url, httpx.Client(base_url=url, timeout=60) as client:
        before = client.get("/api/search", params={"q": "a purple hexagon", "k": 1}).json()["hits"][0]
        assert "/purple_hexagon/" not in before["path"]
        with open_index(index_copy) as writer:  # an ingest beside the running service
            writer.ingest([new])
        after = client.get("/api/search", params={"q": "a purple hexagon", "k": 1}).json()["hits"][0]
        assert "/purple_hexagon/" in after["path"]  # picked up without a restart
    # With --allow-ingest, the index's recorded sources are ingested again through the API.
    extra = tmp_path / "more" / "purple_hexagon" / "late.jpg"
    render_folder(tmp_path / "late", per_class=1, classes=("orange cross",), seed=5)
    shutil.copy(next((tmp_path / "late" / "orange_cross").iterdir()), extra)
    with live_server({"shapes": index_copy}, allow_ingest=True) as url, httpx.Client(base_url=url, timeout=60) as client:
        started = client.post("/api/ingest")
        assert started.status_code == 202 and started.json()["sources"] == [str(new)]
        for _ in range(600):
            state = client.get("/api/ingest").json()
            if state["state"] != "running":
                break
            import time
            time.sleep(0.05)
        assert state["state"] == "done" and state["summary"]["embedded"] == 1, state


def test_cli_refuses_open_address_without_token(index_copy):
    for token in ("two words", "semi;colon", "ünïcode", 'quo"te'):  # none can travel in a cookie
        bad = run_cli("serve", "--index", str(index_copy), "--token", token)
        assert bad.returncode == 2 and "--token" in bad.stderr and "printable ASCII" in bad.stderr, bad.stderr
    result = run_cli("serve", "--index", str(index_copy), "--host", "0.0.0.0")
    assert result.returncode == 2 and "--token" in result.stderr
    result = run_cli("serve", "--index", str(index_copy.parent / "missing"))
    assert result.returncode == 2 and "no index" in result.stderr
