"""Full text over items: their captions and paths, the one place that knows how each database does it.

SQLite: an FTS5 table ``items_fts`` holding no copy of the text (``content='items'``: it reads the
rows of ``items`` back by id), kept in step by three triggers on ``items`` (insert, delete, an update of
``caption`` or ``uri``: the scans' and commits' other updates never fire them). ``create_sqlite``
(re)creates the table and its triggers and indexes what ``items`` holds; a migration, a new catalog
and a repair call it alike. PostgreSQL: a GIN index on the ``tsvector`` of the same two columns (the
``simple`` configuration: no stemming, any language), nothing to keep in step.

A query's words never reach either database's query syntax as syntax: each word is passed as a quoted
FTS5 string or through ``plainto_tsquery``, as a bound parameter.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

FTS_TABLE = "items_fts"
PG_INDEX = "ix_items_fulltext"
# Punctuation becomes space first: PostgreSQL's parser would keep a path ("/a/b_c.jpg") or a hyphenated word
# as one token, where SQLite's unicode61 splits them into words; the two databases find the same words.
_PG_SPLIT = "'[[:punct:][:space:]]+', ' ', 'g'"
PG_DOCUMENT = f"to_tsvector('simple', regexp_replace(coalesce(items.caption, '') || ' ' || items.uri, {_PG_SPLIT}))"
_TRIGGERS = ("items_fts_insert", "items_fts_delete", "items_fts_update")
_WORD = re.compile(r"[^\W_]+")  # as the unicode61 tokenizer splits: letters and digits
MAX_WORDS = 32  # words of one full-text query; more add nothing a ranking can use


def sqlite_statements() -> list[str]:
    """The statements that (re)create the SQLite full-text table and its triggers, then fill it."""
    return [
        *[f"DROP TRIGGER IF EXISTS {name}" for name in _TRIGGERS],
        f"DROP TABLE IF EXISTS {FTS_TABLE}",
        f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(caption, uri, content='items', content_rowid='id', "
        "tokenize='unicode61 remove_diacritics 2')",
        f"CREATE TRIGGER items_fts_insert AFTER INSERT ON items BEGIN "
        f"INSERT INTO {FTS_TABLE}(rowid, caption, uri) VALUES (new.id, new.caption, new.uri); END",
        f"CREATE TRIGGER items_fts_delete AFTER DELETE ON items BEGIN "
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, caption, uri) VALUES ('delete', old.id, old.caption, old.uri); END",
        f"CREATE TRIGGER items_fts_update AFTER UPDATE OF caption, uri ON items BEGIN "
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, caption, uri) VALUES ('delete', old.id, old.caption, old.uri); "
        f"INSERT INTO {FTS_TABLE}(rowid, caption, uri) VALUES (new.id, new.caption, new.uri); END",
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')",
    ]


def create(dialect: str, execute: Callable[[str], Any]) -> None:
    """Creates the full-text structures on ``dialect`` through ``execute`` (one SQL string at a time)."""
    if dialect == "sqlite":
        for statement in sqlite_statements():
            execute(statement)
    else:
        execute(f"CREATE INDEX IF NOT EXISTS {PG_INDEX} ON items USING gin (({PG_DOCUMENT}))")


def drop(dialect: str, execute: Callable[[str], Any]) -> None:
    if dialect == "sqlite":
        for name in _TRIGGERS:
            execute(f"DROP TRIGGER IF EXISTS {name}")
        execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")
    else:
        execute(f"DROP INDEX IF EXISTS {PG_INDEX}")


def is_fulltext_name(name: str) -> bool:
    """Whether a table or index is one of these (not in the models' schema: a schema comparison skips it)."""
    return name == PG_INDEX or name == FTS_TABLE or name.startswith(FTS_TABLE + "_")


def words(text: str) -> list[str]:
    """The words of a full-text query (letters and digits), at most ``MAX_WORDS``."""
    return _WORD.findall(text)[:MAX_WORDS]


def match_condition(dialect: str, text: str, name: str, any_word: bool = False,
                    column: Optional[str] = None) -> tuple[str, dict[str, Any]]:
    """SQL true for the items whose caption or path (only ``column`` when given: "caption" or "uri")
    holds every word of ``text`` (any word with ``any_word``), and its parameters (named ``name``…).
    No words: matches nothing."""
    found = words(text)
    if not found:
        return "1 = 0", {}
    if dialect == "sqlite":
        joiner = " OR " if any_word else " AND "
        query = joiner.join('"' + w.replace('"', '""') + '"' for w in found)
        if column is not None:
            query = f"{column} : ({query})"
        return (f"items.id IN (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :{name})", {name: query})
    params = {f"{name}_{i}": w for i, w in enumerate(found)}
    query = (" || " if any_word else " && ").join(f"plainto_tsquery('simple', :{key})" for key in params)
    sql = f"{PG_DOCUMENT} @@ ({query})"
    if column is not None:  # the index finds the candidates; the column's own words decide
        sql += f" AND to_tsvector('simple', regexp_replace(coalesce(items.{column}, ''), {_PG_SPLIT})) @@ ({query})"
    return sql, params


def ranked_sql(dialect: str, text: str, name: str, extra: str = "") -> tuple[str, dict[str, Any]]:
    """SQL selecting ``items.id`` of the items matching any word of ``text``, best keyword match first
    (BM25 on SQLite, ``ts_rank`` on PostgreSQL), limited by a ``:limit`` parameter; ``extra`` is ANDed in."""
    found = words(text)
    if not found:
        return "SELECT id FROM items WHERE 1 = 0 LIMIT :limit", {}
    if dialect == "sqlite":
        query = " OR ".join('"' + w.replace('"', '""') + '"' for w in found)
        return (f"SELECT items.id FROM {FTS_TABLE} JOIN items ON items.id = {FTS_TABLE}.rowid "
                f"WHERE {FTS_TABLE} MATCH :{name}{extra} ORDER BY {FTS_TABLE}.rank LIMIT :limit", {name: query})
    params = {f"{name}_{i}": w for i, w in enumerate(found)}
    query = " || ".join(f"plainto_tsquery('simple', :{key})" for key in params)
    return (f"SELECT items.id FROM items WHERE {PG_DOCUMENT} @@ ({query}){extra} "
            f"ORDER BY ts_rank({PG_DOCUMENT}, ({query})) DESC, items.id LIMIT :limit", params)
