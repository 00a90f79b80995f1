"""Hostile input: every category of bad, odd or dangerous file in ``hostile_corpus``, ingested for
real with the bundled model, here and on a local Ray cluster. Each good file is embedded, each bad one
recorded with its reason, and the run neither crashes nor hangs."""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer import open_index
from indexer.config import Settings
from indexer.media.decode import DEFAULT_MAX_PIXELS, decode_image
from indexer.errors import DecodeError
from indexer.ingest import IngestSummary
from indexer.media.entries import storable_path

from .conftest import STRATEGIES, catalog_dicts, ray_connected
from .hostile_corpus import Case, write_hostile_corpus

SAME_PICTURE = 0.99  # one picture, two files: >= 0.996 (float16 storage, lossy CMYK/AVIF re-encodes); a picture
# turned sideways stays below 0.98


@dataclass
class Ingested:
    root: Path
    index: Path
    cases: list[Case]
    summary: IngestSummary

    def uri(self, relative: str) -> str:
        return storable_path(str(self.root / relative))[0]

    @cached_property
    def rows(self) -> dict[str, dict]:
        """The catalog's items by uri, with their embedding (read once: the tests only read it)."""
        return {row["uri"]: row for row in catalog_dicts(
            self.index, "SELECT items.*, embeddings.vector FROM items "
                        "LEFT JOIN embeddings ON embeddings.id = items.embedding_id")}

    def vector(self, relative: str) -> np.ndarray:
        blob = self.rows[self.uri(relative)]["vector"]
        assert blob is not None, f"{relative} has no embedding"
        vector = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
        return vector / np.linalg.norm(vector)


@pytest.fixture(scope="module", params=STRATEGIES)
def ingested(tmp_path_factory, request) -> Ingested:
    """The corpus ingested by each strategy of phase 2 (here, or on the tests' local Ray cluster)."""
    base = tmp_path_factory.mktemp("hostile")
    cases = write_hostile_corpus(base / "corpus")
    root = (base / "corpus").resolve()
    with ExitStack() as stack, open_index(base / "index", model="tiny-shapes") as index:
        options = {}
        if request.param == "ray":
            stack.enter_context(ray_connected(request.getfixturevalue("ray_address")))
            options = {"ray": "local"}
        summary = index.ingest([root], warn=lambda message: None, **options)
    return Ingested(root, base / "index", cases, summary)


def test_each_hostile_file_is_embedded_or_recorded_with_its_reason(ingested):
    rows = ingested.rows
    wrong = []
    for case in (c for c in ingested.cases if c.path is not None):
        uri = ingested.uri(case.path)
        row = rows.get(uri)
        if case.expected == "skipped":
            under = [u for u in rows if u == uri or u.startswith(uri + "/")]
            if under:
                wrong.append(f"{case.path}: expected no item, found {under}")
            continue
        if row is None:
            wrong.append(f"{case.path}: no item in the catalog")
            continue
        outcome = (row["state"], row["failure_reason"])
        wanted = (case.expected, case.reason)
        if outcome != wanted:
            wrong.append(f"{case.path}: {outcome} instead of {wanted} ({row['failure_detail']})")
        elif case.expected == "embedded" and row["vector"] is None:
            wrong.append(f"{case.path}: embedded without a vector")
    assert not wrong, "\n".join(wrong)


def test_every_category_of_the_issue_is_covered(ingested):
    categories = {c.category for c in ingested.cases}
    assert categories >= {
        "zero-byte", "truncated", "header-only", "HTML/text named as an image", "random bytes", "decompression bomb",
        "EXIF orientation", "CMYK", "16-bit", "palette + alpha", "animated", "1x1 pixel", "extreme aspect ratio",
        "upper-case extension", "non-UTF-8 name", "very long name", "symlink loop", "dangling link",
        "unreadable file", "HEIC/AVIF"}


