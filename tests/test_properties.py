"""Properties of the codecs and parsers, checked on generated inputs (Hypothesis): the float16 vector
blobs, the query syntax, shard brace ranges, sizes, label files and spreadsheet-safe cells."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest
from hypothesis import assume, example, given, settings, strategies as st

from indexer.config import parse_size
from indexer.errors import QueryError
from indexer.media.sources import expand_braces
from indexer.query.labels import SPLIT_NAMES, read_class_list, read_label_csv, read_labels
from indexer.query.output import spreadsheet_safe
from indexer.query.search import parse_query
from indexer.store.codec import blobs_to_matrix, vector_to_blob

FEW = settings(max_examples=60, deadline=None)
SOME = settings(max_examples=100, deadline=None)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """One folder for the files of every example (Hypothesis reruns a test; tmp_path would be shared)."""
    return tmp_path_factory.mktemp("properties")


# -- vector blobs --------------------------------------------------------------------------------------

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def unit_matrices(draw):
    dim = draw(st.integers(1, 96))
    rows = draw(st.lists(st.lists(finite, min_size=dim, max_size=dim).filter(lambda v: any(v)),
                         min_size=1, max_size=5))
    matrix = np.array(rows, dtype=np.float64)
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


@FEW
@given(unit_matrices())
def test_vector_blobs_round_trip_to_unit_rows_close_to_the_original(matrix):
    n, dim = matrix.shape
    blobs = [vector_to_blob(row) for row in matrix]
    assert all(len(blob) == 2 * dim for blob in blobs)  # float16: two bytes a component
    back = blobs_to_matrix(blobs, dim)
    assert back.shape == (n, dim) and back.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(back, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(back * matrix, axis=1) >= 0.999)  # cosine to the original


@FEW
@given(st.integers(1, 4096))
def test_no_blobs_give_an_empty_matrix_of_the_dimension(dim):
    empty = blobs_to_matrix([], dim)
    assert empty.shape == (0, dim) and empty.dtype == np.float32


# -- query syntax --------------------------------------------------------------------------------------

# Words of letters, digits and a little punctuation; a word that is a lone sign would be a separator.
word = st.text(st.characters(categories=("L", "N"), include_characters="'&+-_.!"), min_size=1, max_size=8) \
    .filter(lambda w: w not in ("+", "-"))
term_text = st.lists(word, min_size=1, max_size=4).map(" ".join)
weight_text = st.builds(lambda minus, whole, frac: f"{minus}{whole}{frac}",
                        st.sampled_from(["", "-"]), st.integers(0, 99).map(str),
                        st.sampled_from(["", ".5", ".25", ".0", ".75"]))
space = st.sampled_from([" ", "  ", "\t"])


@st.composite
def queries(draw):
    """A query string and the (text, weight) terms it means."""
    count = draw(st.integers(1, 5))
    query, expected = "", []
    for position in range(count):
        text = draw(term_text)
        weight = draw(st.none() | weight_text)
        written = text if weight is None else f"{weight}{draw(st.sampled_from(['', ' ']))}:{text}"
        value = 1.0 if weight is None else float(weight)
        if position == 0:
            query = written
        else:
            sign = draw(st.sampled_from("+-"))
            query += f"{draw(space)}{sign}{draw(space)}{written}"
            value = -value if sign == "-" else value
        expected.append((text, value))
    return draw(st.sampled_from(["", " "])) + query + draw(st.sampled_from(["", " ", "\n"])), expected


@SOME
@given(queries())
def test_a_query_parses_back_to_its_texts_and_signed_weights(case):
    query, expected = case
    terms = parse_query(query)
    assert [(t.text, t.weight) for t in terms] == expected
    assert all(t.image is None for t in terms)


@FEW
@given(st.lists(term_text, min_size=1, max_size=4), st.sampled_from(["start", "end"]), st.sampled_from("+-"))
def test_an_empty_term_at_either_end_is_refused(texts, where, sign):
    joined = f" {sign} ".join(texts)
    query = f"{sign} {joined}" if where == "start" else f"{joined} {sign} "
    with pytest.raises(QueryError, match="empty term"):
        parse_query(query)


@FEW
@given(st.lists(term_text, min_size=2, max_size=4), st.sampled_from("+-"), st.sampled_from("+-"))
def test_an_empty_term_between_two_signs_is_refused(texts, first, second):
    query = f" {first} ".join(texts[:1]) + f" {first} " + f" {second} " + f" {second} ".join(texts[1:])
    with pytest.raises(QueryError, match="empty term"):
        parse_query(query)


# -- shard brace ranges --------------------------------------------------------------------------------

plain = st.text(st.characters(codec="utf-8", exclude_characters="{}"), max_size=10)


@SOME
@given(plain, st.integers(0, 150), st.integers(1, 4), st.integers(0, 160), plain)
def test_a_brace_range_gives_each_number_in_order_with_its_padding(prefix, first, width, last, suffix):
    start = str(first).zfill(width)
    names = expand_braces(f"{prefix}{{{start}..{last}}}{suffix}")
    assert len(names) == max(0, last - first + 1)
    pad = len(start) if start.startswith("0") else 0
    assert names == [f"{prefix}{str(n).zfill(pad)}{suffix}" for n in range(first, last + 1)]
    if pad:
        assert all(len(name) == len(prefix) + max(pad, len(str(n))) + len(suffix)
                   for n, name in zip(range(first, last + 1), names))


@FEW
@given(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.integers(0, 5))
def test_two_brace_ranges_give_every_pair_first_range_outermost(a, b, c, d):
    names = expand_braces(f"s{{{a}..{b}}}-{{{c}..{d}}}.tar")
    assert names == [f"s{i}-{j}.tar" for i in range(a, b + 1) for j in range(c, d + 1)]


@SOME
@given(st.text())
def test_a_name_without_a_brace_range_is_itself(pattern):
    assume(re.search(r"\{\d+\.\.\d+\}", pattern) is None)
    assert expand_braces(pattern) == [pattern]


# -- sizes ---------------------------------------------------------------------------------------------

POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def varied_case(draw, text: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c for c in text)


@st.composite
def sizes(draw):
    """A size as a person would write it, and its value in bytes."""
    n = draw(st.integers(0, 10**6))
    unit = draw(st.sampled_from(sorted(POWERS)))
    suffix = draw(st.sampled_from(["", "b"] if unit == "" else ["", "b", "ib"]))
    text = (draw(st.sampled_from(["", " ", "  "])) + str(n) + draw(st.sampled_from(["", " "]))
            + varied_case(draw, unit + suffix) + draw(st.sampled_from(["", " ", "\t"])))
    return text, n * 1024 ** POWERS[unit]


@SOME
@given(sizes())
@example(("512MB", 512 << 20))
@example(("4G", 4 << 30))
@example(("0", 0))
def test_a_size_is_its_number_times_its_unit(case):
    text, value = case
    assert parse_size(text) == value


@FEW
@given(st.integers(0, 10**4), st.sampled_from([".5", ".25", ".125", ".0"]), st.sampled_from("kmgtKMGT"),
       st.sampled_from(["", "b", "iB", "B"]))
def test_a_fractional_size_counts_the_fraction(whole, fraction, unit, suffix):
    exact = (whole + float(fraction)) * 1024 ** POWERS[unit.lower()]
    assert parse_size(f"{whole}{fraction}{unit}{suffix}") == int(exact)


garbage_sizes = st.one_of(
    st.text(st.characters(categories=("L", "P", "S", "Z"))),  # no digit at all
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 999),  # a unit that is none
              st.text(st.characters(categories=("L",), exclude_characters="kmgtibKMGTIB\u212a\u0130\u0131"),
                      min_size=1, max_size=3)),
    st.builds(lambda n: f"-{n}", st.integers(0, 999)),  # negative
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)),
    st.builds(lambda unit, n: f"{unit}{n}", st.sampled_from(["k", "MB", "GiB"]), st.integers(0, 999)),  # unit first
    st.builds(lambda n, unit: f"{n}{unit}", st.integers(0, 999), st.sampled_from(["kk", "mbb", "gibb", "bk", "tbi"])),
)


@SOME
@given(garbage_sizes)
@example("")
@example("  ")
@example("1e9")
@example("0x10")
def test_garbage_is_not_a_size(text):
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


def test_a_number_too_big_for_a_float_is_not_a_size():
    with pytest.raises(ValueError):
        parse_size("9" * 400)


@pytest.mark.parametrize("text", ["5i", "5ib", "4bi", "4 g b i"])
def test_an_i_without_a_unit_before_it_is_not_a_size(text):
    with pytest.raises(ValueError):
        parse_size(text)


# -- label files ---------------------------------------------------------------------------------------

# One line of text: no line breaks of any kind (str.splitlines knows eight), no BOM character.
line_chars = st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters="\ufeff")
label = st.text(line_chars, min_size=1, max_size=12).filter(lambda s: s.strip() and not s.strip().startswith("#"))
BOM = "\ufeff"


def write(path, text: str, bom: bool, newline: str) -> None:
    """``text`` (lines joined by "\\n") as UTF-8 with the given line ending and optional byte-order mark."""
    path.write_bytes(((BOM if bom else "") + text.replace("\n", newline)).encode("utf-8"))


@SOME
@given(st.lists(label, min_size=1, max_size=8), st.lists(label.filter(lambda s: "," not in s), max_size=4),
       st.booleans(), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_a_labels_file_gives_back_its_labels_stripped_and_once(scratch, lines, inline, bom, newline, trailing):
    path = scratch / "labels.txt"
    write(path, "\n".join(lines) + ("\n" if trailing else ""), bom, newline)
    expected = list(dict.fromkeys(s.strip() for s in inline + lines))
    assume(len(expected) >= 2)
    got = read_labels(",".join(inline) or None, path)
    assert got == expected
    assert not got[0].startswith(BOM)


@SOME
@given(st.lists(label, min_size=1, max_size=8), st.booleans(), st.sampled_from(["\n", "\r\n"]))
def test_a_class_list_gives_back_its_names_stripped_and_once(scratch, lines, bom, newline):
    path = scratch / "classes.txt"
    write(path, "\n".join(lines) + "\n", bom, newline)
    assert read_class_list(path) == list(dict.fromkeys(s.strip() for s in lines))


split_name = st.sampled_from(["", "train", "val", "valid", "validation", "test", "Train", "holdout"])


@SOME
@given(st.lists(st.tuples(label, label, split_name), min_size=1, max_size=6), st.booleans(), st.booleans(),
       st.sampled_from(["\n", "\r\n"]))
def test_a_label_csv_gives_back_its_rows(scratch, rows, header, bom, newline):
    first = [cell.strip().lower() for cell in rows[0]]
    assume(not ("path" in first and "label" in first))  # a first row naming the columns is a header
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=newline)  # quotes the cells holding commas or quotes
    if header:
        writer.writerow(["path", "label", "split"])
    writer.writerows(rows)
    path = scratch / "labels.csv"
    path.write_bytes(((BOM if bom else "") + out.getvalue()).encode("utf-8"))
    got = list(read_label_csv(path))
    expected = [(p.strip(), l.strip(), SPLIT_NAMES.get(s.lower(), s) or None) for p, l, s in rows]
    assert [row[1:] for row in got] == expected
    assert [row[0] for row in got] == list(range(1 + header, 1 + header + len(rows)))  # line numbers
    assert not got[0][1].startswith(BOM)


@FEW
@given(st.binary(max_size=40), st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xe9t\xe9"]),
       st.binary(max_size=40))
def test_a_file_that_is_not_utf8_is_a_query_error(scratch, before, bad, after):
    data = before + bad + after
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8-sig")
    path = scratch / "latin.txt"
    path.write_bytes(data)
    for read in (lambda: read_labels("a,b", path), lambda: list(read_label_csv(path)), lambda: read_class_list(path)):
        with pytest.raises(QueryError, match="not UTF-8"):
            read()


# -- spreadsheet cells ---------------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP's list: the four signs, tab and carriage return


@SOME
@given(st.sampled_from(FORMULA_STARTS), st.text())
def test_a_cell_a_spreadsheet_would_run_gets_a_leading_quote(start, rest):
    value = start + rest
    assert spreadsheet_safe(value) == "'" + value


@SOME
@given(st.text().filter(lambda s: not s.startswith(FORMULA_STARTS)))
def test_any_other_cell_is_unchanged(value):
    assert spreadsheet_safe(value) == value


@FEW
@given(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.none()))
def test_no_safe_cell_starts_like_a_formula(value):
    safe = spreadsheet_safe(value)
    if isinstance(value, str):
        assert not safe.startswith(FORMULA_STARTS)
    else:
        assert safe == value  # numbers and empties are left to the writer
