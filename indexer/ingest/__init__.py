"""Ingestion: scan -> diff against the catalog -> read/hash/decode (workers) -> embed -> commit; sync.

``register`` (phase 1, no model), ``read`` (the one reader: what a decode worker or a cluster's decode
task does, no torch), ``pipeline`` (the workers feeding the model), ``commit`` (a batch embedded and
committed), ``embedding`` (phase 2 as a strategy: here, or ``distributed.RayEmbedding``), ``run`` (the
one driver, under the index's ``lock``). Imports media, models and store; never queries.
"""

from .lock import IngestLock
from .summary import IngestSummary

__all__ = ["IngestLock", "IngestSummary"]
