"""Test hooks: faults the crash and watchdog tests inject into a real run. Nothing here does anything
unless one of these variables is set (they are for the tests, not for users):

- ``INDEXER_TEST_PAUSE=NAME:SECONDS`` pauses at the fault point ``NAME`` (``pause``), so that a test can
  kill the process there;
- ``INDEXER_TEST_TRACE=FILE`` appends the number of pictures the model embeds, batch by batch
  (``trace``), so that the crash tests can add up the work done twice;
- ``INDEXER_TEST_HANG=NAME`` makes reading an item whose uri ends with NAME hang the way a decoder stuck
  in C code does, deaf to SIGALRM (``hang``): no real such file is known.

The environment is read once per process, on first use. A process that works for a run elsewhere (a Ray
actor or task, whose environment is the cluster's) is handed the run's hooks with ``install``.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Faults:
    """The test hooks of one process (picklable: sent to the cluster with the work)."""

    pause_at: Optional[str] = None
    pause_seconds: float = 0.0
    trace_file: Optional[str] = None
    hang_on: Optional[str] = None

    @classmethod
    def from_environment(cls) -> "Faults":
        pause = os.environ.get("INDEXER_TEST_PAUSE") or ""
        name, _, seconds = pause.rpartition(":")
        return cls(pause_at=name or None, pause_seconds=float(seconds) if name else 0.0,
                   trace_file=os.environ.get("INDEXER_TEST_TRACE") or None,
                   hang_on=os.environ.get("INDEXER_TEST_HANG") or None)


_active: Optional[Faults] = None


def active() -> Faults:
    """This process's hooks: the environment's, read on first use, or those ``install``ed."""
    global _active
    if _active is None:
        _active = Faults.from_environment()
    return _active


def install(faults: Faults) -> None:
    """Use ``faults`` in this process from now on (the hooks of the run it works for)."""
    global _active
    _active = faults


def pause(name: str) -> None:
    """A named moment where the crash tests pause the process to kill it there."""
    faults = active()
    if faults.pause_at == name:
        time.sleep(faults.pause_seconds)


def trace(embedded: int) -> None:
    """Appends the number of pictures the model just embedded to the trace file."""
    path = active().trace_file
    if path and embedded:
        with open(path, "a") as f:
            f.write(f"{embedded}\n")
            f.flush()
            os.fsync(f.fileno())


def hang(uri: str) -> None:
    """Hangs for an hour, SIGALRM blocked, when ``uri`` is the one the watchdog tests name."""
    name = active().hang_on
    if name and uri.endswith(name):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(3600)
