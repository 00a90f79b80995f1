"""Dataset auditing on a rendered, labelled dataset with problems planted on purpose: flipped labels,
exact and near duplicates (one across splits, one across labels), pictures that are no shape at all,
a class with two items. Real SQLite, real FAISS, the bundled tiny-shapes model."""

from __future__ import annotations


import csv
import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from indexer import open_index, synthetic
from indexer.cli import main
from indexer.audit import FINDING_TYPES, AuditOptions, Finding, audit
from indexer.cli.audit import audit as audit_command
from indexer.audit.dataset import _as_path, csv_labels, folder_labels, label_from_path, run_labels
from indexer.audit.report import render_html, thumbnail_uri, write_report
from indexer.errors import QueryError

# Seen classes of the bundled model (it classifies them well), 6 train + 2 val pictures each.
CLASSES = ("red square", "red star", "green circle", "green triangle", "blue square", "blue cross",
           "yellow circle", "yellow star", "purple triangle", "orange hexagon", "white star", "black circle")
SMALL_CLASS = "purple hexagon"
NEAR = 0.9999  # the tiny model puts distinct renders of one class up to ~0.999 apart; planted copies are closer
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@dataclass
class Planted:
    data: Path
    index: Path
    truth: dict[str, str] = field(default_factory=dict)  # path -> the class it shows
    wrong: set[str] = field(default_factory=set)  # paths filed under another class than they show
    exact: tuple[str, str] = ("", "")  # the same file in train and, inside an archive, in val
    near_conflict: tuple[str, str] = ("", "")  # a re-scaled copy filed under another class
    near_same: tuple[str, str] = ("", "")  # a copy with one pixel changed, same class
    junk: tuple[str, str] = ("", "")  # noise and a flat grey picture, no shape at all


def _place(data: Path, split: str, label: str, name: str) -> Path:
    target = data / split / label.replace(" ", "_") / name
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _render_with_flips(root: Path, data: Path, planted: Planted) -> None:
    """8 pictures per class (6 train, 2 val), 5 of them filed under another class."""
    rendered = synthetic.write_labelled_folder(root / "render", 8, CLASSES, seed=11, size=64)
    rng = np.random.default_rng(5)
    flipped = set(rng.choice(len(rendered), 5, replace=False).tolist())
    for i, (path, label) in enumerate(rendered):
        split = "val" if int(path.stem[-4:]) >= 6 else "train"
        given = label
        if i in flipped:
            given = CLASSES[(CLASSES.index(label) + 1 + int(rng.integers(len(CLASSES) - 1))) % len(CLASSES)]
        target = _place(data, split, given, path.name)
        shutil.move(path, target)
        planted.truth[str(target)] = label
        if i in flipped:
            planted.wrong.add(str(target))


