"""Phase 2 of an ingest on a Ray cluster (``RayEmbedding``); the run around it is ``ingest.run.run_ingest``,
the same as on one machine (``run_distributed_ingest`` only picks this strategy).

Each shard is one decode task (CPU) whose result goes straight to an embedding actor (Ray hands the
object over; the driver never holds pictures); an actor has at most two shards queued, so decoding runs
ahead of embedding and memory stays bounded. Actors and decode tasks are retried by Ray when their
process dies; a shard whose retries run out stays pending, and the same command run again picks it up.
The cluster stays up until the run is over, so that a vectors layout built anew is encoded on it too.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections import deque
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional

from .. import _faults
from ..errors import ClusterError
from ..ingest.embedding import Progress, Report, Warn
from ..ingest.run import run_ingest
from ..ingest.summary import IngestSummary
from ..store.states import ItemState
from .cluster import check_address, import_ray, ray_cluster
from .shards import plan_shards
from .vectors import RayFiller

if TYPE_CHECKING:
    from ..config import Settings
    from ..context import IndexContext
    from ..models import ModelSpec

log = logging.getLogger(__name__)
QUEUED_PER_ACTOR = 2
RETRIES = 4


def run_distributed_ingest(ctx: "IndexContext", sources: Iterable[Path], *, ray_address: str = "local",
                           embed_workers: Optional[int] = None, gpus_per_worker: float = 0.0,
                           shard_items: int = 512, num_cpus: Optional[int] = None, retry_failed: bool = False,
                           purge: bool = False, progress: Optional[Progress] = None, warn: Optional[Warn] = None,
                           strict: bool = True) -> IngestSummary:
    """Ingests ``sources`` into the index on the Ray cluster at ``ray_address`` (``local``, ``auto`` or
    ``ray://HOST:PORT``). ``embed_workers`` actors hold the model (default: one per GPU share when the
    cluster has GPUs and ``gpus_per_worker`` is set, else one); decode tasks take the other CPUs.
    ``progress`` receives ("shards", shards done, shard count) and ("images", items done, pending count)."""
    embedding = RayEmbedding(ray_address, ctx.path, ctx.settings, lambda: ctx.model.spec, ctx.model.record,
                             embed_workers=embed_workers, gpus_per_worker=gpus_per_worker, shard_items=shard_items,
                             num_cpus=num_cpus)
    return run_ingest(ctx, sources, retry_failed=retry_failed, purge=purge, progress=progress, warn=warn,
                      strict=strict, embedding=embedding)


class RayEmbedding:
    """Embeds the pending items on a Ray cluster, started (``local``) or joined on first need; see the module
    docstring. ``model_spec`` gives the index's model; ``record_model`` records a loaded model's identity
    in a new index, or refuses one other than the index's own."""

    def __init__(self, ray_address: str, index_dir: Path, settings: "Settings", model_spec: Callable[[], "ModelSpec"],
                 record_model: Callable[[dict], None], *, embed_workers: Optional[int] = None,
                 gpus_per_worker: float = 0.0, shard_items: int = 512, num_cpus: Optional[int] = None) -> None:
        import_ray()  # a missing extra or a bad address fails before anything is scanned
        check_address(ray_address)
        self.address, self.index_dir, self.settings = ray_address, index_dir, settings
        self.model_spec, self.record_model = model_spec, record_model
        self.embed_workers, self.gpus_per_worker = embed_workers, gpus_per_worker
        self.shard_items, self.num_cpus = shard_items, num_cpus
        self.notes = f"indexer-decode-{uuid.uuid4().hex[:12]}"  # the decode tasks' watchdog notes, on each machine
        self._stack = ExitStack()
        self._ray: Any = None
        self._catalog: Any = None

    def embed_pending(self, catalog: Any, todo: int, summary: IngestSummary, report: Report) -> None:
        from ray.exceptions import RayActorError, RayTaskError

        from .workers import decode_shard

        self._catalog = catalog
        before = _settled(catalog)
        shards = plan_shards(catalog, self.shard_items)
        ray = self._ray = self._stack.enter_context(ray_cluster(self.address, num_cpus=self.num_cpus))
        actors = self._start_actors(ray)
        self.record_model(ray.get(actors[0].identity.remote()))
        runtime, precision = ray.get(actors[0].runtime.remote())
        options = ray.get(actors[0].read_options.remote())  # the one ReadOptions, built where the model is
        batch_size = self.settings.resolved_batch_size("cuda" if self.gpus_per_worker else "cpu")
        decode = ray.remote(decode_shard).options(num_cpus=1, max_retries=RETRIES)
        reader = catalog.worklist.pending_reader()
        faults = _faults.active()
        queue, running = deque(shards), {}
        load = {i: 0 for i in range(len(actors))}
        left_pending = 0
        while queue or running:
            report.check()
            while queue and load and min(load.values()) < QUEUED_PER_ACTOR:
                i = min(load, key=load.get)
                shard = queue.popleft()
                found = decode.remote(reader, options, shard, batch_size, self.notes, faults)
                running[actors[i].embed_shard.remote(shard, found)] = (i, shard)
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
                report.warn(f"shard {shard.describe()} failed: {str(exc.cause if exc.cause else exc).splitlines()[0]}")
                continue
            for reason, n in result.failed_by_reason.items():
                summary.failed += n
                summary.failed_by_reason[reason] = summary.failed_by_reason.get(reason, 0) + n
            report.skipped(result.failures)
            report.progress("shards", 1, len(shards))
            report.progress("images", result.items, todo)
        after = _settled(catalog)
        summary.embedded = after[1] - before[1]
        summary.reused += max(0, after[0] - before[0] - summary.embedded)
        if summary.embedded:
            catalog.worklist.record_runtime(runtime, precision, summary.embedded)
        if left_pending:
            report.warn(f"{left_pending} shards could not be finished (their workers kept dying); their items stay "
                        "pending: run the same command again to finish them")
        if not load:
            raise ClusterError("every embedding worker died; nothing committed is lost: run the same command again")

    def filler(self) -> Optional[RayFiller]:
        """A layout built anew (trained IVF or IVF-PQ) is encoded on the cluster, while it is up."""
        if self._ray is None:
            return None
        return RayFiller(self._ray, self.index_dir, self._catalog, self.settings.catalog)

    def close(self) -> None:
        self._ray = None
        self._stack.close()
        shutil.rmtree(Path(tempfile.gettempdir()) / self.notes, ignore_errors=True)

    def _start_actors(self, ray: Any) -> list:
        from .workers import EmbedWorker

        gpus = float(ray.cluster_resources().get("GPU", 0))
        per_worker = self.gpus_per_worker
        count = self.embed_workers
        if count is None:
            count = max(1, int(gpus // per_worker)) if gpus and per_worker else 1
        if per_worker and gpus < per_worker:
            raise ClusterError(f"--gpus-per-worker {per_worker}: the cluster has {gpus:g} GPUs")
        device = self.settings.device or ("cuda" if per_worker else "cpu")
        actor = ray.remote(EmbedWorker).options(num_cpus=1, num_gpus=per_worker or 0, max_restarts=RETRIES,
                                                max_task_retries=RETRIES)
        spec, faults = self.model_spec(), _faults.active()
        # The settings travel as they are (flags included): the actors read no environment of their own.
        return [actor.remote(spec, device, self.settings, str(self.index_dir), faults) for _ in range(count)]


def _settled(catalog: Any) -> tuple[int, int]:
    """(embedded items, distinct contents): their growth is what the run embedded, however often Ray retried."""
    return catalog.items.counts_by_state().get(ItemState.EMBEDDED.value, 0), catalog.embeddings.count()
