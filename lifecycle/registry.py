"""The registry: the one place a service's status and last heartbeat are stored.

`Registry` is what a manager accepts: the engine's narrow `Store` (what supervision needs) plus
the public `RegistryReader` (queries) and administration. `RegistryService` is the in-process,
thread-safe implementation. Every read returns a deep copy, so callers can never change
the registry by mutating what they were given.
"""

from __future__ import annotations

import copy
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, NamedTuple, Protocol, runtime_checkable

from . import _validate
from ._forksafe import hold_across_fork
from ._text import quote
from .errors import ServiceAlreadyExists, ServiceNotFound
from .events import LifecycleEvent
from .model import ExtensionService, RegistrationInfo, ServiceFilter, ServiceId, ServiceStatus, _status, _utcnow

__all__ = ["Owned", "OwnerStore", "Registry", "RegistryReader", "RegistryService", "RegistryStats", "Released", "Store"]

_RUNNING = ServiceStatus.RUNNING
_Services = list[ExtensionService]
_Ids = list[ServiceId]


@dataclass(frozen=True, slots=True)
class RegistryStats:
    """How many services are registered, in total and per status."""

    total: int = 0
    starting: int = 0
    running: int = 0
    stopping: int = 0
    stopped: int = 0
    errors: int = 0
    reconnecting: int = 0


class Store(Protocol):
    """What the in-memory engine needs from a registry to supervise: the state machine's storage.

    Implementations must be thread-safe. `heartbeat`, `update_status` and `silence` are on the
    engine's hot path and must not copy the service.

    Time: the registry measures silence on its own clock and answers in seconds ("silent for
    s seconds"), never with a timestamp; the engine adds what it is told to its own clock. So a
    registry shared by several hosts (whose clocks differ) keeps one clock: its own.
    """

    def register(self, service: ExtensionService) -> ServiceId: ...
    def unregister(self, id: str) -> RegistrationInfo: ...
    def get(self, id: str) -> ExtensionService | None: ...

    def update_status(
        self, id: str, status: ServiceStatus, *, expected: ServiceStatus | None = None
    ) -> ServiceStatus:
        """Set the status, touch `updated_at`, and return the status it replaced.

        With `expected`, a compare-and-set: the change is made only if the current status is
        `expected`; the return value (the status found) tells whether it was.
        """
        ...

    def heartbeat(self, id: str) -> ServiceStatus:
        """Record a heartbeat now, unless the service is STOPPING or STOPPED; return its status."""
        ...

    def expire(self, id: str, timeout: float, status: ServiceStatus) -> ServiceStatus | None:
        """Atomically: if RUNNING and silent for `timeout` seconds, set `status` and return RUNNING.

        Otherwise change nothing and return None. This is what lets heartbeats skip the
        engine's lock: a beat and an expiry can no longer interleave.
        """
        ...

    def silence(self, id: str) -> tuple[ServiceStatus, float | None] | None:
        """(status, seconds since the last heartbeat or None if none) without copying; None if unknown."""
        ...


class RegistryReader(Protocol):
    """The public read side of a registry: what status pages, CLIs and apps ask; the engine never does."""

    def get(self, id: str) -> ExtensionService | None: ...
    def get_by_name(self, name: str) -> ExtensionService | None: ...
    def get_registration(self, id: str) -> RegistrationInfo | None: ...
    def list_all(self) -> _Services: ...
    def list(self, filter: ServiceFilter | None = None) -> _Services: ...
    def find_by_capability(self, name: str) -> _Services: ...
    def stats(self) -> RegistryStats: ...
    def count(self) -> int: ...
    def __len__(self) -> int: ...
    def __contains__(self, id: object) -> bool: ...


@runtime_checkable
class Registry(Store, RegistryReader, Protocol):
    """A registry a manager accepts: the engine's `Store`, the public `RegistryReader`, and administration.

    A shared, multi-process one (`lifecycle.fleet.SharedRegistry`) implements the same and more.
    """

    heartbeat_timeout_secs: float

    def health_check(self) -> _Ids: ...
    def clear(self) -> None: ...


class Owned(NamedTuple):
    """The answer to an ownership request for a process-bound service (a STDIO child, a held socket).

    `code`: 'owner' (the caller holds it now), 'other' (another live member does), 'missing' (not
    registered: stopped, or never was) or 'stopping'. `epoch` grows with every grant, so a fresh
    grant (`fresh`) is told from a renewal; `attempt` is the reconnect attempt the owner must run
    now (0: none), claimed for it; `before`, on a fresh grant, what an earlier owner recorded of
    itself and its child (engine/leftover.py), which a new owner on that host ends before it spawns.
    """

    code: str
    epoch: int
    fresh: bool
    status: str
    attempt: int
    before: str = ""


