"""indexer: zero-shot image classification and search at collection scale.

Images are embedded once with an OpenCLIP image tower into a FAISS index with an SQLite catalog; labels
and queries are text, matched by cosine similarity, so new categories never need re-indexing.

    from indexer import open_index
    index = open_index("photos-index", model="tiny-shapes")
    index.ingest(["~/photos"])
    hits = index.search("a red star", k=5)

The result types are importable from here; their modules load lazily, so ``import indexer`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import IndexerError
from .index import Index, open_index
from .models import ModelSpec, list_models

__version__ = "0.1.0"

# name -> module that defines it, imported on first access
_LAZY = {
    "IngestSummary": "indexer.ingest.summary",
    "SearchHit": "indexer.query.search",
    "ClassifyResult": "indexer.query.classify",
    "Prediction": "indexer.query.classify",
    "EvalReport": "indexer.query.evaluate",
    "AuditOptions": "indexer.audit.core",
    "AuditResult": "indexer.audit.core",
    "Finding": "indexer.audit.core",
    "DatasetLabels": "indexer.audit.dataset",
    "Settings": "indexer.config",
}

__all__ = ["Index", "IndexerError", "ModelSpec", "list_models", "open_index", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'indexer' has no attribute {name!r}")
