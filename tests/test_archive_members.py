"""Bad archive members and bombs: each becomes one failed item with a reason, the others are embedded,
and no member, once failed, blocks a later ingest of anything; here and on a local Ray cluster alike."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from indexer import open_index
from indexer.config import Settings
from indexer.errors import DecodeError
from indexer.media.archives import iter_archive_contents
from indexer.media.sources import read_bytes
from indexer.synthetic import render

from .conftest import catalog_rows

LIMIT = 1 << 20  # 1 MiB for the tests; the default is 256 MiB


def picture(seed: int) -> bytes:
    buffer = io.BytesIO()
    render(np.random.default_rng(seed), "red", "star", size=64)[0].save(buffer, "PNG")
    return buffer.getvalue()


def add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def patch_zip_member(path: Path, name: str, flags: int | None = None, method: int | None = None) -> None:
    """Sets the general-purpose flags and/or the compression method of ``name`` in both its local and
    central headers, as an encrypting or Deflate64 / AES archiver would have written them."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    for signature, flag_at, method_at, name_at in ((b"PK\x03\x04", 6, 8, 30), (b"PK\x01\x02", 8, 10, 46)):
        start = 0
        while (at := data.find(signature, start)) >= 0:
            if data[at + name_at:at + name_at + len(encoded)] == encoded:
                if flags is not None:
                    data[at + flag_at:at + flag_at + 2] = flags.to_bytes(2, "little")
                if method is not None:
                    data[at + method_at:at + method_at + 2] = method.to_bytes(2, "little")
            start = at + 4
    path.write_bytes(bytes(data))


def ingest(index: Path, *sources: Path, max_file_size: int = LIMIT, workers: int = 1,
           strategy: Optional[dict] = None):
    """``sources`` ingested into ``index`` with the bundled model, by ``strategy`` (the ``strategy``
    fixture's options; None: here)."""
    settings = Settings(max_file_size=max_file_size, workers=workers)
    with open_index(index, model="tiny-shapes", settings=settings) as opened:
        return opened.ingest(list(sources), **(strategy or {}))


def states(index: Path) -> dict[str, tuple[str, str | None]]:
    return {uri.rsplit("::", 1)[-1]: (state, reason)
            for uri, state, reason in catalog_rows(index, "SELECT uri, state, failure_reason FROM items")}


@pytest.fixture
def bad_zip(tmp_path) -> Path:
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for seed, name in enumerate(("good1.png", "encrypted.png", "aes.png", "deflate64.png", "good2.png")):
            zf.writestr(name, picture(seed))
        zf.writestr("zeros.png", b"\0" * (3 * LIMIT))  # 3 MiB of zeros in a few kilobytes
    patch_zip_member(path, "encrypted.png", flags=0x1)
    patch_zip_member(path, "aes.png", method=99)
    patch_zip_member(path, "deflate64.png", method=9)
    return path


def test_bad_zip_members_fail_with_their_reason_and_the_others_are_embedded(tmp_path, bad_zip, strategy):
    summary = ingest(tmp_path / "index", bad_zip, strategy=strategy)
    assert states(tmp_path / "index") == {
        "good1.png": ("embedded", None), "good2.png": ("embedded", None),
        "encrypted.png": ("failed", "encrypted"), "aes.png": ("failed", "unsupported_compression"),
        "deflate64.png": ("failed", "unsupported_compression"), "zeros.png": ("failed", "too_large")}
    assert (summary.embedded, summary.failed) == (2, 4)


def test_a_symlink_before_a_file_of_the_same_name_in_a_tar(tmp_path, strategy):
    shard = tmp_path / "links.tar"
    with tarfile.open(shard, "w") as tf:
        for name, target in (("a.png", "missing"), ("b.png", "a.png"), ("c.png", "/etc/passwd")):
            link = tarfile.TarInfo(name)
            link.type, link.linkname = tarfile.SYMTYPE, target
            tf.addfile(link)
        hard = tarfile.TarInfo("d.png")
        hard.type, hard.linkname = tarfile.LNKTYPE, "nowhere.png"
        tf.addfile(hard)
        add_bytes(tf, "a.png", picture(1))
    summary = ingest(tmp_path / "index", shard, strategy=strategy)
    # Links are not pictures: only the regular a.png is an item, read from its own bytes.
    assert states(tmp_path / "index") == {"a.png": ("embedded", None)}
    assert summary.embedded == 1


def test_a_failed_member_never_blocks_later_ingests(tmp_path, bad_zip, strategy):
    index = tmp_path / "index"
    ingest(index, bad_zip, strategy=strategy)
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "x.png").write_bytes(picture(9))
    summary = ingest(index, folder, strategy=strategy)
    assert (summary.embedded, summary.failed) == (1, 0)
    assert catalog_rows(index, "SELECT count(*) FROM items WHERE state = 'pending'") == [(0,)]


def test_bombs_are_refused_from_their_declared_size_and_read_bounded(tmp_path, strategy):
    shard = tmp_path / "bomb.tar.gz"
    with tarfile.open(shard, "w:gz") as tf:
        add_bytes(tf, "big.png", b"\0" * (2 * LIMIT))
        add_bytes(tf, "small.png", picture(3))
    plain = tmp_path / "big.png"
    plain.write_bytes(b"\x89PNG" + b"\0" * (2 * LIMIT))
    summary = ingest(tmp_path / "index", shard, plain, strategy=strategy)
    found = states(tmp_path / "index")
    assert found["small.png"] == ("embedded", None)
    assert found["big.png"] == ("failed", "too_large")
    assert sorted(reason for state, reason in found.values() if state == "failed") == ["too_large", "too_large"]
    assert summary.failed_by_reason == {"too_large": 2}


def test_a_member_larger_than_its_header_says_is_never_read_past_the_limit(tmp_path):
    """A zip whose central directory under-states a member's size: the declared-size check passes, and
    the bounded read stops at the limit + 1 byte instead of inflating everything."""
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("liar.png", b"\0" * (4 * LIMIT))
    data = bytearray(path.read_bytes())
    for signature, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        data[at + size_at:at + size_at + 4] = (100).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    [(name, result)] = list(iter_archive_contents(str(path), {"liar.png"}, LIMIT))
    assert isinstance(result, DecodeError) and result.reason in ("bad_member", "too_large")


def test_plain_file_limit_is_checked_before_reading(tmp_path):
    path = tmp_path / "sparse.png"
    with open(path, "wb") as f:
        f.truncate(8 << 30)  # an 8 GiB sparse file: reading it would exhaust memory
    with pytest.raises(DecodeError) as caught:
        read_bytes(str(path), max_bytes=LIMIT)
    assert caught.value.reason == "too_large"
    os.unlink(path)


def test_max_file_size_from_the_cli_and_the_environment(tmp_path, photos):
    from .conftest import run_cli

    source = sorted((photos / "red_star").iterdir())[0]
    result = run_cli("ingest", str(source), "--index", str(tmp_path / "i1"), "--model", "tiny-shapes",
                     "--max-file-size", "100", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["failed_by_reason"] == {"too_large": 1}
    result = run_cli("ingest", str(source), "--index", str(tmp_path / "i2"), "--model", "tiny-shapes", "--json",
                     env={"INDEXER_MAX_FILE_SIZE": "100"})
    assert json.loads(result.stdout)["failed_by_reason"] == {"too_large": 1}
    result = run_cli("ingest", str(source), "--index", str(tmp_path / "i3"), "--max-file-size", "lots")
    assert result.returncode == 2 and "--max-file-size" in result.stderr
