"""Ingests the hostile-input corpus (``tests/hostile_corpus.py``) and prints what became of each file.

    python scripts/hostile_report.py [--keep DIR]

Two passes over a corpus written to a temporary folder:

1. decode only (no torch imported yet): every item the scan finds is read and decoded as the
   ingest workers do it (pixel limit, time limit, long-strip crop), timing each file; the peak RSS
   after this pass shows that no hostile file made the decoder allocate much;
2. a real ingest with the bundled model, then the catalog is read back.

Prints a markdown table per file (category | file | expected | outcome | OK?), one per category, and
the figures (peak RSS, slowest decode, ingest time). Exits 1 if any file's outcome is not the
expected one.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.hostile_corpus

from indexer.media.decode import (DEFAULT_DECODE_SECONDS, DEFAULT_MAX_PIXELS, decode_image, limit_aspect,  # noqa: E402
                            time_limit)
from indexer.errors import DecodeError  # noqa: E402
from indexer.sources import SourceEntry, read_bytes, scan, storable_path  # noqa: E402
from tests.hostile_corpus import Case, write_hostile_corpus  # noqa: E402


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory so far, in MB (``ru_maxrss`` is in KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def decode_pass(root: Path) -> dict[str, float]:
    """Decodes every file the scan yields, as an ingest worker would; milliseconds per uri."""
    timings = {}
    for entry in scan([root]):
        if not isinstance(entry, SourceEntry) or entry.problem:
            continue
        started = time.perf_counter()
        try:
            data = read_bytes(entry.uri, entry.raw_path)
            with time_limit(DEFAULT_DECODE_SECONDS):
                limit_aspect(decode_image(data, 224, DEFAULT_MAX_PIXELS).image)
        except DecodeError:
            pass  # the outcome that counts is the catalog's, read after the ingest
        timings[entry.uri] = (time.perf_counter() - started) * 1000
    return timings


def short(path: str, width: int = 44) -> str:
    """``path`` for a table cell: non-UTF-8 bytes spelled out as \\xNN, a long name cut in the middle."""
    text = storable_path(path)[0]
    if len(text) <= width:
        return text
    name_bytes = len(os.path.basename(path).encode("utf-8", "surrogateescape"))
    return f"{text[:20]}…{text[-(width - 21):]} (name: {name_bytes} bytes)"


def expected_text(case: Case) -> str:
    return f"failed ({case.reason})" if case.expected == "failed" else case.expected


def outcome_of(case: Case, root: Path, rows: dict[str, tuple]) -> tuple[str, bool]:
    """The catalog's outcome for ``case`` as text, and whether it is the expected one."""
    if case.path is None:
        return "not generated", True
    uri = storable_path(str(root / case.path))[0]
    if case.expected == "skipped":
        found = [u for u in rows if u == uri or u.startswith(uri + "/")]
        return ("skipped (no item)", True) if not found else (f"{len(found)} item(s)", False)
    row = rows.get(uri)
    if row is None:
        return "no item", False
    state, reason = row
    text = f"{state} ({reason})" if reason else state
    return text, (state, reason) == (case.expected, case.reason)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, help="write the corpus and index here and keep them "
                        "(default: a temporary folder, removed at the end)")
    args = parser.parse_args(argv)
    base = args.keep or Path(tempfile.mkdtemp(prefix="hostile-"))
    cases = write_hostile_corpus(base / "corpus")
    root = (base / "corpus").resolve()

    timings = decode_pass(root)
    decode_peak = peak_rss_mb()

    from indexer import open_index  # imports torch only now, after the decode-only figure

    started = time.perf_counter()
    with open_index(base / "index", model="tiny-shapes") as index:
        index.context.model.embedder()  # load the model first, to tell its memory from the ingest's
        model_peak = peak_rss_mb()
        summary = index.ingest([root], warn=lambda message: None)
    ingest_seconds = time.perf_counter() - started
    conn = sqlite3.connect(base / "index" / "catalog.sqlite")
    rows = {uri: (state, reason) for uri, state, reason in conn.execute(
        "SELECT uri, state, failure_reason FROM items")}
    conn.close()

    print("| category | file | expected | outcome (state + reason) | decode ms | OK? | note |")
    print("| --- | --- | --- | --- | ---: | --- | --- |")
    by_category: dict[str, list[tuple[Case, str, bool]]] = defaultdict(list)
    for case in cases:
        outcome, ok = outcome_of(case, root, rows)
        by_category[case.category].append((case, outcome, ok))
        uri = storable_path(str(root / case.path))[0] if case.path else None
        ms = f"{timings[uri]:.1f}" if uri in timings else "–"
        name = short(case.path) if case.path else "–"
        print(f"| {case.category} | {name} | {expected_text(case)} | {outcome} | {ms} | {'yes' if ok else 'NO'} "
              f"| {case.note} |")

    print("\n| category | files | outcomes | all as expected? |")
    print("| --- | ---: | --- | --- |")
    for category, results in by_category.items():
        counts: dict[str, int] = defaultdict(int)
        for _, outcome, _ in results:
            counts[outcome] += 1
        outcomes = ", ".join(f"{n} {o}" for o, n in counts.items())
        print(f"| {category} | {len(results)} | {outcomes} | {'yes' if all(ok for *_, ok in results) else 'NO'} |")

    wrong = sum(1 for results in by_category.values() for *_, ok in results if not ok)
    slowest = max(timings, key=timings.get)
    print(f"\nfiles: {len(cases)} cases; summary: embedded {summary.embedded}, reused {summary.reused}, "
          f"failed {summary.failed} {dict(sorted(summary.failed_by_reason.items()))}; not as expected: {wrong}")
    print(f"decode-only pass: peak RSS {decode_peak:.0f} MB (torch not yet imported); slowest decode "
          f"{timings[slowest]:.0f} ms ({short(slowest[len(str(root)) + 1:])}); "
          f"limits {DEFAULT_MAX_PIXELS / 1e6:.0f} MP, {DEFAULT_DECODE_SECONDS:g} s")
    print(f"ingest with tiny-shapes: {ingest_seconds:.1f} s (model load included); peak RSS of this process "
          f"{model_peak:.0f} MB once the model was loaded, {peak_rss_mb():.0f} MB after the ingest; largest "
          f"finished child process (decode worker, or the helper torch starts on import) "
          f"{peak_rss_mb(resource.RUSAGE_CHILDREN):.0f} MB")
    if args.keep is None:
        shutil.rmtree(base)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
