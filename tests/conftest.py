"""Shared fixtures: real rendered pictures, real SQLite catalogs in tmp_path, the bundled model.

Building an index costs a few seconds, so one is built per session and tests that change it work on
a copy (``index_copy``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from indexer import open_index, synthetic

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may download anything

# Twelve classes: four colours x three shapes, two of them unseen in the bundled model's training.
TEST_CLASSES = tuple(f"{c} {s}" for c in ("red", "green", "blue", "yellow") for s in ("circle", "square", "star"))
PER_CLASS = 4


def render_folder(root: Path, per_class: int = PER_CLASS, classes=TEST_CLASSES, seed: int = 7, size: int = 96,
                  image_format: str = "jpg") -> list[tuple[Path, str]]:
    return synthetic.write_labelled_folder(root, per_class, classes, seed=seed, size=size, image_format=image_format)


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> Path:
    """A folder of rendered pictures, one sub-folder per class (read-only: copy it to change it)."""
    root = tmp_path_factory.mktemp("photos")
    render_folder(root)
    return root


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, photos) -> Path:
    """An index of ``photos`` made with the bundled model (read-only: use ``index_copy`` to change it)."""
    path = tmp_path_factory.mktemp("built") / "index"
    with open_index(path, model="tiny-shapes") as index:
        index.ingest([photos])
    return path


@pytest.fixture
def index_copy(tmp_path, built_index) -> Path:
    target = tmp_path / "index"
    shutil.copytree(built_index, target)
    return target


@pytest.fixture
def photos_copy(tmp_path, photos) -> Path:
    target = tmp_path / "photos"
    shutil.copytree(photos, target)
    return target


def catalog_rows(index_dir: Path, sql: str, *args) -> list[tuple]:
    """Rows of a raw SQL query on an index's catalog, read as any other SQLite client would."""
    import sqlite3

    conn = sqlite3.connect(index_dir / "catalog.sqlite")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs the installed ``indexer`` console script in a fresh process."""
    script = Path(sys.executable).with_name("indexer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "indexer"]
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(command + list(args), capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600)
