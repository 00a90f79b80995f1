"""indexer: zero-shot image classification and search at collection scale.

Images are embedded once with an OpenCLIP image tower into a FAISS index with an SQLite catalog; labels
and queries are text, matched by cosine similarity, so new categories never need re-indexing.

    from indexer import open_index
    index = open_index("photos-index", model="tiny-shapes")
    index.ingest(["~/photos"])
    hits = index.search("a red star", k=5)
"""

from .errors import IndexerError
from .index import Index, open_index
from .models import ModelSpec, list_models

__version__ = "0.1.0"
__all__ = ["Index", "IndexerError", "ModelSpec", "list_models", "open_index", "__version__"]
