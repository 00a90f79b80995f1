#!/usr/bin/env python
"""A bounded load test on loopback: concurrent clients mixing searches, item views and classification
pages against ``indexer serve`` (its own process), while an ingest commits new pictures beside it.

    python scripts/load_serve.py --clients 8 --seconds 30

At the end every picture the ingest committed must be found through the service (no lost commits),
and no request may have failed. Prints figures (``--json``: one JSON object); exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TEXTS = [f"a {size}{colour} {shape}" for size in ("", "small ", "large ")
         for colour in ("red", "green", "blue", "yellow", "purple", "orange")
         for shape in ("circle", "square", "star", "triangle", "cross")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_loop(url: str, seconds: float, seed: int, log: list, errors: list) -> None:
    import httpx

    rng = random.Random(seed)
    deadline = time.time() + seconds
    with httpx.Client(base_url=url, timeout=120) as client:
        def call(kind: str, method: str, path: str, **kwargs):
            started = time.perf_counter()
            try:
                response = client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                errors.append(f"{kind}: {exc!r}")
                return None
            log.append((kind, time.perf_counter() - started))
            if response.status_code >= 400:
                errors.append(f"{kind} {path}: {response.status_code} {response.text[:200]}")
                return None
            return response.json()

        while time.time() < deadline:
            roll = rng.random()
            if roll < 0.6:
                body = call("search", "GET", "/api/search", params={"q": rng.choice(TEXTS), "k": 40,
                                                                   "offset": rng.choice((0, 0, 40))})
                if body and body["hits"] and rng.random() < 0.3:
                    hit = rng.choice(body["hits"])
                    call("item", "GET", f"/api/items/{hit['id']}")
                    call("like", "GET", "/api/search", params={"like": hit["id"], "k": 20})
            elif roll < 0.8:
                labels = rng.sample(TEXTS, 6)
                run = call("classify", "POST", "/api/classify", json={"labels": labels})
                while run and run["state"] == "running":
                    time.sleep(0.05)
                    run = call("classify-poll", "GET", f"/api/classify/{run['id']}")
                if run:
                    call("classify-page", "GET", f"/api/classify/{run['id']}/items",
                         params={"label": rng.choice(labels), "limit": 60})
            else:
                call("knn", "POST", "/knn-service", json={"text": rng.choice(TEXTS), "num_images": 10,
                                                          "indice_name": "load", "modality": "image"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--batches", type=int, default=6, help="folders the ingest beside commits, one by one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    from indexer import open_index, synthetic

    work = Path(tempfile.mkdtemp(prefix="load-serve-"))
    server = None
    try:
        classes = synthetic.ALL_CLASSES
        synthetic.write_labelled_folder(work / "photos", 4, classes, seed=1, size=64, image_format="jpg")
        index_dir = work / "index"
        with open_index(index_dir, model="tiny-shapes") as index:
            index.ingest([work / "photos"])
            base = index.count_embedded()
        batches = []
        for i in range(args.batches):
            folder = work / "new" / f"batch_{i}"
            synthetic.write_labelled_folder(folder, 1, classes, seed=100 + i, size=64, image_format="jpg")
            batches.append(folder)
        port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
        server = subprocess.Popen([sys.executable, "-m", "indexer", "serve", "--index", f"load={index_dir}",
                                   "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        import httpx

        for _ in range(600):
            try:
                httpx.get(url + "/api/healthz")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        httpx.get(url + "/api/search", params={"q": "warm up"}, timeout=120).raise_for_status()

        log: list = []
        errors: list = []
        committed: list[int] = []

        def ingest_beside() -> None:
            pause = args.seconds / (args.batches + 1)
            with open_index(index_dir) as writer:
                for folder in batches:
                    time.sleep(pause)
                    summary = writer.ingest([folder], warn=lambda message: None)
                    committed.append(summary.embedded)

        threads = [threading.Thread(target=client_loop, args=(url, args.seconds, seed, log, errors))
                   for seed in range(args.clients)]
        ingester = threading.Thread(target=ingest_beside)
        started = time.time()
        for thread in threads + [ingester]:
            thread.start()
        for thread in threads + [ingester]:
            thread.join()
        wall = time.time() - started

        # No lost commits: every picture of every batch is found through the service.
        lost = {}
        with httpx.Client(base_url=url, timeout=120) as client:
            for folder in batches:
                hits = client.get("/api/search", params={"q": "a shape", "path_filter": f"*/{folder.name}/*",
                                                         "k": 1000}).json()["hits"]
                if len(hits) != len(classes):
                    lost[folder.name] = len(classes) - len(hits)
            status = client.get("/api/status").json()
        times = np.asarray([t for _, t in log]) * 1000
        kinds = {}
        for kind, t in log:
            kinds.setdefault(kind, []).append(t * 1000)
        figures = {
            "clients": args.clients, "seconds": round(wall, 1), "requests": len(log),
            "requests_per_s": round(len(log) / wall, 1), "errors": len(errors), "error_samples": errors[:5],
            "p50_ms": round(float(np.percentile(times, 50)), 1), "p99_ms": round(float(np.percentile(times, 99)), 1),
            "by_kind": {k: {"n": len(v), "p50_ms": round(float(np.percentile(v, 50)), 1),
                            "p99_ms": round(float(np.percentile(v, 99)), 1)} for k, v in sorted(kinds.items())},
            "ingest_commits": len(committed), "ingested": sum(committed), "embedded_before": base,
            "embedded_after": status["embedded"], "lost": lost,
        }
        ok = not errors and not lost and status["embedded"] == base + sum(committed) == base + len(batches) * len(classes)
        figures["ok"] = ok
        print(json.dumps(figures, indent=1) if args.json else "\n".join(f"{k}: {v}" for k, v in figures.items()))
        sys.exit(0 if ok else 1)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