def test_the_summary_counts_failures_by_reason(ingested):
    expected_failures = Counter(c.reason for c in ingested.cases if c.expected == "failed")
    expected_items = sum(1 for c in ingested.cases if c.path is not None and c.expected != "skipped")
    summary = ingested.summary
    assert summary.failed_by_reason == dict(expected_failures)
    assert summary.embedded + summary.reused + summary.failed == expected_items == summary.scanned


def test_decoded_pictures_are_the_pictures_a_viewer_shows(ingested):
    """EXIF rotation applied, CMYK and 16-bit converted, transparency on white, first frame of an
    animation: each file's embedding equals its plain reference's. The sideways copies (EXIF tag
    left out) show that the check tells a rotated picture apart."""
    checked = 0
    for case in ingested.cases:
        if case.same_picture_as:
            similarity = float(ingested.vector(case.path) @ ingested.vector(case.same_picture_as))
            assert similarity >= SAME_PICTURE, f"{case.path} vs {case.same_picture_as}: {similarity:.4f}"
            checked += 1
        if case.differs_from:
            similarity = float(ingested.vector(case.path) @ ingested.vector(case.differs_from))
            assert similarity < SAME_PICTURE, f"{case.path} vs {case.differs_from}: {similarity:.4f}"
            checked += 1
    assert checked >= 10


def test_catalog_records_the_upright_size_and_raw_names(ingested):
    rows = ingested.rows
    for name in ("exif/orientation_6.jpg", "exif/orientation_8.png", "control/plain.png"):
        assert (rows[ingested.uri(name)]["width"], rows[ingested.uri(name)]["height"]) == (96, 64), name
    assert (rows[ingested.uri("sizes/strip_20000x10.png")]["width"], rows[ingested.uri("sizes/strip_20000x10.png")]
            ["height"]) == (20000, 10)
    non_utf8 = [c for c in ingested.cases if c.category == "non-UTF-8 name"]
    assert non_utf8
    for case in non_utf8:
        raw = os.fsencode(str(ingested.root / case.path))
        row = rows[ingested.uri(case.path)]
        assert row["raw_path"] == raw
        assert "\\x" in row["uri"]  # the text form spells the odd bytes out


def test_a_second_run_reads_nothing_again(ingested, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(ingested.index, index)
    with open_index(index) as opened:
        summary = opened.ingest([ingested.root], warn=lambda message: None)
    assert (summary.embedded, summary.reused, summary.failed, summary.deleted) == (0, 0, 0, 0)
    assert summary.unchanged == ingested.summary.scanned


def test_exif_orientation_turns_the_decoded_picture_upright(ingested):
    for orientation in (6, 8):
        decoded = decode_image((ingested.root / f"exif/orientation_{orientation}.jpg").read_bytes())
        assert decoded.image.size == (96, 64)
        red, grey = decoded.image.getpixel((4, 32)), decoded.image.getpixel((60, 50))
        assert red[0] > 180 and red[1] < 80 and red[2] < 80, red  # the red bar is back on the left
        assert all(100 < channel < 160 for channel in grey), grey


def test_heic_or_avif_without_a_plugin_says_what_to_install():
    header = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)  # a HEIC box header, no image
    with pytest.raises(DecodeError) as caught:
        decode_image(header)
    if importlib.util.find_spec("pillow_heif") is None:
        assert caught.value.reason == "unsupported_format"
        assert "pillow-heif" in caught.value.detail
    else:
        assert caught.value.reason == "decode_error"  # readable here, but this one is broken


def test_16_bit_greyscale_keeps_its_range():
    ramp = np.linspace(1000, 4000, 64 * 96).reshape(64, 96).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(ramp).save(buffer, "PNG")
    pixels = np.asarray(decode_image(buffer.getvalue()).image)
    assert pixels.min() < 10 and pixels.max() > 245  # not the all-white picture of a plain conversion
    assert np.all(np.diff(pixels[0, :, 0].astype(int)) >= 0)  # still a ramp


