"""Connecting to a Ray cluster: ``local`` starts one on this machine, ``auto`` joins the one this machine
belongs to, ``ray://HOST:PORT`` goes through a Ray client server."""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from ..errors import ClusterError, MissingExtraError

CLUSTER_EXTRA = "pip install 'indexer[cluster]'"


def import_ray() -> Any:
    if importlib.util.find_spec("ray") is None:
        raise MissingExtraError(f"--ray needs Ray, which is not installed: {CLUSTER_EXTRA}")
    import ray

    return ray


def check_address(address: str) -> None:
    if address not in ("local", "auto") and not address.startswith("ray://"):
        raise ClusterError(f"--ray {address!r}: give local, auto or ray://HOST:PORT")


@contextmanager
def ray_cluster(address: str, num_cpus: Optional[int] = None, num_gpus: Optional[int] = None) -> Iterator[Any]:
    """``ray`` connected to the cluster at ``address``; a cluster this started (``local``) is shut down
    afterwards, as is the connection to one that was already running. Ray's own token authentication is
    left to the cluster's operator; a local cluster is only reachable from this machine."""
    check_address(address)
    ray = import_ray()
    if ray.is_initialized():  # a caller (a notebook, a test) already connected: use that, leave it running
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address == "local":
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private cluster on this machine
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **options)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
    try:
        yield ray
    finally:
        ray.shutdown()
