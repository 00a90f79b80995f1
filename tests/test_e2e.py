"""End to end through the installed console script, in fresh processes, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import PER_CLASS, TEST_CLASSES, run_cli

pytestmark = pytest.mark.slow


def test_console_script_ingest_search_classify_status(tmp_path, photos):
    index = str(tmp_path / "index")
    ingest = run_cli("ingest", str(photos), "--index", index, "--model", "tiny-shapes", "--json")
    assert ingest.returncode == 0, ingest.stderr
    assert json.loads(ingest.stdout)["embedded"] == len(TEST_CLASSES) * PER_CLASS

    search = run_cli("search", "a yellow square", "--index", index, "-k", "3")
    assert search.returncode == 0, search.stderr
    lines = search.stdout.strip().splitlines()
    assert len(lines) == 3 and "yellow_square" in lines[0]

    out = tmp_path / "labels.csv"
    classify = run_cli("classify", "--index", index, "--labels", "red circle,blue star,green square", "-o", str(out))
    assert classify.returncode == 0, classify.stderr
    assert "classified 48 images" in classify.stderr
    assert out.read_text().startswith("path,label,score\n")

    status = run_cli("status", "--index", index, "--json")
    assert json.loads(status.stdout)["embedded"] == len(TEST_CLASSES) * PER_CLASS

    module = subprocess.run([sys.executable, "-m", "indexer", "--version"], capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout.startswith("indexer ")


PROBE = """
import sys
from indexer.cli import main
try:
    main({args!r}, standalone_mode=False)
finally:
    print("HEAVY:", sorted(m for m in ("torch", "open_clip") if m in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [
    ["status"],
    ["search", "a red star", "-k", "2"],  # cached by the fixture's warm-up below
    ["classify", "--labels", "red star,blue circle", "--no-store"],
    ["ingest", "PHOTOS"],  # nothing changed: decided from stat() alone
])
def test_commands_that_need_no_model_do_not_import_torch(index_copy, photos, args):
    warm = run_cli("classify", "--index", str(index_copy), "--labels", "red star,blue circle", "--no-store")
    assert warm.returncode == 0, warm.stderr
    run_cli("search", "a red star", "--index", str(index_copy), "-k", "1")
    args = [str(photos) if a == "PHOTOS" else a for a in args] + ["--index", str(index_copy)]
    probe = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True)
    assert "HEAVY: []" in probe.stderr, probe.stderr
