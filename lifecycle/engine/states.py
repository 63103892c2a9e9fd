"""The state machine's table, and the in-memory engine's access to an entry's status in the registry."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..events import LifecycleEvent, StatusChanged
from ..model import ServiceStatus
from ..registry import Store
from .entry import Entry

__all__ = ["TRANSITIONS", "StatusBook"]

log = logging.getLogger("lifecycle")

RUNNING = ServiceStatus.RUNNING
STARTING = ServiceStatus.STARTING
STOPPING = ServiceStatus.STOPPING
STOPPED = ServiceStatus.STOPPED
ERROR = ServiceStatus.ERROR
RECONNECTING = ServiceStatus.RECONNECTING

#: Every status change an engine makes; anything else is a bug or outside tampering.
TRANSITIONS: dict[ServiceStatus, frozenset[ServiceStatus]] = {
    STARTING: frozenset({RUNNING, STOPPING}),
    RUNNING: frozenset({RECONNECTING, ERROR, STOPPING}),
    ERROR: frozenset({RECONNECTING, RUNNING, STOPPING}),
    RECONNECTING: frozenset({RUNNING, ERROR, STOPPING}),
    STOPPING: frozenset({STOPPED}),
    STOPPED: frozenset(),
}


class StatusBook:
    """An entry's status and retry count as the registry holds them; the engine's lock is held."""

    def __init__(self, registry: Store) -> None:
        self._registry = registry
        # The in-memory registry keeps retry_count in step with attempts(id); others may not offer it.
        self._retry_setter: Callable[[str, int], None] | None = getattr(registry, "set_retry_count", None)

    def of(self, entry: Entry) -> ServiceStatus | None:
        live = self._registry.silence(entry.id)
        return None if live is None else live[0]

    def move(self, entry: Entry, new: ServiceStatus, out: list[LifecycleEvent]) -> None:
        """Change the status, adding `status_changed` to `out` (nothing if it already was `new`)."""
        old = self._registry.update_status(entry.id, new)
        if old is new:
            return
        if new not in TRANSITIONS[old]:
            log.warning("lifecycle: unexpected transition %s -> %s of %s (was the registry changed directly?)",
                        old.value, new.value, entry.label())
        out.append(StatusChanged(entry.id, time.monotonic(), old, new))

    def count_attempt(self, entry: Entry, attempt: int) -> None:
        """Count the reconnect attempt on the entry and in the registry's `retry_count` (snapshots show it)."""
        entry.attempt = attempt
        if self._retry_setter is not None:
            self._retry_setter(entry.id, attempt)
