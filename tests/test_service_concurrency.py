"""One client's large classification must not freeze the service for the others: while 250 labels x 80
prompt templates (20,000 texts) are being encoded, a search for a new text, an upload of a new picture
and the health check still answer at once."""

from __future__ import annotations

import threading
import time

import httpx

from .live_server import live_server

LABELS = [f"a kind of thing number {n}" for n in range(250)]


def test_a_large_classification_leaves_searches_and_the_health_check_answering(index_copy, photos):
    with live_server({"shapes": index_copy}) as url, httpx.Client(base_url=url, timeout=300) as client:
        assert client.get("/api/search", params={"q": "a warm-up"}).status_code == 200  # the model is loaded
        started: dict = {}

        def classify() -> None:
            t = time.perf_counter()
            started["answer"] = client.post("/api/classify", json={"labels": LABELS, "templates": "ensemble"})
            started["seconds"] = time.perf_counter() - t

        thread = threading.Thread(target=classify)
        thread.start()
        time.sleep(0.5)  # the classification is under way
        waits = {}
        for name, call in (
                ("search", lambda: client.get("/api/search", params={"q": "a picture nobody asked for before"})),
                ("health", lambda: client.get("/healthz")),
                ("upload", lambda: client.post("/api/search", files={"image": ("p.jpg", next(
                    (photos / "red_star").iterdir()).read_bytes()[:-2] + b"\xff\xd9", "image/jpeg")}))):
            t = time.perf_counter()
            answer = call()
            waits[name] = time.perf_counter() - t
            assert answer.status_code == 200, (name, answer.text)
        thread.join()
        answer = started["answer"]
        assert answer.status_code == 202 and started["seconds"] < 2.0, started
        run = answer.json()["id"]
        while (state := client.get(f"/api/classify/{run}").json())["state"] == "running":
            time.sleep(0.2)
        assert state["state"] == "done" and sum(state["counts"].values()) == state["total"] > 0, state
        took = state["seconds"]
        # Each answered within a fraction of the time the labels took to encode (seconds).
        assert all(wait < min(1.0, took / 4) for wait in waits.values()), (took, waits)


def test_clients_texts_neither_grow_the_catalog_nor_need_it_written(index_copy):
    from .conftest import catalog_rows

    before = catalog_rows(index_copy, "SELECT COUNT(*) FROM text_embeddings")[0][0]
    with live_server({"shapes": index_copy}) as url, httpx.Client(base_url=url, timeout=120) as client:
        for batch in range(20):  # 2,000 texts nobody asked before, 100 terms a query
            q = " + ".join(f"w{batch}x{n}" for n in range(100))
            assert client.get("/api/search", params={"q": q, "k": 1}).status_code == 200
        # Asked again, they are answered from memory.
        again = client.get("/api/search", params={"q": " + ".join(f"w19x{n}" for n in range(100)), "k": 1})
        assert again.status_code == 200
    assert catalog_rows(index_copy, "SELECT COUNT(*) FROM text_embeddings")[0][0] == before
