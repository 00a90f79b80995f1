"""Where predictions go: a CSV or JSON Lines file (chosen by extension, appearing complete or not at all),
or a stream on standard output (a JSON array written element by element, or tab-separated lines).

Every sink takes predictions chunk by chunk, so a classification of millions of items never holds them
all. Cells written to CSV are made safe for spreadsheets: one that starts with ``=``, ``+``, ``-`` or
``@`` would run as a formula when the file is opened, so it is prefixed with a quote.
"""

from __future__ import annotations

import csv
import json
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any, Iterable, Optional, Protocol, Sequence

from ..errors import QueryError
from ..store.files import atomic_open

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """``value`` as a CSV cell that a spreadsheet shows as text, never runs (OWASP's advice)."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise QueryError(f"{path}: use a .csv or .jsonl file name", param="output")
    return fmt


class PredictionSink(Protocol):
    def write(self, predictions: Iterable[Any]) -> None: ...


class PredictionWriter:
    """Streams predictions to ``path``: CSV ``path,label,score,label_2,score_2,...`` or one JSON object
    per line. Use as a context manager; the file appears complete or not at all."""

    def __init__(self, path: Path, top_k: int) -> None:
        self.path = Path(path)
        self.format = output_format(self.path)
        self.top_k = top_k
        self._stack = ExitStack()
        self.file: Optional[IO[str]] = None
        self.csv: Any = None

    def __enter__(self) -> "PredictionWriter":
        self.file = self._stack.enter_context(atomic_open(self.path, newline=""))
        if self.format == "csv":
            self.csv = csv.writer(self.file)
            header = ["path", "label", "score"]
            for rank in range(2, self.top_k + 1):
                header += [f"label_{rank}", f"score_{rank}"]
            self.csv.writerow(header)
        return self

    def write(self, predictions: Iterable[Any]) -> None:
        assert self.file is not None
        for p in predictions:
            if self.format == "csv":
                row: list[Any] = [spreadsheet_safe(p.path)]
                for label, score, _ in p.labels:
                    row += [spreadsheet_safe(label), f"{score:.6f}"]
                self.csv.writerow(row)
            else:
                self.file.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)


class JsonArrayStream:
    """Predictions as one JSON array on ``out``, element by element: valid JSON once ``close`` is called."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.count = 0

    def write(self, predictions: Iterable[Any]) -> None:
        for p in predictions:
            self.out.write(("[\n" if self.count == 0 else ",\n") + json.dumps(p.to_dict(), ensure_ascii=False))
            self.count += 1

    def close(self) -> None:
        self.out.write("[]\n" if self.count == 0 else "\n]\n")


class TsvStream:
    """One ``path<TAB>label<TAB>score`` line per prediction (path and label with control characters escaped)."""

    def __init__(self, out: IO[str], escape: Any = str) -> None:
        self.out, self.escape = out, escape

    def write(self, predictions: Iterable[Any]) -> None:
        for p in predictions:
            self.out.write(f"{self.escape(p.path)}\t{self.escape(p.labels[0][0])}\t{p.labels[0][1]:.4f}\n")


class Fanout:
    """Passes each chunk of predictions to every sink."""

    def __init__(self, sinks: Sequence[PredictionSink]) -> None:
        self.sinks = list(sinks)

    def __call__(self, predictions: list) -> None:
        for sink in self.sinks:
            sink.write(predictions)
