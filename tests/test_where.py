"""``--where``: the grammar, its SQL on SQLite and PostgreSQL (checked against a reference evaluation in
Python, with Hypothesis), hostile strings, limits, and the errors that point at a column."""

from __future__ import annotations

import fnmatch
import re
import sqlite3
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from indexer.errors import QueryError
from indexer.store.catalog import open_catalog
from indexer.store.where import MAX_DEPTH, MAX_LENGTH, BoolOp, Comparison, Not, WhereError, date_span, parse

ROWS = [  # uri, taken, camera, width, height, size, lat, lon, caption
    ("/p/2024/beach.jpg", "2024-06-01 12:30:00", "Canon EOS 5D", 1920, 1080, 2_500_000, 52.5, -1.25,
     "a sandy beach at sunset"),
    ("/p/2024/fox.jpg", "2024-12-31 23:59:59", "NIKON D750", 800, 600, 90_000, None, None, "a red fox in the snow"),
    ("/p/2019/cat.png", "2019-03-04 05:06:07", None, 640, 640, 400_000, 10.0, 20.0, None),
    ("/p/thumbs/cat.jpg", None, "Canon PowerShot", 64, 64, 3_000, None, None, "a small cat"),
    ("/p/odd/x'; DROP TABLE items; --.jpg", None, "x'; DROP TABLE items; --", 1, 1, 1, -90.0, 180.0,
     "\"quoted\" OR NEAR(a b) * caption:evil"),
    ("/p/2025/snow fox.jpg", "2025-01-01 00:00:00", "canon eos 5d", 4000, 3000, 7_000_000, 0.0, 0.0, "snow and a FOX"),
]
COLUMNS = ("uri", "taken", "camera", "width", "height", "size", "lat", "lon", "caption")


def fill(catalog) -> dict[str, int]:
    now = time.time()
    catalog.write("INSERT INTO embeddings (sha256, vector, created_at) VALUES (:sha, :vector, :now)",
                  [{"sha": f"{i:064x}", "vector": b"\0\0" * 4, "now": now} for i in range(len(ROWS))])
    catalog.write(
        "INSERT INTO items (uri, size, mtime_ns, state, embedding_id, width, height, taken, camera, lat, lon, caption, "
        "added_at, updated_at, meta_at) VALUES (:uri, :size, 0, 'embedded', :emb, :width, :height, :taken, :camera, "
        ":lat, :lon, :caption, :now, :now, :now)",
        [dict(zip(COLUMNS, row), emb=i + 1, now=now) for i, row in enumerate(ROWS)])
    return {uri: int(item_id) for item_id, uri in catalog.rows("SELECT id, uri FROM items")}


@pytest.fixture
def catalog(tmp_path):
    catalog = open_catalog(tmp_path / "index")
    fill(catalog)
    yield catalog
    catalog.close()


def kept(catalog, expression: str) -> set[str]:
    clause = catalog.filters.compile(expression)
    ids = set(catalog.filters.matching_item_ids(clause))
    return {uri for item_id, uri in catalog.rows("SELECT id, uri FROM items") if item_id in ids}


# -- a reference evaluation, in Python -----------------------------------------------------------------

def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def reference(node, row: dict) -> bool:
    if isinstance(node, Not):
        return not reference(node.node, row)
    if isinstance(node, BoolOp):
        results = [reference(n, row) for n in node.nodes]
        return all(results) if node.op == "and" else any(results)
    c: Comparison = node
    if c.op == "!=":
        return not reference(Comparison(c.field, "=", c.value, c.column, c.value_column), row)
    if c.field == "taken":
        value = row["taken"]
        if value is None:
            return False
        start, end = date_span(c.value, 1)
        return {"=": start <= value < end, "<": value < start, "<=": value < end, ">": value >= end,
                ">=": value >= start}[c.op]
    if c.field in ("width", "height", "size", "lat", "lon"):
        value = row[c.field]
        number, unit = re.fullmatch(r"([-+\d.e]+)([a-zA-Z]*)", c.value).groups()
        bound = float(number) * {"": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024 ** 2}[unit.lower()]
        return value is not None and {"=": value == bound, "<": value < bound, "<=": value <= bound,
                                      ">": value > bound, ">=": value >= bound}[c.op]
    if c.field == "camera":
        value = row["camera"]
        return value is not None and (value.lower() == c.value.lower() if c.op == "=" else c.value.lower() in value.lower())
    if c.field == "path":
        if c.op == "=":
            return row["uri"] == c.value
        return fnmatch.fnmatchcase(row["uri"], c.value) if any(ch in c.value for ch in "*?[") else c.value in row["uri"]
    assert c.field == "caption"
    value = row["caption"]
    if value is None:
        return False
    return value == c.value if c.op == "=" else set(_words(c.value)) <= set(_words(value))


