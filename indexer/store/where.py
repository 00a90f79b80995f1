"""``--where EXPR``: a small filter language over what the catalog knows of each item, compiled into
parameterised SQL (the same text on SQLite and PostgreSQL; values are always bound parameters, never
pasted into the SQL).

Grammar (keywords and field names in any case)::

    expr       := disjunct ("or" disjunct)*
    disjunct   := conjunct ("and" conjunct)*
    conjunct   := "not" conjunct | "(" expr ")" | comparison
    comparison := FIELD OP VALUE
    OP         := "=" | "!=" | "<" | "<=" | ">" | ">=" | "~"
    VALUE      := a word (no spaces, quotes or brackets) | "a quoted string" | 'another'

Fields: ``taken`` (the EXIF date: ``2024``, ``2024-06``, ``2024-06-01`` or ``"2024-06-01 12:30"``; a
date stands for its whole span, so ``taken = 2024-06`` is June and ``taken > 2024`` is 2025 on),
``camera``, ``caption``, ``path``, ``label`` (text), ``width``, ``height`` (pixels), ``size`` (bytes;
``2MB``, ``500kB``, ``1GiB``), ``lat``, ``lon`` (degrees). ``~`` is "contains" for ``camera`` and
``label`` (any case), a glob (``*``, ``?``, ``[..]``) or else "contains" for ``path`` (as
``--path-filter``), and a full-text match (every word) for ``caption``. ``label`` is the top label of
the latest complete ``classify`` run. A comparison with an absent value (a picture with no date) is
false, so ``not taken < 2020`` holds for it. Examples::

    taken >= 2024-06-01 and camera ~ canon
    (width >= 1920 or height >= 1080) and not path ~ "*/thumbs/*"
    caption ~ "red fox" and size < 5MB and label != cat

Limits: ``MAX_LENGTH`` characters, ``MAX_DEPTH`` nested brackets, ``MAX_COMPARISONS`` comparisons;
an error names the column of the expression where it went wrong.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Optional, Union

from ..errors import QueryError
from . import fulltext

MAX_LENGTH = 4096
MAX_DEPTH = 32
MAX_COMPARISONS = 64
MAX_VALUE = 1000  # characters of one value
OPERATORS = ("<=", ">=", "!=", "=", "<", ">", "~")
KEYWORDS = ("and", "or", "not")

# field -> (SQL column, kind)
FIELDS: dict[str, tuple[str, str]] = {
    "taken": ("items.taken", "date"), "camera": ("items.camera", "text"), "caption": ("items.caption", "caption"),
    "path": ("items.uri", "path"), "label": ("", "label"), "width": ("items.width", "int"),
    "height": ("items.height", "int"), "size": ("items.size", "size"), "lat": ("items.lat", "float"),
    "lon": ("items.lon", "float"),
}
_KIND_OPERATORS = {"date": ("=", "!=", "<", "<=", ">", ">="), "int": ("=", "!=", "<", "<=", ">", ">="),
                   "size": ("=", "!=", "<", "<=", ">", ">="), "float": ("=", "!=", "<", "<=", ">", ">="),
                   "text": ("=", "!=", "~"), "caption": ("=", "!=", "~"), "path": ("=", "!=", "~"),
                   "label": ("=", "!=", "~")}
_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000 ** 2, "gb": 1000 ** 3, "tb": 1000 ** 4, "kib": 1024,
          "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([a-z]*)$", re.IGNORECASE)
_DATE = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?)?)?$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_WORD_END = set(" \t\r\n\f\v()\"'<>=!~")
MAX_INT = 2 ** 62


class WhereError(QueryError):
    """A ``--where`` expression that cannot be read; ``column`` (1-based) is where it went wrong."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} at column {column}", param="where")
        self.column = column


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "string", "op", "(", ")", "end"
    text: str
    column: int  # 1-based


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    value: str
    column: int  # of the field
    value_column: int


@dataclass(frozen=True)
class Not:
    node: "Node"


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" / "or"
    nodes: tuple["Node", ...]