def _plant_duplicates(root: Path, data: Path, planted: Planted) -> None:
    def clean(label: str) -> str:  # a train picture of ``label`` that was not flipped
        return next(p for p, t in sorted(planted.truth.items()) if t == label and p not in planted.wrong
                    and "/train/" in p)

    # An archive (read as a folder named "more") holding the small class and, in val, a copy of a train picture.
    archive = data / "more.tar.gz"
    source = clean("red star")
    small = synthetic.write_labelled_folder(root / "render-small", 2, (SMALL_CLASS,), seed=12, size=64)
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname="val/red_star/copy_of_" + Path(source).name)
        for path, label in small:
            tar.add(path, arcname=f"train/purple_hexagon/{path.name}")
            planted.truth[f"{archive}::train/purple_hexagon/{path.name}"] = label
    planted.exact = (source, f"{archive}::val/red_star/copy_of_{Path(source).name}")
    planted.truth[planted.exact[1]] = "red star"

    source = clean("green circle")
    copy = _place(data, "train", "blue square", "rescaled_" + Path(source).name)
    Image.open(source).convert("RGB").resize((56, 56)).resize((64, 64)).save(copy)
    planted.near_conflict = (source, str(copy))
    planted.truth[str(copy)] = "green circle"
    planted.wrong.add(str(copy))

    source = clean("yellow star")
    copy = _place(data, "train", "yellow star", "touched_" + Path(source).name)
    image = Image.open(source).convert("RGB")
    image.putpixel((0, 0), (0, 0, 0))
    image.save(copy)
    planted.near_same = (source, str(copy))
    planted.truth[str(copy)] = "yellow star"


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Planted:
    root = tmp_path_factory.mktemp("audit")
    data = (root / "data").resolve()
    result = Planted(data=data, index=root / "index")
    _render_with_flips(root, data, result)
    _plant_duplicates(root, data, result)
    noise = _place(data, "train", "white star", "noise.png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(noise)
    grey = _place(data, "train", "black circle", "grey.png")
    Image.new("RGB", (64, 64), (128, 128, 128)).save(grey)
    result.junk = (str(noise), str(grey))
    Image.new("RGB", (64, 64), (20, 200, 20)).save(data / "loose.png")  # no class folder: unlabelled
    with open_index(result.index, model="tiny-shapes") as index:
        summary = index.ingest([data])
    assert summary.failed == 0
    return result


@pytest.fixture(scope="module")
def audited(planted):
    with open_index(planted.index) as index:
        return audit(index.context, options=AuditOptions(near_threshold=NEAR))


def groups_with(result, *paths: str) -> list[Finding]:
    return [f for f in result.of_type("duplicate") if set(paths) <= set(f.paths)]


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize("path, root, expected", [
    ("/d/red_star/a.png", "/d", ("red star", None)),
    ("/d/train/red_star/a.png", "/d", ("red star", "train")),
    ("/d/Validation/blue_cross/a.png", "/d", ("blue cross", "val")),
    ("/d/red_star/test/a.png", "/d", ("red star", "test")),
    ("/d/red_star/batch_1/a.png", "/d", ("batch 1", None)),  # the parent folder is the class
    ("/d/train/red_star/a.png", "/d/train", ("red star", "train")),  # the root itself is the split
    ("/d/a.png", "/d", (None, None)),
    ("/elsewhere/red_star/a.png", "/d", (None, None)),
    (_as_path("/d/set.tar::valid/red_star/a.png"), "/d", ("red star", "val")),
    (_as_path("/d/train.tar.gz::red_star/a.png"), "/d", ("red star", "train")),  # an archive is a folder
    (_as_path("/d/red_star.zip::a.png"), "/d", ("red star", None)),
])
def test_label_and_split_from_a_path(path, root, expected):
    assert label_from_path(path, root) == expected


def test_folder_labels_find_classes_splits_and_unlabelled_items(planted):
    with open_index(planted.index) as index:
        dataset = folder_labels(index.context)
    assert dataset.root == str(planted.data)
    assert dataset.labels == sorted(CLASSES + (SMALL_CLASS,))
    assert sorted(dataset.splits) == ["train", "val"]
    assert dataset.unlabelled == 1  # loose.png
    assert dataset.size == len(planted.truth) + 2  # with the junk pictures
    assert list(dataset.item_ids) == sorted(dataset.item_ids)
    counts = dict(zip(dataset.labels, dataset.class_counts()))
    assert counts[SMALL_CLASS] == 2


# ----------------------------------------------------------------------------- findings


def test_mislabels_precision_and_recall_are_well_above_chance(planted, audited):
    mislabels = audited.of_type("mislabel")
    flagged = [f.path for f in mislabels]
    known = [p for p in flagged if p not in planted.junk]  # junk has no true label to be right or wrong about
    top = known[:len(planted.wrong)]
    precision_at_k = sum(p in planted.wrong for p in top) / len(planted.wrong)
    recall = sum(p in planted.wrong for p in flagged) / len(planted.wrong)
    chance = len(planted.wrong) / audited.items
    assert chance < 0.1
    assert precision_at_k >= 0.6, (precision_at_k, flagged)
    assert recall >= 0.8, (recall, flagged)
    for finding in mislabels:
        if finding.path in planted.wrong:
            assert finding.details["suggested_label"] == planted.truth[finding.path]
        assert finding.details["suggested_label"] != finding.details["given_label"]
        assert finding.details["suggested_probability"] > finding.details["given_probability"]
    assert [f.score for f in mislabels] == sorted((f.score for f in mislabels), reverse=True)


def test_planted_exact_and_near_duplicates_are_all_found(planted, audited):
    exact = groups_with(audited, *planted.exact)
    assert len(exact) == 1 and exact[0].details["kind"] == "exact" and exact[0].score == 1.0
    assert exact[0].details["split_leak"] and not exact[0].details["label_conflict"]
    conflict = groups_with(audited, *planted.near_conflict)
    assert len(conflict) == 1 and conflict[0].details["kind"] == "near"
    assert conflict[0].details["label_conflict"]
    assert sorted(set(conflict[0].details["labels"])) == ["blue square", "green circle"]
    same = groups_with(audited, *planted.near_same)
    assert len(same) == 1 and not same[0].details["label_conflict"]
    assert same[0].details["kind"] == "near" and NEAR <= same[0].score <= 1.0
    groups = audited.of_type("duplicate")
    assert groups[0] is conflict[0]  # differing labels rank first, then groups across splits
    assert groups.index(exact[0]) < groups.index(same[0])
    assert sum(len(g.paths) for g in groups) < 0.2 * audited.items  # distinct pictures are not swept in


def test_near_duplicates_need_the_threshold(planted, audited):
    with open_index(planted.index) as index:
        strict = audit(index.context, options=AuditOptions(near_threshold=1.0))
    near_before = [g for g in audited.of_type("duplicate") if g.details["kind"] == "near"]
    near_after = [g for g in strict.of_type("duplicate") if g.details["kind"] == "near"]
    assert len(near_after) < len(near_before)
    assert all(g.score >= 1.0 for g in near_after)  # only pictures the model cannot tell apart at all
    assert [g.details["kind"] for g in strict.of_type("duplicate")].count("exact") == 1


def test_pictures_unlike_their_class_are_the_top_outliers(planted, audited):
    outliers = audited.of_type("outlier")
    top = [f.path for f in outliers[:4]]
    assert set(planted.junk) <= set(top), top
    assert outliers[0].score >= outliers[-1].score >= AuditOptions().outlier_z
    assert all(f.details["label"] for f in outliers)


def test_small_classes_are_reported_with_their_pictures(planted, audited):
    small = audited.of_type("small_class")
    assert [f.details["label"] for f in small] == [SMALL_CLASS]
    assert small[0].details["items"] == 2
    assert sorted(small[0].paths) == sorted(p for p, label in planted.truth.items() if label == SMALL_CLASS)


def test_chunked_passes_give_the_same_findings(planted, audited):
    with open_index(planted.index) as index:
        chunked = audit(index.context, options=AuditOptions(near_threshold=NEAR, chunk=7))
    assert len(chunked.findings) == len(audited.findings)
    for small, whole in zip(chunked.findings, audited.findings):
        a, b = small.to_dict(), whole.to_dict()
        assert a.keys() == b.keys()
        for key in a:  # the same findings; scores equal up to float rounding of other chunk shapes
            if isinstance(a[key], float):
                assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-9), key
            else:
                assert a[key] == b[key], key


