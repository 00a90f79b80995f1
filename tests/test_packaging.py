"""The wheel's contents are listed by hand in pyproject.toml: every package on disk must be there, or the
installed wheel fails on an import that works in a source checkout."""

from __future__ import annotations

import re
from pathlib import Path

import indexer
from click.testing import CliRunner

from indexer.cli import main

ROOT = Path(__file__).resolve().parents[1]


def listed_packages() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^packages = \[(.*?)\]", text, re.S | re.M)
    assert block, "pyproject.toml lists no packages"
    return set(re.findall(r'"([\w.]+)"', block.group(1)))


def test_every_package_on_disk_is_in_the_wheel():
    on_disk = {".".join(init.parent.relative_to(ROOT).parts)
               for init in (ROOT / "indexer").rglob("__init__.py") if "__pycache__" not in init.parts}
    assert on_disk, "no packages found"
    missing = on_disk - listed_packages()
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_version_comes_from_one_place():
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", indexer.__version__)
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"indexer {indexer.__version__}"
    assert f"## [{indexer.__version__}]" in (ROOT / "CHANGELOG.md").read_text()
