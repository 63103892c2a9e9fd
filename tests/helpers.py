"""Helpers shared by the tests: the real-thread wait bound and a thread-leak check.

Event recording and waiting live in `lifecycle.testing.EventRecorder`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from blinker import NamedSignal

from lifecycle import LifecycleConfig
from lifecycle.contrib._eventlog import EventLog
from lifecycle.contrib._process import _Declared
from lifecycle.dispatch import SIGNALS, ScopedReceiver

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



_NOBODY = object()  # a sender no manager is: receivers_for(_NOBODY) yields those connected for every sender


def listeners(signal: NamedSignal) -> list[Any]:
    """The receivers `signal` calls for every sender (all of `lifecycle.connect`'s), unwrapped; public API only."""
    return [r.receiver if isinstance(r, ScopedReceiver) else r for r in signal.receivers_for(_NOBODY)]


def receiver_ids(signals: Iterable[NamedSignal] = SIGNALS.values()) -> dict[str, set[int]]:
    """A snapshot of each signal's receivers (one id per connection), less the integrations' event logs.

    Every `lifecycle.connect` connection is connected for every sender, so blinker's public
    `receivers_for` sees it. An event log is connected (weakly, for its own manager) for as long
    as that manager lives, which can be past a test's teardown: it is left out.
    """
    return {signal.name: {id(r) for r in signal.receivers_for(_NOBODY) if not is_event_log(r)} for signal in signals}


def is_event_log(receiver: object) -> bool:
    """True for what `lifecycle.contrib._eventlog.attach` connects (and `_process`, for declared services' stops)."""
    return isinstance(getattr(getattr(receiver, "receiver", None), "__self__", None), (EventLog, _Declared))


@contextlib.contextmanager
def hearing_every_signal(receiver: Any) -> Iterator[None]:
    """`receiver` connected (strongly) to every lifecycle signal while the block runs."""
    for signal in SIGNALS.values():
        signal.connect(receiver, weak=False)
    try:
        yield
    finally:
        for signal in SIGNALS.values():
            signal.disconnect(receiver)
