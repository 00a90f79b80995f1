"""Every command, fed bad arguments: a one-line error and exit code 1 (2 for usage errors), never a
traceback. The table below is the list of what is tried; each row runs the real command in-process
on real files and catalogs."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from indexer.cli import main

from .conftest import catalog_execute, run_cli

LONG = "/tmp/" + "x" * 300 + ".png"  # longer than a file name may be


@pytest.fixture(scope="module")
def bad(tmp_path_factory, built_index) -> dict[str, str]:
    """Bad files and indexes, by name, for the table's ``{name}`` placeholders."""
    root = tmp_path_factory.mktemp("bad")
    files = {
        "index": str(built_index),
        "missing": str(root / "missing"),
        "nonutf8": root / "latin1.txt",
        "jsonlist": root / "mapping.json",
        "badjson": root / "broken.json",
        "weights": root / "weights.pt",
        "csv_nonutf8": root / "data.csv",
        "empty": root / "empty.txt",
        "notsqlite": root / "notsqlite",
        "newer": root / "newer",
        "othermodel": root / "othermodel",
        "tampered": root / "tampered",
        "nullblob": root / "nullblob",
        "badmeta": root / "badmeta",
        "afile": root / "afile.txt",
        "dataset": root / "dataset",
    }
    files["nonutf8"].write_bytes(b"red star\n\xe9toile rouge\n")
    files["jsonlist"].write_text('["red", "blue"]')
    files["badjson"].write_text('{"a": ')
    files["weights"].write_bytes(b"not a checkpoint" * 100)
    files["csv_nonutf8"].write_bytes(b"path,label\nx.png,\xe9toile\n")
    files["empty"].write_text("")
    files["afile"].write_text("hello")
    files["notsqlite"].mkdir()
    (files["notsqlite"] / "catalog.sqlite").write_bytes(b"this is not a database" * 100)
    (files["dataset"] / "red_star").mkdir(parents=True)
    for name in ("newer", "othermodel", "tampered", "nullblob", "badmeta"):
        shutil.copytree(built_index, files[name])
    catalog_execute(files["newer"], "UPDATE alembic_version SET version_num = '9999_from_the_future'")
    catalog_execute(files["othermodel"], "UPDATE meta SET value = ? WHERE key = 'model'",
                    '{"name": "ViT-B-32", "pretrained": "laion2b_s34b_b79k", "embed_dim": 128}')
    catalog_execute(files["tampered"], "UPDATE embeddings SET vector = x'0000' WHERE id = 1")
    catalog_execute(files["nullblob"], "PRAGMA foreign_keys = OFF")
    catalog_execute(files["nullblob"], "UPDATE items SET embedding_id = NULL WHERE id = 2")
    catalog_execute(files["badmeta"], "UPDATE meta SET value = 'not json' WHERE key = 'model'")
    for name in ("tampered", "nullblob"):
        (files[name] / "vectors.faiss").unlink()  # rebuilt from the damaged catalog
    return {k: str(v) for k, v in files.items()}


