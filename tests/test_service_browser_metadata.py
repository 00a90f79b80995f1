"""The page in real headless Chromium: the Where filter and keyword ranking narrow and reorder the
results, and the item view shows the caption, date taken, camera and position."""

from __future__ import annotations

import pytest

from indexer import open_index

from .conftest import render_folder
from .live_server import live_server
from .metadata_pictures import exif_jpeg
from .test_service_browser import CHROMIUM, all_loaded, names, page_at

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (.ci/run installs Debian's)")]


@pytest.fixture
def page(tmp_path):
    root = tmp_path / "photos"
    for i, (path, label) in enumerate(render_folder(root, per_class=3, classes=("red circle", "blue star"))):
        red = label.startswith("red")  # a plain colour each, a little different: distinct contents
        exif_jpeg(path, colour=(220, 30 + 9 * i, 30) if red else (30, 30 + 9 * i, 220), size=(96, 96),
                  taken="2024:05:01 10:00:00" if red else "2019:01:01 10:00:00", make="Canon",
                  model="EOS R5" if red else "EOS 5D", gps={1: "N", 2: (52.0, 30.0, 0.0), 3: "W", 4: (1.0, 15.0, 0.0)})
        path.with_suffix(".txt").write_text(f"a photo of a {label}", encoding="utf-8")
    (root / "blue_star" / "blue_star_0001.txt").write_text("zebrafish in the aquarium", encoding="utf-8")
    with open_index(tmp_path / "index", model="tiny-shapes") as index:
        index.ingest([root])
    with live_server({"shapes": tmp_path / "index"}) as url, page_at(url) as page:
        yield page


def test_where_keywords_and_the_item_view(page, tmp_path):
    page.wait_for_selector("#status:has-text('items')")
    page.fill("#q", "a red circle")
    page.wait_for_function("() => document.querySelectorAll('#results .card').length === 6")
    page.click("#filters summary")
    page.fill("#where", "taken < 2020 and camera ~ '5d'")
    page.dispatch_event("#where", "change")
    page.wait_for_function("() => document.querySelectorAll('#results .card').length === 3")
    assert all("/blue_star/" in path for path in names(page))
    page.fill("#where", "camera ~ (")  # a bad filter: one line naming the column, the old results stay
    page.dispatch_event("#where", "change")
    page.wait_for_selector("text=column 10")
    page.fill("#where", "")
    page.fill("#q", "zebrafish")
    page.check("#hybrid")
    page.wait_for_function("() => document.querySelector('#results .card .name')?.title.endsWith('blue_star_0001.jpg')")
    all_loaded(page)
    page.click("#results .card >> nth=0")
    page.wait_for_selector("#item-view:not([hidden])")
    facts = page.inner_text("#item-facts")
    assert "zebrafish in the aquarium" in facts and "2019-01-01 10:00:00" in facts and "Canon EOS 5D" in facts
    assert "52.50000, -1.25000" in facts
    page.screenshot(path=str(tmp_path / "item-metadata.png"))
