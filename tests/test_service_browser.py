"""The web page in real headless Chromium against the real service: type a query, see thumbnails, drop
and paste a picture, open an item, classify into labels, move with the keyboard.

Screenshots go to $INDEXER_SCREENSHOTS when set (to look at them), else to the test's tmp folder.
"""

from __future__ import annotations

import base64
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from .live_server import live_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (test extra)")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (.ci/run installs Debian's)")]

DROP = """async ([b64, name, kind]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type: "image/jpeg" }));
  const event = kind === "drop" ? new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true })
                                : new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
  document.body.dispatchEvent(event);
}"""


@contextmanager
def page_at(url: str, height: int = 850) -> Iterator:
    """The service's page at ``url`` in headless Chromium; the test fails on any script error in it."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1200, "height": height})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url + "/")
        try:
            yield page
        finally:
            browser.close()
        assert errors == [], errors


@pytest.fixture
def page_and_shots(index_copy, tmp_path):
    shots = Path(os.environ.get("INDEXER_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with live_server({"shapes": index_copy}) as url, page_at(url) as page:
        yield page, shots


def all_loaded(page, grid: str = "#results") -> None:
    page.wait_for_function(f"() => [...document.querySelectorAll('{grid} img')].every(i => i.complete && i.naturalWidth > 0)")


def names(page) -> list[str]:
    return page.eval_on_selector_all("#results .card .name", "els => els.map(e => e.title)")


def test_search_drop_paste_item_labels_keys(page_and_shots, photos):
    page, shots = page_and_shots
    page.wait_for_selector("#status:has-text('items')")

    # Typing searches at once, as thumbnails with scores; the best are red stars.
    page.fill("#q", "a red star")
    page.wait_for_selector("#results .card img")
    assert page.is_hidden("#image-chip")
    all_loaded(page)
    found = names(page)
    assert len(found) == 40 or len(found) == 48
    assert all("/red_star/" in path for path in found[:4]), found[:6]
    scores = [float(s) for s in page.eval_on_selector_all("#results .score", "els => els.map(e => e.textContent)")]
    assert scores == sorted(scores, reverse=True)
    page.screenshot(path=str(shots / "1-search.png"))

    # Dropping a picture searches by it: the picture itself comes first, with a score of 1.
    picture = sorted((photos / "blue_square").iterdir())[0]
    payload = base64.b64encode(picture.read_bytes()).decode()
    page.fill("#q", "")
    page.evaluate(DROP, [payload, picture.name, "drop"])
    page.wait_for_selector("#image-chip:not([hidden])")
    page.wait_for_function(f"() => document.querySelector('#results .card .name')?.title.endsWith('{picture.name}')")
    assert all("/blue_square/" in path for path in names(page)[:4])
    assert page.text_content("#results .card .score") == "1.000"
    all_loaded(page)
    page.screenshot(path=str(shots / "2-dropped-picture.png"))

    # Pasting another picture replaces it.
    other = sorted((photos / "green_circle").iterdir())[1]
    page.evaluate(DROP, [base64.b64encode(other.read_bytes()).decode(), other.name, "paste"])
    page.wait_for_function(f"() => document.querySelector('#results .card .name')?.title.endsWith('{other.name}')")
    assert page.text_content("#image-chip-name") == other.name
    page.click("#image-chip-clear")

    # Keyboard: back to a text query, arrows select, Enter opens the item with its path and neighbours.
    page.fill("#q", "a yellow circle")
    page.wait_for_function("() => document.querySelector('#results .card .name')?.title.includes('/yellow_circle/')")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    selected = page.get_attribute("#results .card.selected", "data-id")
    assert selected == page.eval_on_selector_all("#results .card", "els => els[1].dataset.id")
    page.keyboard.press("Enter")
    page.wait_for_selector("#item-view:not([hidden])")
    page.wait_for_selector("#item-neighbours .card")
    path = page.text_content("#item-path")
    assert path == names(page)[1] and "/yellow_circle/" in path
    assert page.eval_on_selector("#item-image", "i => i.complete && i.naturalWidth > 0")
    neighbours = page.eval_on_selector_all("#item-neighbours .card .name", "els => els.map(e => e.title)")
    assert path not in neighbours and sum("/yellow_circle/" in n for n in neighbours[:3]) >= 2
    all_loaded(page, "#item-view")
    page.screenshot(path=str(shots / "3-item.png"))

    # "m": more like this item; Escape has closed the item view.
    page.keyboard.press("m")
    page.wait_for_selector("#item-view", state="hidden")
    page.wait_for_function(f"() => document.querySelector('#results .card .name')?.title === {path!r}")

    # Labels: counts per label, then browse one.
    page.click("#tab-labels")
    page.fill("#labels", "red star\nblue square, green circle, yellow circle")
    page.click("#classify")
    page.wait_for_selector("#label-items .card")
    counts = dict(page.eval_on_selector_all("#counts tr.label-row", "rows => rows.map(r => [r.dataset.label, +r.children[1].textContent])"))
    assert sum(counts.values()) == 48 and all(n >= 4 for n in counts.values()), counts
    page.click("#counts tr.label-row[data-label='red star']")
    page.wait_for_selector("#label-title:has-text('red star')")
    page.wait_for_function("() => [...document.querySelectorAll('#label-items .card .name')].slice(0, 4).every(e => e.title.includes('/red_star/'))")
    assert page.is_hidden("#label-more")  # 14 items or so: one page
    all_loaded(page, "#label-items")
    page.screenshot(path=str(shots / "4-labels.png"), full_page=True)

    # The whole collection at once: 48 items are too few, and the page says it fell back to plain.
    page.check("#transductive")
    page.click("#classify")
    page.wait_for_function("() => document.querySelector('#progress-text').textContent.includes('transductive')")
    assert "fell back to plain zero-shot" in page.text_content("#progress-text")
    page.uncheck("#transductive")
