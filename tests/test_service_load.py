"""The bounded load test (scripts/load_serve.py), short: 8 clients mixing searches, item views and
classification pages while an ingest commits beside the service; no errors, no lost commits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_load_with_ingest_beside():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "load_serve.py"), "--clients", "8",
                             "--seconds", "8", "--batches", "3", "--json"],
                            capture_output=True, text=True, timeout=600, env=env)
    figures = json.loads(result.stdout)
    assert figures["errors"] == 0, figures["error_samples"]
    assert figures["lost"] == {} and figures["ingest_commits"] == 3 and figures["ingested"] == 3 * 48
    assert figures["embedded_after"] == figures["embedded_before"] + 3 * 48
    assert {"search", "classify", "classify-page", "knn"} <= set(figures["by_kind"])
    assert result.returncode == 0 and figures["ok"]
