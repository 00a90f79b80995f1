"""The HTTP face: ``indexer serve`` (FastAPI + uvicorn) over one or more indexes.

- the native API under ``/api/`` (search, classify, items, audit findings, status, health, metrics);
- clip-retrieval's back-end API (``/indices-list``, ``/knn-service``, ``/metadata``) for its client;
- a web page at ``/`` (``static/``), and the OpenAPI document at ``/docs``.

It needs the ``serve`` extra (``pip install 'indexer[serve]'``); ``require()`` says so when it is missing.
"""

from __future__ import annotations

import importlib.util

from ..errors import IndexerError

EXTRA_MODULES = ("fastapi", "uvicorn", "multipart")


def require() -> None:
    """Raises with the install command when the service's dependencies are missing."""
    missing = [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise IndexerError(f"`indexer serve` needs {', '.join(missing)}: pip install 'indexer[serve]'")
