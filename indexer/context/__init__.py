"""What the domains of an open index work with: its catalog, vectors, model, text encoder and settings.

``open_index`` builds one ``IndexContext`` and the ``Index`` facade holds it; ingest, query, audit, heads
and distributed take the context (or the parts of it they use), never the ``Index``, so every call goes
down the floors and none comes back up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from ..config import Settings
from .model import IndexModel, empty_index
from .texts import TextEncoder
from .vectors import IndexVectors

if TYPE_CHECKING:
    from ..models import ModelSpec
    from ..store.catalog import Catalog

__all__ = ["IndexContext", "IndexModel", "IndexVectors", "TextEncoder", "empty_index", "open_context"]


@dataclass(frozen=True)
class IndexContext:
    """An open index's parts: one per concern, each loaded on first need."""

    path: Path
    settings: Settings
    catalog: "Catalog"
    model: IndexModel
    texts: TextEncoder
    vectors: IndexVectors

    def require_embedded(self) -> None:
        """Refuses an index with nothing embedded yet, saying what to do."""
        if not self.catalog.has_embedded():
            raise empty_index(self.path)


def open_context(path: Path, requested: Optional["ModelSpec"], settings: Settings, create: bool = True
                 ) -> IndexContext:
    """The context of the index in folder ``path`` (its catalog opened, created or migrated; the model
    asked for checked against the recorded one)."""
    from ..store.catalog import open_catalog

    catalog = open_catalog(path, create=create, url=settings.catalog)
    try:
        model = IndexModel(path, catalog, settings, requested)
    except BaseException:
        catalog.close()
        raise
    return IndexContext(path, settings, catalog, model, TextEncoder(catalog, model),
                        IndexVectors(path, catalog, model, settings.flat_max))
