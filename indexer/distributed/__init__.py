"""Ingestion on a Ray cluster: the pending work list cut into shards, decoded by CPU tasks, embedded by
actors that each hold the model once, committed per batch (idempotently) into a shared catalog.

Ray is the engine (tasks, actors, retries, object store); this package only says what runs where.
It needs the ``cluster`` extra: ``pip install 'indexer[cluster]'``.
"""

from __future__ import annotations

from .run import run_distributed_ingest

__all__ = ["run_distributed_ingest"]
