"""The reads a search makes through plain sqlite3 (store.quick): the same answers as the full catalog,
used only where nothing unusual can happen, and a search that never imports SQLAlchemy."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from indexer import open_index
from indexer.store import migrate, quick, reads
from indexer.store.catalog import open_catalog
from indexer.store.quick import QuickCatalog


def test_its_constants_are_the_catalogs():
    assert quick.SCHEMA_HEAD == migrate.SCHEMA_HEAD
    assert quick.PURGES_KEY == reads.PURGES_KEY


def test_every_native_read_equals_the_full_catalogs(index_copy):
    fast, full = QuickCatalog.open(index_copy), open_catalog(index_copy, create=False)
    try:
        assert fast is not None
        for name in ("catalog_id", "embedding_dim", "embeddings_version", "embedding_state", "count_embedded"):
            assert getattr(fast, name)() == getattr(full, name)(), name
        assert fast.get_meta("model") == full.get_meta("model") and fast.get_meta("nothing", 7) == 7
        ids = list(range(1, full.embedding_state()[1] + 2))  # every id, and one past the end
        assert fast.items_for_embeddings(ids) == full.items_for_embeddings(ids) != []
        key = "model-key"
        fast.cache_texts(key, {"a red star": b"\x01\x02", "ünïcode 🦊": b"\x03"})
        fast.cache_texts(key, {"a red star": b"\xff"})  # the first vector stays
        assert full.cached_texts(key, ["a red star", "ünïcode 🦊", "absent"]) == \
            fast.cached_texts(key, ["a red star", "ünïcode 🦊", "absent"]) == \
            {"a red star": b"\x01\x02", "ünïcode 🦊": b"\x03"}
        # Anything else goes to the full catalog, opened on first need.
        assert fast.counts_by_state() == full.counts_by_state()
        assert fast.location == full.location
    finally:
        fast.close()
        full.close()


def test_an_index_opens_through_it_and_answers_as_before(index_copy):
    with open_index(index_copy) as index:
        assert isinstance(index.catalog, QuickCatalog)
        hits = index.search("a red star", k=3)
        vectors = index.vectors().ids()
    with open_index(index_copy, create=False) as index:
        index.catalog.full()  # the same index through the full catalog
        full_index_hits = index.search("a red star", k=3)
    assert [h.path for h in hits] == [h.path for h in full_index_hits] and len(hits) == 3
    assert len(vectors) > 0


@pytest.mark.parametrize("case", ["older schema", "newer schema", "no catalog", "not WAL"])
def test_anything_unusual_is_left_to_the_full_catalog(index_copy, case):
    path = index_copy / "catalog.sqlite"
    if case == "older schema":
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '0004_heads'")
    elif case == "newer schema":
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    elif case == "no catalog":
        path.unlink()
    else:
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA journal_mode = DELETE")
        conn.close()
    assert QuickCatalog.open(index_copy) is None


def test_a_search_never_imports_the_database_layer(index_copy):
    code = ("import sys\nfrom indexer.cli import main\n"
            f"main(['search', 'a red star', '--index', {str(index_copy)!r}, '-k', '2'], standalone_mode=False)\n"
            "print('LOADED=' + ','.join(m for m in ('sqlalchemy', 'alembic', 'torch', 'openvino') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "LOADED=", done.stdout
    assert np.all([line.split()[0].replace(".", "").isdigit() for line in done.stdout.strip().splitlines()[:-1]])
