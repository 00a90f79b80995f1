"""A hard time limit for decoding in a worker process.

``time_limit`` (SIGALRM) raises between Python bytecodes only: a decoder stuck inside one long C call
never sees it. In a decode worker, ``DecodeWatchdog`` is the backstop: a thread that, when one item has
taken longer than its limit, writes a note naming the item and kills its own process. The parent then
reads the notes (``stuck_items``), records those items as failed (``timeout``, or ``worker_crashed``
for a worker that died another way in the middle of an item) and starts fresh workers for the rest.

Notes are small files in a folder the parent chose, one per worker process: ``ITEM_ID`` while an item
is being read, ``ITEM_ID timeout`` once the watchdog fired, empty between items.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

TIMEOUT, CRASHED = "timeout", "worker_crashed"


class DecodeWatchdog:
    """Kills the current process if one ``watch`` block outlasts ``seconds``. Never use it in a
    process that must survive (the main process): it is for decode workers only."""

    def __init__(self, folder: str, seconds: float) -> None:
        self.seconds = seconds
        self.path = Path(folder) / f"worker-{os.getpid()}"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        self._item: Optional[int] = None
        self._deadline = 0.0
        self._closed = False
        self._wake = threading.Condition()
        threading.Thread(target=self._run, name="decode-watchdog", daemon=True).start()

    def _note(self, text: str) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode(), 0)

    @contextmanager
    def watch(self, item_id: int) -> Iterator[None]:
        with self._wake:
            self._note(str(item_id))
            self._item, self._deadline = item_id, time.monotonic() + self.seconds
            self._wake.notify()
        try:
            yield
        finally:
            with self._wake:
                self._item = None
                self._note("")

    def close(self) -> None:
        """Stops the watchdog (a process that reads again later, a Ray worker, starts another)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        os.close(self.fd)

    def _run(self) -> None:
        with self._wake:
            while not self._closed:
                if self._item is None:
                    self._wake.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                self._note(f"{self._item} {TIMEOUT}")
                os.kill(os.getpid(), signal.SIGKILL)


def hard_limit(seconds: float) -> float:
    """The watchdog's limit for a decode limit of ``seconds``: later than SIGALRM's, which fails an item
    more gently when the decoder can be interrupted."""
    return seconds * 1.5 + 1.0


def stuck_items(folder: str) -> dict[int, str]:
    """Items a worker was reading when it died: item id -> ``timeout`` or ``worker_crashed``. The notes
    are removed, so a later call sees only later deaths."""
    found: dict[int, str] = {}
    for note in Path(folder).glob("worker-*"):
        try:
            pid = int(note.name.split("-", 1)[1])
            text = note.read_text().split()
        except (OSError, ValueError):
            continue
        if text and text[0].isdigit() and (len(text) > 1 or not _alive(pid)):
            found[int(text[0])] = TIMEOUT if len(text) > 1 else CRASHED
        if not _alive(pid):
            note.unlink(missing_ok=True)
    timeouts = {item: reason for item, reason in found.items() if reason == TIMEOUT}
    # A timeout explains the failure: the other dead workers were stopped by their loader, not crashed.
    return timeouts or found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A dead child not yet reaped is a zombie: it still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().split(b") ", 1)[1][:1] != b"Z"
    except (OSError, IndexError):
        return True
