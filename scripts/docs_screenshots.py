"""Screenshots for the documentation, taken from the real app in headless Chromium.

Draws the bundled sample collection (``indexer.synthetic``, as ``indexer demo`` does) with a few planted
problems (labels flipped, copies under other classes), ingests it with the bundled model, writes the audit
report, serves the index with the real service and photographs the page (JPEG: the drawn backgrounds are noisy, PNGs of them are 4x larger) (a search, an item, the label view)
and the audit report. Offline; about a minute on two cores. Needs the serve and test extras (FastAPI,
uvicorn, playwright's Python package) and a Chromium (``/usr/bin/chromium``; playwright downloads nothing).

    python scripts/docs_screenshots.py                  # writes docs/images/*.jpg
    python scripts/docs_screenshots.py --out /tmp/shots --keep /tmp/shots-work
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from indexer import open_index, synthetic
from indexer.audit.report import write_report

ROOT = Path(__file__).resolve().parents[1]
VIEWPORT = {"width": 1280, "height": 820}
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    sys.exit("no Chromium found: apt-get install chromium (playwright drives it; no browser download)")


def draw_collection(photos: Path, seed: int) -> None:
    """The demo's 48 (colour, shape) classes, 8 pictures each, then a few planted problems for the audit."""
    synthetic.write_labelled_folder(photos, 8, synthetic.ALL_CLASSES, seed=seed, size=128, image_format="jpg")
    rng = np.random.default_rng(seed)
    classes = sorted(p for p in photos.iterdir() if p.is_dir())
    drawn = {folder: sorted(folder.iterdir()) for folder in classes}  # chosen before anything moves
    for i in rng.choice(len(classes), 6, replace=False):  # a picture filed under the wrong class
        source = drawn[classes[i]][0]
        source.rename(classes[(i + 7) % len(classes)] / f"misfiled-{source.name}")
    for i in rng.choice(len(classes), 3, replace=False):  # the same picture under two classes
        source = drawn[classes[i]][1]
        shutil.copy(source, classes[(i + 11) % len(classes)] / f"copy-{source.name}")


@contextmanager
def served(index_dir: Path) -> Iterator[str]:
    """The real service on a free loopback port, as the browser tests start it (tests/live_server.py)."""
    import uvicorn

    from indexer.service.app import create_app
    from indexer.service.state import ServiceConfig

    app = create_app(ServiceConfig(indexes={"shapes": index_dir}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the service did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def all_loaded(page, grid: str) -> None:
    """Waits for the thumbnails in view (the page loads the others lazily, when scrolled to)."""
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{grid} img')].filter(i => i.getBoundingClientRect().top < innerHeight)"
        ".every(i => i.complete && i.naturalWidth > 0)")


def photograph_page(url: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    shots = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        page.goto(url + "/")
        page.wait_for_selector("#status:has-text('items')")

        page.fill("#q", "a red star")
        page.wait_for_selector("#results .card img")
        all_loaded(page, "#results")
        shots.append(out / "page-search.jpg")
        page.screenshot(path=str(shots[-1]), quality=88)

        page.keyboard.press("ArrowDown")
        page.keyboard.press("Enter")
        page.wait_for_selector("#item-view:not([hidden])")
        page.wait_for_selector("#item-neighbours .card")
        all_loaded(page, "#item-view")
        shots.append(out / "page-item.jpg")
        page.screenshot(path=str(shots[-1]), quality=88)
        page.keyboard.press("Escape")
        page.wait_for_selector("#item-view", state="hidden")

        page.click("#tab-labels")
        page.fill("#labels", "red star, blue square, green circle, yellow triangle, purple cross")
        page.click("#classify")
        page.wait_for_selector("#label-items .card")
        page.click("#counts tr.label-row[data-label='red star']")
        page.wait_for_selector("#label-title:has-text('red star')")
        all_loaded(page, "#label-items")
        shots.append(out / "page-labels.jpg")
        page.screenshot(path=str(shots[-1]), quality=88)
        browser.close()
    return shots


def photograph_report(report: Path, out: Path) -> Path:
    from playwright.sync_api import sync_playwright

    shot = out / "audit-report.jpg"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROME_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100}, device_scale_factor=1)
        page.goto(report.as_uri())
        page.wait_for_selector("[data-sortable='ready']")
        all_loaded(page, "body")
        page.screenshot(path=str(shot), quality=88)
        browser.close()
    return shot


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="where the PNGs go")
    parser.add_argument("--keep", type=Path, help="build the collection and index here and keep them")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    # The item view shows the picture's path: a short, fixed one reads better than a random temporary name.
    work = args.keep or Path(tempfile.gettempdir()) / "indexer-sample"
    if work.exists():
        shutil.rmtree(work)
    photos, index_dir = work / "photos", work / "photos-index"
    try:
        started = time.time()
        draw_collection(photos, args.seed)
        with open_index(index_dir, model="tiny-shapes") as index:
            summary = index.ingest([photos])
            result = index.audit(index.audit_labels())
            paths = write_report(result, index_dir / "audit")
        print(f"{summary.embedded} pictures embedded; audit: {result.counts()}", file=sys.stderr)
        shots: list[Path] = []
        with served(index_dir) as url:
            shots += photograph_page(url, args.out)
        shots.append(photograph_report(paths["html"], args.out))
        for shot in shots:
            print(shot)
        print(f"{time.time() - started:.0f} s", file=sys.stderr)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
