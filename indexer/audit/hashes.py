"""Perceptual hashes for the audit's near duplicates: the stored ones (made at ingest), and for contents
embedded before hashes existed, made now from the original file (decoded once, no embedding redone)
and stored, only for the contents that need one (near-duplicate candidates)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from ..errors import DecodeError, IndexerError
from ..media.decode import decode_image
from ..media.phash import hamming, perceptual_hash
from ..query.items import item_bytes
from .duplicates import NearCandidates

if TYPE_CHECKING:
    from ..context import IndexContext

Progress = Optional[object]


def content_hashes(ctx: "IndexContext", contents: dict[int, int], progress=None) -> dict[int, Optional[int]]:
    """content (embedding id) -> its perceptual hash, None where its picture cannot be read; ``contents``
    maps each content to an item holding it (read when no hash is stored). Hashes made here are stored."""
    hashes = ctx.catalog.audits.phashes(list(contents))
    missing = [c for c, h in hashes.items() if h is None]
    made: dict[int, int] = {}
    for done, content in enumerate(missing, start=1):
        try:
            decoded = decode_image(item_bytes(ctx, contents[content]), 64, ctx.settings.max_pixels)
        except (IndexerError, DecodeError):
            continue  # gone or changed since it was embedded: not confirmed by a hash
        made[content] = hashes[content] = perceptual_hash(decoded.image)
        if progress and (done % 256 == 0 or done == len(missing)):
            progress("hashing", min(256, done - (done - 1) // 256 * 256), len(missing))
    if made and not ctx.catalog.readonly:
        ctx.catalog.audits.set_phashes(made)
    return hashes


def fill_hashes(ctx: "IndexContext", progress=None, batch: int = 1024) -> tuple[int, int]:
    """Makes the perceptual hash of every content that has none (an index ingested before hashes
    existed): each picture read and decoded once, no embedding redone. Returns (made, unreadable)."""
    made = unreadable = 0
    total = ctx.catalog.audits.count_unhashed()
    skipped: set[int] = set()
    while True:
        todo = [(c, i) for c, i in ctx.catalog.audits.unhashed(batch + len(skipped)) if c not in skipped][:batch]
        if not todo:
            return made, unreadable
        hashes = content_hashes(ctx, dict(todo))
        for content, _ in todo:
            if hashes.get(content) is None:
                skipped.add(content)
                unreadable += 1
            else:
                made += 1
        if progress:
            progress("hashing", len(todo), total)


def confirm(ctx: "IndexContext", candidates: NearCandidates, item_of: dict[int, int], max_distance: Optional[int],
            progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
    """The candidate pairs whose perceptual hashes differ by at most ``max_distance`` bits (all of them
    when ``max_distance`` is None; a pair with a picture that cannot be read is kept on its cosine),
    and counts: candidates, confirmed, hashes made."""
    a, b, similarity = candidates.pairs()
    counts = {"candidates": int(len(a)), "confirmed": int(len(a)), "hashes_made": 0}
    if max_distance is None or not len(a):
        return a, b, similarity, counts
    involved = np.union1d(a, b)
    stored_before = ctx.catalog.audits.phashes(involved.tolist())
    hashes = content_hashes(ctx, {int(c): item_of[int(c)] for c in involved}, progress)
    counts["hashes_made"] = sum(1 for c, h in hashes.items() if h is not None and stored_before.get(c) is None)
    known = np.array([hashes.get(int(c)) is not None for c in involved])
    values = np.array([hashes.get(int(c)) or 0 for c in involved], dtype=np.int64)
    ia, ib = np.searchsorted(involved, a), np.searchsorted(involved, b)
    both = known[ia] & known[ib]
    keep = ~both | (hamming(values[ia], values[ib]) <= max_distance)
    counts["confirmed"] = int(keep.sum())
    return a[keep], b[keep], similarity[keep], counts


HASH_ONLY_BITS = 2  # hashes this close make a near-duplicate candidate beyond the k-NN search
HASH_ONLY_RATIO = 2.5  # ... when the cosine is within this many median k-NN distances of 1
_BLOCKS = ((0, 13), (13, 26), (26, 39), (39, 52), (52, 64))  # 5 blocks: 4 differing bits leave one equal
_BUCKET_MAX = 256  # a block value shared by more contents than this (flat pictures) pairs nothing


def hash_pairs(contents: np.ndarray, hashes: np.ndarray, max_bits: int = HASH_ONLY_BITS
               ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of ``contents`` whose hashes differ by at most ``max_bits`` (at most 4): by the pigeonhole
    principle such a pair agrees exactly on one of 5 blocks of bits, so only contents sharing a block
    value are compared (multi-index hashing), not all pairs."""
    if len(contents) < 2:
        empty = np.zeros(0, np.int64)
        return empty, empty
    unsigned = np.asarray(hashes, dtype=np.int64).view(np.uint64)
    found_a, found_b = [], []
    for low, high in _BLOCKS:
        block = (unsigned >> np.uint64(low)) & np.uint64((1 << (high - low)) - 1)
        order = np.argsort(block, kind="stable")
        values = block[order]
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        sizes = np.diff(np.r_[starts, len(values)])
        for start, size in zip(starts[(sizes > 1) & (sizes <= _BUCKET_MAX)].tolist(),
                               sizes[(sizes > 1) & (sizes <= _BUCKET_MAX)].tolist()):
            members = order[start:start + size]
            i, j = np.triu_indices(size, k=1)
            found_a.append(members[i])
            found_b.append(members[j])
    if not found_a:
        empty = np.zeros(0, np.int64)
        return empty, empty
    a, b = np.concatenate(found_a), np.concatenate(found_b)
    low_i, high_i = np.minimum(a, b), np.maximum(a, b)
    pairs = np.unique(np.stack([low_i, high_i], axis=1), axis=0)
    close = hamming(hashes[pairs[:, 0]], hashes[pairs[:, 1]]) <= max_bits
    pairs = pairs[close]
    return contents[pairs[:, 0]], contents[pairs[:, 1]]


def hash_candidates(ctx: "IndexContext", contents: np.ndarray, candidates: NearCandidates,
                    max_bits: int = HASH_ONLY_BITS) -> int:
    """Adds to ``candidates`` the pairs of stored hashes within ``max_bits``, with their cosine (a weak
    model can put a re-encoded copy far from its original); returns how many."""
    stored = ctx.catalog.audits.phashes(contents.tolist())
    known = np.array([c for c in contents.tolist() if stored.get(c) is not None], dtype=np.int64)
    if len(known) < 2:
        return 0
    a, b = hash_pairs(known, np.array([stored[int(c)] for c in known], dtype=np.int64), max_bits)
    if not len(a):
        return 0
    ids, vectors = ctx.catalog.embeddings.by_ids(np.union1d(a, b).tolist())
    where = {int(i): n for n, i in enumerate(ids.tolist())}
    keep = np.array([int(x) in where and int(y) in where for x, y in zip(a, b)], dtype=bool)
    a, b = a[keep], b[keep]
    similarity = np.einsum("ij,ij->i", vectors[[where[int(x)] for x in a]], vectors[[where[int(y)] for y in b]]) \
        if len(a) else np.zeros(0, np.float32)
    floor = 1.0 - HASH_ONLY_RATIO * candidates.median_knn_distance
    close = similarity >= floor if np.isfinite(floor) else np.ones(len(a), dtype=bool)
    candidates.add(a[close], b[close], np.minimum(similarity[close], 1.0))
    return int(close.sum())
