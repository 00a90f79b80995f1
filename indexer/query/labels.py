"""Labels as users write them: label sets, class-folder names, ``path,label`` CSV files, name mappings and
lists of unseen classes. One reader for each, shared by classify, eval and audit.

Every text file is read as UTF-8 with or without a byte-order mark, with any line ending; a file that
is not UTF-8, or not of the expected shape, is a ``QueryError`` naming the file and the fix.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Iterator, Optional, Union

from ..errors import QueryError

# Folder names that give a split rather than a class (ImageFolder layouts: train/red_star/x.jpg).
SPLIT_NAMES: dict[str, str] = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def read_text(path: Union[str, Path], what: str) -> str:
    """The text of a user's file, UTF-8 (a BOM is dropped), or a ``QueryError`` saying what is wrong."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise QueryError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise QueryError(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def read_lines(path: Union[str, Path], what: str) -> list[str]:
    """Stripped non-blank lines of a user's file, ``#`` comments left out."""
    return [line.strip() for line in read_text(path, what).splitlines()
            if line.strip() and not line.strip().startswith("#")]


def label_from_folder_name(name: str, mapping: Optional[dict[str, str]] = None) -> str:
    """A class folder's label: the mapping's name for it, else the folder name with ``_`` as spaces."""
    if mapping and name in mapping:
        return mapping[name]
    return name.replace("_", " ").strip()


def read_labels(inline: Optional[str] = None, labels_file: Optional[Union[str, Path]] = None) -> list[str]:
    """A label set from ``"cat,dog"`` and/or a file of one label per line (blank and ``#`` lines skipped)."""
    labels: list[str] = []
    if inline:
        labels += [part.strip() for part in inline.split(",")]
    if labels_file:
        labels += read_lines(labels_file, "labels file")
    unique = list(dict.fromkeys(label for label in labels if label))
    if len(unique) < 2:
        raise QueryError("give at least two distinct labels", param="labels")
    return unique


def read_class_list(path: Union[str, Path], what: str = "class list") -> list[str]:
    """Class names, one per line (``--unseen``, ``--classes``)."""
    names = list(dict.fromkeys(read_lines(path, what)))
    if not names:
        raise QueryError(f"{what} {path} names no class")
    return names


def read_mapping(path: Union[str, Path]) -> dict[str, str]:
    """A class-name mapping: JSON ``{"folder": "class name"}`` or CSV lines ``folder,class name``."""
    text = read_text(path, "mapping file")
    if Path(path).suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise QueryError(f"mapping file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise QueryError(f'mapping file {path} must hold one JSON object {{"folder": "class name", ...}}')
        return {str(k): str(v) for k, v in data.items()}
    try:
        return {row[0].strip(): row[1].strip() for row in csv.reader(io.StringIO(text)) if len(row) >= 2}
    except csv.Error as exc:
        raise QueryError(f"mapping file {path} is not valid CSV: {exc}") from None


def read_label_csv(path: Union[str, Path]) -> Iterator[tuple[int, str, str, Optional[str]]]:
    """(line number, path, label, split) rows of a ``path,label[,split]`` CSV; a header row naming the
    columns is optional (and may order them otherwise); blank and ``#`` lines are skipped."""
    reader = csv.reader(io.StringIO(read_text(path, "labels file"), newline=""))
    columns = {"path": 0, "label": 1, "split": 2}
    try:
        for number, row in enumerate(reader, start=1):
            cells = [c.strip() for c in row]
            if not any(cells) or cells[0].startswith("#"):
                continue
            lowered = [c.lower() for c in cells]
            if number == 1 and "path" in lowered and "label" in lowered:
                columns = {name: lowered.index(name) for name in ("path", "label", "split") if name in lowered}
                continue
            if len(cells) <= max(columns["path"], columns["label"]):
                raise QueryError(f"{path}:{number}: expected 'path,label' (or 'path,label,split'), got {row!r}")
            item_path, label = cells[columns["path"]], cells[columns["label"]]
            split_column = columns.get("split")
            split = cells[split_column] if split_column is not None and split_column < len(cells) else ""
            if not item_path or not label:
                raise QueryError(f"{path}:{number}: empty path or label")
            yield number, item_path, label, (SPLIT_NAMES.get(split.lower(), split) or None)
    except csv.Error as exc:
        raise QueryError(f"labels file {path} is not valid CSV: {exc}") from None
