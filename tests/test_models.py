"""Model loading: offline failures, unknown names and tags, random weights, local checkpoints."""

from __future__ import annotations

import json
import time

import open_clip
import pytest
import torch

from indexer import open_index
from indexer.errors import ModelError, ModelMismatchError
from indexer.models import ModelSpec, load_model

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_arch(tmp_path_factory):
    """A small random-initialised ViT architecture, registered with open_clip under a new name."""
    folder = tmp_path_factory.mktemp("configs")
    (folder / "test-tiny-vit.json").write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(folder / "test-tiny-vit.json")
    return "test-tiny-vit"


def test_offline_without_cached_weights_fails_fast_and_names_the_offline_options(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: the hub is unreachable
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    started = time.time()
    with pytest.raises(ModelError) as caught:
        load_model(ModelSpec("ViT-B-32", "laion2b_s34b_b79k"))
    assert time.time() - started < 30  # no minute of retries
    message = str(caught.value)
    assert "tiny-shapes" in message and "--weights" in message and "local-dir:" in message


def test_unknown_names_and_tags_are_clear_errors():
    with pytest.raises(ModelError, match="unknown model"):
        load_model(ModelSpec("No-Such-Model", "random"))
    with pytest.raises(ModelError, match="its tags: .*laion2b_s34b_b79k"):
        load_model(ModelSpec("ViT-B-32", "no_such_tag"))
    with pytest.raises(ModelError, match="not found"):
        ModelSpec("ViT-B-32", weights="/no/such/file.pt")


def test_random_weights_warn_and_embed_with_the_architecture_size(tiny_arch):
    with pytest.warns(UserWarning, match="random weights"):
        embedder = load_model(ModelSpec(tiny_arch, "random"))
    assert embedder.dim == 32 and embedder.image_size == 32
    vectors = embedder.embed_texts(["a", "b"])
    assert vectors.shape == (2, 32)
    assert abs(float((vectors[0] ** 2).sum()) - 1) < 1e-4


def test_local_checkpoint_with_weights_is_identified_by_its_hash(tiny_arch, tmp_path, photos):
    model = open_clip.create_model(tiny_arch)
    first, second = tmp_path / "first.pt", tmp_path / "second.pt"
    torch.save(model.state_dict(), first)
    torch.manual_seed(1)
    torch.save(open_clip.create_model(tiny_arch).state_dict(), second)
    with open_index(tmp_path / "index", tiny_arch, weights=str(first)) as index:
        summary = index.ingest([photos / "red_star"])
        assert summary.embedded == 4
        assert index.recorded_model["embed_dim"] == 32
    with open_index(tmp_path / "index") as index:  # reopened without naming the weights: they are remembered
        assert len(index.search("red", k=2)) == 2
    with pytest.raises(ModelMismatchError, match="weights"):
        open_index(tmp_path / "index", tiny_arch, weights=str(second))


def test_a_model_name_is_parsed_once_into_its_source_and_folder(tmp_path):
    import pickle

    from indexer.models import bundled

    (tmp_path / "open_clip_config.json").write_text("{}")
    cases = {
        "tiny-shapes": ("bundled", bundled.folder("tiny-shapes"), None),
        f"local-dir:{tmp_path}": ("local-dir", tmp_path, None),
        "hf-hub:org/repo": ("hf-hub", None, "org/repo"),
        "ViT-B-32": ("named", None, None),
    }
    for name, (source, folder, hub_id) in cases.items():
        spec = ModelSpec(name=name)
        assert (spec.source, spec.folder, spec.hub_id) == (source, folder, hub_id), name
        assert pickle.loads(pickle.dumps(spec)).source == source  # specs travel to Ray actors
    assert ModelSpec(f"local-dir:{tmp_path}").open_clip_name == f"local-dir:{tmp_path.resolve()}"
    assert ModelSpec("ViT-B-32", pretrained="x") == ModelSpec(name="ViT-B-32", pretrained="x")  # three fields decide
    with pytest.raises(ModelError, match="model folder not found"):
        ModelSpec(f"local-dir:{tmp_path / 'missing'}")
    with pytest.raises(ModelError, match="comes with its own weights"):
        ModelSpec(f"local-dir:{tmp_path}", weights=str(tmp_path / "open_clip_config.json"))
