"""Shared fixtures: real rendered pictures, real SQLite catalogs in tmp_path, the bundled model.

Building an index costs a few seconds, so one is built per session and tests that change it work on
a copy (``index_copy``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Optional

import pytest

from indexer import _faults, open_index, synthetic

from .pg_server import ENV_URL, ServerUnavailable, fresh_database, temporary_server

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may download anything
# Models converted for OpenVINO are cached here, shared by the test processes (and kept between runs: the
# cache is keyed by model identity and OpenVINO version, so a stale entry is never used).
os.environ.setdefault("INDEXER_CACHE", os.path.join(tempfile.gettempdir(), "indexer-test-cache"))

# Twelve classes: four colours x three shapes, two of them unseen in the bundled model's training.
TEST_CLASSES = tuple(f"{c} {s}" for c in ("red", "green", "blue", "yellow") for s in ("circle", "square", "star"))
PER_CLASS = 4


def render_folder(root: Path, per_class: int = PER_CLASS, classes=TEST_CLASSES, seed: int = 7, size: int = 96,
                  image_format: str = "jpg") -> list[tuple[Path, str]]:
    return synthetic.write_labelled_folder(root, per_class, classes, seed=seed, size=size, image_format=image_format)


@pytest.fixture(autouse=True)
def fresh_test_hooks(monkeypatch) -> None:
    """``indexer._faults`` reads the test hooks (``INDEXER_TEST_*``) once per process: each test starts as a
    fresh process would, reading those it sets itself."""
    monkeypatch.setattr(_faults, "_active", None)


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


# A local Ray cluster for the tests, in a process of its own: it holds the cluster until its standard input closes.
_RAY_HEAD = """
import sys, ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """The address of one local Ray cluster (two CPUs) shared by the session's tests that need one (starting
    a cluster takes seconds), started on first need. It runs beside the tests, as a real cluster would:
    the test process connects only while a test uses it (``ray_local``), so no other test runs with Ray
    in its process."""
    pytest.importorskip("ray", reason="Ray not installed: pip install 'indexer[cluster]'")
    env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"),  # a private cluster, as in .ci/run
               RAY_USAGE_STATS_ENABLED=os.environ.get("RAY_USAGE_STATS_ENABLED", "0"))
    os.environ.update(RAY_AUTH_MODE=env["RAY_AUTH_MODE"], RAY_USAGE_STATS_ENABLED=env["RAY_USAGE_STATS_ENABLED"])
    head = subprocess.Popen([sys.executable, "-c", _RAY_HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        address = head.stdout.readline().strip() if head.stdout else ""
        if not address:
            pytest.fail(f"the test Ray cluster did not start (exit code {head.wait(timeout=60)})")
        yield address
    finally:
        if head.stdin:
            head.stdin.close()  # the head process shuts its cluster down and exits
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.terminate()
            head.wait(timeout=30)


@contextmanager
def ray_connected(address: str) -> Iterator[object]:
    """``ray``, connected to the cluster at ``address`` for the length of the block."""
    import ray

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def ray_local(ray_address) -> Iterator[object]:
    """``ray``, connected to the tests' local cluster for one test. An ingest with ``ray="local"`` uses that
    connection (``distributed.cluster`` joins a cluster already connected and leaves it up)."""
    with ray_connected(ray_address) as ray:
        yield ray


STRATEGIES = ("local", "ray")


def strategy_options(request, strategy: str) -> dict:
    """The ``Index.ingest`` options of an embedding strategy: here (decode workers and the model in the
    test's process), or on the tests' local Ray cluster (shards decoded by tasks, embedded by actors);
    for "ray" the test is connected to the cluster (``ray_local``)."""
    if strategy == "ray":
        request.getfixturevalue("ray_local")
        return {"ray": "local"}
    return {}


@pytest.fixture(params=STRATEGIES)
def strategy(request) -> dict:
    """Runs a test of ingestion under each strategy of phase 2; see ``strategy_options``."""
    return strategy_options(request, request.param)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The URL of a PostgreSQL database whose role may create more: $INDEXER_TEST_PG_URL, or a throwaway
    server started here (skips, saying why, only where the server programs are not installed)."""
    if os.environ.get(ENV_URL):
        yield os.environ[ENV_URL]
        return
    pytest.importorskip("psycopg", reason="psycopg not installed: pip install 'indexer[cluster]'")
    try:
        server = temporary_server()
        url = server.__enter__()
    except ServerUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture
def pg_url(pg_server) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return fresh_database(pg_server)


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request, tmp_path) -> str:
    """A catalog URL on each database: an SQLite file in tmp_path, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    return request.getfixturevalue("pg_url")


def sqlite_file(target: Path) -> Path:
    """The SQLite file a helper below reads: an index folder's catalog, or ``target`` itself when it is
    not a folder (a backup, a foreign database)."""
    target = Path(target)
    return target / "catalog.sqlite" if target.is_dir() else target


@contextmanager
def _connect(target: Path, create: bool = False) -> Iterator[sqlite3.Connection]:
    path = sqlite_file(target)
    if not create and not path.is_file():
        raise FileNotFoundError(f"no SQLite file at {path}")  # never leave an empty database behind
    conn = sqlite3.connect(path)
    try:
        yield conn
    finally:
        conn.close()


def catalog_rows(index_dir: Path, sql: str, *args) -> list[tuple]:
    """Rows of a raw SQL query on an index's catalog (or another SQLite file), read as any other SQLite
    client would."""
    with _connect(index_dir) as conn:
        return conn.execute(sql, args).fetchall()


def catalog_dicts(index_dir: Path, sql: str, *args) -> list[dict]:
    """``catalog_rows`` as dicts by column name."""
    with _connect(index_dir) as conn:
        cursor = conn.execute(sql, args)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def catalog_execute(index_dir: Path, sql: str, *args, rows: Optional[Iterable[tuple]] = None) -> int:
    """One committed write to an index's catalog (or another SQLite file, created if missing), as a
    tampering user or an older indexer would make it; ``rows`` runs ``sql`` once per row. Foreign keys
    are enforced, as in the indexer's own connections. Returns the number of rows changed."""
    with _connect(index_dir, create=True) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        with conn:
            cursor = conn.executemany(sql, rows) if rows is not None else conn.execute(sql, args)
        return cursor.rowcount


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Runs the installed ``indexer`` console script in a fresh process."""
    script = Path(sys.executable).with_name("indexer")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "indexer"]
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run(command + list(args), capture_output=True, text=True, env=full_env, cwd=cwd, timeout=600)


def catalog_at_revision(tmp_path: Path, catalog_url: str, revision: str, statements: Iterable[tuple[str, dict]] = ()):
    """A catalog written at an old schema ``revision`` (with ``statements`` run on it there), then opened by
    indexer as an index folder under ``tmp_path``: upgraded in place on either database. Close it."""
    from alembic import command
    from sqlalchemy import create_engine, text

    from indexer.store.catalog import open_catalog
    from indexer.store.migrate import alembic_config

    command.upgrade(alembic_config(catalog_url), revision)
    engine = create_engine(catalog_url)
    with engine.begin() as conn:
        for sql, params in statements:
            conn.execute(text(sql), params)
    engine.dispose()
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    server = None if catalog_url.startswith("sqlite") else catalog_url
    if server is None:
        os.replace(tmp_path / "catalog.sqlite", index_dir / "catalog.sqlite")
    return open_catalog(index_dir, url=server)
