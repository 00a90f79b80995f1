"""The bundled tiny-shapes model: loads through open_clip's public API, and really classifies."""

from __future__ import annotations

import numpy as np
import open_clip
import pytest
import torch

from indexer import list_models, synthetic
from indexer.models import ModelSpec, bundled, load_model

from .plain_shapes import write_plain_folder


@pytest.fixture(scope="module")
def embedder():
    return load_model(ModelSpec("tiny-shapes"), device="cpu")


def test_loads_with_open_clip_public_api_alone():
    folder = bundled.folder("tiny-shapes").resolve()
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}", bpe_path=str(folder / "bpe_simple_vocab_pruned.txt.gz"))
    model.eval()
    image, _ = synthetic.render(np.random.default_rng(0), "red", "star", 64)
    with torch.inference_mode():
        image_features = model.encode_image(preprocess(image)[None], normalize=True)
        text_features = model.encode_text(tokenizer(["a red star", "a blue circle"]), normalize=True)
    similarity = (image_features @ text_features.T)[0]
    assert similarity[0] > similarity[1]


def test_card_declares_the_split_and_its_evaluation():
    entry = next(m for m in list_models(include_pretrained=False) if m["name"] == "tiny-shapes")
    card = entry["card"]
    assert card["unseen_classes"] == list(synthetic.UNSEEN_CLASSES)
    assert len(card["unseen_classes"]) == 12 and len(card["classes"]) == 48
    for word in ("red", "green", "blue", "yellow", "purple", "orange", "white", "black"):
        assert any(c.startswith(word) for c in synthetic.SEEN_CLASSES)
    for word in ("circle", "square", "triangle", "star", "cross", "hexagon"):
        assert any(c.endswith(word) for c in synthetic.SEEN_CLASSES)
    assert "seen_top1" in card["evaluation"]
    assert bundled.checkpoint_file("tiny-shapes").stat().st_size < 8_000_000


def accuracy(embedder, images, labels) -> tuple[float, float]:
    classes = list(synthetic.ALL_CLASSES)
    text = embedder.embed_texts([f"a {c}" for c in classes])
    batch = np.stack([embedder.preprocess(image) for image in images])
    predicted = (embedder.embed_images(batch) @ text.T).argmax(axis=1)
    hits = np.array([classes[p] == label for p, label in zip(predicted, labels)])
    unseen = np.array([label in synthetic.UNSEEN_CLASSES for label in labels])
    return float(hits[~unseen].mean()), float(hits[unseen].mean())


def test_classifies_freshly_rendered_pictures_far_above_chance(embedder):
    rng = np.random.default_rng(4242)
    images, labels = [], []
    for label in synthetic.ALL_CLASSES:
        colour, shape = label.split()
        for _ in range(3):
            images.append(synthetic.render(rng, colour, shape, 64)[0])
            labels.append(label)
    seen, unseen = accuracy(embedder, images, labels)
    assert seen >= 0.75  # one 48-way task; chance is 2%
    assert unseen >= 0.4  # classes never shown in training


def test_classifies_plain_shapes_drawn_by_other_code(embedder, tmp_path):
    written = write_plain_folder(tmp_path, list(synthetic.ALL_CLASSES), per_class=2, seed=1)
    from PIL import Image

    images = [Image.open(path).convert("RGB") for path, _ in written]
    seen, unseen = accuracy(embedder, images, [label for _, label in written])
    assert seen >= 0.7
    assert unseen >= 0.35
