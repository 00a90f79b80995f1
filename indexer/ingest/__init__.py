"""Ingestion: scan -> diff against the catalog -> read/hash/decode (workers) -> embed -> commit; sync.

``register`` (phase 1, no model), ``read`` (what a decode worker does, no torch), ``pipeline`` (the
workers feeding the model), ``run`` (one run, under the index's ``lock``). Imports media, models and
store; never queries.
"""

from .lock import IngestLock
from .summary import IngestSummary

__all__ = ["IngestLock", "IngestSummary"]