def reference_kept(expression: str) -> set[str]:
    node = parse(expression)
    return {row[0] for row in ROWS if reference(node, dict(zip(COLUMNS, row)))}


EXAMPLES = [
    "taken >= 2024-06-01", "taken = 2024", "taken = 2024-12", "taken > 2024", "taken <= 2019", "taken < 2024-06-01",
    "taken != 2024", "not taken < 2020", "taken = \"2024-06-01 12:30\"", "camera ~ canon", "camera = 'canon eos 5d'",
    "camera != 'Canon EOS 5D'", "width >= 1920 or height >= 1080", "(width >= 1920 or height >= 1080) and not path ~ '*/thumbs/*'",
    "size < 500kB", "size >= 2MB and size < 7MB", "size > 2.5MB", "lat < 0 or lon > 100", "lat = 0 and lon = 0",
    "caption ~ fox", "caption ~ 'red fox'", "caption ~ FOX and caption ~ snow", "not caption ~ fox", "path ~ 2024",
    "path ~ '/p/20??/*'", "path = /p/2019/cat.png", "NOT (camera ~ nikon OR camera ~ canon)",
    "caption ~ 'caption:evil'", "caption ~ 'NEAR(a b)'", "camera = \"x'; DROP TABLE items; --\"",
    "path ~ \"'; DROP TABLE items; --\"", "caption ~ '\"quoted\" OR'",
]


@pytest.mark.parametrize("expression", EXAMPLES)
def test_the_sql_keeps_what_the_reference_keeps(catalog, expression):
    assert kept(catalog, expression) == reference_kept(expression)


def test_the_same_expressions_give_the_same_items_on_postgresql(tmp_path, pg_url):
    server = open_catalog(tmp_path / "pg-index", url=pg_url)
    try:
        fill(server)
        for expression in EXAMPLES:
            assert kept(server, expression) == reference_kept(expression), expression
    finally:
        server.close()


def test_hostile_values_are_data_never_sql(catalog):
    assert kept(catalog, "camera = \"x'; DROP TABLE items; --\"") == {ROWS[4][0]}
    assert kept(catalog, "caption ~ '\" OR 1=1 --'") == set()  # the words 1, 1: no caption holds them
    assert kept(catalog, "path ~ \"x' OR '1'='1\"") == set()
    assert kept(catalog, "camera ~ \"%\"") == set() and kept(catalog, "camera ~ \"_\"") == set()  # no LIKE wildcards
    assert catalog.rows("SELECT count(*) FROM items")[0][0] == len(ROWS)


@pytest.mark.parametrize("expression, column, message", [
    ("tken = 3", 1, "unknown field 'tken'"),
    ("width > abc", 9, "'abc' is not a number"),
    ("width > 3.5", 9, "not a whole number"),
    ("width >", 8, "expected a value"),
    ("(width > 3", 11, "expected ')' to close the '(' at column 1"),
    ("width > 3 )", 11, "expected 'and', 'or' or the end"),
    ("width > 3 and", 14, "expected a field"),
    ("taken ~ 2024", 7, "taken takes = != < <= > >=, not ~"),
    ("taken = 2024-02-30", 9, "not a date that exists"),
    ("taken = yesterday", 9, "not a date"),
    ("caption = \"abc", 11, "a quoted value with no closing \""),
    ("width == 3", 7, "unknown operator '=='"),
    ("size > 3 parsecs", 10, "expected 'and', 'or' or the end"),
    ("size > 3parsecs", 8, "not a size"),
    ("lat > inf", 7, "not a number"),
    ("", 1, "an empty expression"),
    ("camera ~ canon and and", 20, "expected a field"),
    ("caption ~ '!!!'", 11, "needs a word"),
    ("width > 1\x00", 10, "a NUL character"),
])
def test_errors_name_the_column(catalog, expression, column, message):
    with pytest.raises(WhereError) as caught:
        catalog.filters.compile(expression)
    assert caught.value.column == column and message in str(caught.value)
    assert f"at column {column}" in str(caught.value) and caught.value.param == "where"


