"""A torch-free tokenizer that gives the same token ids as open_clip's ``SimpleTokenizer``.

open_clip's tokenizer (the CLIP byte-level BPE) returns a torch tensor and so needs torch; at query time
that import alone costs seconds. This module reads the same gzipped merge list and applies the same rules:

1. clean the text: ``ftfy.fix_text``, HTML entities unescaped twice, outer whitespace stripped; then, for
   the default ``clean='lower'``, runs of whitespace collapsed to one space and the text lower-cased
   (``'whitespace'`` skips the lower-casing, ``'canonicalize'`` also drops punctuation);
2. split it into words with CLIP's pattern (special tokens, English contractions, letter runs, single
   digits, runs of other non-space characters);
3. map each word's UTF-8 bytes to printable characters, mark the word's end with ``</w>`` and merge symbol
   pairs in the order of the merge list;
4. frame the ids with start- and end-of-text ids, truncate to the context length keeping the end-of-text
   id last, pad with zeros.

The result is an ``int64`` array of shape ``(n_texts, context_length)``.
"""

from __future__ import annotations

import gzip
import html
import importlib.util
import json
import string
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import regex

DEFAULT_CONTEXT_LENGTH = 77
SOT_TOKEN = "<start_of_text>"
EOT_TOKEN = "<end_of_text>"
# The merge list holds many more merges than CLIP uses: its vocabulary is 49,408 ids = 256 byte symbols,
# 256 byte symbols ending a word, 48,894 merges and the two special tokens.
_MAX_MERGES = 49152 - 256 - 2
_CLEAN_MODES = ("lower", "whitespace", "canonicalize")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_BPE_CACHE_LIMIT = 100_000


def _byte_symbols() -> list[str]:
    """One printable character per byte value, index = byte.

    Bytes that are printable Latin-1 characters stand for themselves; the others (control characters,
    space, a few Latin-1 gaps) are given the characters from U+0100 upwards, in byte order, so that the
    BPE never has to handle whitespace or control characters.
    """
    printable = set(range(ord("!"), ord("~") + 1))
    printable |= set(range(ord("¡"), ord("¬") + 1))
    printable |= set(range(ord("®"), ord("ÿ") + 1))
    symbols: list[str] = []
    extra = 0
    for byte in range(256):
        if byte in printable:
            symbols.append(chr(byte))
        else:
            symbols.append(chr(256 + extra))
            extra += 1
    return symbols


