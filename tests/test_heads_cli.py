"""`indexer heads` and `--head` on classify, eval and audit, through the real command on a real index
(the bundled model, rendered pictures), reopening the catalog to check what was stored."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer import open_index
from indexer.cli import main

from .conftest import PER_CLASS, TEST_CLASSES, catalog_dicts, catalog_execute, catalog_rows

UNSEEN = ("green star", "blue square")  # two of the bundled model's unseen classes; no labelled item here


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, built_index, photos) -> dict[str, Path]:
    """A copy of the built index with a generative head 'shapes' trained by the command."""
    root = tmp_path_factory.mktemp("heads")
    index = root / "index"
    shutil.copytree(built_index, index)
    labels = root / "labels.csv"
    rows = [f"{path},{folder.name.replace('_', ' ')}" for folder in sorted(photos.iterdir())
            if folder.name.replace("_", " ") not in UNSEEN for path in sorted(folder.iterdir())]
    labels.write_text("path,label\n" + "\n".join(rows) + "\n")
    classes = root / "classes.txt"
    classes.write_text("\n".join(TEST_CLASSES) + "\n")
    result = invoke("heads", "train", "shapes", "--index", index, "--labels", labels, "--classes", classes,
                    "--method", "generative", "--json")
    assert result.exit_code == 0, result.output
    return {"index": index, "labels": labels, "classes": classes, "photos": photos, "root": root}


def test_train_stores_the_head_with_its_choice_and_model(trained):
    row = catalog_dicts(trained["index"], "SELECT * FROM heads")[0]
    assert row["name"] == "shapes" and row["method"] == "generative"
    assert json.loads(row["classes"]) == list(TEST_CLASSES)
    hparams, figures = json.loads(row["hparams"]), json.loads(row["figures"])
    assert hparams["descriptions"] == "text" and "calibration" in hparams and "widen" in hparams
    assert figures["items"] == PER_CLASS * (len(TEST_CLASSES) - len(UNSEEN)) and figures["unseen_classes"] == 2
    assert figures["validation"]["unseen_pictures_used"] == 0 and len(figures["validation"]["candidates"]) > 1
    with open_index(trained["index"]) as index:
        assert row["model_key"] == index.context.model.key
        assert sorted(index.head("shapes").unseen_classes) == sorted(UNSEEN)


def test_list_and_show(trained):
    listed = invoke("heads", "list", "--index", trained["index"], "--json")
    assert listed.exit_code == 0, listed.output
    assert [(h["name"], h["usable"], h["unseen_classes"]) for h in json.loads(listed.stdout)] == [("shapes", True, 2)]
    shown = invoke("heads", "show", "shapes", "--index", trained["index"], "--json")
    assert shown.exit_code == 0, shown.output
    assert sorted(json.loads(shown.stdout)["unseen_classes"]) == sorted(UNSEEN)
    human = invoke("heads", "show", "shapes", "--index", trained["index"])
    assert "no unseen picture used" in human.output and "unseen (2)" in human.output


def test_classify_with_the_head_labels_every_item_over_its_classes(trained):
    result = invoke("classify", "--head", "shapes", "--index", trained["index"], "--json")
    assert result.exit_code == 0, result.output
    predictions = json.loads(result.stdout)
    assert len(predictions) == PER_CLASS * len(TEST_CLASSES)
    assert {p["label"] for p in predictions} <= set(TEST_CLASSES)
    right = sum(p["label"] == Path(p["path"]).parent.name.replace("_", " ") for p in predictions)
    assert right >= 0.8 * len(predictions)  # chance: 1/12
    unseen_right = sum(p["label"] == Path(p["path"]).parent.name.replace("_", " ") for p in predictions
                       if Path(p["path"]).parent.name.replace("_", " ") in UNSEEN)
    assert unseen_right >= PER_CLASS  # of 8 pictures of the two classes the head never had an item of
    assert json.loads(catalog_rows(trained["index"], "SELECT labels FROM classification_runs")[-1][0]) == \
        list(TEST_CLASSES)


def test_eval_with_the_head_and_the_comparison(trained):
    result = invoke("eval", trained["photos"], "--index", trained["index"], "--head", "shapes", "--compare", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"top1", "top5", "mean_per_class_recall", "per_class", "confusions", "gzsl"} <= set(report)
    assert report["head"]["name"] == "shapes"
    assert report["gzsl"]["unseen_classes"] == 2  # the head's unseen classes, without --unseen
    assert report["gzsl"]["uncalibrated"]["unseen_accuracy"] >= 0.5
    methods = [(row["method"], row["head"]) for row in report["comparison"]]
    assert methods == [("plain cosine", None), ("calibrated stacking", None), ("transductive", None),
                       ("generative", "shapes")]
    assert "fell back" in report["comparison"][2]["warning"]  # a few dozen pictures: too few to transduce
    head_row = report["comparison"][3]
    assert head_row["harmonic_mean"] == report["gzsl"]["uncalibrated"]["harmonic_mean"]
    # Trained with the index's unlabelled items (the default), on an index that held these pictures: the
    # figures are transductive, and both the report and the comparison row say so.
    assert report["head"]["warning"].startswith(f"{report['images']} of these {report['images']} pictures")
    assert "transductive" in head_row["warning"]
    human = invoke("eval", trained["photos"], "--index", trained["index"], "--head", "shapes", "--compare")
    assert human.exit_code == 0 and "calibrated stacking" in human.output and "head 'shapes'" in human.output
    assert "warning: " in human.stderr and "--unlabelled" in human.stderr


def test_a_head_trained_without_unlabelled_items_or_before_the_pictures_came_warns_of_nothing(trained, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(trained["index"], index)
    common = ["--index", index, "--labels", trained["labels"], "--classes", trained["classes"]]
    assert invoke("heads", "train", "alone", "--unlabelled", "none", *common).exit_code == 0
    report = json.loads(invoke("eval", trained["photos"], "--index", index, "--head", "alone", "--json").stdout)
    assert "warning" not in report["head"]
    later = tmp_path / "later-set"  # pictures of two classes, stored after the head was trained
    for folder in ("green_star", "red_circle"):
        shutil.copytree(trained["photos"] / folder, later / folder)
        for picture in (later / folder).iterdir():
            picture.write_bytes(picture.read_bytes() + b"\0")  # another content: a new embedding id
    result = invoke("eval", later, "--index", index, "--head", "shapes", "--json")
    assert result.exit_code == 0, result.output
    assert "warning" not in json.loads(result.stdout)["head"]


def test_audit_with_the_head(trained):
    result = invoke("audit", "--index", trained["index"], "--root", trained["photos"], "--head", "shapes",
                    "--no-report", "--json")
    assert result.exit_code == 0, result.output
    assert isinstance(json.loads(result.stdout), list)


def test_mistakes_exit_1_with_one_line_and_usage_errors_exit_2(trained):
    again = invoke("heads", "train", "shapes", "--index", trained["index"], "--labels", trained["labels"],
                   "--classes", trained["classes"])
    assert again.exit_code == 1 and "exists already" in again.output
    other = trained["root"] / "few.txt"
    other.write_text("red circle\nred square\nred star\n")
    unknown = invoke("heads", "train", "x", "--index", trained["index"], "--labels", trained["labels"],
                     "--classes", other)
    assert unknown.exit_code == 1 and "not in the class list" in unknown.output
    missing = invoke("classify", "--head", "nope", "--index", trained["index"])
    assert missing.exit_code == 1 and "no head named 'nope'" in missing.output and "shapes" in missing.output
    assert invoke("heads", "train", "x", "--index", trained["index"]).exit_code == 2


def test_a_head_of_another_model_is_refused(trained, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(trained["index"], index)
    catalog_execute(index, "UPDATE heads SET model_key = 'another-model' WHERE name = 'shapes'")
    for args in (["classify", "--head", "shapes"], ["heads", "show", "shapes"],
                 ["eval", trained["photos"], "--head", "shapes"]):
        result = invoke(*args, "--index", index)
        assert result.exit_code == 1 and "trained for another model" in result.output, args
    listed = json.loads(invoke("heads", "list", "--index", index, "--json").stdout)
    assert listed[0]["usable"] is False


def test_delete(trained, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(trained["index"], index)
    assert invoke("heads", "delete", "shapes", "--index", index).exit_code == 0
    assert catalog_rows(index, "SELECT COUNT(*) FROM heads") == [(0,)]
    gone = invoke("heads", "delete", "shapes", "--index", index)
    assert gone.exit_code == 1 and "no head named" in gone.output


def test_classifying_with_a_head_never_imports_torch(trained):
    from .test_e2e import PROBE

    args = ["classify", "--head", "shapes", "--no-store", "--index", str(trained["index"])]
    probe = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True)
    assert "HEAVY: []" in probe.stderr, probe.stderr


def test_a_head_over_too_many_classes_is_refused_at_once(trained):
    import time

    many = trained["root"] / "many.txt"
    many.write_text("\n".join([*TEST_CLASSES, *(f"made-up class {n}" for n in range(10_000))]) + "\n")
    started = time.perf_counter()
    refused = invoke("heads", "train", "huge", "--index", trained["index"], "--labels", trained["labels"],
                     "--classes", many)
    assert refused.exit_code == 1 and "at most 1,000 classes" in refused.output, refused.output
    assert time.perf_counter() - started < 30
    assert catalog_rows(trained["index"], "SELECT COUNT(*) FROM heads WHERE name = 'huge'")[0][0] == 0