def test_zero_neighbour_weight_is_pure_zero_shot(planted):
    with open_index(planted.index) as index:
        result = audit(index.context, options=AuditOptions(near_threshold=NEAR, neighbour_weight=0.0, probe_weight=0.0))
    mislabels = result.of_type("mislabel")
    assert mislabels
    for f in mislabels:
        assert f.details["given_probability"] == f.details["zero_shot_given"]
    found = sum(f.path in planted.wrong for f in mislabels[:len(planted.wrong)])
    assert found >= len(planted.wrong) // 2


def test_csv_labels_with_splits_relative_paths_and_a_confusable_pair(planted, tmp_path):
    labels_file = planted.data / "labels.csv"
    rows = []
    for path, label in sorted(planted.truth.items()):
        if label == "red star" and path.endswith(("0002.png", "0003.png")):
            label = "a red star"  # two names for one class: the model cannot tell them apart
        rows.append([os.path.relpath(path, planted.data), label, "train" if "/train/" in path else "validation"])
    rows.append(["train/red_star/missing.png", "red star", "train"])
    with labels_file.open("w", newline="") as f:
        csv.writer(f).writerows([["path", "label", "split"]] + rows)
    try:
        with open_index(planted.index) as index:
            dataset = csv_labels(index.context, labels_file)
            result = audit(index.context, dataset, AuditOptions(near_threshold=NEAR))
    finally:
        labels_file.unlink()
    assert dataset.unmatched == 1 and dataset.unmatched_examples[0].endswith("missing.png")
    assert dataset.unlabelled == 1 + 2  # loose.png and the junk pictures are not in the CSV
    assert sorted(dataset.splits) == ["train", "val"]
    assert "a red star" in dataset.labels
    flagged = {f.path for f in result.of_type("mislabel")}
    assert not flagged & planted.wrong  # the labels are right now
    pairs = [f.details["labels"] for f in result.of_type("confusable_labels")]
    assert pairs and pairs[0] == ["a red star", "red star"]
    confusable = result.of_type("confusable_labels")[0]
    assert confusable.score >= AuditOptions().confusable_threshold
    assert all(planted.truth[p] == "red star" for p in confusable.paths)  # examples of swapped pictures


