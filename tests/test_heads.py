"""Zero-shot heads on synthetic class clusters (no model, no pictures): they learn, they are reproducible,
their weights survive the catalog, and validation never needs an unseen picture."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.errors import HeadError
from indexer.heads.fit import Linear
from indexer.heads.generative import train_generative
from indexer.query.scoring import LabelScores
from indexer.query.head import Head, arrays_from_blob, normalise
from indexer.heads.projection import train_projection
from indexer.heads.select import fit_head
from indexer.query.gzsl import gzsl_figures, zsl_accuracy
from indexer.store.catalog import open_catalog

# A short GAN: enough for these clusters, a few seconds on one CPU thread.
FAST_WGAN = {"generator": "wgan", "gan_steps": 150, "hidden": 64, "noise": 8, "synth_per_class": 100,
             "clf_steps": 200}


def clusters(seed: int = 0, classes: int = 24, unseen: int = 6, per_class: int = 30, d: int = 16, k: int = 8,
             noise: float = 0.15) -> dict[str, np.ndarray]:
    """Classes whose embedding centre is a fixed linear map of their description: learnable from the seen
    classes, so the unseen ones are reachable only through their descriptions."""
    rng = np.random.default_rng(seed)
    descriptions = rng.normal(size=(classes, k)).astype(np.float32)
    centres = normalise(descriptions @ (rng.normal(size=(k, d)) / np.sqrt(k)))
    seen = np.ones(classes, dtype=bool)
    seen[rng.choice(classes, unseen, replace=False)] = False

    def draw(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(ids, per_class)
        return normalise(centres[y] + noise * rng.normal(size=(len(y), d))).astype(np.float32), y

    x, y = draw(np.flatnonzero(seen))
    x_test, y_test = draw(np.arange(classes))
    return {"x": x, "y": y, "a": descriptions, "seen": seen, "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return clusters()


def figures(layer: Linear, data: dict[str, np.ndarray]) -> dict[str, float]:
    scores = layer.logits(data["x_test"])
    zsl, _ = zsl_accuracy(scores, data["y_test"], ~data["seen"])
    return {**gzsl_figures(scores, data["y_test"], ~data["seen"]), "zsl": zsl}


def test_projection_head_reaches_unseen_classes(data):
    f = figures(train_projection(data["x"], data["y"], data["a"], data["seen"], identity_prior=False, reg=1e-4), data)
    assert f["zsl"] > 0.8  # chance: 1/6
    assert f["seen_accuracy"] > 0.8 and f["unseen_accuracy"] > 0.5  # chance over all classes: 1/24


def test_gaussian_generative_head_reaches_unseen_classes(data):
    f = figures(train_generative(data["x"], data["y"], data["a"], data["seen"]), data)
    assert f["zsl"] > 0.9
    assert f["seen_accuracy"] > 0.9 and f["unseen_accuracy"] > 0.9


def test_wgan_generative_head_reaches_unseen_classes(data):
    # A short GAN places the unseen classes well among themselves (ZSL) but keeps a seen-class bias over
    # all classes; U is still several times chance (1/24).
    f = figures(train_generative(data["x"], data["y"], data["a"], data["seen"], **FAST_WGAN), data)
    assert f["zsl"] > 0.8
    assert f["seen_accuracy"] > 0.9 and f["unseen_accuracy"] > 0.2


def test_an_untrained_projection_is_plain_cosine():
    # Descriptions in the embedding space and no training step: W is the identity, the head plain cosine.
    data = clusters(d=8, k=8)
    layer = train_projection(data["x"], data["y"], data["a"], data["seen"], steps=0)
    cosine = normalise(data["x_test"]) @ normalise(data["a"]).T
    assert np.array_equal(layer.logits(data["x_test"]).argmax(axis=1), cosine.argmax(axis=1))


@pytest.mark.parametrize("trainer,hparams", [
    (train_projection, {"steps": 100, "identity_prior": False}), (train_generative, {}),
    (train_generative, FAST_WGAN)], ids=["projection", "gaussian", "wgan"])
def test_same_seed_same_head_other_seed_other_head(data, trainer, hparams):
    args = (data["x"], data["y"], data["a"], data["seen"])
    first, again, other = (trainer(*args, seed=s, **hparams) for s in (3, 3, 4))
    assert np.array_equal(first.weight, again.weight) and np.array_equal(first.bias, again.bias)
    assert not np.array_equal(first.weight, other.weight)


def test_validation_holds_out_seen_classes_and_picks_from_the_grid(data):
    grid = [{"widen": 1.0, "clf_steps": 100}, {"widen": 3.0, "clf_steps": 100}]
    fitted = fit_head(data["x"], data["y"], data["a"], data["seen"], "generative", seed=0, grid=grid)
    assert fitted.layer.hparams["widen"] in (1.0, 3.0) and fitted.layer.hparams["clf_steps"] == 100
    assert [row["hparams"] for row in fitted.selection["candidates"]] == grid
    assert all(0 <= row["H"] <= 1 for row in fitted.selection["candidates"])
    assert fitted.selection["unseen_pictures_used"] == 0
    again = fit_head(data["x"], data["y"], data["a"], data["seen"], "generative", seed=0, grid=grid)
    assert np.array_equal(again.layer.weight, fitted.layer.weight) and again.calibration == fitted.calibration


def test_weights_and_record_survive_the_catalog(tmp_path, data):
    layer = train_generative(data["x"], data["y"], data["a"], data["seen"], clf_steps=50)
    head = Head("clusters", "generative", [f"c{i}" for i in range(24)], layer.weight, layer.bias, data["seen"],
                "model-key", calibration=0.7, hparams=layer.hparams)
    catalog = open_catalog(tmp_path / "index")
    catalog.heads.save(head.name, head.method, head.classes, head.hparams, head.model_key, {"items": 1},
                      head.weights_blob())
    row = catalog.heads.get("clusters")
    catalog.close()
    weight, bias, seen = arrays_from_blob(row.weights, row.name)
    back = Head(row.name, row.method, row.classes, weight, bias, seen, row.model_key, 0.7, row.hparams)
    assert back.classes == head.classes and back.hparams == head.hparams and row.figures == {"items": 1}
    assert np.array_equal(back.scores(data["x_test"]), head.scores(data["x_test"]))


def test_calibration_is_subtracted_from_seen_classes_only():
    head = Head("h", "projection", ["a", "b", "c"], np.eye(3, dtype=np.float32), np.zeros(3, np.float32),
                np.array([True, True, False]), "key", calibration=0.5)
    assert np.allclose(head.scores(np.array([[1.0, 0.0, 0.0]])), [[0.5, -0.5, 0.0]])
    assert np.allclose(LabelScores(["c", "a"], None, 1.0, head).scores(np.array([[1.0, 0.0, 0.0]])), [[0.0, 0.5]])
    with pytest.raises(HeadError, match="does not know"):
        head.columns(["a", "zebra"])


def test_unreadable_weights_and_impossible_inputs_are_refused(data):
    with pytest.raises(HeadError, match="unreadable"):
        arrays_from_blob(b"not a head", "broken")
    seen = data["seen"].copy()
    seen[data["y"][0]] = False
    with pytest.raises(HeadError, match="marked unseen"):
        train_projection(data["x"], data["y"], data["a"], seen)
    with pytest.raises(HeadError, match="no unseen class"):
        train_generative(data["x"], data["y"], data["a"], np.ones(24, dtype=bool))
