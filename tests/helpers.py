"""Helpers shared by the tests: event recorders and waiters, and a thread-leak check."""

from __future__ import annotations

import threading
import time
from typing import Any

from lifecycle.events import LifecycleEvent

WAIT = 5.0  # generous bound for anything that should take well under a second


class Waiter:
    """A receiver that records events and lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.cond = threading.Condition()

    def __call__(self, sender: object, **kwargs: Any) -> None:
        with self.cond:
            self.events.append(kwargs["event"])
            self.cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.events), timeout)

    def names(self, sid: str | None = None) -> list[str]:
        with self.cond:
            return [e.signal_name for e in self.events if sid is None or e.service_id == sid]


def new_threads_exit(before: set[threading.Thread], timeout: float = WAIT) -> None:
    """Assert every thread started since `before` ends within `timeout` (waiting, not sleeping)."""
    new = [t for t in threading.enumerate() if t not in before]
    end = time.monotonic() + timeout
    for t in new:
        t.join(max(0.0, end - time.monotonic()))
    assert [t.name for t in new if t.is_alive()] == []


class Recorder:
    """Records every event a manager emits through its signals, in order."""

    def __init__(self) -> None:
        self.events: list[LifecycleEvent] = []
        self.kwargs: list[dict[str, Any]] = []

    def __call__(self, sender: object, **kwargs: Any) -> None:
        self.events.append(kwargs["event"])
        self.kwargs.append(kwargs)

    def names(self) -> list[str]:
        return [e.signal_name for e in self.events]

    def of(self, cls: type[LifecycleEvent]) -> list[Any]:
        return [e for e in self.events if type(e) is cls]

    def clear(self) -> None:
        self.events.clear()
        self.kwargs.clear()
