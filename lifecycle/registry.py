"""The registry: the one place a service's status and last heartbeat are stored.

`Registry` is the interface the manager talks to; `RegistryService` is the in-process,
thread-safe implementation. Every read returns a deep copy, so callers can never change
the registry by mutating what they were given.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from . import _validate
from .errors import ServiceAlreadyExists, ServiceNotFound
from .model import ExtensionService, RegistrationInfo, ServiceFilter, ServiceId, ServiceStatus, _status

__all__ = ["Registry", "RegistryService", "RegistryStats"]

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


@runtime_checkable
class Registry(Protocol):
    """What the manager needs from a registry; a shared, multi-process one implements the same.

    Implementations must be thread-safe. `heartbeat`, `update_status` and `liveness` are on the
    manager's hot path and must not copy the service.
    """

    heartbeat_timeout_secs: float

    def register(self, service: ExtensionService) -> ServiceId: ...
    def unregister(self, id: str) -> RegistrationInfo: ...
    def get(self, id: str) -> ExtensionService | None: ...
    def get_by_name(self, name: str) -> ExtensionService | None: ...
    def get_registration(self, id: str) -> RegistrationInfo | None: ...

    def update_status(self, id: str, status: ServiceStatus) -> ServiceStatus:
        """Set the status, touch `updated_at`, and return the status it replaced."""
        ...

    def heartbeat(self, id: str) -> ServiceStatus:
        """Record a heartbeat now and return the service's status."""
        ...

    def liveness(self, id: str) -> tuple[ServiceStatus, float | None] | None:
        """(status, last_heartbeat) without copying, or None for an unknown id."""
        ...

    def list_all(self) -> _Services: ...
    def list(self, filter: ServiceFilter | None = None) -> _Services: ...
    def find_by_capability(self, name: str) -> _Services: ...
    def stats(self) -> RegistryStats: ...
    def health_check(self) -> _Ids: ...
    def clear(self) -> None: ...
    def count(self) -> int: ...
    def __len__(self) -> int: ...
    def __contains__(self, id: object) -> bool: ...


def _not_found(id: str) -> ServiceNotFound:
    return ServiceNotFound(f"service {id!r} is not registered")


class RegistryService:
    """In-process registry guarded by one lock; safe to share between threads."""

    def __init__(self, *, heartbeat_timeout_secs: float = 60.0) -> None:
        self.heartbeat_timeout_secs = _validate.number(
            heartbeat_timeout_secs, "heartbeat_timeout_secs", positive=True
        )
        self._lock = threading.Lock()
        self._by_id: dict[str, RegistrationInfo] = {}
        self._id_by_name: dict[str, ServiceId] = {}

    def __repr__(self) -> str:
        return f"<RegistryService services={len(self._by_id)}>"

    def register(self, service: ExtensionService) -> ServiceId:
        """Store a copy of `service`; a second service with its name or id is refused."""
        if not isinstance(service, ExtensionService):
            raise TypeError(f"service must be an ExtensionService, not {type(service).__name__}")
        info = RegistrationInfo(copy.deepcopy(service))
        with self._lock:
            if service.name in self._id_by_name:
                raise ServiceAlreadyExists(
                    f"a service named {service.name!r} is already registered "
                    f"(id {self._id_by_name[service.name]!r})"
                )
            if service.id in self._by_id:
                raise ServiceAlreadyExists(f"a service with id {service.id!r} is already registered")
            self._by_id[service.id] = info
            self._id_by_name[service.name] = service.id
        return service.id

    def unregister(self, id: str) -> RegistrationInfo:
        """Remove the service and return its last registration record."""
        with self._lock:
            info = self._by_id.pop(id, None)
            if info is None:
                raise _not_found(id)
            del self._id_by_name[info.service.name]
        return info

    def get(self, id: str) -> ExtensionService | None:
        """A snapshot of the service, or None."""
        with self._lock:
            info = self._by_id.get(id)
            return None if info is None else copy.deepcopy(info.service)

    def get_by_name(self, name: str) -> ExtensionService | None:
        """A snapshot of the service called `name`, or None."""
        with self._lock:
            id = self._id_by_name.get(name)
            return None if id is None else copy.deepcopy(self._by_id[id].service)

    def get_registration(self, id: str) -> RegistrationInfo | None:
        """A snapshot of the registration record, or None."""
        with self._lock:
            info = self._by_id.get(id)
            return None if info is None else copy.deepcopy(info)

    def update_status(self, id: str, status: ServiceStatus) -> ServiceStatus:
        """Set the status without checking the transition; returns the previous status."""
        status = _status(status)
        with self._lock:
            info = self._by_id.get(id)
            if info is None:
                raise _not_found(id)
            old = info.service.status
            info.service.status = status
            info.touch()
            return old

    def heartbeat(self, id: str) -> ServiceStatus:
        """Record a heartbeat now; returns the service's status."""
        with self._lock:
            info = self._by_id.get(id)
            if info is None:
                raise _not_found(id)
            service = info.service
            service.last_heartbeat = time.monotonic()
            service.retry_count = 0
            return service.status

    def liveness(self, id: str) -> tuple[ServiceStatus, float | None] | None:
        """(status, last_heartbeat), or None for an unknown id."""
        with self._lock:
            info = self._by_id.get(id)
            if info is None:
                return None
            return info.service.status, info.service.last_heartbeat

    def list_all(self) -> _Services:
        """Snapshots of every service, in registration order."""
        with self._lock:
            return [copy.deepcopy(info.service) for info in self._by_id.values()]

    def list(self, filter: ServiceFilter | None = None) -> _Services:
        """Snapshots of the services matching `filter` (all of them without one)."""
        if filter is None:
            return self.list_all()
        if not isinstance(filter, ServiceFilter):
            raise TypeError(f"filter must be a ServiceFilter, not {type(filter).__name__}")
        with self._lock:
            return [copy.deepcopy(i.service) for i in self._by_id.values() if filter.matches(i.service)]

    def find_by_capability(self, name: str) -> _Services:
        """Snapshots of the services offering capability `name`."""
        return self.list(ServiceFilter(capability=name))

    def stats(self) -> RegistryStats:
        """Counts per status."""
        counts = dict.fromkeys(ServiceStatus, 0)
        with self._lock:
            for info in self._by_id.values():
                counts[info.service.status] += 1
            total = len(self._by_id)
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
            for info in self._by_id.values():
                service = info.service
                if service.status is not ServiceStatus.RUNNING:
                    continue
                last = service.last_heartbeat
                if last is None or now - last >= self.heartbeat_timeout_secs:
                    service.status = ServiceStatus.RECONNECTING
                    info.touch()
                    stale.append(service.id)
        return stale

    def clear(self) -> None:
        """Forget every service."""
        with self._lock:
            self._by_id.clear()
            self._id_by_name.clear()

    def count(self) -> int:
        """How many services are registered."""
        return len(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, id: object) -> bool:
        return id in self._by_id
