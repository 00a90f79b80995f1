"""The text-embedding cache: (model key, text) -> float16 vector blob (``catalog.texts``). Plain SQL, so
a question that finds its texts here never imports SQLAlchemy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .catalog import chunked, in_list

if TYPE_CHECKING:
    from .catalog import Catalog


class TextCache:
    """Texts already encoded by a model, by its key."""

    def __init__(self, catalog: "Catalog") -> None:
        self.catalog = catalog

    def get(self, model_key: str, texts: Sequence[str]) -> dict[str, bytes]:
        """text -> stored vector blob, for those of ``texts`` already encoded by the model ``model_key``."""
        found: dict[str, bytes] = {}
        for part in chunked(list(dict.fromkeys(texts))):
            names, params = in_list("t", part)
            found.update((str(t), bytes(v)) for t, v in self.catalog.rows(
                f"SELECT text, vector FROM text_embeddings WHERE model_key = :key AND text IN {names}",
                {"key": model_key, **params}))
        return found

    def put(self, model_key: str, blobs: dict[str, bytes]) -> None:
        """Stores vector blobs of texts, in one transaction (a text stored already is kept as it is)."""
        self.catalog.write("INSERT INTO text_embeddings (model_key, text, vector) VALUES (:key, :text, :vector) "
                           "ON CONFLICT (model_key, text) DO NOTHING",
                           [{"key": model_key, "text": t, "vector": blob} for t, blob in blobs.items()])
