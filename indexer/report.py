"""Writing results to files: CSV or JSON Lines chosen by extension, written under a temporary name
and renamed into place when complete, so a half-written file never poses as a result."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import IO, Any, Iterable, Optional

from .errors import QueryError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def output_format(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise QueryError(f"--output {path}: use a .csv or .jsonl file name")
    return fmt


class PredictionWriter:
    """Streams classification predictions to ``path``: CSV ``path,label,score,label_2,score_2,...``
    or one JSON object per line. Use as a context manager; the file appears complete or not at all."""

    def __init__(self, path: Path, top_k: int) -> None:
        self.path = Path(path)
        self.format = output_format(self.path)
        self.top_k = top_k
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.file: Optional[IO[str]] = None
        self.csv: Any = None

    def __enter__(self) -> "PredictionWriter":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = self.tmp.open("w", encoding="utf-8", newline="")
        except OSError as exc:
            raise QueryError(f"cannot write {self.path}: {exc.strerror}") from None
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
                row: list[Any] = [p.path]
                for label, score, _ in p.labels:
                    row += [label, f"{score:.6f}"]
                self.csv.writerow(row)
            else:
                self.file.write(json.dumps(p.to_dict(), ensure_ascii=False) + "\n")

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        assert self.file is not None
        if exc_type is None:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        else:
            self.file.close()
            self.tmp.unlink(missing_ok=True)
