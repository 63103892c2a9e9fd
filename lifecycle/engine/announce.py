"""Attempts held back while a caller's thread still sends the events that made them due.

A restart (or an error report) on a caller's thread sets an attempt due in the store (at once,
with a connector) and then sends its events: ``running -> reconnecting``, ``reconnecting``. Meanwhile
the leader's sweep on the watchdog thread, woken by those very entries of the event log, may
claim the attempt and run it, and its ``reconnected`` would reach the receivers before the events
that announced it. A service's events must stay in order, so a caller marks the window
(`announcing`), and an attempt claimed inside it is handed back to run as the window closes, on
the caller's thread (the attempt itself runs on the executor, as always).

Threads: any. `_lock` guards the two maps and is never held while an attempt is started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Announcements"]

log = logging.getLogger("lifecycle")


class Announcements:
    """Which services' events a caller is still sending, and the attempts claimed meanwhile."""

    def __init__(self, run: Callable[[str, int], None]) -> None:
        self._run = run  # run(service id, attempt): what a held attempt does once its window closes
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}  # id -> callers inside their window
        self._held: dict[str, int] = {}  # id -> the attempt claimed inside it

    @contextmanager
    def announcing(self, id: str) -> Iterator[None]:
        """While inside, an attempt of `id` is held (`hold`); it runs once the last caller of `id` leaves."""
        with self._lock:
            self._open[id] = self._open.get(id, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._open.pop(id) - 1
                if left:
                    self._open[id] = left
                held = None if left else self._held.pop(id, None)
            if held is not None:
                try:
                    self._run(id, held)
                except Exception:  # the caller's own call went through: a failed attempt start is not its error
                    log.exception("lifecycle: starting held attempt %d of %s failed; its claim lapses and it is "
                                  "run again", held, id)

    def hold(self, id: str, attempt: int) -> bool:
        """True if a caller is still sending `id`'s events: `attempt` then runs when it is done."""
        with self._lock:
            if id not in self._open:
                return False
            self._held[id] = attempt
            return True

    def after_fork_in_child(self) -> None:
        """A forked child has no caller inside a window (the threads that were did not come along)."""
        self._lock = threading.Lock()
        self._open, self._held = {}, {}