Node = Union[Comparison, Not, BoolOp]


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "()":
            tokens.append(Token(c, c, i + 1))
            i += 1
        elif c in "\"'":
            start, i, out = i, i + 1, []
            while i < n and text[i] != c:
                if text[i] == "\\" and i + 1 < n and text[i + 1] in (c, "\\"):
                    i += 1
                out.append(text[i])
                i += 1
            if i >= n:
                raise WhereError(f"a quoted value with no closing {c}", start + 1)
            tokens.append(Token("string", "".join(out), start + 1))
            i += 1
        elif c in "<>=!~":
            op = text[i:i + 2] if text[i:i + 2] in OPERATORS else c
            if op not in OPERATORS or text[i:i + 2] == "==":
                raise WhereError(f"unknown operator {text[i:i + 2]!r} (use = != < <= > >= ~)", i + 1)
            tokens.append(Token("op", op, i + 1))
            i += len(op)
        else:
            start = i
            while i < n and text[i] not in _WORD_END and not text[i].isspace():
                i += 1
            tokens.append(Token("word", text[start:i], start + 1))
    tokens.append(Token("end", "", n + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.at = 0
        self.comparisons = 0

    def peek(self) -> Token:
        return self.tokens[self.at]

    def take(self) -> Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "word" and token.text.lower() == word:
            self.at += 1
            return True
        return False

    def expression(self, depth: int) -> Node:
        nodes = [self.disjunct(depth)]
        while self.keyword("or"):
            nodes.append(self.disjunct(depth))
        return nodes[0] if len(nodes) == 1 else BoolOp("or", tuple(nodes))

    def disjunct(self, depth: int) -> Node:
        nodes = [self.conjunct(depth)]
        while self.keyword("and"):
            nodes.append(self.conjunct(depth))
        return nodes[0] if len(nodes) == 1 else BoolOp("and", tuple(nodes))

    def conjunct(self, depth: int) -> Node:
        token = self.peek()
        if depth > MAX_DEPTH:
            raise WhereError(f"brackets and 'not' nested more than {MAX_DEPTH} deep", token.column)
        if self.keyword("not"):
            return Not(self.conjunct(depth + 1))
        if token.kind == "(":
            self.take()
            node = self.expression(depth + 1)
            closing = self.take()
            if closing.kind != ")":
                raise WhereError(f"expected ')' to close the '(' at column {token.column}, found "
                                 f"{_shown(closing)}", closing.column)
            return node
        return self.comparison()

    def comparison(self) -> Comparison:
        token = self.take()
        if token.kind != "word" or token.text.lower() in KEYWORDS:
            raise WhereError(f"expected a field ({', '.join(FIELDS)}), found {_shown(token)}", token.column)
        name = token.text.lower()
        if name not in FIELDS:
            raise WhereError(f"unknown field {token.text[:40]!r} (fields: {', '.join(FIELDS)})", token.column)
        op = self.take()
        if op.kind != "op":
            raise WhereError(f"expected an operator (= != < <= > >= ~) after {name}, found {_shown(op)}", op.column)
        kind = FIELDS[name][1]
        if op.text not in _KIND_OPERATORS[kind]:
            raise WhereError(f"{name} takes {' '.join(_KIND_OPERATORS[kind])}, not {op.text}", op.column)
        value = self.take()
        if value.kind not in ("word", "string"):
            raise WhereError(f"expected a value after {name} {op.text}, found {_shown(value)}", value.column)
        if len(value.text) > MAX_VALUE:
            raise WhereError(f"a value longer than {MAX_VALUE} characters", value.column)
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise WhereError(f"more than {MAX_COMPARISONS} comparisons", token.column)
        return Comparison(name, op.text, value.text, token.column, value.column)


def _shown(token: Token) -> str:
    if token.kind == "end":
        return "the end"
    return repr(token.text[:40])


def parse(text: str) -> Node:
    """The tree of an expression; ``WhereError`` (with the column) when it cannot be read."""
    if not isinstance(text, str):
        raise QueryError("--where takes a text expression", param="where")
    if len(text) > MAX_LENGTH:
        raise WhereError(f"the expression is longer than {MAX_LENGTH} characters", MAX_LENGTH + 1)
    if "\x00" in text:
        raise WhereError("a NUL character", text.index("\x00") + 1)
    if not text.strip():
        raise WhereError("an empty expression", 1)
    parser = _Parser(text)
    node = parser.expression(0)
    rest = parser.peek()
    if rest.kind != "end":
        raise WhereError(f"expected 'and', 'or' or the end, found {_shown(rest)}", rest.column)
    return node


# -- values ---------------------------------------------------------------------------------------

def date_span(value: str, column: int) -> tuple[str, str]:
    """[start, end) of a date as the catalog stores them ("YYYY-MM-DD HH:MM:SS")."""
    match = _DATE.match(value.strip())
    if not match:
        raise WhereError(f"{value[:40]!r} is not a date (2024, 2024-06, 2024-06-01 or \"2024-06-01 12:30\")", column)
    year, month, day, hour, minute, second = match.groups()
    try:
        start = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0), int(minute or 0),
                         int(second or 0))
        if month is None:
            end = start.replace(year=start.year + 1)
        elif day is None:
            end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        elif hour is None:
            end = start + timedelta(days=1)
        elif second is None:
            end = start + timedelta(minutes=1)
        else:
            end = start + timedelta(seconds=1)
    except (ValueError, OverflowError):
        raise WhereError(f"{value[:40]!r} is not a date that exists", column) from None
    fmt = "%Y-%m-%d %H:%M:%S"
    return start.strftime(fmt), end.strftime(fmt) if end.year <= 9999 else "9999-12-31 23:59:60"


