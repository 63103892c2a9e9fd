"""The most recent events of each integration-built manager, kept for the status page.

`attach(manager)` connects the log's receiver to every lifecycle signal except
`heartbeat_received` (the hot path stays free, and beats would crowd out everything else), for
that manager only, so no other manager's events reach it. blinker holds the receiver weakly and
the log lives as long as its manager: when the manager is collected, the log and its
connections go with it. The receiver runs in the thread that caused the event with no lock
held; recording is a dict lookup (a registry lookup the first time a service is seen) and a
bounded `deque.append`.

In fleet mode the log shows the fleet's events instead, whichever process emitted them: it
follows the fleet's event log through `manager.subscribe(fleet=True)` (bounded like the log),
started the first time the page asks, so a process nobody looks at keeps no reader thread.
Its pending events are moved into the log each time the page asks.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import weakref
from collections import deque
from typing import Any

from ..dispatch import SIGNALS, ScopedReceiver
from ..errors import LifecycleError
from ..events import (
    Error,
    LifecycleEvent,
    ReconnectFailed,
    Reconnecting,
    StatusChanged,
)
from ..manager import LifecycleManager
from ..subscription import Subscription

__all__ = ["DEFAULT_EVENTS", "EventLog", "attach", "event_log"]

DEFAULT_EVENTS = 100
"""How many events each log keeps; older ones are dropped (and counted)."""

MAX_TEXT = 500
"""Longest error text kept per event: a service's error message may be arbitrarily long."""

log = logging.getLogger("lifecycle")

_logs: weakref.WeakKeyDictionary[LifecycleManager, EventLog] = weakref.WeakKeyDictionary()
_receivers: weakref.WeakKeyDictionary[LifecycleManager, ScopedReceiver] = weakref.WeakKeyDictionary()


class EventLog:
    """A bounded, newest-last record of one manager's events, as JSON-ready dicts."""

    def __init__(self, maxlen: int = DEFAULT_EVENTS, *, fleet: bool = False) -> None:
        self.maxlen = maxlen
        self.fleet = fleet
        self._records: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._seq = itertools.count(1)  # next() is atomic: concurrent receivers get distinct numbers
        self._names: dict[str, str] = {}
        # The fleet log's subscription, held weakly: the manager keeps it (and it refers to the manager).
        self._feed: weakref.ref[Subscription] | None = None
        self._feed_lock = threading.Lock()
        self._feed_failed = False

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
        """How many events were recorded in all (the log keeps the last `maxlen`), plus any the fleet feed dropped."""
        records = self._records.copy()
        feed = None if self._feed is None else self._feed()
        return (records[-1]["seq"] if records else 0) + (0 if feed is None else feed.dropped)

    def follow_fleet(self, manager: LifecycleManager) -> None:
        """Fleet mode: subscribe to the fleet's log once, then move its pending events into this log."""
        feed = None if self._feed is None else self._feed()
        if feed is None:
            if manager.closed or not self._feed_lock.acquire(timeout=5.0):
                return
            try:
                feed = None if self._feed is None else self._feed()
                if feed is None:
                    # Asks the server for the log's end; the page polls again if it is down.
                    feed = manager.subscribe(self.maxlen, fleet=True)
                    self._feed = weakref.ref(feed)
                    self._feed_failed = False
            except LifecycleError as exc:  # RegistryUnavailable, or ManagerClosed in a race with shutdown
                if not self._feed_failed:
                    log.warning("lifecycle: the status page cannot follow the fleet's event log yet: %s", exc)
                    self._feed_failed = True
                return
            finally:
                self._feed_lock.release()
        while True:
            try:
                event = feed.get_nowait()
            except queue.Empty:
                return
            self.record(manager, event)

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
        known = self._names.get(id)  # a service's name never changes: ask the registry once
        if known is not None:
            return known
        try:
            service = manager.registry.get(id)
        except LifecycleError:  # a shared registry that is down: the page shows the id alone
            service = None
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
    found = _logs.get(manager)
    if found is None:
        found = _logs[manager] = EventLog(maxlen, fleet=manager.fleet)
        if not manager.fleet:  # the fleet's log already holds this process's own events
            # Connected for every sender and filtered by the wrapper, so blinker keeps no sender
            # bookkeeping to clean up in whatever thread collects the manager. blinker holds the
            # wrapper weakly; this table holds it for as long as the manager lives.
            scoped = _receivers[manager] = ScopedReceiver(found.receive, manager)
            for name, signal in SIGNALS.items():
                if name != "heartbeat_received":
                    signal.connect(scoped, weak=True)
    return found


def event_log(manager: LifecycleManager) -> EventLog | None:
    """The log `attach` started for `manager`, if any."""
    return _logs.get(manager)