@dataclass(frozen=True, slots=True)
class Released(LifecycleEvent):
    """The fleet log's entry of a graceful give-up (`OwnerStore.disown`): the other candidates take over at once.

    Only logged, never emitted as a signal: members read it to wake; subscriptions are not given it.
    """

    signal_name: ClassVar[str] = "ownership_released"


@runtime_checkable
class OwnerStore(Protocol):
    """What a shared registry adds so one live member owns each process-bound service, fenced like the leader.

    An ownership lasts `ttl` seconds unrenewed on the store's clock. Only the owner spawns, pings,
    respawns and stops the child; its reconnect attempts are claimed by `own`, and the owner
    reports them through `attempt_done` with its token (accepted from the owner, lease or not).
    """

    def own(self, id: str, owner: str, ttl: float, tick: float, child: str | None = None) -> Owned:
        """Take or renew ownership of service `id` for `owner`; claim its due attempt for the owner.

        `child`: the owner's record of itself and its live child (text the store keeps as is, see
        engine/leftover.py); None keeps what is recorded.
        """
        ...

    def disown(self, id: str, owner: str) -> None:
        """Give ownership up (after the owner stopped its child), so another member takes it at once.

        Logs `Released` in the same atomic step when `owner` held it: the log wakes the other candidates.
        """
        ...

    def owner_of(self, id: str) -> str | None:
        """The live owner's token, None when nobody holds the service."""
        ...


def _fresh(cell: list[float | None], now: float, timeout: float) -> bool:
    last = cell[0]
    return last is not None and now - last < timeout


def _not_found(id: object) -> Exception:
    if not isinstance(id, str):
        return TypeError(f"id must be a str, not {type(id).__name__}")
    return ServiceNotFound(f"service {quote(id)} is not registered")


