"""Other web sites against the service, in real Chromium: a page whose name was rebound to 127.0.0.1
(DNS rebinding), and a page on another site that posts a form to /api/ingest and a text/plain query
to /knn-service (CSRF). Chromium resolves the made-up names to 127.0.0.1 (--host-resolver-rules), so
nothing but this machine is contacted. A client that is no browser (clip-retrieval's ClipClient) must
still get its answers."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from .live_server import live_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
browser_test = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (.ci/run installs Debian's)")


@contextmanager
def chromium(*names: str) -> Iterator:
    rules = ", ".join(f"MAP {name} 127.0.0.1" for name in names)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                          f"--host-resolver-rules={rules}"])
        try:
            yield browser.new_page()
        finally:
            browser.close()


@contextmanager
def attacker_site(folder: Path) -> Iterator[int]:
    """A plain web server for the attacker's page, on 127.0.0.1; yields its port."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@browser_test
def test_a_rebound_name_reads_nothing_but_the_service_answers_its_own_names(index_copy):
    with live_server({"shapes": index_copy}) as url, chromium("rebound.test", "photos.test") as page:
        port = _port(url)
        # The attacker's page, once its name resolves to 127.0.0.1, is served from the service's origin
        # as the browser sees it (rebound.test:PORT) and reads whatever it can with same-origin fetches.
        landing = page.goto(f"http://rebound.test:{port}/")
        assert landing is not None and landing.status == 403
        stolen = page.evaluate("""async () => {
            const out = {};
            for (const path of ['/api/status', '/api/indexes', '/api/search?q=a+star', '/api/items/1/image']) {
                const r = await fetch(path);
                out[path] = [r.status, await r.text()];
            }
            return out;
        }""")
        for path, (status, body) in stolen.items():
            assert status == 403, (path, status, body[:200])
            assert str(index_copy) not in body and "red_star" not in body
        # Its own names still work: the address, localhost, and a configured name.
        assert page.goto(f"http://127.0.0.1:{port}/").status == 200
        assert page.goto(f"http://localhost:{port}/").status == 200
    with live_server({"shapes": index_copy}, allowed_hosts=("photos.test",)) as url, chromium("photos.test") as page:
        assert page.goto(f"http://photos.test:{_port(url)}/").status == 200
        assert page.evaluate("async () => (await fetch('/api/status')).status") == 200
    # Any HTTP client gets the same answers for the same Host values.
    with live_server({"shapes": index_copy}) as url, httpx.Client(base_url=url) as client:
        assert client.get("/api/status", headers={"host": "evil.example"}).status_code == 403
        assert client.get("/api/status", headers={"host": f"evil.example:{_port(url)}"}).status_code == 403
        assert client.get("/api/status", headers={"host": f"[::1]:{_port(url)}"}).status_code == 200
        assert client.get("/api/status", headers={"host": f"localhost:{_port(url)}"}).status_code == 200


ATTACK = """<!doctype html><title>free pictures</title>
<form id="f" method="POST" action="http://127.0.0.1:{port}/api/ingest"><input name="x" value="1"></form>
<script>
fetch("http://127.0.0.1:{port}/knn-service", {{method: "POST", mode: "no-cors",
      headers: {{"content-type": "text/plain"}},
      body: JSON.stringify({{text: "a red star", num_images: 2, indice_name: "shapes"}})}})
  .finally(() => document.getElementById("f").submit());
</script>"""


def _answered(client: httpx.Client, route: str, status: str) -> float:
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("indexer_http_requests_total{") and f'route="{route}"' in line and f'status="{status}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@browser_test
def test_another_site_can_neither_start_an_ingest_nor_run_queries(index_copy, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    with live_server({"shapes": index_copy}, allow_ingest=True) as url, httpx.Client(base_url=url, timeout=60) as client:
        (site / "attack.html").write_text(ATTACK.format(port=_port(url)))
        with attacker_site(site) as attacker_port, chromium("pictures.test") as page:
            page.goto(f"http://pictures.test:{attacker_port}/attack.html")
            page.wait_for_url("**/api/ingest", timeout=30_000)  # the form was posted
            answer = page.content()
        assert "refused" in answer, answer[:500]
        assert client.get("/api/ingest").json()["state"] == "idle"  # no ingest was started
        assert _answered(client, "/knn-service", "200") == 0  # and no query was run

        # The same requests from a client that is no browser are served, as ClipClient sends them:
        # a JSON string posted with no content type.
        body = json.dumps({"text": "a red star", "num_images": 2, "indice_name": "shapes"})
        hits = client.post("/knn-service", content=body)
        assert hits.status_code == 200 and len(hits.json()) == 2
        # The service's own page, same-origin, still posts.
        same = client.post("/api/classify", json={"labels": ["red star", "blue circle"]},
                           headers={"origin": url, "sec-fetch-site": "same-origin"})
        assert same.status_code == 202
        # Older browsers send no Sec-Fetch-Site, only Origin: another origin is refused on a POST.
        other = client.post("/knn-service", content=body, headers={"origin": "http://pictures.test:80"})
        assert other.status_code == 403
        assert client.post("/knn-service", content=body, headers={"origin": "null"}).status_code == 403
        # A link followed from another site still opens the page.
        followed = client.get("/", headers={"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate",
                                            "sec-fetch-dest": "document"})
        assert followed.status_code == 200
        assert client.get("/api/search", params={"q": "a star"},
                          headers={"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors",
                                   "sec-fetch-dest": "image"}).status_code == 403


def test_made_up_methods_and_paths_do_not_grow_the_metrics(index_copy):
    import http.client

    with live_server({"shapes": index_copy}, token="t0ken") as url, httpx.Client(base_url=url) as client:
        connection = http.client.HTTPConnection("127.0.0.1", _port(url), timeout=30)
        for n in range(300):  # every request made up, every one refused (401: no token)
            connection.request(f"M{n:05d}", f"/made/up/{n}")
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 401
        connection.close()
        text = client.get("/metrics", headers={"authorization": "Bearer t0ken"}).text
    series = [line for line in text.splitlines() if line.startswith("indexer_http_requests_total{")]
    assert not any("M000" in line or "/made/up" in line for line in series), series[:5]
    assert len(series) <= 5, series
    assert 'method="other"' in text
