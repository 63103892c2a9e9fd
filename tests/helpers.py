"""Helpers shared by the tests: the real-thread wait bound and a thread-leak check.

Event recording and waiting live in `lifecycle.testing.EventRecorder`.
"""

from __future__ import annotations

import threading
import time

WAIT = 5.0  # generous bound for anything that should take well under a second


def new_threads_exit(before: set[threading.Thread], timeout: float = WAIT) -> None:
    """Assert every thread started since `before` ends within `timeout` (waiting, not sleeping)."""
    new = [t for t in threading.enumerate() if t not in before]
    end = time.monotonic() + timeout
    for t in new:
        t.join(max(0.0, end - time.monotonic()))
    assert [t.name for t in new if t.is_alive()] == []

