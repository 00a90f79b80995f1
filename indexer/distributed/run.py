"""The driver of a distributed ingest: phase 1 (scan and register, as on one machine) here, phase 2 on
the cluster, the FAISS files brought in step here at the end.

Each shard is one decode task (CPU) whose result goes straight to an embedding actor (Ray hands the
object over; the driver never holds pictures); an actor has at most two shards queued, so decoding runs
ahead of embedding and memory stays bounded. Actors and decode tasks are retried by Ray when their
process dies; a shard whose retries run out stays pending, and the same command run again picks it up.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from ..errors import ClusterError
from ..ingest.lock import ingest_lock
from ..ingest.register import mark_missing, register
from ..ingest.run import purge_deleted
from ..ingest.summary import IngestSummary
from ..media.sources import recorded_source, scan
from ..store.schema import ItemState
from .cluster import import_ray, ray_cluster
from .shards import Shard, plan_shards
from .vectors import RayFiller

if TYPE_CHECKING:
    from ..index import Index

Progress = Callable[[str, int, int], None]
log = logging.getLogger(__name__)
QUEUED_PER_ACTOR = 2
RETRIES = 4


def run_distributed_ingest(index: "Index", sources: Iterable[Path], *, ray_address: str = "local",
                           embed_workers: Optional[int] = None, gpus_per_worker: float = 0.0,
                           shard_items: int = 512, num_cpus: Optional[int] = None, retry_failed: bool = False,
                           purge: bool = False,
                           progress: Optional[Progress] = None, warn: Optional[Callable[[str], None]] = None,
                           strict: bool = True) -> IngestSummary:
    """Ingests ``sources`` into ``index`` on the Ray cluster at ``ray_address`` (``local``, ``auto`` or
    ``ray://HOST:PORT``). ``embed_workers`` actors hold the model (default: one per GPU share when the
    cluster has GPUs and ``gpus_per_worker`` is set, else one); decode tasks take the other CPUs.
    ``progress`` receives ("shards", shards done, shard count) and ("images", items done, pending count)."""
    import_ray()  # a missing extra fails before anything is scanned
    warn = warn or log.warning
    started = time.time()
    summary = IngestSummary()
    catalog = index.catalog
    with ingest_lock(index.path, catalog) as lock:
        summary.run_id = catalog.runs.start_ingest_run()
        folders: list[Path] = []
        named: list[str] = []  # the first sources, for the run's record

        def noted(items: Iterable[Path]) -> Iterable[Path]:
            for item in items:
                if len(named) < 100:
                    named.append(recorded_source(item))
                yield item

        register(catalog, scan(noted(sources), strict=strict, folders=folders, warn=warn), summary.run_id, retry_failed,
                 summary, warn)
        summary.deleted += mark_missing(catalog, folders, summary.run_id)
        todo = catalog.worklist.pending_count()
        if todo:
            before = _settled(catalog)
            with ray_cluster(ray_address, num_cpus=num_cpus) as ray:
                _embed_on_cluster(ray, index, plan_shards(catalog, shard_items), todo, embed_workers,
                                  gpus_per_worker, summary, progress, warn, lock.check)
                after = _settled(catalog)
                summary.embedded = after[1] - before[1]
                summary.reused += max(0, after[0] - before[0] - summary.embedded)
                if index.recorded_model is not None:
                    # A layout built anew (trained IVF or IVF-PQ) is encoded on the cluster too.
                    index.vectors(filler=RayFiller(ray, index.path, catalog, index.settings.catalog))
        elif index.recorded_model is not None and not index.vectors_file_exists():
            index.vectors()
        if purge:  # in the catalog and the vectors file, here: nothing a cluster would speed up
            summary.purged = purge_deleted(index)
        summary.seconds = round(time.time() - started, 3)
        catalog.runs.finish_ingest_run(summary.run_id, named, summary.to_dict())
    return summary


def _settled(catalog: Any) -> tuple[int, int]:
    """(embedded items, distinct contents): their growth is what the run embedded, however often Ray retried."""
    return catalog.items.counts_by_state().get(ItemState.EMBEDDED.value, 0), catalog.embeddings.count_contents()


def _start_actors(ray: Any, index: "Index", embed_workers: Optional[int], gpus_per_worker: float) -> list:
    from .workers import EmbedWorker

    gpus = float(ray.cluster_resources().get("GPU", 0))
    if embed_workers is None:
        embed_workers = max(1, int(gpus // gpus_per_worker)) if gpus and gpus_per_worker else 1
    if gpus_per_worker and gpus < gpus_per_worker:
        raise ClusterError(f"--gpus-per-worker {gpus_per_worker}: the cluster has {gpus:g} GPUs")
    settings = index.settings
    device = settings.device or ("cuda" if gpus_per_worker else "cpu")
    environment = {k: v for k, v in os.environ.items() if k.startswith("INDEXER_")}
    # The runtime and precision asked for (flags included) reach the actors as their settings.
    environment.update(INDEXER_RUNTIME=settings.runtime, INDEXER_PRECISION=settings.precision)
    actor = ray.remote(EmbedWorker).options(num_cpus=1, num_gpus=gpus_per_worker or 0, max_restarts=RETRIES,
                                            max_task_retries=RETRIES)
    return [actor.remote(index.model_spec, device, settings.threads, str(index.path),
                         index.settings.catalog, environment)
            for _ in range(embed_workers)]


def _check_model(ray: Any, index: "Index", actor: Any) -> None:
    """Records the model's identity in a new index, or refuses a model other than the index's own."""
    index.record_model(ray.get(actor.identity.remote()))


def _embed_on_cluster(ray: Any, index: "Index", shards: list[Shard], todo: int, embed_workers: Optional[int],
                      gpus_per_worker: float, summary: IngestSummary, progress: Optional[Progress],
                      warn: Callable[[str], None], check_lock: Callable[[], None]) -> None:
    from ray.exceptions import RayActorError, RayTaskError

    from .workers import decode_shard

    actors = _start_actors(ray, index, embed_workers, gpus_per_worker)
    _check_model(ray, index, actors[0])
    settings = index.settings
    options = ray.get(actors[0].read_options.remote(settings.max_pixels, settings.decode_seconds))
    batch_size = settings.resolved_batch_size("cuda" if gpus_per_worker else "cpu")
    decode = ray.remote(decode_shard).options(num_cpus=1, max_retries=RETRIES)
    reader = index.catalog.worklist.pending_reader()
    queue, running = deque(shards), {}
    load = {i: 0 for i in range(len(actors))}
    warned, left_pending = 0, 0
    while queue or running:
        check_lock()
        while queue and load and min(load.values()) < QUEUED_PER_ACTOR:
            i = min(load, key=load.get)
            shard = queue.popleft()
            ref = actors[i].embed_shard.remote(shard, decode.remote(reader, options, shard, batch_size))
            running[ref] = (i, shard)
            load[i] += 1
        if not running:
            break
        ready, _ = ray.wait(list(running), num_returns=1)
        i, shard = running.pop(ready[0])
        if i in load:
            load[i] -= 1
        try:
            result = ray.get(ready[0])
        except RayActorError:
            load.pop(i, None)  # this actor's restarts are spent: its shards stay pending for the next run
            left_pending += 1
            continue
        except RayTaskError as exc:
            left_pending += 1
            warn(f"shard {shard.describe()} failed: {str(exc.cause if exc.cause else exc).splitlines()[0]}")
            continue
        for reason, n in result.failed_by_reason.items():
            summary.failed += n
            summary.failed_by_reason[reason] = summary.failed_by_reason.get(reason, 0) + n
        for uri, reason, detail in result.failures:
            if warned < 20:
                warn(f"skipping {uri}: {reason}" + (f" ({detail})" if detail else ""))
                warned += 1
        if progress:
            progress("shards", 1, len(shards))
            progress("images", result.items, todo)
    if left_pending:
        warn(f"{left_pending} shards could not be finished (their workers kept dying); their items stay pending: "
             "run the same command again to finish them")
    if not load:
        raise ClusterError("every embedding worker died; nothing committed is lost: run the same command again")
