"""Stored embeddings: pages in id order, look-ups by ids, contents and uris (``catalog.embeddings``).
The reads a search makes (version, state) are the catalog's own, in plain SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Iterator, Optional, Sequence

import numpy as np
from sqlalchemy import func, select

from .catalog import EMBEDDED, PAGE, chunked, pages
from .codec import FeatureMatrix, blobs_to_matrix
from .schema import Embedding, Item

if TYPE_CHECKING:
    from .catalog import Catalog


class CatalogEmbeddings:
    """Read queries over embeddings."""

    def __init__(self, catalog: "Catalog") -> None:
        self.catalog = catalog

    def count(self) -> int:
        with self.catalog.read() as conn:
            return int(conn.execute(select(func.count(Embedding.id))).scalar() or 0)

    def pages(self, after_id: int = 0, page: int = PAGE, upto_id: Optional[int] = None
                        ) -> Iterator[tuple[np.ndarray, FeatureMatrix]]:
        """(ids, matrix) pages of the embeddings with ``after_id`` < id (<= ``upto_id``), in id order."""
        dim = self.catalog.embedding_dim()
        if dim is None:
            return
        statement = select(Embedding.id, Embedding.vector)
        if upto_id is not None:
            statement = statement.where(Embedding.id <= upto_id)
        for rows in pages(self.catalog, statement, Embedding.id, page, after_id):
            yield np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), \
                blobs_to_matrix([r[1] for r in rows], dim)

    def by_ids(self, ids: Sequence[int]) -> tuple[np.ndarray, FeatureMatrix]:
        """(ids found, their embeddings); ids the catalog does not hold are left out."""
        dim, found, blobs = self.catalog.dim(), [], []
        with self.catalog.read() as conn:
            for part in chunked([int(i) for i in ids]):
                for embedding_id, blob in conn.execute(select(Embedding.id, Embedding.vector)
                                                       .where(Embedding.id.in_(part))):
                    found.append(embedding_id)
                    blobs.append(blob)
        return np.array(found, dtype=np.int64), blobs_to_matrix(blobs, dim)

    def id_range(self) -> tuple[int, int]:
        with self.catalog.read() as conn:
            low, high = conn.execute(select(func.min(Embedding.id), func.max(Embedding.id))).one()
        return int(low or 0), int(high or 0)

    def for_content(self, sha256: str) -> Optional[np.ndarray]:
        """The stored embedding of the content with this sha256, if the catalog holds it."""
        with self.catalog.read() as conn:
            blob = conn.execute(select(Embedding.vector).where(Embedding.sha256 == sha256)).scalar()
        return None if blob is None else blobs_to_matrix([blob], self.catalog.dim())[0]

    def ids_for_contents(self, shas: Iterable[str]) -> dict[str, int]:
        """sha256 -> embedding id, for the contents the catalog already holds."""
        found: dict[str, int] = {}
        with self.catalog.read() as conn:
            for part in chunked(list(set(shas))):
                found.update(conn.execute(select(Embedding.sha256, Embedding.id).where(Embedding.sha256.in_(part))).all())
        return found

    def for_uris(self, uris: Sequence[str]) -> tuple[np.ndarray, FeatureMatrix]:
        """(mask of ``uris`` that are embedded, their embeddings in ``uris`` order)."""
        dim = self.catalog.dim()
        position = {uri: i for i, uri in enumerate(uris)}
        found = np.zeros(len(uris), dtype=bool)
        matrix = np.zeros((len(uris), dim), dtype=np.float32)
        with self.catalog.read() as conn:
            for part in chunked(list(uris)):
                rows = conn.execute(select(Item.uri, Embedding.vector).join(Embedding, Item.embedding_id == Embedding.id)
                                    .where(Item.uri.in_(part), Item.state == EMBEDDED)).all()
                if rows:
                    for (uri, _), vector in zip(rows, blobs_to_matrix([r[1] for r in rows], dim)):
                        found[position[uri]] = True
                        matrix[position[uri]] = vector
        return found, matrix[found]
