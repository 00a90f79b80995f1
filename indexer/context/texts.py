"""Text embeddings of an index's model: from memory, from the catalog's cache, or encoded (and cached) now.

Texts never require re-indexing (invariant 4): a label or a query is encoded on demand and cached by
(model, text) in the catalog, so the next process finds it without loading the model.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..errors import CatalogError
from ..store.codec import blobs_to_matrix, vector_to_blob

if TYPE_CHECKING:
    from ..store.catalog import Catalog
    from .model import IndexModel

log = logging.getLogger(__name__)
MEMORY = 4096  # text embeddings kept in memory by an open index (beside the catalog's cache)


class TextEncoder:
    """Normalised text embeddings for the index's model. Safe to share between threads."""

    def __init__(self, catalog: "Catalog", model: "IndexModel", memory: int = MEMORY) -> None:
        self.catalog, self.model, self.memory = catalog, model, memory
        # False: new texts stay in memory only (bounded by ``memory``). A resident service sets it: its
        # clients' texts must not grow the catalog without bound.
        self.persist = True
        # Texts asked again (a resident service, a notebook) skip the catalog: text -> float32 vector.
        self._known: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.model.dim

    @property
    def logit_scale(self) -> float:
        return self.model.logit_scale

    @property
    def model_key(self) -> str:
        return self.model.key

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) normalised embeddings, in the order given."""
        with self._lock:
            known = {t: self._known[t] for t in texts if t in self._known}
            for t in known:
                self._known.move_to_end(t)
        if len(known) == len(set(texts)):
            return np.stack([known[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
        key, dim = self.model.key, self.model.dim
        wanted = [t for t in dict.fromkeys(texts) if t not in known]
        blobs = self.catalog.texts.get(key, wanted)
        missing = [t for t in wanted if t not in blobs]
        if missing:
            new = {t: vector_to_blob(v) for t, v in zip(missing, self.model.embedder().embed_texts(missing))}
            if self.persist and not self.catalog.readonly:  # else they stay in this process's memory only
                try:
                    self.catalog.texts.put(key, new)
                except CatalogError as exc:  # a full disk: the answer does not need the cache
                    log.warning("text embeddings kept in memory only: %s", exc)
            blobs.update(new)
        # Cached or fresh, every vector goes through the same float16 round trip: same text, same answer.
        fresh = dict(zip(wanted, blobs_to_matrix([blobs[t] for t in wanted], dim)))
        with self._lock:
            for t, vector in fresh.items():
                self._known[t] = vector
            while len(self._known) > self.memory:
                self._known.popitem(last=False)
        fresh.update(known)
        return np.stack([fresh[t] for t in texts])
