"""The catalog's schema and migrations, on real SQLite files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from indexer import open_index
from indexer.errors import CatalogError, SchemaTooNewError
from indexer.store.catalog import open_catalog
from indexer.store.codec import blobs_to_matrix, vector_to_blob
from indexer.store.schema import META_MISSING_INDEX, metadata
from indexer.store.sqlite import sqlite_url
from indexer.store import fulltext
from indexer.store.migrate import SCHEMA_HEAD, alembic_config

from .conftest import PER_CLASS, TEST_CLASSES, catalog_at_revision, catalog_execute, catalog_rows


def test_schema_head_constant_matches_the_migration_scripts():
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert scripts.get_current_head() == SCHEMA_HEAD


def test_upgrading_an_empty_database_gives_exactly_the_models_schema(catalog_url):
    command.upgrade(alembic_config(catalog_url), "head")
    engine = create_engine(catalog_url)
    with engine.connect() as conn:
        # The full-text table and index are no models (fulltext.py makes them), nor is the partial index made
        # by DDL with the items table: left out of the comparison, and the partial index checked apart.
        context = MigrationContext.configure(conn, opts={
            "include_name": lambda name, kind, parent: not (name and (fulltext.is_fulltext_name(name)
                                                                      or name == META_MISSING_INDEX))})
        diff = compare_metadata(context, metadata)
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    migrated = {i["name"] for i in inspect(engine).get_indexes("items")}
    engine.dispose()
    assert diff == []
    assert version == SCHEMA_HEAD
    assert META_MISSING_INDEX in migrated


def test_a_new_catalog_has_the_partial_index_of_items_whose_metadata_is_missing(tmp_path, catalog_url):
    from indexer.store.catalog import open_catalog

    index_dir = tmp_path / "index"
    server = None if catalog_url.startswith("sqlite") else catalog_url
    catalog = open_catalog(index_dir, url=server)
    try:
        if server is None:
            rows = catalog.rows("SELECT sql FROM sqlite_master WHERE name = :n", {"n": META_MISSING_INDEX})
        else:
            rows = catalog.rows("SELECT indexdef FROM pg_indexes WHERE indexname = :n", {"n": META_MISSING_INDEX})
        assert rows and "meta_at IS NULL" in str(rows[0][0]), rows
    finally:
        catalog.close()


def test_every_revision_downgrades_and_upgrades_again(catalog_url):
    config = alembic_config(catalog_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    engine = create_engine(catalog_url)
    with engine.connect() as conn:
        left = [t for t in inspect(conn).get_table_names() if t != "alembic_version"]
    engine.dispose()
    assert left == []
    command.upgrade(config, "head")


def test_a_migrated_catalog_opens_and_works(tmp_path, photos, catalog_url):
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    command.upgrade(alembic_config(catalog_url), "head")
    server = None if catalog_url.startswith("sqlite") else catalog_url
    if server is None:
        os.replace(tmp_path / "catalog.sqlite", index_dir / "catalog.sqlite")
    with open_index(index_dir, model="tiny-shapes", catalog=server) as index:
        summary = index.ingest([photos / "red_star"])
        assert index.search("a red star", k=3)[0].path.startswith(str(photos / "red_star"))
    assert summary.embedded == PER_CLASS


def test_a_catalog_at_0003_with_rows_is_upgraded_on_either_database(tmp_path, catalog_url):
    """A catalog written by the previous release (revision 0003) gains the lease table and keeps its rows;
    sizes above 2**31 and nanosecond times fit afterwards (BIGINT on PostgreSQL)."""
    catalog = catalog_at_revision(tmp_path, catalog_url, "0003_runs_complete", [
        ("INSERT INTO meta (key, value) VALUES ('catalog_id', '\"abc\"')", {}),
        ("INSERT INTO items (uri, size, mtime_ns, state, added_at, updated_at) VALUES ('/a.jpg', 10, 20, 'pending', 0, 0)", {})])
    try:
        assert catalog.catalog_id() == "abc" and catalog.worklist.pending_count() == 1
        with catalog.begin() as conn:
            conn.execute(text("UPDATE items SET size = :s, mtime_ns = :t"), {"s": 5 * 2**40, "t": 1_790_000_000 * 10**9})
        assert catalog.worklist.known_items(["/a.jpg"])["/a.jpg"].mtime_ns == 1_790_000_000 * 10**9
        assert catalog.leases.acquire("ingest", "me", 30) is None
        with catalog.read() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == SCHEMA_HEAD
    finally:
        catalog.close()


def test_new_catalog_is_stamped_at_head_in_wal_mode(tmp_path):
    catalog = open_catalog(tmp_path / "index")
    catalog.close()
    assert catalog_rows(tmp_path / "index", "SELECT version_num FROM alembic_version")[0][0] == SCHEMA_HEAD
    assert catalog_rows(tmp_path / "index", "PRAGMA journal_mode")[0][0] == "wal"


def test_a_catalog_from_a_newer_indexer_is_refused(tmp_path):
    open_catalog(tmp_path / "index").close()
    catalog_execute(tmp_path / "index", "UPDATE alembic_version SET version_num = '9999_from_the_future'")
    with pytest.raises(SchemaTooNewError, match="newer indexer") as caught:
        open_catalog(tmp_path / "index")
    assert "pip install -U indexer" in str(caught.value)


def test_foreign_sqlite_and_garbage_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    catalog_execute(foreign, "CREATE TABLE photos (id INTEGER)")
    with pytest.raises(CatalogError, match="not an indexer catalog"):
        open_catalog(foreign)
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "catalog.sqlite").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CatalogError, match="not a readable SQLite catalog"):
        open_catalog(garbage)


def test_opening_a_missing_index_without_create_says_how_to_make_one(tmp_path):
    with pytest.raises(CatalogError, match="indexer ingest"):
        open_catalog(tmp_path / "nothing", create=False)


# -- upgrading a populated catalog ----------------------------------------------------------------------

INITIAL = "0001_initial"
# The tables and columns of revision 0001_initial (migrations/versions/0001_initial.py).
INITIAL_COLUMNS = {
    "meta": "key, value",
    "embeddings": "id, sha256, vector, created_at",
    "items": "id, uri, size, mtime_ns, state, sha256, embedding_id, width, height, format, failure_reason, "
             "failure_detail, scan_id, added_at, updated_at",
    "text_embeddings": "id, model_key, text, vector",
    "ingest_runs": "id, started_at, finished_at, sources, counts",
    "classification_runs": "id, created_at, labels, templates, top_k, item_count",
    "classifications": "run_id, item_id, rank, label, score",
}
# A folder name that a URL would read as an escape, a fragment and a query, with a space and an accent.
URL_LIKE_NAME = "a%20b#c?d é"


def create_at_revision(index_dir: Path, revision: str) -> None:
    """An empty catalog at an older revision, made by Alembic as that indexer's own migrations made it."""
    index_dir.mkdir(parents=True, exist_ok=True)
    url = sqlite_url(index_dir / "catalog.sqlite").render_as_string(hide_password=False)
    command.upgrade(alembic_config(url), revision)


