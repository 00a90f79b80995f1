"""Connecting to a Ray cluster: ``local`` starts one on this machine, ``auto`` joins the one this machine
belongs to, ``ray://HOST:PORT`` goes through a Ray client server.

Who may use the cluster (docs/SECURITY.md has the whole threat model):

- a **local** cluster is private to this process. Ray's gRPC servers (GCS, raylet, workers) listen on
  every interface and Ray has no setting to bind them to loopback, so the cluster is closed by Ray's
  token authentication instead: a random token made for this process, handed to the cluster's processes
  through their environment (never written to a file), so that nothing else, on this machine or
  another, can join it or run a task on it. The cluster's processes are also killed as soon as this
  process ends, however it ends: a small reaper process waits on a pipe from this one and, when the pipe
  closes (a SIGKILL included), kills what is left of the cluster (Ray's own agents outlive a killed
  driver by a minute or more).
- a **remote** cluster (``auto``, ``ray://``) is the operator's: Ray's token authentication is used when
  the cluster has it (``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``), as Ray
  itself decides; nothing here turns it off.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import subprocess
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from ..errors import ClusterError, MissingExtraError

CLUSTER_EXTRA = "pip install 'indexer[cluster]'"
TOKEN_AUTH_RAY = "2.52"  # the first Ray with token authentication (RAY_AUTH_MODE=token)
# One token per process: Ray caches the token it loaded, so every local cluster this process starts
# uses the same one.
_LOCAL_TOKEN = secrets.token_hex(32)
_AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def import_ray() -> Any:
    if importlib.util.find_spec("ray") is None:
        raise MissingExtraError(f"--ray needs Ray, which is not installed: {CLUSTER_EXTRA}")
    import ray

    return ray


def check_address(address: str) -> None:
    if address not in ("local", "auto") and not address.startswith("ray://"):
        raise ClusterError(f"--ray {address!r}: give local, auto or ray://HOST:PORT")


@contextmanager
def _token_authentication() -> Iterator[None]:
    """This process (and the cluster it starts) in Ray's token mode with this process's own token; the
    environment as it was afterwards."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:
        raise ClusterError(f"--ray local needs Ray's token authentication (Ray >= {TOKEN_AUTH_RAY}), or anyone "
                           f"who can reach this machine could join the cluster: pip install 'ray>={TOKEN_AUTH_RAY}'"
                           ) from None
    saved = {name: os.environ.get(name) for name in _AUTH_VARIABLES}
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=_LOCAL_TOKEN)
    Config.initialize("")  # Ray reads its mode once: make it read the one just set
    AuthenticationTokenLoader.instance().reset_cache()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


_REAPER = r"""
import os, signal, sys, time
pids = [tuple(map(int, line.split())) for line in sys.stdin.readline().split(",") if line.strip()]
sys.stdin.read()  # returns when the driver closes the pipe: at its shutdown, or at its death
time.sleep(float(sys.argv[1]))  # a clean shutdown stops the cluster itself meanwhile
def started(pid):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
for pid, start in pids:
    if started(pid) == start:  # the same process, not a later one that was given its pid
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
"""


def _start_time(pid: int) -> Optional[int]:
    """A process's start time in clock ticks since boot (with its pid, it names one process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    parent = int(f.read().rsplit(b") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _processes() -> set[tuple[int, int]]:
    """This process's descendants, as (pid, start time)."""
    return {(pid, start) for pid in _descendants(os.getpid()) if (start := _start_time(pid)) is not None}


def _start_reaper(before: set[tuple[int, int]], grace_seconds: float = 5.0) -> Optional[subprocess.Popen]:
    """A process that kills this process's cluster (the descendants it has now and had not ``before``:
    GCS, raylet, agents) once this process is gone; the workers end with their raylet."""
    pids = sorted(_processes() - before)
    reaper = subprocess.Popen([sys.executable, "-c", _REAPER, str(grace_seconds)], stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                              close_fds=True)
    assert reaper.stdin is not None
    reaper.stdin.write((",".join(f"{pid} {start}" for pid, start in pids) + "\n").encode())
    reaper.stdin.flush()
    return reaper


@contextmanager
def ray_cluster(address: str, num_cpus: Optional[int] = None, num_gpus: Optional[int] = None) -> Iterator[Any]:
    """``ray`` connected to the cluster at ``address``; a cluster this started (``local``) is private to
    this process (see the module's docstring) and shut down afterwards, as is the connection to one that
    was already running."""
    check_address(address)
    ray = import_ray()
    if ray.is_initialized():  # a caller (a notebook, a test) already connected: use that, leave it running
        yield ray
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address != "local":
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None
        try:
            yield ray
        finally:
            ray.shutdown()
        return
    with _token_authentication():
        before = _processes() if os.path.isdir("/proc") else None
        try:
            ray.init(num_cpus=num_cpus, num_gpus=num_gpus, **options)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(f"cannot start a local Ray cluster: {str(exc).splitlines()[0]}") from None
        reaper = _start_reaper(before) if before is not None else None  # Linux only (reads /proc)
        try:
            yield ray
        finally:
            ray.shutdown()
            if reaper is not None and reaper.stdin is not None:
                reaper.stdin.close()  # the reaper checks after its grace time, then ends
