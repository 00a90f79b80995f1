"""indexer.models.tokenizer against open_clip's SimpleTokenizer, token for token."""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from indexer.models import bundled
from indexer.models.tokenizer import ClipTokenizer

from .text_corpus import corpus

open_clip = pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    texts = corpus()
    assert len(texts) >= 2000
    return texts


def _assert_same(expected: np.ndarray, got: np.ndarray, texts: list[str]) -> None:
    assert got.dtype == np.int64 and got.shape == expected.shape
    differing = [texts[i] for i in np.flatnonzero((expected != got).any(axis=1))]
    assert not differing, f"{len(differing)} of {len(texts)} texts differ, e.g. {differing[:3]!r}"


def test_default_vocabulary(texts: list[str]) -> None:
    reference = open_clip.get_tokenizer("ViT-B-32")
    ours = ClipTokenizer()
    assert ours.vocab_size == reference.vocab_size
    assert (ours.sot_token_id, ours.eot_token_id) == (reference.sot_token_id, reference.eot_token_id)
    _assert_same(reference(texts).numpy(), ours(texts), texts)


def test_bundled_pruned_vocabulary(texts: list[str]) -> None:
    tiny_shapes_dir = bundled.folder("tiny-shapes")
    tiny_bpe = next(tiny_shapes_dir.glob("*.txt.gz"))
    reference = open_clip.get_tokenizer(f"local-dir:{tiny_shapes_dir}", bpe_path=str(tiny_bpe))
    ours = ClipTokenizer.from_open_clip_config(tiny_shapes_dir / "open_clip_config.json", bpe_path=tiny_bpe)
    assert ours.context_length == reference.context_length == 32
    assert ours.vocab_size == reference.vocab_size
    _assert_same(reference(texts).numpy(), ours(texts), texts)


def test_other_context_lengths_and_clean_modes(texts: list[str]) -> None:
    sample = texts[:300]
    for clean in ("lower", "whitespace", "canonicalize"):
        reference = open_clip.tokenizer.SimpleTokenizer(clean=clean)
        ours = ClipTokenizer(clean=clean)
        for length in (5, 16, 77, 100):
            _assert_same(reference(sample, context_length=length).numpy(), ours(sample, context_length=length), sample)


def test_truncation_keeps_end_token() -> None:
    ours = ClipTokenizer(context_length=8)
    row = ours("one two three four five six seven eight nine ten")[0]
    assert row[0] == ours.sot_token_id and row[-1] == ours.eot_token_id and (row != 0).all()
    empty = ours("")[0]
    assert list(empty[:3]) == [ours.sot_token_id, ours.eot_token_id, 0]
    assert ours(["a", "b"]).shape == (2, 8)


def test_refuses_what_it_does_not_reproduce() -> None:
    with pytest.raises(ValueError):
        ClipTokenizer.from_open_clip_config({"model_cfg": {"text_cfg": {"hf_tokenizer_name": "bert-base-uncased"}}})
    with pytest.raises(ValueError):
        ClipTokenizer(clean="none")


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
       | st.sampled_from(["a dog", "it's a 'cat'", "#1 <b>bold</b> \"quote\" ~`^_{|}", "a;b:c\\d"]))
@settings(max_examples=300, deadline=None)
def test_plain_text_is_what_ftfy_leaves_as_it_is(text: str) -> None:
    # Queries of printable ASCII skip ftfy (and its import); that must never change what is tokenised.
    import ftfy

    from indexer.models.tokenizer import _plain

    if _plain(text):
        assert ftfy.fix_text(text) == text


def test_text_that_ftfy_mends_still_goes_through_it() -> None:
    tokenizer = ClipTokenizer()
    for mended, plain in [("caf\u00c3\u00a9", "caf\u00e9"), ("&amp;lt;3", "<3"), ("\uff21\uff22", "ab")]:
        assert (tokenizer([mended]) == tokenizer([plain])).all(), mended