def number(value: str, kind: str, column: int) -> Union[int, float]:
    text = value.strip()
    if kind == "size":
        match = _SIZE.match(text)
        unit = match.group(2).lower() if match else None
        if match is None or unit not in _UNITS:
            raise WhereError(f"{value[:40]!r} is not a size (bytes, or with kB MB GB KiB MiB GiB)", column)
        result = float(match.group(1)) * _UNITS[unit]
        return int(result) if result < MAX_INT else MAX_INT
    if not _NUMBER.match(text):
        raise WhereError(f"{value[:40]!r} is not a number", column)
    if kind == "int":
        parsed = float(text)
        if parsed != int(parsed) if math.isfinite(parsed) else True:
            raise WhereError(f"{value[:40]!r} is not a whole number", column)
        return max(-MAX_INT, min(MAX_INT, int(parsed)))
    parsed = float(text)
    if not math.isfinite(parsed):
        raise WhereError(f"{value[:40]!r} is not a finite number", column)
    return parsed


# -- SQL ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WhereClause:
    """An expression compiled: SQL over ``items`` (true for the items it keeps) and its parameters."""

    sql: str
    params: dict[str, Any]
    text: str


# The columns the catalog indexes for ``--where`` (migrations 0007 and 0008; ``camera`` as ``lower(camera)``),
# with the operators whose items are found through that index.
INDEXED_COLUMNS = {"items.taken": ("=", "<", "<=", ">", ">="), "items.size": ("=", "<", "<=", ">", ">="),
                   "items.lat": ("=", "<", "<=", ">", ">="), "items.lon": ("=", "<", "<=", ">", ">="),
                   "items.width": ("=", "<", "<=", ">", ">="), "items.height": ("=", "<", "<=", ">", ">="),
                   "items.camera": ("=",)}


def indexed_terms(node: Node) -> list[Comparison]:
    """The comparisons found through an index that ``node`` requires (reached through ``and`` alone): each
    could be the index the database walks to find the items ``node`` keeps."""
    if isinstance(node, BoolOp) and node.op == "and":
        return [c for n in node.nodes for c in indexed_terms(n)]
    if isinstance(node, Comparison) and node.op in INDEXED_COLUMNS.get(FIELDS[node.field][0], ()):
        return [node]
    return []


