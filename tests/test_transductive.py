"""Transductive zero-shot classification: the mixture on constructed clusters, the guard, and the library,
CLI and catalog paths on pictures ingested with the bundled model into real SQLite indexes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from indexer import open_index
from indexer.cli import main
from indexer.query import mixture
from indexer.query.scoring import LabelScores
from indexer.query.transduce import transduce

from .conftest import TEST_CLASSES, render_folder, run_cli


def normalise(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def clusters(classes: int = 10, absent: int = 2, per_class: int = 40, d: int = 32, seed: int = 0):
    """Items in tight clusters; each label's text vector sits off its cluster, towards the next class's,
    so plain zero-shot confuses neighbours. The last ``absent`` labels have no item."""
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((classes, d)))
    text = normalise(centres + 0.5 * np.roll(centres, -1, axis=0) + 0.3 * rng.standard_normal((classes, d)))
    present = classes - absent
    truth = np.repeat(np.arange(present), per_class)
    items = normalise(centres[truth] + 0.15 * rng.standard_normal((len(truth), d)))
    return items.astype(np.float32), truth, text.astype(np.float32)


def test_transduction_finds_the_clusters_plain_zero_shot_confuses():
    items, truth, text = clusters()
    plain = float(np.mean((items @ text.T).argmax(axis=1) == truth))
    result = transduce(items, text, scale=10.0)
    ours = float(np.mean(result.scores.argmax(axis=1) == truth))
    assert result.used, result.guard
    assert plain < 0.8 and ours >= plain + 0.1, (plain, ours)
    # The absent labels (whose text vectors point at present clusters) gain almost nothing.
    assert np.isin(result.scores.argmax(axis=1), [8, 9]).mean() <= 0.03
    assert result.probabilities().sum(axis=1) == pytest.approx(np.ones(len(items)))


def test_blocks_give_the_same_answer_as_one_pass(monkeypatch):
    items, _, text = clusters(seed=1)
    whole = transduce(items, text, scale=30.0).scores
    monkeypatch.setattr(mixture, "CHUNK", 37)
    assert np.allclose(transduce(items, text, scale=30.0).scores, whole, atol=1e-8)


@pytest.mark.parametrize("case", ["small", "few labels present"])
def test_the_guard_returns_plain_zero_shot_unchanged(case):
    items, truth, text = clusters(classes=12, absent=0, seed=2)
    if case == "small":
        items = items[:50]
    else:  # 2 of 12 labels hold every item
        items = items[np.isin(truth, [0, 1])]
    result = transduce(items, text, scale=30.0)
    assert not result.used and result.guard["reason"]
    assert np.array_equal(result.scores, items @ text.T)
    assert transduce(items, text, scale=30.0, guard=False).used  # what the guard overruled


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """144 pictures of 12 classes, ingested with the bundled model."""
    root = tmp_path_factory.mktemp("collection")
    render_folder(root / "pictures", per_class=12, seed=21)
    with open_index(root / "index", model="tiny-shapes") as index:
        index.ingest([root / "pictures"])
    return root


def test_classify_transductive_stores_its_run_and_holds_against_plain(collection):
    with open_index(collection / "index") as index:
        got: dict[str, str] = {}
        result = index.classify(list(TEST_CLASSES), transductive=True, top_k=2,
                                on_predictions=lambda ps: got.update((p.path, p.labels[0][0]) for p in ps))
        assert result.transductive["used"], result.transductive
        assert result.items == 144 and sum(result.counts.values()) == 144
        stored = index.catalog.rows("SELECT COUNT(*) FROM classifications WHERE run_id = :r", {"r": result.run_id})
        assert stored[0][0] == 288  # two labels per item
        plain: dict[str, str] = {}
        index.classify(list(TEST_CLASSES), store=False,
                       on_predictions=lambda ps: plain.update((p.path, p.labels[0][0]) for p in ps))
    truth = {path: path.split("/")[-2].replace("_", " ") for path in got}
    ours = np.mean([got[p] == truth[p] for p in got])
    theirs = np.mean([plain[p] == truth[p] for p in plain])
    assert ours >= theirs - 0.01, (ours, theirs)


def test_eval_transductive_reports_the_guard(collection):
    runner = CliRunner()
    out = runner.invoke(main, ["eval", str(collection / "pictures"), "--index", str(collection / "index"),
                               "--transductive", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["transductive"]["used"] is True and report["transductive"]["items"] == 144
    text = runner.invoke(main, ["eval", str(collection / "pictures"), "--index", str(collection / "index"),
                                "--transductive"])
    assert "transductive: used" in text.output


def test_transductive_with_a_head_is_refused(collection, photos):
    done = run_cli("classify", "--index", str(collection / "index"), "--head", "any", "--transductive")
    assert done.returncode != 0
    assert "--transductive" in done.stderr and "Traceback" not in done.stderr


def test_a_small_collection_falls_back_to_plain_predictions(built_index):
    with open_index(built_index) as index:
        runs = []
        for transductive in (False, True):
            got: dict[str, tuple] = {}
            result = index.classify(list(TEST_CLASSES), transductive=transductive, store=False, top_k=3,
                                    on_predictions=lambda ps: got.update((p.path, p.labels) for p in ps))
            runs.append(got)
        assert result.transductive["used"] is False and "too few" in result.transductive["reason"]
        assert runs[0] == runs[1]
        scorer = LabelScores.build(index.context.texts, list(TEST_CLASSES))
        assert scorer.transduced(np.zeros((0, index.dim), np.float32)).scores.shape == (0, len(TEST_CLASSES))


def test_the_service_classifies_transductively_and_says_what_the_guard_did(collection):
    import time

    import httpx

    from .live_server import live_server

    with live_server({"shapes": collection / "index"}) as url, httpx.Client(base_url=url, timeout=60) as client:
        run = client.post("/api/classify", json={"labels": list(TEST_CLASSES), "transductive": True})
        assert run.status_code == 202, run.text
        for _ in range(400):
            state = client.get(f"/api/classify/{run.json()['id']}").json()
            if state["state"] != "running":
                break
            time.sleep(0.05)
        assert state["state"] == "done" and state["total"] == 144, state
        assert state["transductive"]["used"] is True and sum(state["counts"].values()) == 144
        plain = client.post("/api/classify", json={"labels": list(TEST_CLASSES)}).json()
        assert plain["transductive"] is None


# -- the heads: EM's unseen classes start where transduction found them; calibration never adds seen bias --


def test_heads_start_unseen_classes_where_their_clusters_were_found():
    from indexer.heads.generative import train_generative
    from indexer.heads.transductive import regress_means, start_means
    from indexer.query.gzsl import gzsl_figures

    from .test_heads_unlabelled import displaced

    data = displaced(seed=4, offset=2.0)
    args = (data["x"], data["y"], data["a"], data["seen"])
    found = np.where(data["seen"][:, None], np.nan, data["centres"])  # a label-free search's answer
    found[np.flatnonzero(~data["seen"])[0]] = np.nan  # one class it did not find
    start = start_means(*args, ridge=0.1, found=found)
    regressed = regress_means(*args, ridge=0.1)
    unseen = np.flatnonzero(~data["seen"])
    assert np.array_equal(start[unseen[1:]], found[unseen[1:]])
    assert np.array_equal(start[unseen[0]], regressed[unseen[0]]) and np.array_equal(start[data["seen"]],
                                                                                    regressed[data["seen"]])
    h = {}
    for name, given in (("regressed", None), ("found", found)):
        layer = train_generative(*args, seed=0, unlabelled=data["pool"], found_means=given)
        h[name] = gzsl_figures(layer.logits(data["x_test"]), data["y_test"], ~data["seen"])["unseen_accuracy"]
    assert h["found"] >= h["regressed"], h


def test_calibration_tuned_for_a_head_is_never_negative():
    from indexer.query.gzsl import tune_calibration

    # Unseen pictures are fine; seen pictures lose to an unseen label unless seen scores are raised.
    truth = np.array([0, 0, 1, 1])
    scores = np.array([[0.5, 0.6], [0.5, 0.6], [0.1, 0.9], [0.2, 0.8]])
    unseen = np.array([False, True])
    assert tune_calibration(scores, truth, unseen) < 0
    assert tune_calibration(scores, truth, unseen, non_negative=True) == 0.0


def test_a_trained_head_records_how_its_em_started(tmp_path, collection):
    import shutil

    index = tmp_path / "index"
    shutil.copytree(collection / "index", index)
    seen = [c for c in TEST_CLASSES if c not in ("red star", "blue square", "green circle")]
    labels = tmp_path / "labels.csv"
    pictures = sorted((collection / "pictures").rglob("*.jpg"))
    rows = [(p, p.parent.name.replace("_", " ")) for p in pictures]
    labels.write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in rows[::4] if c in seen))
    with open_index(index) as opened:
        head = opened.train_head("t", labels, list(TEST_CLASSES), grid=[{"widen": 2.0, "clf_steps": 50}])
    assert head.hparams["em_start"] == "transduced", head.hparams["em_start"]  # 117 unlabelled items, 12 labels
    assert "saturated" in head.figures["validation"]


def test_a_head_more_seen_biased_than_plain_on_the_collection_falls_back_to_plain_cosine():
    from indexer.heads.fit import Linear
    from indexer.heads.select import Fitted
    from indexer.heads.train import _safe_layer

    items, truth, text = clusters(classes=6, absent=0, seed=5)
    seen = np.array([True, True, True, True, False, False])
    biased = Linear(text.copy(), np.where(seen, 5.0, 0.0).astype(np.float32))  # the seen classes always win
    fitted = Fitted(biased, 0.0, {}, 0.0)
    weight, bias, calibration, why = _safe_layer(fitted, items, text, seen, logit_scale=30.0)
    assert why and "plain cosine" in why and calibration == 0.0
    assert np.array_equal((items @ weight.T + bias).argmax(axis=1), (items @ text.T).argmax(axis=1))
    fair = Fitted(Linear(text.copy(), np.zeros(6, np.float32)), 0.0, {}, 0.0)
    assert _safe_layer(fair, items, text, seen, logit_scale=30.0)[3] is None  # as seen-biased as plain: kept
