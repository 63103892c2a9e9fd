"""The most recent events of each integration-built manager, kept for the status page.

`attach(manager)` connects the log's receiver to every lifecycle signal except
`heartbeat_received` (the hot path stays free, and beats would crowd out everything else), for
that manager only, so no other manager's events reach it. blinker holds the receiver weakly and
the log lives as long as its manager: when the manager is collected, the log and its
connections go with it. The receiver runs in the thread that caused the event with no lock
held; recording is a registry lookup and a bounded `deque.append`.
"""

from __future__ import annotations

import itertools
import time
import weakref
from collections import deque
from typing import Any

from ..dispatch import SIGNALS
from ..events import (
    Error,
    LifecycleEvent,
    ReconnectFailed,
    Reconnecting,
    StatusChanged,
)
from ..manager import LifecycleManager

__all__ = ["DEFAULT_EVENTS", "EventLog", "attach", "event_log"]

DEFAULT_EVENTS = 100
"""How many events each log keeps; older ones are dropped (and counted)."""

MAX_TEXT = 500
"""Longest error text kept per event: a service's error message may be arbitrarily long."""

_logs: weakref.WeakKeyDictionary[LifecycleManager, EventLog] = weakref.WeakKeyDictionary()


class EventLog:
    """A bounded, newest-last record of one manager's events, as JSON-ready dicts."""

    def __init__(self, maxlen: int = DEFAULT_EVENTS) -> None:
        self.maxlen = maxlen
        self._records: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._seq = itertools.count(1)  # next() is atomic: concurrent receivers get distinct numbers
        self._names: dict[str, str] = {}

    def receive(self, sender: object, *, event: LifecycleEvent, **_kwargs: object) -> None:
        """The blinker receiver: `sender` is the manager the log was attached to."""
        if isinstance(sender, LifecycleManager):
            self.record(sender, event)

    def record(self, manager: LifecycleManager, event: LifecycleEvent) -> None:
        """Append `event`, with the service's name and the wall-clock time it happened."""
        id = str(event.service_id)
        name = self._name(manager, id)
        now = time.monotonic()
        entry: dict[str, Any] = {
            "seq": next(self._seq),
            "event": event.signal_name,
            "service_id": id,
            "name": name,
            "time": round(time.time() - max(0.0, now - event.at), 3),
            "at": event.at,
            "summary": _summary(event),
        }
        if isinstance(event, StatusChanged):
            entry["status"] = str(event.new_status)
        self._records.append(entry)

    def seen(self) -> int:
        """How many events were recorded in all (the log keeps the last `maxlen`)."""
        records = self._records.copy()
        return records[-1]["seq"] if records else 0

    def recent(self, now: float) -> list[dict[str, Any]]:
        """The kept events, newest first, each with `seconds_ago` as of `now` (a `time.monotonic()` reading)."""
        # deque.copy() is one C call: safe against a receiver appending in another thread.
        records = self._records.copy()
        out = []
        for record in reversed(records):
            item = {key: value for key, value in record.items() if key != "at"}
            item["seconds_ago"] = round(max(0.0, now - record["at"]), 3)
            out.append(item)
        return out

    def _name(self, manager: LifecycleManager, id: str) -> str | None:
        service = manager.registry.get(id)
        if service is not None:
            if len(self._names) >= 4 * self.maxlen:
                # Keep the names of services the kept events mention; forget the rest.
                wanted = {record["service_id"] for record in self._records.copy()}
                self._names = {key: value for key, value in list(self._names.items()) if key in wanted}
            self._names[id] = service.name
            return service.name
        # service_stopped comes after the service left the registry: use the name seen before.
        return self._names.get(id)


def _summary(event: LifecycleEvent) -> str:
    if isinstance(event, StatusChanged):
        return f"{event.old_status} \u2192 {event.new_status}"
    if isinstance(event, Reconnecting):
        return f"reconnect attempt {event.attempt} of {event.max_attempts} in {event.delay:.3g} s"
    if isinstance(event, ReconnectFailed):
        return f"gave up after {event.attempts} attempt(s)"
    if isinstance(event, Error):
        text = event.error
        return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "\u2026"
    return ""  # the event's name says it all


def attach(manager: LifecycleManager, maxlen: int = DEFAULT_EVENTS) -> EventLog:
    """Start keeping `manager`'s events (from now on); returns its log. Called once per manager."""
    log = _logs.get(manager)
    if log is None:
        log = _logs[manager] = EventLog(maxlen)
        for name, signal in SIGNALS.items():
            if name != "heartbeat_received":
                signal.connect(log.receive, sender=manager, weak=True)
    return log


def event_log(manager: LifecycleManager) -> EventLog | None:
    """The log `attach` started for `manager`, if any."""
    return _logs.get(manager)
