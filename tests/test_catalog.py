"""The catalog's schema and migrations, on real SQLite files."""

from __future__ import annotations

import sqlite3

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from indexer import open_index
from indexer.errors import CatalogError, SchemaTooNewError
from indexer.store.catalog import open_catalog
from indexer.store.schema import Base
from indexer.store.migrate import SCHEMA_HEAD, alembic_config


def test_schema_head_constant_matches_the_migration_scripts():
    scripts = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert scripts.get_current_head() == SCHEMA_HEAD


def test_upgrading_an_empty_database_gives_exactly_the_models_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'migrated.sqlite'}"
    command.upgrade(alembic_config(url), "head")
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert diff == []
    assert version == SCHEMA_HEAD


def test_a_migrated_catalog_opens_and_works(tmp_path, photos):
    index_dir = tmp_path / "index"
    index_dir.mkdir()
    command.upgrade(alembic_config(f"sqlite:///{index_dir / 'catalog.sqlite'}"), "head")
    with open_index(index_dir, model="tiny-shapes") as index:
        summary = index.ingest([photos / "red_star"])
    assert summary.embedded > 0


def test_new_catalog_is_stamped_at_head_in_wal_mode(tmp_path):
    catalog = open_catalog(tmp_path / "index")
    catalog.close()
    conn = sqlite3.connect(tmp_path / "index" / "catalog.sqlite")
    assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_catalog_from_a_newer_indexer_is_refused(tmp_path):
    open_catalog(tmp_path / "index").close()
    conn = sqlite3.connect(tmp_path / "index" / "catalog.sqlite")
    conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaTooNewError, match="newer indexer") as caught:
        open_catalog(tmp_path / "index")
    assert "pip install -U indexer" in str(caught.value)


def test_foreign_sqlite_and_garbage_files_are_refused(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    conn = sqlite3.connect(foreign / "catalog.sqlite")
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.commit()
    conn.close()
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