def test_limits_refuse_a_huge_or_deeply_nested_expression(catalog):
    with pytest.raises(WhereError, match=f"longer than {MAX_LENGTH} characters"):
        catalog.filters.compile("camera ~ " + "a" * 5000)
    with pytest.raises(WhereError, match=f"nested more than {MAX_DEPTH} deep at column {MAX_DEPTH + 2}"):
        catalog.filters.compile("(" * 500 + "width > 1" + ")" * 500)
    with pytest.raises(WhereError, match="nested more than"):
        catalog.filters.compile("not " * 100 + "width > 1")
    with pytest.raises(WhereError, match="more than 64 comparisons"):
        catalog.filters.compile(" or ".join(["width > 1"] * 65))
    deep = "(" * MAX_DEPTH + "width > 1000" + ")" * MAX_DEPTH  # at the limit: fine
    assert kept(catalog, deep) == reference_kept("width > 1000")


def test_label_is_the_top_label_of_the_latest_complete_run(catalog):
    with pytest.raises(WhereError, match="no complete classification run"):
        catalog.filters.compile("label = cat")
    ids = {uri: i for i, uri in catalog.rows("SELECT id, uri FROM items")}
    run = catalog.runs.start_classification(["cat", "beach"], "default", 1)
    catalog.runs.add_classifications(run, [(ids[ROWS[2][0]], 1, "cat", 0.9), (ids[ROWS[3][0]], 1, "cat", 0.8),
                                           (ids[ROWS[0][0]], 1, "beach", 0.7)])
    catalog.runs.finish_classification(run, 3)
    assert kept(catalog, "label = cat") == {ROWS[2][0], ROWS[3][0]}
    assert kept(catalog, "label = Cat and path ~ thumbs") == {ROWS[3][0]}
    assert kept(catalog, "label ~ bea") == {ROWS[0][0]}
    assert len(kept(catalog, "label != cat")) == len(ROWS) - 2


# -- Hypothesis ------------------------------------------------------------------------------------

WORD = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
DATE = st.one_of(st.integers(1990, 2030).map(str),
                 st.tuples(st.integers(1990, 2030), st.integers(1, 12)).map(lambda t: f"{t[0]}-{t[1]:02d}"),
                 st.dates().filter(lambda d: 1990 <= d.year <= 2030).map(str))
ORDER = st.sampled_from(["=", "!=", "<", "<=", ">", ">="])
TEXT_OP = st.sampled_from(["=", "!=", "~"])


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


COMPARISONS = st.one_of(
    st.builds(lambda op, d: f"taken {op} {d}", ORDER, DATE),
    st.builds(lambda f, op, n: f"{f} {op} {n}", st.sampled_from(["width", "height", "size"]), ORDER,
              st.integers(0, 5000)),
    st.builds(lambda f, op, n: f"{f} {op} {n}", st.sampled_from(["lat", "lon"]), ORDER,
              st.floats(-180, 180, allow_nan=False).map(lambda x: repr(round(x, 3)))),
    st.builds(lambda op, w: f"camera {op} {_quoted(w)}", TEXT_OP, st.sampled_from(["canon", "NIKON", "eos 5d", "x"]) | WORD),
    st.builds(lambda w: f"caption ~ {_quoted(w)}", st.sampled_from(["fox", "snow fox", "a", "cat", "sunset beach"]) | WORD),
    st.builds(lambda w: f"path ~ {_quoted(w)}", st.sampled_from(["2024", "*/2024/*", "*.png", "/p/20?4/*", "cat"]) | WORD),
)
EXPRESSIONS = st.recursive(COMPARISONS, lambda inner: st.one_of(
    st.builds(lambda e: f"not {e}", inner), st.builds(lambda e: f"({e})", inner),
    st.builds(lambda a, op, b: f"{a} {op} {b}", inner, st.sampled_from(["and", "or", "AND", "Or"]), inner)),
    max_leaves=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=EXPRESSIONS)
def test_any_generated_expression_keeps_what_the_reference_keeps(catalog, expression):
    try:
        parse(expression)
    except WhereError as exc:  # only the limits may refuse a generated expression
        assert "nested more than" in str(exc) or "comparisons" in str(exc)
        return
    assert kept(catalog, expression) == reference_kept(expression)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(expression=st.text(max_size=200) | st.lists(st.sampled_from(
    ["(", ")", "not", "and", "or", "taken", "width", "camera", "=", "~", ">=", "!", "'", '"', "\\", "2024", "x", " ",
     "caption", "--", ";", "*", "NEAR", "%"]), max_size=30).map("".join))
