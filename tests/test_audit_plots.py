"""Plots: in audit.html (nearest-neighbour and label-probability histograms with their thresholds marked,
per-class agreement, the most confused labels), in `indexer eval --report DIR`, and through the API."""

from __future__ import annotations

import json
import re
import shutil

import httpx
import pytest
from click.testing import CliRunner

from indexer import open_index
from indexer.audit import audit
from indexer.audit.report import render_html
from indexer.cli import main

from .live_server import live_server

pytest.importorskip("matplotlib", reason="plots need the plots extra")


def test_audit_report_has_its_plots(index_copy):
    with open_index(index_copy) as index:
        result = audit(index.context)
    page = render_html(result, thumbnails=False)
    figures = re.findall(r'<figure class="plot" id="plot-(\w+)"><svg', page)
    assert figures == ["nearest", "confidence", "margins", "agreement", "confusion"] or \
        set(figures) >= {"nearest", "confidence", "agreement"}
    nearest = page[page.index('id="plot-nearest"'):]
    assert f"near-duplicate threshold {result.near['threshold']:.4g}" in nearest[:nearest.index("</figure>")]
    assert "<script" not in "".join(re.findall(r"<svg.*?</svg>", page, flags=re.S))  # plots carry no script
    assert not re.search(r"""(src|href)=["']?(https?:)?//|url\((https?:)?//""", page)  # nothing fetched: offline


def test_eval_report(built_index, photos, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(built_index, index)
    out = tmp_path / "eval"
    result = CliRunner().invoke(main, ["eval", str(photos), "--index", str(index), "--report", str(out), "--json"])
    assert result.exit_code == 0, result.output
    page = (out / "eval.html").read_text()
    assert 'id="plot-recall"' in page.replace("'", '"') and page.count("<svg") >= 1
    stored = json.loads((out / "eval.json").read_text())
    assert stored == json.loads(result.stdout) and "confusion_matrix" not in stored
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    bad = CliRunner().invoke(main, ["eval", str(photos), "--index", str(index), "--report", str(blocker / "eval")])
    assert bad.exit_code == 2 and "--report" in bad.stderr and "Not a directory" in bad.stderr
    assert "ingesting" not in bad.stderr  # refused before any work


def test_plots_through_the_api(index_copy):
    with live_server({"shapes": index_copy}) as url, httpx.Client(base_url=url, timeout=60) as client:
        assert client.get("/api/audit/plots/nearest.svg").status_code == 404  # no audit yet
        with open_index(index_copy) as index:
            audit(index.context)
        svg = client.get("/api/audit/plots/nearest.svg")
        assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
        assert svg.text.startswith("<svg") and "near-duplicate threshold" in svg.text
        missing = client.get("/api/audit/plots/pie.svg")
        assert missing.status_code == 404 and "plots: nearest" in missing.json()["detail"]
