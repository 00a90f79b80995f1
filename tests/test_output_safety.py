"""What comes from the collection cannot drive a terminal or a spreadsheet, and the ingest lock cannot be
turned into a write elsewhere."""

from __future__ import annotations

import csv
import os
import shutil

import pytest
from click.testing import CliRunner

from indexer.cli import main
from indexer.errors import IndexerError
from indexer.ingest.lock import IngestLock

ESCAPE = "\x1b]0;owned\x07\x1b[31m"


@pytest.fixture(scope="module")
def hostile_index(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("names")
    data = root / "data"
    (data / "=red_star").mkdir(parents=True)  # a class folder named like a formula
    pictures = sorted((photos / "red_star").iterdir())
    shutil.copy(pictures[0], data / "=red_star" / f"{ESCAPE}evil\nname.jpg")
    shutil.copy(pictures[1], data / "=red_star" / "=HYPERLINK(1).jpg")
    (data / "=red_star" / f"{ESCAPE}broken.png").write_bytes(b"\x89PNG not really")
    shutil.copytree(photos / "blue_circle", data / "blue_circle")
    index = root / "index"
    result = CliRunner().invoke(main, ["ingest", str(data), "--index", str(index), "--model", "tiny-shapes"])
    assert result.exit_code == 0, result.output
    return root, index, result.output


def test_no_escape_sequence_or_line_break_from_a_file_name_reaches_the_terminal(hostile_index):
    root, index, ingest_output = hostile_index
    runner = CliRunner()
    outputs = [ingest_output]
    for args in (["search", "a red star", "-k", "20"], ["status", "--failures"],
                 ["classify", "--labels", "red star,blue circle", "--no-store"], ["audit", "--no-report"]):
        result = runner.invoke(main, args + ["--index", str(index)])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    for output in outputs:
        assert "\x1b" not in output and "\x07" not in output
        assert "evil\nname" not in output
    assert "\\x1b]0;owned" in outputs[1]  # shown escaped, not dropped
    assert "\\x1b]0;owned\\x07\\x1b[31mbroken.png" in outputs[2]


def test_csv_cells_never_start_like_a_formula(hostile_index, tmp_path):
    _, index, _ = hostile_index
    runner = CliRunner()
    output = tmp_path / "labels.csv"
    result = runner.invoke(main, ["classify", "--labels", "=red star,@blue circle", "--no-store", "--output",
                                  str(output), "--index", str(index)])
    assert result.exit_code == 0, result.output
    audit = runner.invoke(main, ["audit", "--index", str(index), "-o", str(tmp_path / "audit"), "--no-thumbnails"])
    assert audit.exit_code == 0, audit.output
    for path in (output, tmp_path / "audit" / "findings.csv"):
        with path.open(newline="", encoding="utf-8") as f:
            cells = [cell for row in csv.reader(f) for cell in row]
        assert cells and not any(cell.startswith(("=", "+", "-", "@")) for cell in cells), path
    assert "'=red star" in output.read_text(encoding="utf-8") and "'@blue circle" in output.read_text(encoding="utf-8")


def test_the_lock_file_is_never_followed_as_a_link(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, index / "ingest.lock")
    with pytest.raises(IndexerError, match="symbolic link"):
        with IngestLock(index):
            pass
    assert victim.read_text() == "precious"