def test_a_decompression_bomb_is_refused_from_its_header(ingested):
    data = (ingested.root / "bomb/bomb_900mp.png").read_bytes()
    assert len(data) < 2000
    started = time.perf_counter()
    with pytest.raises(DecodeError) as caught:
        decode_image(data)
    # Its pixel stream holds four rows: had decoding begun, the reason would be "truncated".
    assert caught.value.reason == "too_many_pixels"
    assert "900 MP" in caught.value.detail
    assert time.perf_counter() - started < 1.0


def test_the_pixel_limit_is_configurable(tmp_path, monkeypatch, strategy):
    buffer = io.BytesIO()
    Image.new("RGB", (200, 100), (0, 128, 0)).save(buffer, "PNG")
    data = buffer.getvalue()
    assert decode_image(data).width == 200
    with pytest.raises(DecodeError, match="20,000 pixels exceeds the 19,999 pixels limit") as caught:
        decode_image(data, max_pixels=19_999)
    assert caught.value.reason == "too_many_pixels"
    assert decode_image(data, max_pixels=20_000).width == 200

    monkeypatch.setenv("INDEXER_MAX_PIXELS", "12345")
    assert Settings().max_pixels == 12345
    monkeypatch.delenv("INDEXER_MAX_PIXELS")
    assert Settings().max_pixels == DEFAULT_MAX_PIXELS

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "big.png").write_bytes(data)
    small = io.BytesIO()
    Image.new("RGB", (100, 100), (0, 0, 200)).save(small, "PNG")
    (folder / "small.png").write_bytes(small.getvalue())
    with open_index(tmp_path / "index", model="tiny-shapes", settings=Settings(max_pixels=15_000)) as index:
        summary = index.ingest([folder], warn=lambda message: None, **strategy)
    assert (summary.embedded, summary.failed_by_reason) == (1, {"too_many_pixels": 1})


# The time limit's checks run in a fresh process of their own: the test process has been a Ray client by
# then, and a SIGALRM in a process holding a disconnected Ray client's leftover threads has crashed it
# (SIGSEGV, in Ray's code). A decode worker, where the limit is used, is never such a process.
_TIME_LIMIT_CHECKS = """
import signal, time
import pytest
from indexer.errors import DecodeError
from indexer.media.decode import time_limit

before = signal.getsignal(signal.SIGALRM)
started = time.perf_counter()
with pytest.raises(DecodeError) as caught:
    with time_limit(0.2):
        while time.perf_counter() - started < 5:
            pass  # a decoder in a very long loop
assert caught.value.reason == "timeout"
assert time.perf_counter() - started < 2
assert signal.getsignal(signal.SIGALRM) is before  # the previous handler is back
with time_limit(0.2):
    pass  # a quick block is left alone
time.sleep(0.3)  # and no alarm is left behind to fire later

# The limit's alarm is sent to the main thread by a thread of its own: a process-wide timer's SIGALRM may
# land on any thread, and a caller's own interval timer would be cancelled by it.
fired = []
signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
signal.setitimer(signal.ITIMER_REAL, 30)
with pytest.raises(DecodeError):
    with time_limit(0.1):
        while True:
            pass
left, _ = signal.getitimer(signal.ITIMER_REAL)
assert 25 < left <= 30, left  # the caller's timer still runs
assert fired == []  # and the limit's alarm went to the limit's handler only
signal.setitimer(signal.ITIMER_REAL, 0)
print("checked")
"""


def test_time_limit_stops_a_long_decode_and_leaves_the_process_timer_alone():
    done = subprocess.run([sys.executable, "-c", _TIME_LIMIT_CHECKS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "checked", done.stdout + done.stderr


def test_the_decode_time_limit_applies_during_ingestion(tmp_path, strategy):
    folder = tmp_path / "photos"
    folder.mkdir()
    noise = np.random.default_rng(3).integers(0, 255, (800, 800, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / "slow.png")
    settings = Settings(decode_seconds=0.0001)  # far less than decoding an 800x800 PNG takes
    with open_index(tmp_path / "index", model="tiny-shapes", settings=settings) as index:
        summary = index.ingest([folder], warn=lambda message: None, **strategy)
    assert summary.failed_by_reason == {"timeout": 1}
