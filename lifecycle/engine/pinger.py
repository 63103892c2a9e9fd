"""Pings, written once for both engines: every interval, each service whose connection this process holds.

The engine says what to ping now (`target(slot)`: the service, or None to skip this round; it
re-arms the slot's next ping with `arm` as it sees fit) and records a ping that answered
(`record(slot)`: the events it caused, or None if it no longer counts). The pinger runs the ping
through the executor, logs failures, counts the beat and sends the heartbeat event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from ..connector import Hooks
from ..events import Heartbeat, LifecycleEvent
from ..model import ExtensionService, ServiceId
from ..timers import Timer
from ..watchdog import Watchdog
from .base import Sink, error_text
from .guard import Guard
from .runner import Executor

__all__ = ["PingSlot", "Pinger"]

log = logging.getLogger("lifecycle")


class PingSlot(Protocol):
    id: ServiceId
    hooks: Hooks | None
    ping_interval: float
    connect_timeout: float
    ping_busy: bool

    def label(self) -> str: ...


S = TypeVar("S", bound=PingSlot)


class Pinger(Generic[S]):
    """Runs each due ping off the engine's lock; one ping per service at a time (a slow one skips rounds)."""

    def __init__(self, watchdog: Watchdog, guard: Guard, executor: Executor, sink: Sink,
                 target: Callable[[S], ExtensionService | None],
                 record: Callable[[S], Sequence[LifecycleEvent] | None]) -> None:
        self._watchdog = watchdog
        self._due_guarded = guard.wrap(self._due)
        self._executor = executor
        self._sink = sink
        self._target = target
        self._record = record

    def arm(self, slot: S) -> Timer:
        """The slot's next ping, one interval from now."""
        return self._watchdog.call_later(slot.ping_interval, self._due_guarded, slot)

    def _due(self, slot: S) -> None:
        service = self._target(slot)
        if service is None or slot.hooks is None or slot.hooks.ping is None:
            return
        self._executor.ping(slot.hooks.ping, service, slot.connect_timeout, lambda error: self._done(slot, error))

    def _done(self, slot: S, error: BaseException | None) -> None:
        if error is not None:
            slot.ping_busy = False
            log.warning("lifecycle: ping of %s failed: %s", slot.label(), error_text(error))
            return
        events = self._record(slot)
        if events is None:
            return
        self._sink.count_beat()
        self._sink.emit(events)
        if self._sink.heard():
            self._sink.emit((Heartbeat(slot.id, time.monotonic()),))