class RegistryService:
    """In-process registry; safe to share between threads.

    Status, last heartbeat and retry count are kept in flat per-id columns, not in the stored
    service records, and RUNNING (the usual status) is implied by absence from the small
    `_not_running` column. Snapshots put the columns back into the copies they hand out.

    Locking: every method but `heartbeat` holds one lock. `heartbeat` takes none, so beats from
    many threads do not queue on it: it writes the time into the service's own cell (a one-item
    list that lives as long as the registration: a beat never inserts a key, so it cannot bring
    back a service being unregistered), then reads the status. `expire` and `health_check` do
    the opposite under the lock: set the new status, then read the cell again and put RUNNING
    back if a beat landed meanwhile. Whichever order the two run in, either the expiry sees the
    beat and undoes itself, or the beat sees the new status and reports it (the manager then
    revives the service). This relies on the GIL making each dict and list access atomic and
    keeping the program order of the two threads' accesses; a caller racing `heartbeat`
    against `expire` may briefly be told a status that `expire` then takes back.
    """

    def __init__(self, *, heartbeat_timeout_secs: float = 60.0) -> None:
        self.heartbeat_timeout_secs = _validate.number(
            heartbeat_timeout_secs, "heartbeat_timeout_secs", positive=True
        )
        self._lock = threading.Lock()
        _registries.add(self)
        self._info: dict[str, RegistrationInfo] = {}
        self._last: dict[str, list[float | None]] = {}  # every registered id: [last heartbeat]
        self._not_running: dict[str, ServiceStatus] = {}
        self._retries: dict[str, int] = {}  # only non-zero counts
        self._id_by_name: dict[str, ServiceId] = {}

    def __repr__(self) -> str:
        return f"<RegistryService services={len(self._last)}>"

    def register(self, service: ExtensionService) -> ServiceId:
        """Store a copy of `service`; a second service with its name or id is refused."""
        if not isinstance(service, ExtensionService):
            raise TypeError(f"service must be an ExtensionService, not {type(service).__name__}")
        now = _utcnow()  # one clock read for both stamps: start_service is a hot path at boot
        info = RegistrationInfo(copy.deepcopy(service), now, now)
        id = service.id
        with self._lock:
            if service.name in self._id_by_name:
                raise ServiceAlreadyExists.named(service.name, self._id_by_name[service.name])
            if id in self._info:
                raise ServiceAlreadyExists.with_id(id)
            self._info[id] = info
            self._last[id] = [service.last_heartbeat]
            self._set_status(id, service.status)
            if service.retry_count:
                self._retries[id] = service.retry_count
            self._id_by_name[service.name] = id
        return id

    def unregister(self, id: str) -> RegistrationInfo:
        """Remove the service and return its last registration record."""
        with self._lock:
            info = self._info.pop(id, None) if isinstance(id, str) else None
            if info is None:
                raise _not_found(id)
            self._fill(id, info.service)
            del self._last[id], self._id_by_name[info.service.name]
            self._not_running.pop(id, None)
            self._retries.pop(id, None)
        return info

    def get(self, id: str) -> ExtensionService | None:
        """A snapshot of the service, or None."""
        with self._lock:
            info = self._info.get(id) if isinstance(id, str) else None
            return None if info is None else self._snapshot(id, info)

    def get_by_name(self, name: str) -> ExtensionService | None:
        """A snapshot of the service called `name`, or None."""
        with self._lock:
            id = self._id_by_name.get(name) if isinstance(name, str) else None
            return None if id is None else self._snapshot(id, self._info[id])

    def get_registration(self, id: str) -> RegistrationInfo | None:
        """A snapshot of the registration record, or None."""
        with self._lock:
            info = self._info.get(id) if isinstance(id, str) else None
            if info is None:
                return None
            return RegistrationInfo(self._snapshot(id, info), info.registered_at, info.updated_at)

    def update_status(
        self, id: str, status: ServiceStatus, *, expected: ServiceStatus | None = None
    ) -> ServiceStatus:
        """Set the status without checking the transition (only if it is `expected`, when given).

        Returns the status found, so `result is expected` tells a compare-and-set that it won.
        """
        status = _status(status)
        with self._lock:
            old = self._get_status(id)
            if old is None:
                raise _not_found(id)
            if expected is not None and old is not expected:
                return old
            self._set_status(id, status)
            self._info[id].touch()
            return old

    def heartbeat(self, id: str) -> ServiceStatus:
        """Record a heartbeat now (not for a STOPPING or STOPPED service); returns the service's status.

        Takes no lock (see the class docstring): the time goes into the service's cell first,
        and the status is read after it.
        """
        try:
            cell = self._last.get(id)
        except TypeError:  # unhashable; catching is cheaper than an isinstance on every beat
            cell = None
        if cell is None:
            raise _not_found(id)
        not_running = self._not_running
        if not_running:
            status = not_running.get(id, _RUNNING)
            if status is ServiceStatus.STOPPING or status is ServiceStatus.STOPPED:
                return status
        cell[0] = time.monotonic()
        if self._retries:
            self._retries.pop(id, None)
        if not not_running:
            return _RUNNING
        status = not_running.get(id, _RUNNING)
        if status is _RUNNING and self._last.get(id) is not cell:
            raise _not_found(id)  # unregistered meanwhile (its status left the column with it)
        return status

    def set_retry_count(self, id: str, count: int) -> None:
        """Record the manager's reconnect attempt count, so snapshots' `retry_count` equals `attempts(id)`."""
        with self._lock:
            if not isinstance(id, str) or id not in self._last:
                raise _not_found(id)
            if count:
                self._retries[id] = count
            else:
                self._retries.pop(id, None)

    def expire(self, id: str, timeout: float, status: ServiceStatus) -> ServiceStatus | None:
        """If RUNNING and silent for `timeout` seconds, set `status` and return RUNNING; else None."""
        status = _status(status)
        with self._lock:
            if self._get_status(id) is not _RUNNING:
                return None
            cell = self._last[id]
            if _fresh(cell, time.monotonic(), timeout):
                return None
            self._set_status(id, status)
            # A lock-free heartbeat that wrote before this read is seen here; one that writes after
            # it reads the new status and revives the service. See the class docstring.
            if _fresh(cell, time.monotonic(), timeout):
                self._set_status(id, _RUNNING)
                return None
            self._info[id].touch()
            return ServiceStatus.RUNNING

    def expire_many(self, batch: Sequence[tuple[str, float, ServiceStatus]]) -> list[bool]:
        """`expire` of each (id, timeout, status), under one lock, two clock readings and one `updated_at`.

        For the engine's batched deadlines: a burst of timeouts costs one pass. True where the
        service was RUNNING and silent and now has its new status.
        """
        done: list[bool] = []
        append = done.append
        cells, not_running = self._last, self._not_running  # `_get_status` inlined: a burst's hot loop
        with self._lock:
            now = time.monotonic()
            for id, timeout, status in batch:
                cell = cells.get(id) if isinstance(id, str) else None
                if cell is None or id in not_running or _fresh(cell, now, timeout):
                    append(False)
                    continue
                self._set_status(id, _status(status))
                append(True)
            now = time.monotonic()
            stamp: datetime | None = None
            for index, (id, timeout, _) in enumerate(batch):
                if not done[index]:
                    continue
                # As in expire: a lock-free beat that landed after the first look puts RUNNING back.
                if _fresh(cells[id], now, timeout):
                    self._set_status(id, _RUNNING)
                    done[index] = False
                else:
                    stamp = stamp or _utcnow()
                    self._info[id].updated_at = stamp
        return done

    def silence(self, id: str) -> tuple[ServiceStatus, float | None] | None:
        """(status, seconds since the last heartbeat or None), or None for an unknown id."""
        with self._lock:
            status = self._get_status(id)
            if status is None:
                return None
            last = self._last[id][0]
            return status, None if last is None else time.monotonic() - last

    def silence_many(self, ids: Sequence[str]) -> list[tuple[ServiceStatus, float | None] | None]:
        """`silence` of each id, under one lock and one clock reading (the manager's batched deadlines)."""
        out: list[tuple[ServiceStatus, float | None] | None] = []
        append = out.append
        cells, not_running = self._last, self._not_running
        with self._lock:
            now = time.monotonic()
            for id in ids:
                cell = cells.get(id) if isinstance(id, str) else None
                if cell is None:
                    append(None)
                    continue
                last = cell[0]
                append((not_running.get(id, _RUNNING), None if last is None else now - last))
        return out

    def list_all(self) -> _Services:
        """Snapshots of every service, in registration order."""
        with self._lock:
            return [self._snapshot(id, info) for id, info in self._info.items()]

    def list(self, filter: ServiceFilter | None = None) -> _Services:
        """Snapshots of the services matching `filter` (all of them without one)."""
        if filter is None:
            return self.list_all()
        if not isinstance(filter, ServiceFilter):
            raise TypeError(f"filter must be a ServiceFilter, not {type(filter).__name__}")
        with self._lock:
            found = []
            for id, info in self._info.items():
                if filter.status is not None and self._get_status(id) is not filter.status:
                    continue
                service = self._snapshot(id, info)
                if filter.matches(service):
                    found.append(service)
            return found

    def find_by_capability(self, name: str) -> _Services:
        """Snapshots of the services offering capability `name`."""
        return self.list(ServiceFilter(capability=name))

    def stats(self) -> RegistryStats:
        """Counts per status."""
        counts = dict.fromkeys(ServiceStatus, 0)
        with self._lock:
            for status in self._not_running.values():
                counts[status] += 1
            total = len(self._last)
            counts[_RUNNING] = total - len(self._not_running)
        return RegistryStats(
            total=total,
            starting=counts[ServiceStatus.STARTING],
            running=counts[ServiceStatus.RUNNING],
            stopping=counts[ServiceStatus.STOPPING],
            stopped=counts[ServiceStatus.STOPPED],
            errors=counts[ServiceStatus.ERROR],
            reconnecting=counts[ServiceStatus.RECONNECTING],
        )

    def health_check(self) -> _Ids:
        """Mark every RUNNING service silent for `heartbeat_timeout_secs` RECONNECTING; return their ids.

        This is the plain record-keeping version; `LifecycleManager.health_check` also emits
        events and schedules reconnects, and is what a managed service should use.
        """
        stale: _Ids = []
        with self._lock:
            now = time.monotonic()
            not_running = self._not_running
            timeout = self.heartbeat_timeout_secs
            for id, cell in self._last.items():
                if id in not_running:
                    continue
                if not _fresh(cell, now, timeout):
                    stale.append(self._info[id].service.id)
            for id in stale:
                self._set_status(id, ServiceStatus.RECONNECTING)
            now = time.monotonic()
            # As in expire: a lock-free beat that landed after the first look puts RUNNING back.
            revived = [id for id in stale if _fresh(self._last[id], now, timeout)]
            for id in revived:
                self._set_status(id, _RUNNING)
            if revived:
                stale = [id for id in stale if id not in set(revived)]
            for id in stale:
                self._info[id].touch()
        return stale

    def clear(self) -> None:
        """Forget every service."""
        with self._lock:
            for column in (self._info, self._last, self._not_running, self._retries, self._id_by_name):
                column.clear()

    def count(self) -> int:
        """How many services are registered."""
        return len(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def __contains__(self, id: object) -> bool:
        return isinstance(id, str) and id in self._last

    def _get_status(self, id: object) -> ServiceStatus | None:
        if not isinstance(id, str) or id not in self._last:
            return None
        return self._not_running.get(id, _RUNNING)

    def _set_status(self, id: str, status: ServiceStatus) -> None:
        if status is _RUNNING:
            self._not_running.pop(id, None)
        else:
            self._not_running[id] = status

    def _fill(self, id: str, service: ExtensionService) -> ExtensionService:
        service.status = self._not_running.get(id, _RUNNING)
        service.last_heartbeat = self._last[id][0]
        service.retry_count = self._retries.get(id, 0)
        return service

    def _snapshot(self, id: str, info: RegistrationInfo) -> ExtensionService:
        return self._fill(id, copy.deepcopy(info.service))


_registries: weakref.WeakSet[RegistryService] = weakref.WeakSet()


def _renew_registry_locks() -> None:
    for registry in list(_registries):
        registry._lock = threading.Lock()


hold_across_fork(lambda: [registry._lock for registry in list(_registries)], _renew_registry_locks)
