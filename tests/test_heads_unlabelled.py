"""Transductive heads: the collection's unlabelled embeddings move the unseen classes to where their items
are. Synthetic clusters whose unseen classes sit off the place their descriptions predict (as a backbone
embeds truly unseen pictures), no model, no pictures; then the option through `indexer heads train` on a
real index."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from indexer.errors import HeadError
from indexer.heads.generative import train_generative
from indexer.query.head import normalise
from indexer.heads.projection import train_projection
from indexer.heads.select import fit_head
from indexer.heads.transductive import pooled_covariance, refine_means, regress_means
from indexer.query.gzsl import gzsl_figures

from .test_heads_cli import UNSEEN, invoke, trained  # noqa: F401 (a fixture)


def displaced(seed: int = 0, classes: int = 24, unseen: int = 6, per_class: int = 30, pool_per_class: int = 20,
              d: int = 16, k: int = 8, noise: float = 0.1, offset: float = 1.2) -> dict[str, np.ndarray]:
    """Class centres a linear map of their descriptions, the unseen ones moved ``offset`` off it in a random
    direction each; labelled items of the seen classes, an unlabelled pool and a test set of every class."""
    rng = np.random.default_rng(seed)
    descriptions = rng.normal(size=(classes, k)).astype(np.float32)
    centres = descriptions @ (rng.normal(size=(k, d)) / np.sqrt(k))
    seen = np.ones(classes, dtype=bool)
    seen[rng.choice(classes, unseen, replace=False)] = False
    centres[~seen] += offset * normalise(rng.normal(size=(unseen, d))) * np.linalg.norm(centres[~seen], axis=1,
                                                                                           keepdims=True)
    centres = normalise(centres)

    def draw(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(ids, n)
        return normalise(centres[y] + noise * rng.normal(size=(len(y), d))).astype(np.float32), y

    x, y = draw(np.flatnonzero(seen), per_class)
    pool, pool_y = draw(np.arange(classes), pool_per_class)
    x_test, y_test = draw(np.arange(classes), per_class)
    return {"x": x, "y": y, "a": descriptions, "seen": seen, "pool": pool, "pool_y": pool_y, "centres": centres,
            "x_test": x_test, "y_test": y_test}


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return displaced()


def figures(layer, data) -> dict[str, float]:
    return gzsl_figures(layer.logits(data["x_test"]), data["y_test"], ~data["seen"])


def test_em_moves_unseen_means_to_their_items(data):
    x, y, a, seen = data["x"], data["y"], normalise(data["a"]), data["seen"]
    predicted = regress_means(x, y, a, seen, 0.1)
    refined = refine_means(x, y, predicted, pooled_covariance(x, y, predicted, seen, 0.2), seen, data["pool"])
    unseen = np.flatnonzero(~seen)
    before = np.linalg.norm(predicted[unseen] - data["centres"][unseen], axis=1)
    after = np.linalg.norm(normalise(refined.means[unseen]) - data["centres"][unseen], axis=1)
    assert after.max() < 0.15 and before.min() > 0.5  # after: the noise of the mean of 20 items
    assert np.allclose(refined.taken[unseen], 20, atol=2)  # each unseen class found its 20 pool items
    right = refined.labels == data["pool_y"]
    assert right.mean() > 0.95 and refined.background_share < 0.05


def test_refined_generative_head_reaches_unseen_classes_the_plain_one_misses(data):
    args = (data["x"], data["y"], data["a"], data["seen"])
    alone = figures(train_generative(*args), data)
    refined = figures(train_generative(*args, unlabelled=data["pool"]), data)
    assert alone["unseen_accuracy"] < 0.85  # the predicted places are off
    assert refined["unseen_accuracy"] > 0.95 and refined["seen_accuracy"] > 0.95
    wgan = {"generator": "wgan", "gan_steps": 100, "hidden": 64, "noise": 8, "synth_per_class": 100, "clf_steps": 200}
    assert figures(train_generative(*args, unlabelled=data["pool"], **wgan), data)["unseen_accuracy"] > 0.9


def test_self_trained_projection_head_reaches_unseen_classes(data):
    args = (data["x"], data["y"], data["a"], data["seen"])
    options = {"identity_prior": False, "reg": 1e-4, "steps": 300}
    alone = figures(train_projection(*args, **options), data)
    layer = train_projection(*args, unlabelled=data["pool"], **options)
    refined = figures(layer, data)
    assert refined["unseen_accuracy"] > alone["unseen_accuracy"] + 0.2 and refined["unseen_accuracy"] > 0.9
    assert 100 <= layer.hparams["pseudo_labelled_items"] <= 6 * 20


def test_a_pool_without_unseen_items_or_with_strays_changes_little(data):
    """Items of seen classes only: the unseen classes stay near their predicted places instead of being
    dragged to the seen classes' outliers. Stray items anywhere (a fifth of the pool's number): the
    background takes them, and the unseen classes still find their own items."""
    args = (data["x"], data["y"], data["a"], data["seen"])
    alone = figures(train_generative(*args), data)["harmonic_mean"]
    seen_only = data["pool"][data["seen"][data["pool_y"]]]
    assert figures(train_generative(*args, unlabelled=seen_only), data)["harmonic_mean"] > alone - 0.05
    strays = normalise(np.random.default_rng(9).normal(size=(100, data["x"].shape[1])))
    layer = train_generative(*args, unlabelled=np.concatenate([data["pool"], strays]))
    assert figures(layer, data)["unseen_accuracy"] > 0.95 and layer.hparams["em_background_share"] > 0.1


def test_same_seed_same_refined_head_and_validation_sees_the_pool(data):
    args = (data["x"], data["y"], data["a"], data["seen"])
    first, again = (train_generative(*args, seed=3, unlabelled=data["pool"]) for _ in range(2))
    assert np.array_equal(first.weight, again.weight)
    assert first.hparams["em_iters"] == 10 and 1.0 <= first.hparams["em_unseen_spread"]
    grid = [{"widen": 1.0, "clf_steps": 100}, {"widen": 2.0, "clf_steps": 100}]
    fitted = fit_head(*args, "generative", seed=0, grid=grid, unlabelled=data["pool"])
    assert fitted.selection["unlabelled_items"] == len(data["pool"]) and fitted.selection["unseen_pictures_used"] == 0
    with pytest.raises(HeadError, match="unlabelled embeddings must be"):
        train_generative(*args, unlabelled=np.ones((3, 5), np.float32))


# -- through the command, on a real index ------------------------------------------------------------------


@pytest.fixture
def index_copy(tmp_path, trained):
    index = tmp_path / "index"
    shutil.copytree(trained["index"], index)
    return index


def test_the_choice_is_stored_and_shown(trained):
    shown = json.loads(invoke("heads", "show", "shapes", "--index", trained["index"], "--json").stdout)
    unseen_pictures = 4 * len(UNSEEN)  # the only items of the index without a label
    assert shown["hparams"]["unlabelled"] == "all" and shown["figures"]["unlabelled_items"] == unseen_pictures
    human = invoke("heads", "show", "shapes", "--index", trained["index"]).output
    assert f"and {unseen_pictures} unlabelled items" in human and "unlabelled: all" in human


def test_unlabelled_folder_none_and_a_path_matching_nothing(trained, index_copy):
    common = ["--index", index_copy, "--labels", trained["labels"], "--classes", trained["classes"], "--json"]
    folder = trained["photos"] / UNSEEN[0].replace(" ", "_")
    below = invoke("heads", "train", "below", "--unlabelled", folder, *common)
    assert below.exit_code == 0, below.output
    record = json.loads(below.stdout)
    assert record["hparams"]["unlabelled"] == str(folder) and record["figures"]["unlabelled_items"] == 4
    alone = json.loads(invoke("heads", "train", "alone", "--unlabelled", "none", *common).stdout)
    assert alone["hparams"]["unlabelled"] == "none" and alone["figures"]["unlabelled_items"] == 0
    assert "em_iters" not in alone["hparams"]
    nothing = invoke("heads", "train", "nothing", "--unlabelled", trained["root"] / "no-such-folder", *common)
    assert nothing.exit_code == 1 and "no unlabelled item" in nothing.output and "no-such-folder" in nothing.output
    labelled_only = trained["photos"] / "red_circle"  # every item there is labelled
    assert invoke("heads", "train", "x", "--unlabelled", labelled_only, *common).exit_code == 1


def test_help_explains_the_option():
    text = invoke("heads", "train", "--help").output
    assert "--unlabelled" in text and "all|none|PATH" in text and "transductive" in text
