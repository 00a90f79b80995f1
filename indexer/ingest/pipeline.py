"""Decode workers feeding the model: batches of read, decoded and preprocessed pending items.

With ``workers=0`` the reading runs in the calling process. Otherwise each worker is a fresh process
(``spawn``: it imports only Pillow, numpy and indexer's reading code, never torch, OpenVINO or the
model, and shares no memory or locks with the model's process), reads its share of the pending items
(``read.iter_pending``), groups them into batches and sends them through a bounded queue, so at most
``prefetch`` batches per worker wait in memory. Workers run at the model's priority unless
``Settings.worker_nice`` says otherwise: a worker blocks once the queue is full, so it takes the share
of the cores that decoding needs and no more, and the queue keeps the model fed.

A worker that dies (killed by its decode watchdog, out of memory, crashed) stops the loader with
``WorkerLost``: the items not committed yet are still pending in the catalog, so the caller records the
item that killed it and starts a fresh loader on what is left (``embedding.LocalEmbedding``).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import sys
from contextlib import contextmanager
from typing import Iterator

from .. import _faults
from ..store.pending import PendingReader
from .read import Batch, ReadOptions, Selection, batches, iter_pending

PREFETCH = 4  # batches per worker waiting in the queue
POLL_SECONDS = 1.0
_DONE = "done"


class WorkerLost(Exception):
    """A decode worker died before finishing its share."""


def _worker(reader: PendingReader, options: ReadOptions, shard: int, shards: int, batch_size: int, nice: int,
            faults: _faults.Faults, out: "multiprocessing.Queue[object]") -> None:
    _faults.install(faults)
    try:
        os.nice(nice)
    except OSError:
        pass  # not allowed to change it here: the worker runs at the model's priority
    for batch in batches(iter_pending(reader, options, Selection(part=shard, parts=shards)), batch_size):
        out.put(batch)
    out.put((_DONE, shard))


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """While workers are spawned, the caller's main module is not named to them: a spawned process would
    otherwise run the caller's script again (one without a ``__main__`` guard would ingest again, and
    standard input or a notebook cannot be run at all). The workers need nothing from it."""
    main = sys.modules.get("__main__")
    if main is None:
        yield
        return
    saved = {name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None  # multiprocessing reads the attribute itself: None names no module
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        main.__dict__.update(saved)


class BatchLoader:
    """Iterates batches of the catalog's pending items; see the module docstring."""

    def __init__(self, reader: PendingReader, options: ReadOptions, batch_size: int, workers: int,
                 nice: int = 10) -> None:
        self.reader, self.options = reader, options
        self.batch_size, self.workers, self.nice = batch_size, workers, nice

    def __iter__(self) -> Iterator[Batch]:
        if self.workers <= 0:
            yield from batches(iter_pending(self.reader, self.options), self.batch_size)
            return
        context = multiprocessing.get_context("spawn")
        out = context.Queue(maxsize=PREFETCH * self.workers)
        processes = [context.Process(target=_worker, name=f"indexer-decode-{shard}", daemon=True,
                                     args=(self.reader, self.options, shard, self.workers, self.batch_size, self.nice,
                                           _faults.active(), out))
                     for shard in range(self.workers)]
        with _main_module_hidden():
            for process in processes:
                process.start()
        running = set(range(self.workers))
        try:
            while running:
                try:
                    item = out.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    for shard in running:
                        if not processes[shard].is_alive() and out.empty():
                            raise WorkerLost(f"decode worker {shard} stopped (exit code {processes[shard].exitcode})")
                    continue
                if isinstance(item, tuple) and item[0] == _DONE:
                    running.discard(item[1])
                    continue
                yield item  # type: ignore[misc]
        finally:
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=5)
            out.close()
            out.cancel_join_thread()
