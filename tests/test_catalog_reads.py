"""The one catalog's own reads (plain SQL, on sqlite3 for SQLite): the answers its SQLAlchemy members give,
errors translated as everywhere, and a search that never imports SQLAlchemy."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from indexer import open_index
from indexer.errors import CatalogError, SchemaTooNewError
from indexer.store.catalog import open_catalog
from indexer.store.rows import LiveItem


def test_the_plain_sql_reads_agree_with_the_members(index_copy):
    catalog = open_catalog(index_copy, create=False)
    try:
        assert "sqlalchemy.engine.base" not in repr(catalog.__dict__)  # nothing of SQLAlchemy opened yet
        live = [item for page in catalog.items.iter_live() for item in page]
        assert catalog.count_embedded() == len(live) and catalog.has_embedded()
        count, max_id = catalog.embedding_state()
        assert count == catalog.embeddings.count() and max_id == catalog.embeddings.id_range()[1]
        found = catalog.items_for_embeddings(list(range(1, max_id + 2)))  # every id, and one past the end
        assert found == sorted(live) and all(isinstance(item, LiveItem) for item in found)
        assert found[0].uri == catalog.items.get(found[0].item_id)["path"]
        catalog.texts.put("model-key", {"a red star": b"\x01\x02", "ünïcode 🦊": b"\x03"})
        catalog.texts.put("model-key", {"a red star": b"\xff"})  # the first vector stays
        assert catalog.texts.get("model-key", ["a red star", "ünïcode 🦊", "absent"]) == \
            {"a red star": b"\x01\x02", "ünïcode 🦊": b"\x03"}
        assert catalog.get_meta("nothing", 7) == 7
    finally:
        catalog.close()


def test_an_older_schema_is_upgraded_and_a_newer_one_refused(index_copy):
    path = index_copy / "catalog.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    with pytest.raises(SchemaTooNewError, match="newer indexer"):
        open_catalog(index_copy, create=False)


def test_a_catalog_not_in_wal_mode_is_switched(index_copy):
    conn = sqlite3.connect(index_copy / "catalog.sqlite")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    with open_index(index_copy) as index:
        assert len(index.search("a red star", k=2)) == 2
    with sqlite3.connect(index_copy / "catalog.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_an_error_on_the_search_path_says_what_to_do(index_copy):
    """A catalog locked by another writer: the search path's reads translate it like every other read."""
    catalog = open_catalog(index_copy, create=False)
    blocker = sqlite3.connect(index_copy / "catalog.sqlite", isolation_level=None)
    blocker.execute("PRAGMA busy_timeout = 0")
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        catalog._conn.execute("PRAGMA busy_timeout = 50")  # do not wait the usual 30 s
        with pytest.raises(CatalogError, match="locked by another process"):
            catalog.texts.put("model-key", {"a text": b"\x01"})
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        catalog.close()


def test_a_search_never_imports_the_database_layer(index_copy):
    code = ("import sys\nfrom indexer.cli import main\n"
            f"main(['search', 'a red star', '--index', {str(index_copy)!r}, '-k', '2'], standalone_mode=False)\n"
            "print('LOADED=' + ','.join(m for m in ('sqlalchemy', 'alembic', 'torch', 'openvino') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "LOADED=", done.stdout
    assert np.all([line.split()[0].replace(".", "").isdigit() for line in done.stdout.strip().splitlines()[:-1]])