def initial_rows(target: Path) -> dict[str, list[tuple]]:
    """Every row of every 0001_initial table, with that revision's columns, in a stable order."""
    return {table: catalog_rows(target, f"SELECT {columns} FROM {table} ORDER BY {columns}")
            for table, columns in INITIAL_COLUMNS.items()}


def columns_of(target: Path, table: str) -> list[str]:
    return [row[1] for row in catalog_rows(target, f"PRAGMA table_info({table})")]


def files_outside(root: Path, *inside: Path) -> list[Path]:
    """Every file under ``root`` that is not under one of the folders ``inside``."""
    found = []
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if not any(path.is_relative_to(allowed) for allowed in inside):
                found.append(path)
    return found


@pytest.fixture
def initial_catalog(tmp_path, built_index) -> Path:
    """An index at revision 0001_initial holding what an indexer of that time wrote: the model identity,
    the built index's embeddings and embedded items, items in the other states, a cached text embedding
    (the mean of the red stars, under the index's model key), an ingest run and two classification runs."""
    index_dir = tmp_path / "old-index"
    create_at_revision(index_dir, INITIAL)
    with open_index(built_index) as source:
        model_key = source.context.model.key
    for key, value in catalog_rows(built_index, "SELECT key, value FROM meta WHERE key IN ('model', 'catalog_id')"):
        catalog_execute(index_dir, "INSERT INTO meta (key, value) VALUES (?, ?)", key, value)
    catalog_execute(index_dir, f"INSERT INTO embeddings ({INITIAL_COLUMNS['embeddings']}) VALUES (?, ?, ?, ?)",
                    rows=catalog_rows(built_index, f"SELECT {INITIAL_COLUMNS['embeddings']} FROM embeddings"))
    item_columns = INITIAL_COLUMNS["items"]
    embedded = catalog_rows(built_index, f"SELECT {item_columns} FROM items WHERE state = 'embedded'")
    assert len(embedded) == len(TEST_CLASSES) * PER_CLASS
    catalog_execute(index_dir, f"INSERT INTO items ({item_columns}) VALUES ({', '.join('?' * 15)})", rows=embedded)
    last, first_embedding = max(row[0] for row in embedded), embedded[0][6]
    others = [
        (last + 1, "/gone/broken.jpg", 1234, 1_700_000_000_000_000_000, "failed", "ab" * 32, None, None, None,
         None, "truncated", "image file is truncated (12 bytes not processed)", 1, 1700000000.5, 1700000001.5),
        (last + 2, "/gone/waiting.png", 99, 1_700_000_000_000_000_001, "pending", None, None, None, None, None,
         None, None, 1, 1700000002.0, 1700000002.0),
        (last + 3, "/gone/removed é.jpg", 4321, 1_600_000_000_000_000_000, "deleted", embedded[0][5],
         first_embedding, 96, 96, "JPEG", None, None, 1, 1600000000.0, 1700000003.0),
    ]
    catalog_execute(index_dir, f"INSERT INTO items ({item_columns}) VALUES ({', '.join('?' * 15)})", rows=others)
    stars = catalog_rows(built_index, "SELECT embeddings.vector FROM items JOIN embeddings ON embeddings.id = "
                                      "items.embedding_id WHERE items.uri LIKE '%/red_star/%'")
    assert len(stars) == PER_CLASS
    mean = blobs_to_matrix([row[0] for row in stars], len(stars[0][0]) // 2).mean(axis=0)
    catalog_execute(index_dir, "INSERT INTO text_embeddings (model_key, text, vector) VALUES (?, ?, ?)",
                    model_key, "a red star", vector_to_blob(mean / np.linalg.norm(mean)))
    catalog_execute(index_dir, "INSERT INTO ingest_runs VALUES (1, 1700000000.0, 1700000010.0, ?, ?)",
                    json.dumps(["/photos"]), json.dumps({"embedded": len(embedded), "failed": 1}))
    catalog_execute(index_dir, "INSERT INTO classification_runs VALUES (?, ?, ?, 'default', ?, ?)",
                    rows=[(1, 1700000020.0, json.dumps(["red star", "blue circle"]), 2, 2),
                          (2, 1700000030.0, json.dumps(["cat", "dog"]), 1, 0)])  # one killed before it counted
    catalog_execute(index_dir, "INSERT INTO classifications VALUES (?, ?, ?, ?, ?)",
                    rows=[(1, embedded[0][0], 1, "red star", 0.75), (1, embedded[0][0], 2, "blue circle", 0.25),
                          (1, embedded[1][0], 1, "blue circle", 0.5), (1, embedded[1][0], 2, "red star", 0.5)])
    return index_dir


def test_a_populated_initial_catalog_is_backed_up_and_upgraded_with_every_row(initial_catalog):
    before = initial_rows(initial_catalog)
    assert catalog_rows(initial_catalog, "SELECT version_num FROM alembic_version") == [(INITIAL,)]
    assert all(before[table] for table in INITIAL_COLUMNS)  # every table holds something to lose
    assert {row[4] for row in before["items"]} == {"embedded", "failed", "pending", "deleted"}

    with open_index(initial_catalog) as index:  # upgrades to head on opening
        hits = index.search("a red star", k=PER_CLASS)
        status = index.status()
        assert not index.context.model.loaded  # answered from the migrated catalog alone: the model never loaded

    assert catalog_rows(initial_catalog, "SELECT version_num FROM alembic_version") == [(SCHEMA_HEAD,)]
    after = initial_rows(initial_catalog)
    for table in INITIAL_COLUMNS:
        missing = set(before[table]) - set(after[table])
        assert not missing, f"{table}: rows lost or changed by the upgrade: {sorted(missing)[:3]}"
    for table in ("embeddings", "items", "text_embeddings", "ingest_runs", "classification_runs", "classifications"):
        assert after[table] == before[table], table
    assert {"container", "raw_path"} <= set(columns_of(initial_catalog, "items"))
    assert catalog_rows(initial_catalog, "SELECT count(*), count(container), count(raw_path) FROM items") == \
        [(len(before["items"]), 0, 0)]
    assert catalog_rows(initial_catalog, "SELECT count(*) FROM archives") == [(0,)]
    # 0003: a run that counted its items finished when it was made; one that counted none cannot tell.
    assert catalog_rows(initial_catalog, "SELECT id, completed_at FROM classification_runs ORDER BY id") == \
        [(1, 1700000020.0), (2, None)]
    assert (status["embedded"], status["failed"], status["pending"], status["deleted"]) == \
        (len(TEST_CLASSES) * PER_CLASS, 1, 1, 1)
    assert status["failures_by_reason"] == {"truncated": 1}
    assert sorted(Path(hit.path).parent.name for hit in hits) == ["red_star"] * PER_CLASS

    backups = list((initial_catalog / "backups").iterdir())
    assert len(backups) == 1 and INITIAL in backups[0].name and backups[0].suffix == ".sqlite"
    assert catalog_rows(backups[0], "PRAGMA integrity_check") == [("ok",)]
    assert catalog_rows(backups[0], "SELECT version_num FROM alembic_version") == [(INITIAL,)]
    assert "container" not in columns_of(backups[0], "items")
    assert initial_rows(backups[0]) == before


def test_an_index_in_a_folder_named_like_a_url_is_made_searched_and_kept_inside(tmp_path, photos, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # a relative stray file would land here
    index_dir = tmp_path / URL_LIKE_NAME
    with open_index(index_dir, model="tiny-shapes") as index:
        summary = index.ingest([photos / "red_star"])
    with open_index(index_dir) as index:
        hits = index.search("a red star", k=3)
        assert index.status()["embedded"] == PER_CLASS
    assert summary.embedded == PER_CLASS
    assert len(hits) == 3 and all(Path(hit.path).parent == photos / "red_star" for hit in hits)
    assert catalog_rows(index_dir, "SELECT count(*) FROM items WHERE state = 'embedded'") == [(PER_CLASS,)]
    assert (index_dir / "vectors.faiss").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cwd", URL_LIKE_NAME])
    assert files_outside(tmp_path, index_dir) == []


def test_an_initial_catalog_in_a_folder_named_like_a_url_is_upgraded_in_place(tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    index_dir = tmp_path / URL_LIKE_NAME
    create_at_revision(index_dir, INITIAL)
    catalog_execute(index_dir, "INSERT INTO meta (key, value) VALUES ('catalog_id', ?)", json.dumps("odd-folder"))
    catalog = open_catalog(index_dir)
    try:
        assert catalog.catalog_id() == "odd-folder"
    finally:
        catalog.close()
    assert catalog_rows(index_dir, "SELECT version_num FROM alembic_version") == [(SCHEMA_HEAD,)]
    assert "container" in columns_of(index_dir, "items")
    backups = list((index_dir / "backups").iterdir())
    assert len(backups) == 1
    assert catalog_rows(backups[0], "SELECT version_num FROM alembic_version") == [(INITIAL,)]
    assert catalog_rows(backups[0], "SELECT value FROM meta WHERE key = 'catalog_id'") == [('"odd-folder"',)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["cwd", URL_LIKE_NAME])
    assert files_outside(tmp_path, index_dir) == []


def test_a_0003_catalog_is_upgraded_with_an_empty_heads_table_that_works(tmp_path):
    index_dir = tmp_path / "index"
    create_at_revision(index_dir, "0003_runs_complete")
    assert "heads" not in {r[0] for r in catalog_rows(index_dir, "SELECT name FROM sqlite_master")}
    catalog = open_catalog(index_dir)  # upgrades to head on opening
    try:
        catalog.heads.save("h", "projection", ["a", "b", "c"], {"calibration": 0.0}, "key", {}, b"blob")
        assert catalog.heads.get("h").classes == ["a", "b", "c"]
    finally:
        catalog.close()
    assert catalog_rows(index_dir, "SELECT version_num FROM alembic_version") == [(SCHEMA_HEAD,)]
    assert columns_of(index_dir, "heads") == ["id", "name", "method", "classes", "hparams", "model_key", "figures",
                                              "weights", "created_at"]
    assert list((index_dir / "backups").iterdir())  # backed up before the upgrade
