#!/usr/bin/env python
"""One corpus ingested three ways: one process on SQLite, one process on PostgreSQL, a local Ray
cluster on PostgreSQL. Prints images/s and the peak RSS of the whole process tree (Ray's own processes
included) for each, with the model named.

    python scripts/bench_cluster.py --corpus /tmp/corpus-2000 [--model tiny-shapes] [--pg-url URL]

Without --pg-url a throwaway PostgreSQL server is started (tests/pg_server.py; apt-get install
postgresql). Each run is a fresh `indexer ingest` process into a fresh index; figures from one run of
this script compare, figures across runs on a shared machine do not.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc] + proc.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def run(command: list[str], env: dict) -> tuple[dict, float, int]:
    started = time.time()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    proc, peak = psutil.Process(child.pid), 0
    while child.poll() is None:
        peak = max(peak, tree_rss(proc))
        time.sleep(0.2)
    out, err = child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{err[-2000:]}")
    try:
        return json.loads(out), time.time() - started, peak
    except json.JSONDecodeError:
        raise SystemExit(f"{' '.join(command)} printed no JSON:\n{out[-1000:]}\n{err[-2000:]}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--model", default="tiny-shapes")
    parser.add_argument("--pg-url")
    parser.add_argument("--runs", default="012", help="which runs: 0 SQLite, 1 PostgreSQL, 2 Ray (default all)")
    args = parser.parse_args()
    from tests.pg_server import fresh_database, temporary_server

    script = Path(sys.executable).with_name("indexer")
    base = [str(script), "ingest", str(args.corpus), "--model", args.model, "--json", "--no-progress"]
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    with ExitStack() as stack:
        server = args.pg_url or stack.enter_context(temporary_server())
        runs = [("one process, SQLite", []),
                ("one process, PostgreSQL", ["--catalog", fresh_database(server)]),
                ("local Ray, PostgreSQL", ["--catalog", fresh_database(server), "--ray", "local"])]
        try:
            print(f"corpus {args.corpus} ({sum(1 for _ in args.corpus.rglob('*.jpg'))} JPEGs), model {args.model}, "
                  f"{os.cpu_count()} cores")
            for n, (name, extra) in enumerate(runs):
                if str(n) not in args.runs:
                    continue
                summary, seconds, peak = run(base + ["--index", str(work / f"index-{n}")] + extra, env)
                print(f"{name:36s} {summary['embedded']:5d} embedded in {seconds:6.1f} s (process wall, start-up "
                      f"included): {summary['embedded'] / seconds:6.1f} images/s; peak RSS of the process tree "
                      f"{peak / 2**20:6.0f} MiB", flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
