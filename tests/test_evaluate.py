"""Evaluation figures on constructed cases with known answers, and the eval command on real pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from indexer.cli import main
from indexer.errors import QueryError
from indexer.query.evaluate import compute_report, cross_validated_calibration, gzsl_figures, load_dataset
from indexer.query.labels import read_mapping

CLASSES = ["cat", "dog", "fox", "owl"]  # fox and owl play the unseen classes


def constructed_scores() -> tuple[np.ndarray, np.ndarray]:
    """Eight pictures, two per class; the arg-max predictions are, in order:
    cat cat | dog cat | fox dog | owl cat."""
    truth = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    predicted = [0, 0, 1, 0, 2, 1, 3, 0]
    scores = np.full((8, 4), 0.1)
    for row, p in enumerate(predicted):
        scores[row, p] = 0.9
    # second choices, for top-2 checks: picture 3 (dog) has dog second, picture 7 (owl) has owl second
    scores[3, 1] = 0.8
    scores[7, 3] = 0.85
    return scores, truth


def test_top1_top5_recall_and_confusions_on_a_known_case():
    scores, truth = constructed_scores()
    report = compute_report(scores, truth, CLASSES, "none")
    assert report.top1 == pytest.approx(5 / 8)
    assert report.top5 == 1.0  # four classes: every truth is in the top five
    recalls = {row["class"]: row["recall"] for row in report.per_class}
    assert recalls == {"cat": 1.0, "dog": 0.5, "fox": 0.5, "owl": 0.5}
    assert report.mean_per_class_recall == pytest.approx(0.625)
    assert {"true": "dog", "predicted": "cat", "images": 1} in report.confusions
    assert sum(c["images"] for c in report.confusions) == 3


def test_gzsl_seen_unseen_harmonic_mean_and_zsl_on_a_known_case():
    scores, truth = constructed_scores()
    report = compute_report(scores, truth, CLASSES, "none", unseen={"fox", "owl"})
    g = report.gzsl
    # seen pictures (cat, cat, dog, dog): 3 right; unseen (fox, fox, owl, owl): 2 right
    assert g["uncalibrated"]["seen_accuracy"] == 0.75
    assert g["uncalibrated"]["unseen_accuracy"] == 0.5
    assert g["uncalibrated"]["harmonic_mean"] == pytest.approx(2 * 0.75 * 0.5 / 1.25, abs=1e-4)
    # restricted to fox/owl: picture 5 (fox, scores 0.1/0.1) ties -> first unseen label, fox: right;
    # picture 7 (owl) has owl 0.85 > fox 0.1: right. All four unseen pictures right.
    assert g["zsl_unseen_accuracy"] == 1.0
    assert g["unseen_predicted_as_seen"] == 0.5


def test_calibrated_stacking_moves_unseen_pictures_off_seen_labels():
    scores, truth = constructed_scores()
    unseen = np.array([False, False, True, True])
    # Subtracting 0.1 from seen scores turns picture 7 (owl: cat 0.9 vs owl 0.85) into owl.
    figures = gzsl_figures(scores, truth, unseen, calibration=0.1)
    assert figures["unseen_accuracy"] == 0.75
    assert figures["seen_accuracy"] == 0.75  # picture 3 (dog 0.8 vs cat 0.9) stays wrong either way
    report = compute_report(scores, truth, CLASSES, "none", unseen={"fox", "owl"}, calibration=0.1)
    assert report.gzsl["calibrated"]["harmonic_mean"] == pytest.approx(0.75, abs=1e-4)


def test_cross_validated_calibration_never_scores_a_picture_with_its_own_constant():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, size=400)
    scores = rng.normal(0, 0.05, size=(400, 4))
    scores[np.arange(400), truth] += 0.2
    scores[:, :2] += 0.15  # a strong bias towards the seen classes 0 and 1
    unseen = np.array([False, False, True, True])
    before = gzsl_figures(scores, truth, unseen)
    after = cross_validated_calibration(scores, truth, unseen)
    assert after["harmonic_mean"] > before["harmonic_mean"] + 0.1
    assert len(after["constants"]) == 2 and all(0.05 < c < 0.3 for c in after["constants"])


def test_unseen_names_must_be_dataset_classes():
    scores, truth = constructed_scores()
    with pytest.raises(QueryError, match="not in the dataset"):
        compute_report(scores, truth, CLASSES, "none", unseen={"zebra"})


def test_dataset_from_folders_csv_and_mapping(tmp_path):
    for folder in ("snow_fox", "barn_owl"):
        (tmp_path / "data" / folder).mkdir(parents=True)
        (tmp_path / "data" / folder / "a.png").write_bytes(b"x")
    pairs = load_dataset(tmp_path / "data")
    assert sorted({label for _, label in pairs}) == ["barn owl", "snow fox"]
    mapping = tmp_path / "names.csv"
    mapping.write_text("snow_fox,arctic fox\n")
    pairs = load_dataset(tmp_path / "data", read_mapping(mapping))
    assert sorted({label for _, label in pairs}) == ["arctic fox", "barn owl"]
    table = tmp_path / "labels.csv"
    table.write_text("path,label\ndata/snow_fox/a.png,fox\ndata/barn_owl/a.png,owl\n")
    pairs = load_dataset(table)
    assert pairs == [(str(tmp_path / "data/snow_fox/a.png"), "fox"), (str(tmp_path / "data/barn_owl/a.png"), "owl")]


def test_eval_command_on_rendered_pictures(tmp_path, photos):
    unseen = tmp_path / "unseen.txt"
    unseen.write_text("green star\nblue square\n")  # two of the bundled model's unseen classes
    result = CliRunner().invoke(main, ["eval", str(photos), "--index", str(tmp_path / "index"), "--model",
                                       "tiny-shapes", "--unseen", str(unseen), "--calibration", "auto", "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert figures["images"] == 48 and figures["classes"] == 12
    assert figures["top1"] >= 0.7  # chance: 1/12
    assert figures["gzsl"]["uncalibrated"]["seen_accuracy"] >= 0.7
    assert figures["gzsl"]["zsl_unseen_accuracy"] >= 0.75  # chance: 1/2
    human = CliRunner().invoke(main, ["eval", str(photos), "--index", str(tmp_path / "index")])
    assert human.exit_code == 0, human.output
    assert "top-1" in human.output and "per class" in human.output


def test_gzsl_figures_are_per_class_means_on_an_unbalanced_set():
    """Worked by hand. Seen: cat 8 pictures (6 right), dog 2 (0 right). Unseen: fox 4 (3 right; the wrong
    one taken for owl), owl 1 (right). The protocol averages classes: S = (6/8 + 0/2) / 2 = 0.375 and
    U = (3/4 + 1/1) / 2 = 0.875, H = 2·0.375·0.875 / 1.25 = 0.525; per picture S = 6/10, U = 4/5,
    H = 2·0.6·0.8 / 1.4 = 0.6857. ZSL (fox and owl only): fox 3/4, owl 1/1, so 0.875 per class, 0.8 per
    picture."""
    truth = np.array([0] * 8 + [1] * 2 + [2] * 4 + [3])
    predicted = [0] * 6 + [1, 2] + [0, 0] + [2, 2, 2, 3] + [3]
    scores = np.full((len(truth), 4), 0.1)
    scores[np.arange(len(truth)), predicted] = 0.9
    g = compute_report(scores, truth, CLASSES, "none", unseen={"fox", "owl"}).gzsl
    figures = g["uncalibrated"]
    assert figures["seen_accuracy"] == 0.375 and figures["unseen_accuracy"] == 0.875
    assert figures["harmonic_mean"] == 0.525
    assert figures["seen_accuracy_per_picture"] == 0.6 and figures["unseen_accuracy_per_picture"] == 0.8
    assert figures["harmonic_mean_per_picture"] == pytest.approx(0.6857, abs=1e-4)
    assert g["zsl_unseen_accuracy"] == 0.875 and g["zsl_unseen_accuracy_per_picture"] == 0.8
