"""The CLI through click's CliRunner: help texts, JSON contracts, exit codes, rows in the catalog."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from indexer.cli import main

from .conftest import PER_CLASS, TEST_CLASSES, catalog_rows


def all_commands():
    return main.list_commands(click.Context(main))


@pytest.mark.parametrize("name", all_commands())
def test_every_command_has_help_with_an_example(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output, f"`indexer {name} --help` shows no example"
    command = main.get_command(click.Context(main), name)
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"--{param.name} of `{name}` has no help"


def test_ingest_json_contract_and_rows(tmp_path, photos):
    index_dir = tmp_path / "index"
    result = CliRunner().invoke(main, ["ingest", str(photos), "--index", str(index_dir), "--model", "tiny-shapes",
                                       "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    for key in ("embedded", "unchanged", "reused", "failed"):
        assert isinstance(summary[key], int)
    assert summary["embedded"] == len(TEST_CLASSES) * PER_CLASS
    assert catalog_rows(index_dir, "SELECT count(*) FROM items WHERE state = 'embedded'")[0][0] == summary["embedded"]

    again = CliRunner().invoke(main, ["ingest", str(photos), "--json"], env={"INDEXER_INDEX": str(index_dir)})
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["unchanged"] == summary["embedded"]


def test_status_json_contract(built_index):
    result = CliRunner().invoke(main, ["status", "--index", str(built_index), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["items"] == info["embedded"] == len(TEST_CLASSES) * PER_CLASS
    assert info["failed"] == 0
    assert info["model"]["name"] == "tiny-shapes"
    human = CliRunner().invoke(main, ["status", "--index", str(built_index)])
    assert "tiny-shapes (bundled)" in human.output


def test_search_json_contract(built_index):
    result = CliRunner().invoke(main, ["search", "a blue star", "--index", str(built_index), "-k", "5", "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 5
    assert all(isinstance(h["path"], str) and isinstance(h["score"], float) for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert "blue_star" in hits[0]["path"]


def test_errors_exit_1_with_a_message_and_usage_errors_exit_2(tmp_path, built_index):
    runner = CliRunner()
    missing = runner.invoke(main, ["status", "--index", str(tmp_path / "nothing")])
    assert missing.exit_code == 1
    assert "no index at" in missing.output and "Traceback" not in missing.output
    mismatch = runner.invoke(main, ["search", "x", "--index", str(built_index), "--model", "ViT-B-32",
                                    "--pretrained", "random"])
    assert mismatch.exit_code == 1
    assert "was built with tiny-shapes" in mismatch.output
    usage = runner.invoke(main, ["search", "--index", str(built_index)])
    assert usage.exit_code == 2
    no_index = runner.invoke(main, ["status"], env={"INDEXER_INDEX": ""})
    assert no_index.exit_code == 2


def test_models_lists_the_bundled_model_with_its_card():
    result = CliRunner().invoke(main, ["models", "--bundled-only", "--json"])
    assert result.exit_code == 0, result.output
    entries = json.loads(result.stdout)
    tiny = next(e for e in entries if e["name"] == "tiny-shapes")
    assert tiny["source"] == "bundled"
    assert len(tiny["card"]["unseen_classes"]) == 12
    assert all(len(c.split()) == 2 for c in tiny["card"]["unseen_classes"])