# (command line with {placeholders}, expected exit code). 1: a library error; 2: a usage error.
TABLE = [
    # ingest / sync
    ("ingest {missing}/nothing-here --index {missing}/i", 1),
    (f"ingest {LONG} --index {{missing}}/i2", 1),
    (f"ingest {{afile}} --index {LONG}", 1),
    ("ingest {afile} --index {newer}", 1),
    ("ingest {afile} --index {notsqlite}", 1),
    ("ingest {afile} --index {index} --model ViT-B-32 --pretrained random", 1),
    ("ingest {afile} --index {missing}/i3 --model tiny-shapes --weights {weights}", 1),
    ("ingest {afile} --index {missing}/i4 --model ViT-B-32 --weights {weights}", 1),
    ("ingest {afile} --index {missing}/i5 --model no-such-model", 1),
    ("ingest --index {missing}/i6", 2),
    ("ingest {afile} --index {index} --batch-size 0", 2),
    ("ingest {afile} --index {index} --workers -1", 2),
    ("ingest {afile} --index {index} --max-pixels lots", 2),
    ("ingest {afile} --index {index} --max-file-size 12XB", 2),
    ("ingest {afile} --index {missing}/i7 --index-memory much", 1),
    ("ingest --from-list {missing}/list.txt --index {missing}/i8", 1),
    ("ingest {afile} --index {afile}", 2),
    ("sync {missing}/nothing-here --index {index} --purge", 1),
    ("sync {afile} --index {newer}", 1),
    # search
    ("search x --index {missing}", 1),
    (f"search x --index {LONG}", 1),
    ("search x --index {newer}", 1),
    ("search x --index {notsqlite}", 1),
    ("search x --index {othermodel} --model tiny-shapes", 1),
    ("search x --index {othermodel}", 1),
    ("search x --index {tampered}", 1),
    ("search x --index {nullblob}", 0),  # an item without its embedding is left out,
    ("search x --index {badmeta}", 1),
    ("search x --index {index} -k 0", 2),
    ("search x --index {index} --min-score high", 2),
    ("search --index {index}", 2),
    ("search --image {missing}/q.png --index {index}", 2),
    ("search --image {afile} --index {index}", 1),
    ("search 'a + ' --index {index}", 1),
    (f"search x --index {{index}} --weights {LONG}", 2),
    ("search x --index {index} --weights {weights}", 1),
    # classify
    ("classify --labels a --index {index}", 1),
    ("classify --labels-file {nonutf8} --index {index}", 1),
    ("classify --labels-file {empty} --index {index}", 1),
    ("classify --labels-file {missing}/l.txt --index {index}", 2),
    ("classify --labels a,b --index {index} --output {missing}/x.txt", 1),
    ("classify --labels a,b --index {index} --output {missing}/no/such/dir/x.csv --no-store", 0),
    ("classify --labels a,b --index {index} --top-k 0", 2),
    ("classify --labels a,b --index {index} --templates bogus", 2),
    ("classify --labels a,b --index {missing}", 1),
    ("classify --labels a,b --index {newer}", 1),
    ("classify --labels a,b --index {tampered} --no-store", 1),
    ("classify --labels a,b --index {badmeta}", 1),
    # eval
    ("eval {missing}/nothing-here --index {missing}/e1", 2),
    ("eval {dataset} --index {missing}/e2 --model tiny-shapes --unseen {nonutf8}", 1),
    ("eval {dataset} --index {missing}/e3 --model tiny-shapes --mapping {jsonlist}", 1),
    ("eval {dataset} --index {missing}/e4 --model tiny-shapes --mapping {badjson}", 1),
    ("eval {dataset} --index {missing}/e5 --model tiny-shapes --mapping {nonutf8}", 1),
    ("eval {csv_nonutf8} --index {missing}/e6 --model tiny-shapes", 1),
    ("eval {dataset} --index {missing}/e7 --model tiny-shapes", 1),
    ("eval {dataset} --index {index} --calibration maybe", 2),
    ("eval {dataset} --index {newer}", 1),
    ("eval {dataset} --index {othermodel} --model tiny-shapes", 1),
    # audit
    ("audit --index {missing}", 1),
    ("audit --index {newer}", 1),
    ("audit --index {index} --labels {nonutf8} --no-report", 1),
    ("audit --index {index} --labels {csv_nonutf8} --no-report", 1),
    ("audit --index {index} --from-run 99999 --no-report", 1),
    ("audit --index {index} --from-run soon", 2),
    ("audit --index {index} --labels {afile} --from-run latest", 2),
    ("audit --index {index} --near-threshold 2", 2),
    ("audit --index {index} --root {missing} --no-report", 1),
    ("audit --index {index} --output {afile}", 2),
    ("audit --index {tampered} --no-report", 1),
    # status, models, demo
    ("status --index {missing}", 1),
    (f"status --index {LONG}", 1),
    ("status --index {newer}", 1),
    ("status --index {notsqlite}", 1),
    ("status --index {badmeta}", 1),
    ("status --index {index} --limit -1", 2),
    ("status", 2),
    ("models --bogus", 2),
    ("demo --per-class 0", 2),
    ("demo --dir {afile}", 2),
    ("demo --dir {afile}/sub --per-class 1", 1),
    ("nosuchcommand", 2),
]


def _split(line: str) -> list[str]:
    import shlex

    return shlex.split(line)


@pytest.mark.parametrize("line, code", TABLE, ids=[row[0][:60] for row in TABLE])
def test_bad_arguments_give_one_line_and_the_right_exit_code(bad, line, code):
    args = [part.format(**bad) for part in _split(line)]
    result = CliRunner().invoke(main, args, env={"INDEXER_INDEX": ""}, catch_exceptions=True)
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{line}: {type(result.exception).__name__}: {result.exception}\n{output}"
    assert "Traceback" not in output
    assert result.exit_code == code, output
    if code:
        errors = [l for l in output.splitlines() if l.startswith("Error:")]
        assert len(errors) == 1 and len(errors[0]) > len("Error: "), output


def test_no_traceback_from_the_console_script_either(bad):
    """The installed command, in a fresh process (where Python would print a traceback to stderr)."""
    for line, code in [("search x --index {tampered}", 1), (f"status --index {LONG}", 1),
                       ("eval {dataset} --index {missing}/p1 --model tiny-shapes --mapping {jsonlist}", 1)]:
        result = run_cli(*[part.format(**bad) for part in _split(line)])
        assert result.returncode == code and "Traceback" not in result.stderr, result.stderr
        assert len([l for l in result.stderr.splitlines() if l.startswith("Error:")]) == 1


def test_a_labels_file_with_a_byte_order_mark(tmp_path, built_index):
    labels = tmp_path / "labels.txt"
    labels.write_bytes("\ufeffred star\r\nblue circle\r\n".encode("utf-8"))
    result = CliRunner().invoke(main, ["classify", "--labels-file", str(labels), "--index", str(built_index),
                                       "--no-store", "--json"])
    assert result.exit_code == 0, result.output
    import json

    predictions = json.loads(result.stdout)
    assert {p["label"] for p in predictions} <= {"red star", "blue circle"}
    assert any(p["label"] == "red star" for p in predictions)  # not "\ufeffred star"


def test_a_from_list_line_too_long_for_the_system_is_skipped(tmp_path, photos):
    good = sorted((photos / "red_star").iterdir())[0]
    listing = tmp_path / "list.txt"
    listing.write_text(f"{LONG}\n{good}\n{tmp_path / 'gone.png'}\n")
    result = CliRunner().invoke(main, ["ingest", "--from-list", str(listing), "--index", str(tmp_path / "index"),
                                       "--model", "tiny-shapes", "--json"])
    assert result.exit_code == 0, result.output
    assert '"embedded": 1' in result.stdout
    assert "File name too long" in result.stderr
