"""The web page's audit view in headless Chromium: findings by type with thumbnails, keyboard review
(accept, reject, relabel, undo), progress, the export, the plots; read-only without --allow-decisions.
Real HTTP, real catalog; screenshots go to $INDEXER_SCREENSHOTS when set."""

from __future__ import annotations

import csv
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from click.testing import CliRunner

from indexer.cli import main

from .live_server import live_server
from .test_audit_decisions import dataset  # noqa: F401 - the module's fixture
from .test_service_browser import CHROMIUM, page_at

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (.ci/run installs Debian's)")


@pytest.fixture
def audited(dataset, tmp_path) -> Path:  # noqa: F811
    index = tmp_path / "index"
    shutil.copytree(dataset["index"], index)
    result = CliRunner().invoke(main, ["audit", "--index", str(index), "--no-report"])
    assert result.exit_code == 0, result.output
    return index


@contextmanager
def audit_page(url: str) -> Iterator:
    """The page's audit view, its findings shown."""
    with page_at(url, height=900) as page:
        page.click("#tab-audit")
        page.wait_for_selector(".finding")
        yield page


def images_loaded(page) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('#audit-list img')].slice(0, 8)"
                           ".every(i => { i.loading = 'eager'; return i.complete && i.naturalWidth > 0; })")


def test_review_with_the_keyboard_and_export(audited, dataset, tmp_path):  # noqa: F811
    shots = Path(os.environ.get("INDEXER_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with live_server({"shapes": audited}, allow_decisions=True) as url, audit_page(url) as page:
        total = int(page.locator("#audit-types button.active").text_content().split("(")[1].rstrip(")"))
        assert page.locator("#audit-types button.active").get_attribute("data-type") == "mislabel"
        assert page.locator("#audit-progress-text").text_content() == f"0 of {total} reviewed"
        images_loaded(page)
        page.screenshot(path=str(shots / "audit-view.png"))
        cards = page.locator(".finding")
        ids = [cards.nth(i).get_attribute("data-id") for i in range(3)]

        page.keyboard.press("a")
        page.wait_for_selector(".decision.accept")
        page.keyboard.press("r")
        page.wait_for_selector(".decision.reject")
        page.keyboard.press("l")
        assert page.locator("#audit-relabel").is_visible()
        page.fill("#audit-relabel-input", "blue cross")
        page.keyboard.press("Enter")
        page.wait_for_selector(".decision.relabel")
        assert page.locator("#audit-progress-text").text_content() == f"3 of {total} reviewed"
        page.screenshot(path=str(shots / "audit-reviewed.png"))
        # u on the current (fourth, undecided) finding has nothing to undo: a one-line message, nothing lost.
        page.keyboard.press("u")
        page.wait_for_function("() => document.getElementById('audit-message').textContent.includes('no decision')")

        decisions = httpx.get(url + "/api/audit/decisions").json()
        assert [(d["id"], d["action"], d["label"]) for d in decisions] == [
            (ids[0], "accept", None), (ids[1], "reject", None), (ids[2], "relabel", "blue cross")]

        page.click("#audit-types button[data-type=duplicate]")
        page.wait_for_function("() => document.querySelector('#audit-types button.active').dataset.type === 'duplicate'")
        images_loaded(page)
        assert page.locator(".finding").first.locator("img").count() >= 2  # a group side by side
        page.screenshot(path=str(shots / "audit-duplicates.png"))

        page.check("#audit-drop-duplicates")
        href = page.locator("#audit-export").get_attribute("href")
        assert href.startswith("/api/audit/export") and "drop_duplicates=true" in href
        exported = page.request.get(url + href)
        assert exported.ok
        rows = {r[0]: r[1] for r in list(csv.reader(exported.text().splitlines()))[1:]}
        assert len(rows) == len(dataset["truth"]) - 1
        finding = {f["id"]: f for f in httpx.get(url + "/api/audit", params={"limit": 1000}).json()["findings"]}
        assert rows[finding[ids[2]]["path"]] == "blue cross"
        assert rows[finding[ids[0]]["path"]] == finding[ids[0]]["suggested_label"]

        page.click("#audit-plots summary")
        page.wait_for_function("() => { const i = [...document.querySelectorAll('#audit-plot-images img')];"
                               " return i.length >= 3 && i.every(x => x.complete && x.naturalWidth > 0); }")
        page.locator("#audit-plots").screenshot(path=str(shots / "audit-plots.png"))


def test_read_only_service_records_nothing(audited):
    with live_server({"shapes": audited}) as url, audit_page(url) as page:
        assert "--allow-decisions" in page.locator("#audit-message").text_content()
        page.keyboard.press("a")
        page.wait_for_timeout(300)
        assert page.locator(".decision").count() == 0
        assert httpx.get(url + "/api/audit/decisions").json() == []
