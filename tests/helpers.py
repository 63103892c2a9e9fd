"""Helpers shared by the tests: the real-thread wait bound and a thread-leak check.

Event recording and waiting live in `lifecycle.testing.EventRecorder`.
"""

from __future__ import annotations

import threading
import time

from lifecycle import LifecycleConfig

MANUAL = LifecycleConfig(
    heartbeat_interval_secs=1.0,
    heartbeat_timeout_secs=3.0,
    max_reconnect_attempts=3,
    reconnect_delay_ms=1000,
    max_reconnect_delay_ms=4000,
    jitter=0.0,
)
"""Manual-mode tests' config: whole seconds, no jitter, so delays and deadlines are exact."""

WAIT = 5.0  # generous bound for anything that should take well under a second


def new_threads_exit(before: set[threading.Thread], timeout: float = WAIT) -> None:
    """Assert every thread started since `before` ends within `timeout` (waiting, not sleeping)."""
    new = [t for t in threading.enumerate() if t not in before]
    end = time.monotonic() + timeout
    for t in new:
        t.join(max(0.0, end - time.monotonic()))
    assert [t.name for t in new if t.is_alive()] == []