def test_bad_csv_is_a_clear_error(planted, tmp_path):
    labels_file = tmp_path / "labels.csv"
    labels_file.write_text("path,label\nonly-a-path\n")
    with open_index(planted.index) as index, pytest.raises(QueryError, match="labels.csv:2"):
        csv_labels(index.context, labels_file)


def test_labels_from_a_classification_run(planted, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(planted.index, copy)
    with open_index(copy) as index:
        with pytest.raises(QueryError, match="no classification run"):
            run_labels(index.context)
        index.classify(list(CLASSES), templates="none")
        dataset = run_labels(index.context)
        result = audit(index.context, dataset, AuditOptions(templates=dataset.templates, near_threshold=NEAR))
    assert dataset.labels == list(CLASSES) and dataset.templates == "none"
    assert dataset.size == len(planted.truth) + 2 + 1  # every embedded item has a predicted label
    assert result.items == dataset.size
    assert all(f.details["suggested_label"] in CLASSES for f in result.of_type("mislabel"))


# ----------------------------------------------------------------------------- outputs


def test_report_files_hold_every_finding(audited, tmp_path):
    paths = write_report(audited, tmp_path / "report", max_rows=2)
    findings = json.loads(paths["json"].read_text())
    assert findings == [f.to_dict() for f in audited.findings]
    with paths["csv"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(findings)
    assert {r["type"] for r in rows} <= set(FINDING_TYPES)
    first_duplicate = next(r for r in rows if r["type"] == "duplicate")
    assert json.loads(first_duplicate["paths"]) == audited.of_type("duplicate")[0].paths
    page = paths["html"].read_text()
    assert page.count('<tr><td class="n">') == sum(min(2, n) for n in audited.counts().values())
    assert "Showing the first 2 of" in page
    assert "data:image/jpeg;base64," in page and "no preview" not in page  # archive members too
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from elsewhere
    assert json.loads(paths["summary"].read_text())["counts"] == audited.counts()


def test_unreadable_pictures_get_a_placeholder(audited, tmp_path):
    assert thumbnail_uri(str(tmp_path / "gone.png")) is None
    (tmp_path / "not-an-image.png").write_text("hello")
    assert thumbnail_uri(str(tmp_path / "not-an-image.png")) is None
    audited_copy = type(audited)(**{**audited.__dict__, "findings": [
        Finding("outlier", 9.0, path=str(tmp_path / "gone.png"), details={
            "label": "red star", "knn_distance": 0.5, "class_median_knn_distance": 0.1, "centroid_distance": 0.4,
            "split": None, "item_id": 1})]})
    assert "no preview" in render_html(audited_copy)


def test_audit_command_json_contract_files_and_summary(planted, tmp_path):
    out = tmp_path / "report"
    result = CliRunner().invoke(audit_command, ["--index", str(planted.index), "--near-threshold", str(NEAR),
                                                "--output", str(out), "--json", "--no-progress"])
    assert result.exit_code == 0, result.output
    findings = json.loads(result.stdout)
    assert {f["type"] for f in findings} >= {"mislabel", "duplicate", "outlier", "small_class"}
    for f in findings:
        assert isinstance(f["score"], float | int) and ("path" in f or "paths" in f)
    mislabels = [f for f in findings if f["type"] == "mislabel"]
    assert all("given_label" in f and "suggested_label" in f and "path" in f for f in mislabels)
    for kind in ("mislabel", "outlier"):
        scores = [f["score"] for f in findings if f["type"] == kind]
        assert scores == sorted(scores, reverse=True)
    assert all("paths" in f for f in findings if f["type"] == "duplicate")
    assert "likely mislabels" in result.stderr and str(out / "audit.html") in result.stderr
    assert (out / "audit.html").exists() and (out / "findings.csv").exists()

    plain = CliRunner().invoke(audit_command, ["--index", str(planted.index), "--no-report", "--no-progress"])
    assert plain.exit_code == 0, plain.output
    assert "likely mislabels" in plain.stdout and "top mislabels" in plain.stdout
    assert len(plain.stdout.splitlines()) <= 40  # one screen


def test_audit_command_through_the_indexer_group(planted):
    result = CliRunner().invoke(main, ["audit", "--index", str(planted.index), "--from-run", "7", "--no-report"])
    assert result.exit_code == 1 and "no classification run 7" in result.output


def test_audit_command_errors_and_help(planted, tmp_path):
    both = CliRunner().invoke(audit_command, ["--index", str(planted.index), "--labels", __file__,
                                              "--from-run", "latest"])
    assert both.exit_code == 2 and "not both" in both.output
    (tmp_path / "empty").mkdir()
    nothing = CliRunner().invoke(audit_command, ["--index", str(planted.index), "--root", str(tmp_path / "empty"),
                                                 "--no-report"])
    assert nothing.exit_code == 1 and "no embedded item has a label" in nothing.output
    help_text = CliRunner().invoke(audit_command, ["--help"])
    assert help_text.exit_code == 0 and "Example" in help_text.output
    assert all(p.help for p in audit_command.params if not getattr(p, "hidden", False) and p.param_type_name == "option")


# ----------------------------------------------------------------------------- a real browser


def find_chromium() -> str | None:
    return os.environ.get("INDEXER_CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium found (apt-get install chromium, or set "
                                                    "INDEXER_CHROMIUM to a Chrome/Chromium binary)")
def test_report_renders_and_sorts_in_headless_chromium(audited, tmp_path):
    paths = write_report(audited, tmp_path / "report")
    score_column = 5  # "#", image, path, given, suggested, score
    url = paths["html"].as_uri() + f"#sort=t-mislabel:{score_column}:asc"
    command = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,2000"]
    dom = subprocess.run(command + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-sortable="ready"' in dom.stdout  # the script ran
    table = dom.stdout.split('id="t-mislabel"', 1)[1].split("</table>", 1)[0]
    shown = [float(s) for s in re.findall(r'<td class="n" data-sort="([^"]+)">[^<]*</td><td class="n" data-sort',
                                          table)]
    expected = sorted(f.score for f in audited.of_type("mislabel"))
    assert shown[:len(expected)] == pytest.approx(expected)  # sorted ascending by the browser
    assert 'aria-sort="ascending"' in table
    shot = tmp_path / "report.png"
    subprocess.run(command + [f"--screenshot={shot}", paths["html"].as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000
    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        assert len(np.unique(np.asarray(image.convert("L").resize((64, 100))))) > 20  # not a blank page


def test_an_interrupted_classification_run_is_never_taken_for_labels(planted, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(planted.index, copy)
    with open_index(copy) as index:
        finished = index.classify(list(CLASSES), templates="none").run_id
        # A classify killed half-way leaves a run with some rows and no completion mark.
        broken = index.catalog.runs.start_classification(list(CLASSES), "none", 1)
        index.catalog.runs.add_classifications(broken, [(1, 1, CLASSES[0], 0.5)])
        assert run_labels(index.context).source == f"classification run {finished}"
        with pytest.raises(QueryError, match=f"run {broken} was interrupted"):
            run_labels(index.context, broken)
    result = CliRunner().invoke(audit_command, ["--index", str(copy), "--from-run", str(broken), "--no-report"])
    assert result.exit_code == 1 and "interrupted" in result.output
