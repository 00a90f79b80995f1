"""Decompression and size bombs against the running service (``indexer serve`` in its own process),
with its real memory measured: the peak resident set (VmHWM, reset before each attack) may grow by no
more than a thumbnail's worth. Ingestion refuses both bombs (too_many_pixels, too_large); the service
must not read or decode them either, whatever ran before in its process."""

from __future__ import annotations

import io
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from indexer import open_index

from .conftest import catalog_rows, render_folder

psutil = pytest.importorskip("psutil")

BOMB_SIDE = 40_000  # 1.6 gigapixels in a 194 KB PNG
MEMBER_BYTES = 1 << 30  # a 1 GiB zip member, in a 1 MB zip
ALLOWED_GROWTH = 150 << 20  # a thumbnail, a JPEG, the request's own buffers
KILL_AT = 3 << 30  # the guard that keeps a failing run from taking the machine down


def bomb_png(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit PNG of side x side pixels, all black, written without decoding anything."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (side + 7) // 8)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def zip_with_huge_member(path: Path, size: int = MEMBER_BYTES) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("huge.png", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 20)
            for _ in range(size // len(block)):
                member.write(block)


@pytest.fixture(scope="module")
def bomb_index(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("bombs")
    photos = root / "photos"
    render_folder(photos, per_class=1, classes=("red star", "blue circle"))
    (photos / "bomb.png").write_bytes(bomb_png())
    zip_with_huge_member(photos / "members.zip")
    index = root / "index"
    with open_index(index, model="tiny-shapes") as built:
        built.ingest([photos])
    ids = {uri.rsplit("::", 1)[-1].rsplit("/", 1)[-1]: item_id for item_id, uri, reason in
           catalog_rows(index, "SELECT id, uri, failure_reason FROM items")}
    reasons = dict(catalog_rows(index, "SELECT uri, failure_reason FROM items WHERE state = 'failed'"))
    assert any(r == "too_many_pixels" for u, r in reasons.items() if u.endswith("bomb.png")), reasons
    assert any(r == "too_large" for u, r in reasons.items() if u.endswith("huge.png")), reasons
    return index, ids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PeakMemory:
    """The served process's peak RSS over a block, from the kernel's high-water mark (reset first); a
    sampler kills the process past ``KILL_AT`` so that a failing run cannot exhaust the machine."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.killed = False

    def _hwm(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM")

    def __enter__(self) -> "PeakMemory":
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")  # the high-water mark := now
        self.base = self.process.memory_info().rss
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.01):
                try:
                    if self.process.memory_info().rss - self.base > KILL_AT:
                        self.killed = True
                        self.process.kill()
                        return
                except psutil.NoSuchProcess:
                    return
        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sampler.join()
        self.growth = KILL_AT if self.killed else self._hwm() - self.base


@pytest.fixture
def served(bomb_index):
    index, ids = bomb_index
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "indexer", "serve", "--index", str(index), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.time() < deadline, "the service did not start"
            time.sleep(0.1)
        yield url, server.pid, ids
    finally:
        server.kill()
        server.wait()


def test_a_pixel_bomb_gets_no_thumbnail_even_after_an_upload_search(served, bomb_index):
    url, pid, ids = served
    photo = next(p for p in (bomb_index[0].parent / "photos").rglob("*.jpg"))
    with httpx.Client(base_url=url, timeout=120) as client:
        # An upload search loads the decoder (which once switched Pillow's bomb guard off process-wide).
        upload = client.post("/api/search", files={"image": ("p.jpg", b"\xff\xd8" + photo.read_bytes()[2:], "image/jpeg")})
        assert upload.status_code == 200
        with PeakMemory(pid) as peak:
            answer = client.get(f"/api/items/{ids['bomb.png']}/thumbnail", params={"size": 192})
        assert not peak.killed, "the service passed 3 GB on one thumbnail and was stopped"
        assert answer.status_code == 404
        assert peak.growth < ALLOWED_GROWTH, f"peak RSS grew by {peak.growth / 2**20:.0f} MB for one thumbnail"


def test_a_too_large_member_is_never_read_by_the_image_route(served):
    url, pid, ids = served
    with httpx.Client(base_url=url, timeout=120) as client:
        with PeakMemory(pid) as peak, ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda _: client.get(f"/api/items/{ids['huge.png']}/image"), range(3)))
        assert not peak.killed, "the service passed 3 GB on three image requests and was stopped"
        assert [a.status_code for a in answers] == [404] * 3
        assert peak.growth < ALLOWED_GROWTH, f"peak RSS grew by {peak.growth / 2**20:.0f} MB for three requests"


def test_the_decoder_leaves_pillows_guard_alone_and_thumbnails_obey_the_pixel_limit():
    check = ("from PIL import Image; default = Image.MAX_IMAGE_PIXELS; import indexer.media.decode, "
             "indexer.media.thumbnails; assert Image.MAX_IMAGE_PIXELS == default, Image.MAX_IMAGE_PIXELS")
    assert subprocess.run([sys.executable, "-c", check], capture_output=True).returncode == 0
    from PIL import Image

    from indexer.media.thumbnails import thumbnail_jpeg

    buffer = io.BytesIO()
    Image.new("RGB", (300, 200), "red").save(buffer, "PNG")
    assert thumbnail_jpeg(buffer.getvalue(), 64) is not None
    assert thumbnail_jpeg(buffer.getvalue(), 64, max_pixels=59_999) is None  # checked from the header
