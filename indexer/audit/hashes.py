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
