"""Under ``--json`` stdout carries the JSON and nothing else, whatever library runs underneath: each command
that can load a model runs as a real process, with a fresh model cache (so converting, and for int8
calibrating, happens inside the command), and its stdout must parse."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import render_folder

INDEXER = [sys.executable, "-m", "indexer"]


def run(args: list[str], cache: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, INDEXER_CACHE=str(cache))
    return subprocess.run(INDEXER + args, capture_output=True, text=True, timeout=600, env=env)


def parsed(done: subprocess.CompletedProcess):
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # fails on any stray line a library printed


def test_an_int8_ingest_prints_only_json(tmp_path):
    pytest.importorskip("nncf", reason="int8 needs NNCF (pip install 'indexer[int8]'; part of the test extra)")
    photos = tmp_path / "photos"
    render_folder(photos, per_class=3)
    summary = parsed(run(["ingest", str(photos), "--index", str(tmp_path / "index"), "--model", "tiny-shapes",
                          "--precision", "int8", "--json"], tmp_path / "cache"))
    assert summary["embedded"] == 36


@pytest.mark.parametrize("command", ["search", "classify", "eval", "audit", "heads train"])
def test_every_model_loading_command_prints_only_json(tmp_path, built_index, photos, command):
    index = tmp_path / "index"
    shutil.copytree(built_index, index)
    cache = tmp_path / "cache"  # empty: the text tower is converted inside the command
    where = ["--index", str(index), "--json"]
    if command == "search":
        hits = parsed(run(["search", "a never asked red star", *where], cache))
        assert hits and "path" in hits[0]
    elif command == "classify":
        rows = parsed(run(["classify", "--labels", "red star,blue circle,a never asked colour", "--no-store",
                           *where], cache))
        assert len(rows) == 48 and {"path", "label"} <= set(rows[0])
    elif command == "eval":
        report = parsed(run(["eval", str(photos), *where], cache))
        assert report["top1"] > 0.2
    elif command == "audit":
        result = parsed(run(["audit", "--no-report", *where], cache))
        assert isinstance(result, list) and all("type" in f for f in result)
    else:
        labelled = tmp_path / "labelled.csv"
        rows = [f"{p},{p.parent.name.replace('_', ' ')}" for p in sorted(photos.rglob("*.jpg"))
                if not p.parent.name.startswith("yellow")]
        labelled.write_text("path,label\n" + "\n".join(map(str, rows)) + "\n")
        classes = tmp_path / "classes.txt"
        classes.write_text("\n".join(sorted({p.parent.name.replace("_", " ") for p in photos.rglob("*.jpg")})))
        head = parsed(run(["heads", "train", "json-check", "--labels", str(labelled), "--classes", str(classes),
                           "--unlabelled", "none", *where], cache))
        assert head["name"] == "json-check"