class _Compiler:
    def __init__(self, dialect: str, latest_run: Callable[[], Optional[int]],
                 unindexed: frozenset[Comparison] = frozenset()) -> None:
        self.dialect = dialect
        self.latest_run = latest_run
        self.unindexed = unindexed
        self.params: dict[str, Any] = {}
        self._run: Optional[int] = None

    def param(self, value: Any) -> str:
        name = f"w{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def contains(self, column: str, value: str, fold: bool) -> str:
        p = self.param(value.lower() if fold else value)
        column = f"lower({column})" if fold else column
        function = "strpos" if self.dialect == "postgresql" else "instr"
        return f"{function}({column}, {p}) > 0"

    def node(self, node: Node) -> str:
        if isinstance(node, Not):
            return f"NOT ({self.node(node.node)})"
        if isinstance(node, BoolOp):
            return "(" + f" {node.op.upper()} ".join(self.node(n) for n in node.nodes) + ")"
        if node.op == "!=":
            return f"NOT ({self.node(Comparison(node.field, '=', node.value, node.column, node.value_column))})"
        return self.comparison(node)

    def comparison(self, c: Comparison) -> str:
        column, kind = FIELDS[c.field]
        if c in self.unindexed:
            column = f"+{column}"  # SQLite: this term is checked on the row, never looked up in its index
        if kind == "date":
            start, end = date_span(c.value, c.value_column)
            if c.op == "=":
                bounds = f"{column} >= {self.param(start)} AND {column} < {self.param(end)}"
            else:  # a date is its whole span: "> 2024" starts in 2025, "<= 2024" ends with 2024
                operator, bound = {"<": ("<", start), "<=": ("<", end), ">": (">=", end), ">=": (">=", start)}[c.op]
                bounds = f"{column} {operator} {self.param(bound)}"
            return f"({column} IS NOT NULL AND {bounds})"
        if kind in ("int", "size", "float"):
            value = number(c.value, kind, c.value_column)
            return f"({column} IS NOT NULL AND {column} {c.op} {self.param(value)})"
        if kind == "label":
            run = self.run(c)
            test = f"lower(label) = {self.param(c.value.lower())}" if c.op == "=" else \
                self.contains("label", c.value, fold=True)
            return (f"items.id IN (SELECT item_id FROM classifications WHERE run_id = {self.param(run)} "
                    f"AND rank = 1 AND {test})")
        if kind == "text":
            if c.op == "=":
                return f"({column} IS NOT NULL AND lower({column}) = {self.param(c.value.lower())})"
            return f"({column} IS NOT NULL AND {self.contains(column, c.value, fold=True)})"
        if kind == "path":
            if c.op == "=":
                return f"{column} = {self.param(c.value)}"
            if not any(ch in c.value for ch in "*?["):
                return self.contains(column, c.value, fold=False)
            if self.dialect == "postgresql":
                regex = sqlite_glob_regex(c.value)
                return f"{column} ~ {self.param(regex)}" if regex is not None else "1 = 0"
            return f"{column} GLOB {self.param(c.value)}"
        # caption
        if c.op == "=":
            return f"({column} IS NOT NULL AND {column} = {self.param(c.value)})"
        if not fulltext.words(c.value):
            raise WhereError(f"caption ~ needs a word to look for, not {c.value[:40]!r}", c.value_column)
        sql, params = fulltext.match_condition(self.dialect, c.value, f"w{len(self.params)}", column="caption")
        self.params.update(params)
        return sql

    def run(self, c: Comparison) -> int:
        if self._run is None:
            self._run = self.latest_run()
            if self._run is None:
                raise WhereError("label: no complete classification run yet (run `indexer classify` first)", c.column)
        return self._run


def compile_where(node: Node, text: str, dialect: str, latest_run: Callable[[], Optional[int]],
                  unindexed: frozenset[Comparison] = frozenset()) -> WhereClause:
    """``node`` as SQL for ``dialect``; the comparisons in ``unindexed`` (SQLite) are kept from their index."""
    compiler = _Compiler(dialect, latest_run, unindexed)
    return WhereClause(compiler.node(node), compiler.params, text)


def _char(c: str) -> str:
    return f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF else f"\\U{ord(c):08x}"


def sqlite_glob_regex(pattern: str) -> Optional[str]:
    """The PostgreSQL regular expression (ARE) that matches what SQLite's ``GLOB pattern`` matches, or None
    for a pattern that matches nothing (an unclosed ``[``). As SQLite reads it: ``*``, ``?``, ``[...]``
    with ``^`` to negate, a ``]`` first in a set literal, ``a-z`` ranges (one whose ends are reversed
    matches nothing), ``-`` first or last literal. Every character is written as a ``\\u`` escape, so
    nothing in the pattern is regex syntax."""
    out, i, n = ["^"], 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c != "[":
            out.append(_char(c))
        else:
            invert = i < n and pattern[i] == "^"
            i += invert
            items: list[str] = []
            if i < n and pattern[i] == "]":
                items.append(_char("]"))
                i += 1
            prior: Optional[str] = None
            while i < n and pattern[i] != "]":
                ch = pattern[i]
                if ch == "-" and prior is not None and i + 1 < n and pattern[i + 1] != "]":
                    high = pattern[i + 1]
                    if prior <= high:
                        items.append(f"{_char(prior)}-{_char(high)}")
                    prior = None
                    i += 2
                    continue
                items.append(_char(ch))
                prior = ch
                i += 1
            if i >= n:
                return None  # "[" never closed: SQLite matches nothing
            i += 1  # the closing "]"
            out.append("[" + ("^" if invert else "") + "".join(items) + "]")
    return "".join(out) + "$"


def path_filter_node(path_filter: str) -> Comparison:
    """``--path-filter TEXT`` as the comparison ``path ~ TEXT``."""
    return Comparison("path", "~", path_filter, 1, 1)
