"""The service over what ``indexer ingest`` built: an index whose catalog is on PostgreSQL (served with
``--catalog URL``; a password in the URL's query string is shown nowhere), and ingests repeated through
the API from another folder than the one the first ingest ran in."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .conftest import render_folder, run_cli
from .live_server import live_server

PASSWORD = "hunter2-in-the-query"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_an_index_whose_catalog_is_on_postgresql_and_never_show_its_password(tmp_path, photos, pg_url):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    index = tmp_path / "index"
    # The test server trusts its users: the password is only carried, as a parameter of the URL.
    url = make_url(pg_url).update_query_dict({"password": PASSWORD}).render_as_string(hide_password=False)
    built = run_cli("ingest", str(photos / "red_star"), str(photos / "blue_circle"), "--index", str(index),
                    "--catalog", url, "--model", "tiny-shapes")
    assert built.returncode == 0, built.stderr
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "indexer", "serve", "--index", str(index), "--catalog", url,
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.communicate()[1]
            assert time.time() < deadline, "the service did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=base, timeout=60) as client:
            hits = client.get("/api/search", params={"q": "a red star", "k": 2}).json()["hits"]
            assert len(hits) == 2 and all("/red_star/" in hit["path"] for hit in hits)
            # The database goes away under the running service: its answers say so, without the password.
            admin = create_engine(make_url(pg_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE "{make_url(pg_url).database}" WITH (FORCE)'))
            admin.dispose()
            broken = client.get("/api/status")
            assert broken.status_code == 503, broken.text
            assert "catalog" in broken.text and PASSWORD not in broken.text
    finally:
        server.kill()
        _, stderr = server.communicate()
    assert PASSWORD not in stderr
    # The CLI's messages mask it too.
    down = run_cli("status", "--index", str(index), "--catalog", url)
    assert down.returncode == 1 and PASSWORD not in down.stderr + down.stdout and "***" in down.stderr
    many = run_cli("serve", "--index", str(index), "--index", f"other={index}", "--catalog", url)
    assert many.returncode == 2 and "one index" in many.stderr


def test_an_ingest_through_the_api_reads_the_recorded_folders_wherever_the_service_runs(tmp_path, monkeypatch):
    first, elsewhere = tmp_path / "first", tmp_path / "elsewhere"
    render_folder(first / "photos", per_class=1, classes=("red star",), seed=1)
    render_folder(elsewhere / "photos", per_class=3, classes=("green square",), seed=2)  # someone else's
    built = run_cli("ingest", "photos", "--index", str(tmp_path / "index"), "--model", "tiny-shapes", cwd=first)
    assert built.returncode == 0, built.stderr
    render_folder(first / "photos", per_class=1, classes=("blue circle",), seed=3)  # new since
    monkeypatch.chdir(elsewhere)  # the service runs in another folder, holding a folder of the same name
    with live_server({"shapes": tmp_path / "index"}, allow_ingest=True) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        started = client.post("/api/ingest")
        assert started.status_code == 202, started.text
        assert started.json()["sources"] == [str(first / "photos")]
        for _ in range(1200):
            state = client.get("/api/ingest").json()
            if state["state"] != "running":
                break
            time.sleep(0.05)
        assert state["state"] == "done" and state["summary"]["embedded"] == 1, state
        paths = [hit["path"] for hit in client.get("/api/search", params={"q": "a square", "k": 50}).json()["hits"]]
    assert paths and not any(str(elsewhere) in path for path in paths)
    assert any("blue_circle" in path for path in paths)
    assert os.getcwd() == str(elsewhere) and Path(paths[0]).is_absolute()


def test_a_password_in_the_query_string_of_a_catalog_url_is_never_printed(tmp_path):
    (tmp_path / "index").mkdir()
    for url in (f"postgresql+psycopg://someone@127.0.0.1:1/db?password={PASSWORD}&connect_timeout=5",
                f"postgresql+psycopg://someone:{PASSWORD}@127.0.0.1:1/db?sslpassword={PASSWORD}"):
        down = run_cli("status", "--index", str(tmp_path / "index"), "--catalog", url)
        assert down.returncode == 1 and "cannot connect" in down.stderr, down.stderr
        assert PASSWORD not in down.stderr + down.stdout and "***" in down.stderr


def test_a_malformed_stored_audit_is_answered_with_a_reason_not_a_crash(index_copy):
    (index_copy / "audit").mkdir(exist_ok=True)
    findings = index_copy / "audit" / "findings.json"
    with live_server({"shapes": index_copy}) as url, httpx.Client(base_url=url) as client:
        for content in ("{not json", '{"a": "dict, not a list"}', '[1, "two", {"type": "outlier", "score": NaN}]'):
            findings.write_text(content)
            answer = client.get("/api/audit")
            assert answer.status_code == 503 and "indexer audit" in answer.json()["detail"], (content, answer.text)
        findings.write_text('[1, {"type": "outlier", "score": 0.5, "path": "a.jpg"}]')
        answer = client.get("/api/audit")
        assert answer.status_code == 200 and answer.json()["total"] == 1