def test_any_text_is_either_an_error_with_a_column_or_runs(catalog, expression):
    try:
        clause = catalog.filters.compile(expression)
    except WhereError as exc:
        assert 1 <= exc.column <= len(expression) + 1
        return
    except QueryError:
        raise AssertionError("every refusal names a column") from None
    catalog.filters.matching_item_ids(clause)  # runs: no SQL error, whatever the text
    assert catalog.rows("SELECT count(*) FROM items")[0][0] == len(ROWS)


def test_compiled_sql_holds_no_value_of_the_expression():
    from indexer.store.where import compile_where

    text = "camera = \"Robert'); DROP\" and path ~ '*/evil/*' and caption ~ 'bobby tables'"
    clause = compile_where(parse(text), text, "sqlite", lambda: None)
    for value in ("Robert", "DROP", "evil", "bobby", "tables"):
        assert value not in clause.sql
    assert "robert'); drop" in clause.params.values() and "*/evil/*" in clause.params.values()


@pytest.mark.parametrize("pattern", ["[z-a]", "[[:alpha:]]*", "[\\]*", "*[", "[!]", "[]]", "a{1,2}", "(x", "\\", "*.(jpg|png)"])
def test_odd_globs_match_or_not_but_never_fail_on_either_database(catalog, tmp_path, pg_url, pattern):
    expression = f"path ~ {_quoted(pattern)}"
    server = open_catalog(tmp_path / "pg-index", url=pg_url)
    try:
        fill(server)
        assert kept(server, expression) == kept(catalog, expression)
    finally:
        server.close()


@settings(max_examples=400, deadline=None)
@given(pattern=st.text("ab[]^-*?!", max_size=8), text=st.text("ab[]^-!", max_size=6))
def test_the_postgresql_regex_of_a_glob_matches_what_sqlites_glob_matches(pattern, text):
    from indexer.store.where import sqlite_glob_regex

    sqlite_says = bool(sqlite3.connect(":memory:").execute("SELECT ? GLOB ?", (text, pattern)).fetchone()[0])
    regex = sqlite_glob_regex(pattern)
    assert (regex is not None and re.match(regex, text) is not None) == sqlite_says


def _plan(catalog, expression: str) -> str:
    clause = catalog.filters.compile(expression)
    return " ".join(str(row[-1]) for row in catalog.rows(
        f"EXPLAIN QUERY PLAN SELECT items.id FROM items WHERE ({clause.sql})", clause.params))


def test_a_compound_filter_walks_the_index_of_its_narrowest_term(tmp_path):
    # SQLite keeps no statistics of value ranges: left alone it walks one of the two indexes whichever keeps
    # fewer items. Each term is counted through its index first, and the narrowest one's index is walked.
    catalog = open_catalog(tmp_path / "index")
    now = time.time()
    count = 3000
    catalog.write("INSERT INTO embeddings (sha256, vector, created_at) VALUES (:sha, :vector, :now)",
                  [{"sha": f"{i:064x}", "vector": b"\0\0" * 4, "now": now} for i in range(count)])
    catalog.write(  # taken: one a day from 2000 on; size: 1 kB more for each item
        "INSERT INTO items (uri, size, mtime_ns, state, embedding_id, taken, added_at, updated_at, meta_at) "
        "VALUES (:uri, :size, 0, 'embedded', :emb, :taken, :now, :now, :now)",
        [{"uri": f"/p/{i}.jpg", "size": 1000 * (i + 1), "emb": i + 1, "now": now,
          "taken": time.strftime("%Y-%m-%d 12:00:00", time.gmtime(946684800 + 86400 * i))} for i in range(count)])
    try:
        for expression, index in [("size < 50kB and taken < 2007", "ix_items_size"),   # 49 and 2557 items
                                  ("taken < 2007 and size < 50kB", "ix_items_size"),
                                  ("taken < 2000-02-01 and size < 2MB", "ix_items_taken"),  # 31 and 1999
                                  ("size < 2MB and (taken < 2000-02-01 and lat = 0 or lat != 0)", "ix_items_size")]:
            assert index in _plan(catalog, expression), expression
        for expression in ["size < 50kB and taken < 2007", "taken < 2000-02-01 and size < 2MB"]:
            clause = catalog.filters.compile(expression)
            plain = catalog.rows(f"SELECT count(*) FROM items WHERE {clause.sql}", clause.params)
            assert len(catalog.filters.matching_item_ids(clause)) == plain[0][0] in (49, 31)
    finally:
        catalog.close()
