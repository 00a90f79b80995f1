"""What ``/api/items/ID/image`` may serve: an embedded picture as it was ingested, typed as a picture;
never an HTML or SVG file recorded as not_an_image (its script would run in the service's origin), never
a file that replaced a picture later (a link to a file only its owner may read, a FIFO)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from indexer import open_index

from .conftest import catalog_rows, render_folder
from .live_server import live_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

HTML = "<!doctype html><title>page</title><script>document.title = 'pwned ' + document.domain;</script>"
SVG = ('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
       '<script>document.documentElement.setAttribute("data-pwned", document.domain)</script></svg>')


@pytest.fixture
def mixed_index(tmp_path) -> tuple[Path, dict[str, int], Path]:
    photos = tmp_path / "photos"
    render_folder(photos, per_class=2, classes=("red star", "blue circle"))
    given = tmp_path / "given"
    given.mkdir()
    (given / "page.html").write_text(HTML)
    (given / "drawing.svg").write_text(SVG)
    secret = tmp_path / "secret.txt"
    secret.write_text("the owner's secret\n")
    secret.chmod(0o600)
    (photos / "red_star" / "link.jpg").symlink_to(secret)  # a link to a file that is no picture
    index = tmp_path / "index"
    with open_index(index, model="tiny-shapes") as built:  # as `indexer ingest --from-list` gives them
        built.ingest([photos, given / "page.html", given / "drawing.svg"], strict=False)
    ids = {Path(uri).name: item_id for item_id, uri in catalog_rows(index, "SELECT id, uri FROM items")}
    return index, ids, secret


def test_recorded_html_and_svg_are_never_served_and_scripts_never_run(mixed_index):
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's)")
    index, ids, _ = mixed_index
    states = dict(catalog_rows(index, "SELECT uri, failure_reason FROM items WHERE state = 'failed'"))
    assert sorted(reason for reason in states.values()) == ["not_an_image"] * 3, states
    with live_server({"shapes": index}) as url, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page()
        for name in ("page.html", "drawing.svg"):
            answer = page.goto(f"{url}/api/items/{ids[name]}/image")
            assert answer is not None and answer.status == 404, (name, answer and answer.headers)
            assert "pwned" not in page.title()
            assert page.evaluate("() => document.documentElement.getAttribute('data-pwned')") is None
        picture = next(name for name in ids if name.endswith(".jpg") and name != "link.jpg")
        answer = page.goto(f"{url}/api/items/{ids[picture]}/image")
        assert answer.status == 200 and answer.headers["content-type"] == "image/jpeg"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in answer.headers["content-security-policy"]
        browser.close()


def test_a_picture_replaced_after_ingest_is_not_served(mixed_index, tmp_path):
    index, ids, secret = mixed_index
    pictures = sorted(Path(uri) for (uri,) in catalog_rows(
        index, "SELECT uri FROM items WHERE state = 'embedded' ORDER BY id"))
    linked, changed, piped, kept = pictures[:4]
    linked.unlink()
    linked.symlink_to(secret)  # an embedded picture replaced by a link to the owner's secret
    changed.write_bytes(secret.read_bytes())  # by other content
    piped.unlink()
    os.mkfifo(piped)  # by a FIFO (a plain open would block the request forever)
    with live_server({"shapes": index}) as url, httpx.Client(base_url=url, timeout=30) as client:
        # The link planted as a picture before the ingest was recorded as not_an_image: never served.
        assert client.get(f"/api/items/{ids['link.jpg']}/image").status_code == 404
        for path in (linked, changed, piped):
            answer = client.get(f"/api/items/{ids[path.name]}/image")
            assert answer.status_code == 404 and "secret" not in answer.text, (path.name, answer.text)
            assert client.get(f"/api/items/{ids[path.name]}/thumbnail").status_code == 404
        served = client.get(f"/api/items/{ids[kept.name]}/image")
        assert served.status_code == 200 and served.content == kept.read_bytes()