def _byte_vocabulary_order() -> list[int]:
    """Byte values in the order the vocabulary lists their symbols: printable ones first, then the rest."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    seen = set(printable)
    return printable + [b for b in range(256) if b not in seen]


def default_bpe_path() -> Path:
    """The merge list shipped inside the installed open_clip package, found without importing it (importing
    open_clip would import torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("open_clip is not installed; pass the path of a bpe_simple_vocab *.txt.gz file")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bpe_simple_vocab_16e6.txt.gz"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("open_clip's bpe_simple_vocab_16e6.txt.gz was not found")


def _plain(text: str) -> bool:
    """Printable ASCII without ``&``: text ``ftfy.fix_text`` leaves as it is (nothing to re-decode, no
    control character, line break, HTML entity or wide form), so it is skipped, and a query of plain
    words never imports ftfy (~40 ms of a query's start)."""
    return "&" not in text and all(" " <= ch <= "~" for ch in text)


def _clean(text: str, mode: str) -> str:
    if not _plain(text):
        import ftfy

        text = ftfy.fix_text(text)
    # Twice, as CLIP does: captions scraped from the web are often escaped twice ("&amp;amp;").
    text = html.unescape(html.unescape(text)).strip()
    if mode == "canonicalize":
        text = text.replace("_", " ").translate(_PUNCTUATION).lower()
        return " ".join(text.split()).strip()
    text = " ".join(text.split()).strip()
    return text.lower() if mode == "lower" else text


class ClipTokenizer:
    """CLIP's byte-level BPE tokenizer, without torch.

    ``bpe_path`` is a gzipped merge list (open_clip's ``bpe_simple_vocab_16e6.txt.gz`` by default, or a
    model's own pruned list); ``context_length`` is the model's text length (77 for most CLIP models).
    """

    def __init__(
        self,
        bpe_path: Union[str, Path, None] = None,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        clean: str = "lower",
        additional_special_tokens: Optional[Sequence[str]] = None,
    ) -> None:
        if clean not in _CLEAN_MODES:
            raise ValueError(f"clean must be one of {', '.join(_CLEAN_MODES)}, not {clean!r}")
        if context_length < 2:
            raise ValueError("context_length must leave room for the start and end tokens")
        self.bpe_path = Path(bpe_path) if bpe_path is not None else default_bpe_path()
        self.context_length = int(context_length)
        self.clean = clean
        self._byte_symbols = _byte_symbols()

        with gzip.open(self.bpe_path, "rt", encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        # Line 0 is a version header. A short (pruned) list ends with an empty line, which open_clip keeps
        # as an empty merge: it occupies an id, so it is kept here too to number the specials the same.
        merges = [tuple(line.split()) for line in lines[1:_MAX_MERGES + 1]]

        vocabulary = [self._byte_symbols[b] for b in _byte_vocabulary_order()]
        vocabulary += [symbol + "</w>" for symbol in vocabulary]
        vocabulary += ["".join(merge) for merge in merges]
        self.special_tokens: tuple[str, ...] = (SOT_TOKEN, EOT_TOKEN, *(additional_special_tokens or ()))
        vocabulary += list(self.special_tokens)
        # Later duplicates win, as in a dict built from the list: the same ids as open_clip's encoder.
        self.encoder: dict[str, int] = {}
        for index, token in enumerate(vocabulary):
            self.encoder[token] = index
        # Pairs keyed "first second" (a symbol never holds a space): one string per key loads from the
        # converted model's cache several times faster than a tuple of two.
        self._ranks: dict[str, int] = {}
        for rank, merge in enumerate(merges):
            self._ranks[" ".join(merge)] = rank
        self.vocab_size = len(self.encoder)
        self.sot_token_id = self.encoder[SOT_TOKEN]
        self.eot_token_id = self.encoder[EOT_TOKEN]

        specials = "|".join(regex.escape(token) for token in self.special_tokens)
        self._pattern = regex.compile(
            specials + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self._cache: dict[str, tuple[int, ...]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_pattern")  # rebuilt on load: the same special tokens give the same pattern
        state["_cache"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        specials = "|".join(regex.escape(token) for token in self.special_tokens)
        self._pattern = regex.compile(
            specials + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )

    @classmethod
    def from_open_clip_config(
        cls,
        config: Union[str, Path, Mapping[str, Any]],
        bpe_path: Union[str, Path, None] = None,
        context_length: Optional[int] = None,
    ) -> "ClipTokenizer":
        """A tokenizer for a model described by an open_clip config: a dict (the whole file or its
        ``model_cfg``) or the path of an ``open_clip_config.json``. Models that use a Hugging Face or
        SigLIP tokenizer are refused: this class only reproduces ``SimpleTokenizer``."""
        if isinstance(config, (str, Path)):
            config = json.loads(Path(config).read_text(encoding="utf-8"))
        model_cfg = config.get("model_cfg", config)
        text_cfg = dict(model_cfg.get("text_cfg") or {})
        if text_cfg.get("hf_tokenizer_name"):
            raise ValueError(f"this model uses the Hugging Face tokenizer {text_cfg['hf_tokenizer_name']!r}")
        kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
        if kwargs.get("reduction_mask"):
            raise ValueError("token reduction masks (random / shuffle / simple) are not supported")
        return cls(
            bpe_path=bpe_path,
            context_length=int(context_length or text_cfg.get("context_length") or DEFAULT_CONTEXT_LENGTH),
            clean=kwargs.get("clean", "lower"),
            additional_special_tokens=kwargs.get("additional_special_tokens"),
        )

    def _bpe(self, word: str) -> tuple[int, ...]:
        """The ids of one byte-mapped word, merging its lowest-ranked symbol pair until none is left."""
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        symbols = list(word[:-1]) + [word[-1] + "</w>"]
        ranks = self._ranks
        while len(symbols) > 1:
            best_rank, best_pair = None, None
            for pair in zip(symbols, symbols[1:]):
                rank = ranks.get(pair[0] + " " + pair[1])
                if rank is not None and (best_rank is None or rank < best_rank):
                    best_rank, best_pair = rank, pair
            if best_pair is None:
                break
            first, second = best_pair
            # Merge every occurrence, scanning left to right so overlapping pairs ("a a a") merge once.
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == first and symbols[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        ids = tuple(self.encoder[symbol] for symbol in symbols)
        if len(self._cache) >= _BPE_CACHE_LIMIT:
            self._cache.clear()
        self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """The token ids of one text, without the start / end ids and without truncation."""
        ids: list[int] = []
        for piece in self._pattern.findall(_clean(text, self.clean)):
            if piece in self.special_tokens:
                # A literal special token in the text becomes that token, as in open_clip.
                ids.append(self.encoder[piece])
                continue
            word = "".join(self._byte_symbols[b] for b in piece.encode("utf-8"))
            ids.extend(self._bpe(word))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text back from ids (lossy: cleaning and lower-casing are not undone); for debugging."""
        byte_of = {symbol: byte for byte, symbol in enumerate(self._byte_symbols)}
        decoder = {index: token for token, index in self.encoder.items()}
        text = "".join(decoder[int(i)] for i in ids if int(i) in decoder)
        chars = text.replace("</w>", " ")
        data = bytearray(byte_of[c] if c in byte_of else ord(" ") for c in chars)
        return data.decode("utf-8", errors="replace")

    def __call__(self, texts: Union[str, Sequence[str]], context_length: Optional[int] = None) -> np.ndarray:
        """Token ids of one text or several: ``int64`` array ``(n, context_length)``, zero padded."""
        if isinstance(texts, str):
            texts = [texts]
        length = int(context_length or self.context_length)
        result = np.zeros((len(texts), length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_token_id, *self.encode(text), self.eot_token_id]
            if len(ids) > length:
                ids = ids[:length]
                ids[-1] = self.eot_token_id
            result[row, :len(ids)] = ids
        return result
