"""Seeded fuzzing of ingestion: random trees of pictures and archives (tar, tar.gz, zip, archives inside
archives, duplicate and odd names), randomly corrupted (truncated, bytes flipped, wrong extensions,
encrypted or unsupported zip members, oversized members). After every run: no exception, every item
the scan found is embedded or failed with a reason (none left pending), the catalog passes SQLite's
integrity check, and a second run changes nothing.

Size: TREES trees of up to ~30 files each, two runs per tree (see the constants); every third tree is
also ingested on a local Ray cluster (the other strategy of phase 2, through the same reader)."""

from __future__ import annotations

import io
import random
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from indexer import open_index
from indexer.config import Settings
from indexer.media.archives import reads_as_member
from indexer.media.entries import is_image_name, storable_path
from indexer.synthetic import render

from .conftest import catalog_rows, strategy_options

TREES = 12
LIMIT = 64 << 10  # a small --max-file-size, so that oversized members are cheap to make
NAMES = ["a.png", "a.jpg", "b c.jpg", "ü€.png", "#1?.jpg", "%20.png", "dup.png", "x.tar::y.png", "-=cmd.png",
         "line\nbreak.png", "..png", "deep/er/c.jpg", "DUP.PNG", "z.jpeg", "n.webp"]


def picture(rng: random.Random) -> bytes:
    image = render(np.random.default_rng(rng.randrange(1 << 30)), rng.choice(["red", "blue", "green"]),
                   rng.choice(["star", "circle", "square"]), size=48)[0]
    buffer = io.BytesIO()
    image.save(buffer, rng.choice(["PNG", "JPEG", "WEBP"]))
    return buffer.getvalue()


def corrupt(rng: random.Random, data: bytes) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:
        return data[:rng.randrange(len(data))]  # truncated
    if kind == 1:
        flipped = bytearray(data)
        for _ in range(rng.randrange(1, 20)):
            flipped[rng.randrange(len(flipped))] ^= 0xFF
        return bytes(flipped)
    if kind == 2:
        return b""
    if kind == 3:
        return rng.randbytes(rng.randrange(1, 2000))
    if kind == 4:
        return b"\0" * (LIMIT + rng.randrange(1, 1000))  # too large
    return data


def members(rng: random.Random, depth: int) -> list[tuple[str, bytes]]:
    out = []
    for _ in range(rng.randrange(1, 7)):
        data = picture(rng)
        if rng.random() < 0.3:
            data = corrupt(rng, data)
        out.append((rng.choice(NAMES), data))
    if depth < 2 and rng.random() < 0.3:
        out.append(("inner.tar", archive(rng, "tar", depth + 1)))  # an archive inside an archive: not read
    return out


def archive(rng: random.Random, kind: str, depth: int = 0) -> bytes:
    buffer = io.BytesIO()
    content = members(rng, depth)
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w", rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])) as zf:
            for name, data in content:
                zf.writestr(name.replace("\n", "_"), data)
        raw = bytearray(buffer.getvalue())
        if rng.random() < 0.3:  # mark a member encrypted, or compressed with a method Python lacks
            at = raw.find(b"PK\x01\x02")
            if at >= 0:
                field, value = rng.choice([(8, 1), (10, 99), (10, 9)])
                raw[at + field:at + field + 2] = value.to_bytes(2, "little")
        return bytes(raw)
    mode = "w:gz" if kind == "tar.gz" else "w"
    with tarfile.open(fileobj=buffer, mode=mode) as tf:
        for name, data in content:
            if rng.random() < 0.1:
                link = tarfile.TarInfo(name)
                link.type, link.linkname = tarfile.SYMTYPE, "missing"
                tf.addfile(link)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_tree(rng: random.Random, root: Path) -> None:
    for i in range(rng.randrange(5, 12)):
        folder = root / rng.choice(["", "sub", "sub/deeper", "odd #?%", "ünï"])
        folder.mkdir(parents=True, exist_ok=True)
        roll = rng.random()
        if roll < 0.45:
            data = picture(rng)
            if rng.random() < 0.4:
                data = corrupt(rng, data)
            name = f"{i}-{rng.choice(NAMES).replace('/', '_')}"
        else:
            kind = rng.choice(["tar", "tar.gz", "zip"])
            data = archive(rng, kind)
            if rng.random() < 0.25:
                data = corrupt(rng, data)
            name = f"{i}-shard.{kind}"
        if rng.random() < 0.1:  # a wrong extension: a picture named as an archive or the other way round
            name = name.rsplit(".", 1)[0] + rng.choice([".zip", ".tar", ".png"])
        (folder / name).write_bytes(data)


@pytest.mark.filterwarnings("ignore:Duplicate name")  # zips with a name twice, on purpose
@pytest.mark.parametrize("seed, strategy", [(seed, "local") for seed in range(TREES)]
                         + [(seed, "ray") for seed in range(0, TREES, 3)])
def test_random_trees_never_stop_or_poison_an_index(tmp_path, seed, strategy, request):
    options = strategy_options(request, strategy)
    rng = random.Random(seed)
    root = tmp_path / "tree"
    root.mkdir()
    build_tree(rng, root)
    index_dir = tmp_path / "index"
    settings = Settings(max_file_size=LIMIT, workers=rng.choice([0, 1]), decode_seconds=10)
    with open_index(index_dir, model="tiny-shapes", settings=settings) as index:
        first = index.ingest([root], warn=lambda message: None, **options)
    rows = catalog_rows(index_dir, "SELECT state, failure_reason FROM items")
    uris = {uri for (uri,) in catalog_rows(index_dir, "SELECT uri FROM items")}
    for path in root.rglob("*"):  # every plain picture file is an item (a name like ARCHIVE::MEMBER is refused)
        if path.is_file() and is_image_name(path.name) and not reads_as_member(str(path)):
            assert storable_path(str(path))[0] in uris, path
    assert all(state in ("embedded", "failed") for state, _ in rows), rows
    assert all(reason for state, reason in rows if state == "failed")
    assert first.embedded + first.reused + first.failed >= sum(state != "deleted" for state, _ in rows) - first.unchanged
    assert catalog_rows(index_dir, "PRAGMA integrity_check") == [("ok",)]
    snapshot = catalog_rows(index_dir, "SELECT uri, state, failure_reason, embedding_id FROM items ORDER BY uri")
    with open_index(index_dir, settings=settings) as index:
        second = index.ingest([root], warn=lambda message: None, **options)
    assert (second.embedded, second.reused, second.deleted) == (0, 0, 0)
    assert catalog_rows(index_dir, "SELECT uri, state, failure_reason, embedding_id FROM items ORDER BY uri") == snapshot
    assert catalog_rows(index_dir, "PRAGMA integrity_check") == [("ok",)]
