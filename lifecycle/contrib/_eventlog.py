"""The most recent events of each integration-built manager, kept for the status page.

`attach(manager)` connects the log's receiver to every lifecycle signal except
`heartbeat_received` (the hot path stays free, and beats would crowd out everything else), for
that manager only, so no other manager's events reach it. blinker holds the receiver weakly and
the log lives as long as its manager: when the manager is collected, the log and its
connections go with it. The receiver runs in the thread that caused the event with no lock
held; recording is a dict lookup (a registry lookup the first time a service is seen) and a
bounded `deque.append`.

In fleet mode the log shows the fleet's events instead, whichever process emitted them, read
from the fleet's shared event log each time the page asks (`follow_fleet`): the whole log the
first time, then only the entries after the last one read, with no reader thread. Every process
reads the same entries in the same order, so every worker's page lists the same events, with the
same times (the log entry's, on the registry's clock) and the same numbers.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import weakref
from collections import deque
from typing import Any

from ..dispatch import SIGNALS, ScopedReceiver
from ..errors import LifecycleError
from ..events import (
    Error,
    Heartbeat,
    LifecycleEvent,
    ReconnectFailed,
    Reconnecting,
    StatusChanged,
)
from ..fleet import SharedRegistry, is_shared
from ..manager import LifecycleManager

__all__ = ["DEFAULT_EVENTS", "EventLog", "attach", "event_log"]

DEFAULT_EVENTS = 100
"""How many events each log keeps; older ones are dropped (and counted)."""

MAX_TEXT = 500
"""Longest error text kept per event: a service's error message may be arbitrarily long."""

READ_PAGE = 1000
"""Entries asked of the fleet's log per read."""

READ_PAGES = 20
"""Reads one poll may make: a backlog longer than this is read over the next polls."""

READ_WAIT = 5.0
"""Longest a poll waits for another thread of this process that is reading the fleet's log."""

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
        # Fleet mode: the position in the fleet's log read so far (None: nothing yet, read it all).
        self._after: str | None = None
        self._read_lock = threading.Lock()  # one reader at a time, so entries are kept once and in order
        self._read_failed = False

    def receive(self, sender: object, *, event: LifecycleEvent, **_kwargs: object) -> None:
        """The blinker receiver: `sender` is the manager the log was attached to."""
        if isinstance(sender, LifecycleManager):
            self.record(sender, event)

    def record(self, manager: LifecycleManager, event: LifecycleEvent) -> None:
        """Append `event`, with the service's name and the wall-clock time it happened."""
        id = str(event.service_id)
        now = time.monotonic()
        self._append(event, self._name(manager, id), time.time() - max(0.0, now - event.at), event.at)

    def _append(self, event: LifecycleEvent, name: str | None, wall: float, at: float,
                entry_id: str | None = None) -> None:
        entry: dict[str, Any] = {
            "seq": next(self._seq),
            "event": event.signal_name,
            "service_id": str(event.service_id),
            "name": name,
            "time": round(wall, 3),
            "at": at,
            "summary": _summary(event),
        }
        if entry_id is not None:
            entry["entry"] = entry_id
        if isinstance(event, StatusChanged):
            entry["status"] = str(event.new_status)
        self._records.append(entry)

    def seen(self) -> int:
        """How many events were recorded in all (the log keeps the last `maxlen`)."""
        records = self._records.copy()
        return records[-1]["seq"] if records else 0

    def follow_fleet(self, manager: LifecycleManager) -> None:
        """Fleet mode: move the fleet log's entries not read yet into this log (at the first call, the whole log).

        Runs in the thread answering the page, without blocking on the server: every worker that
        answers has then read the same entries, up to the log's end. Heartbeats are left out. An
        unreachable registry is logged once; the page's own read of the services then says so.
        """
        registry = manager.registry
        if manager.closed or not is_shared(registry):
            return
        if not self._read_lock.acquire(timeout=READ_WAIT):
            return  # another thread of this process is reading: it reads for this poll too
        try:
            if self._after is None:  # the start of each partition's log
                self._after = ",".join(["0-0"] * registry.partitions)
            for _ in range(READ_PAGES):
                rows = registry.read_events(self._after, count=READ_PAGE)
                if not rows:
                    break
                self._after = rows[-1][0]
                self._keep(registry, [(entry, event) for entry, event in rows if not isinstance(event, Heartbeat)])
            self._read_failed = False
        except LifecycleError as exc:  # RegistryUnavailable, RegistryRefused: the next poll reads again
            if not self._read_failed:
                log.warning("lifecycle: the status page cannot read the fleet's event log: %s", exc)
                self._read_failed = True
        finally:
            self._read_lock.release()

    def _keep(self, registry: SharedRegistry, rows: list[tuple[str, LifecycleEvent]]) -> None:
        """Record fleet log entries, timed by their entry ids (milliseconds on the registry's clock)."""
        if any(str(event.service_id) not in self._names for _, event in rows):
            self._learn_names(registry)
        wall, mono = time.time(), time.monotonic()
        for entry, event in rows:
            at_wall = _entry_time(entry, wall)
            id = str(event.service_id)
            self._append(event, self._names.get(id), at_wall, mono - max(0.0, wall - at_wall), entry)

    def _learn_names(self, registry: SharedRegistry) -> None:
        """The names of every registered service, in one read (a batch may name many new services)."""
        services = registry.list_all()
        if len(self._names) >= 4 * self.maxlen:
            # Keep the names of services the kept events mention; the registered ones follow.
            wanted = {record["service_id"] for record in self._records.copy()}
            self._names = {key: value for key, value in list(self._names.items()) if key in wanted}
        for service in services:
            self._names[str(service.id)] = service.name

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


def _entry_time(entry: str, default: float) -> float:
    """Wall-clock seconds of a fleet log entry id ("<milliseconds>-<sequence>"); `default` if it is not one."""
    try:
        return int(entry.partition("-")[0]) / 1000
    except ValueError:
        return default


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
