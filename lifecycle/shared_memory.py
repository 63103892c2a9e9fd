"""`SharedMemoryRegistry`: a `SharedRegistry` kept in this process, for fast, deterministic fleet tests.

Several `LifecycleManager`s in one process, each given its own handle (`handle()`) on the same
data, form a fleet exactly as processes sharing a `RedisRegistry` namespace do: each has its own
owner token, exactly one leads, and every change is atomic. The operations are the Lua scripts of
`lifecycle._redis_scripts` written in Python (`lifecycle._memory_scripts`), with the same events
in the same order, return codes, fencing, claims and settings; one lock guards all of the data,
so each operation is atomic as a script is.

The clock is `time.monotonic()`, read at each call, so freezegun drives it: with
``autostart=False`` managers and `run_pending()`, a whole fleet scenario runs in frozen time.
`flush()` simulates a server that lost its data (the generation marker changes, so every
process registers its services again at its next tick).
"""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from . import _validate
from ._forksafe import hold_across_fork
from ._memory_scripts import US, Data, Head, Info, PhiHead, Scripts
from ._partitions import Partitioned, check_partitions, mismatch
from .errors import ServiceAlreadyExists
from .events import LifecycleEvent
from .fleet import Detail, Lease, Members, Onset, Plan, SharedRegistry, StoreSettings, Sweep, Timing
from .model import ExtensionService, RegistrationInfo, ServiceFilter, ServiceId, ServiceStatus, _status
from .phi import phi_of
from .registry import Owned, RegistryStats, _not_found

__all__ = ["SharedMemoryRegistry"]

_Events = list[LifecycleEvent]
_Services = list[ExtensionService]
_Rows = list[tuple[str, LifecycleEvent]]
_PlanArgs = tuple[str, int, int, int]
_Ids = list[ServiceId]


def _us(seconds: float) -> int:
    return round(seconds * US)


def _plan_args(plan: Plan) -> _PlanArgs:
    return plan.mode, plan.attempt, _us(plan.delay), plan.max_attempts


def _own_timeout(service: ExtensionService) -> int | None:
    own = service.transport.heartbeat_timeout_secs
    return None if own is None else _us(own)


def _stored(service: ExtensionService) -> ExtensionService:
    """A copy to keep; refused, as by `RedisRegistry`, if its metadata or capability config is not JSON data."""
    try:
        json.dumps([service.metadata, [c.config for c in service.capabilities], service.transport.env])
    except (TypeError, ValueError) as exc:
        raise TypeError(f"service {service.name!r}: metadata and capability config must be JSON data ({exc})"
                        ) from None
    return copy.deepcopy(service)


def _snapshot(info: Info) -> RegistrationInfo:
    """What `RedisRegistry` decodes from the same record: a copy, its times brought to this host's clocks."""
    stored, registered, updated, status, silent, attempt, now = info
    service = copy.deepcopy(stored)
    service.status = status
    service.last_heartbeat = None if silent is None else time.monotonic() - silent / US
    service.retry_count = attempt
    wall = datetime.now(UTC).timestamp()
    return RegistrationInfo(service, datetime.fromtimestamp(wall - (now - registered) / US, UTC),
                            datetime.fromtimestamp(wall - (now - updated) / US, UTC))


def _is_text(value: object) -> bool:
    # Callers type ids as str, but bad input must still answer "not found", not crash.
    return isinstance(value, str)


def _entry(text: str) -> tuple[int, int]:
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class SharedMemoryRegistry(SharedRegistry):
    """A `SharedRegistry` in this process: give each manager of a fleet its own `handle()` on the same data.

    A handle is what a `RedisRegistry` client is to a server: it keeps its own settings
    (`configure`, the timeouts and `lease_ttl_secs` given here), the data is shared. Safe to use
    from any thread.
    """

    def __new__(cls, data: Data | None = None, *, partitions: int = 1, **options: object) -> SharedMemoryRegistry:
        if cls is SharedMemoryRegistry and partitions != 1:
            return object.__new__(_PartitionedMemory)
        return object.__new__(cls)

    def __init__(self, data: Data | None = None, *, partitions: int = 1, heartbeat_timeout_secs: float = 60.0,
                 events_maxlen: int = 10_000, log_heartbeats: bool = False, lease_ttl_secs: float = 5.0) -> None:
        if data is not None and not isinstance(data, Data):
            raise TypeError(f"data must be another registry's data, not {type(data).__name__}")
        self.partitions = check_partitions(partitions)
        self.heartbeat_timeout_secs = _validate.number(heartbeat_timeout_secs, "heartbeat_timeout_secs",
                                                       positive=True)
        self.events_maxlen = _validate.integer(events_maxlen, "events_maxlen", minimum=0)
        self.log_heartbeats = _validate.flag(log_heartbeats, "log_heartbeats")
        self.lease_ttl_secs = _validate.number(lease_ttl_secs, "lease_ttl_secs", positive=True)
        self.data = Data() if data is None else data
        _all_data.add(self.data)
        with self.data.lock:  # as RedisRegistry's first call: record the partition count, or refuse another
            self.data.record = found = self.data.record or self.partitions
        if found != self.partitions:
            raise mismatch(str(found), self.partitions, "the shared memory", "(in memory)")
        self._settings: StoreSettings | None = None

    def handle(self, **options: object) -> SharedMemoryRegistry:
        """Another handle on the same data (another process's client), with this one's options unless given."""
        kwargs: dict[str, object] = {
            "partitions": self.partitions, "heartbeat_timeout_secs": self.heartbeat_timeout_secs,
            "events_maxlen": self.events_maxlen,
            "log_heartbeats": self.log_heartbeats, "lease_ttl_secs": self.lease_ttl_secs, **options}
        return SharedMemoryRegistry(self.data, **kwargs)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<SharedMemoryRegistry services={len(self.data.status)}>"

    def configure(self, settings: StoreSettings) -> None:
        """Keep `settings` for every later call of this handle (as `RedisRegistry.configure`)."""
        if not isinstance(settings, StoreSettings):
            raise TypeError(f"settings must be a StoreSettings, not {type(settings).__name__}")
        self._settings = settings

    @property
    def settings(self) -> StoreSettings | None:
        """What `configure` was given, or None."""
        return self._settings

    def _head(self, timeout: float | None) -> Head:
        """The script head: configured, the settings' timeout is every call's default; else the call's, else ours."""
        settings = self._settings
        if settings is None:
            default = self.heartbeat_timeout_secs if timeout is None else timeout
            return Head(self.events_maxlen, _us(default), self.log_heartbeats, None, _us(60.0), None)
        phi = settings.phi
        return Head(self.events_maxlen, _us(settings.timeout), self.log_heartbeats, settings.max_restarts,
                    _us(settings.restart_window),
                    None if phi is None else PhiHead(phi.score, phi.max_sample_size, _us(phi.min_std_deviation),
                                                     _us(phi.acceptable_pause), _us(phi.first_interval)))

    @contextmanager
    def _script(self, timeout: float | None = None) -> Iterator[Scripts]:
        """One atomic script run: the lock held, the clock read once."""
        with self.data.lock:
            yield Scripts(self.data, self._head(timeout))

    # -- Registry ------------------------------------------------------------------------------

    def register(self, service: ExtensionService) -> ServiceId:
        """Store `service`; a second service with its name or id is refused."""
        return self._register(service, join=False)[0]

    def join(self, service: ExtensionService) -> tuple[ServiceId, bool]:
        """Register, or join the one already registered with this id (or this name and version)."""
        return self._register(service, join=True)

    def _register(self, service: ExtensionService, *, join: bool) -> tuple[ServiceId, bool]:
        if not isinstance(service, ExtensionService):
            raise TypeError(f"service must be an ExtensionService, not {type(service).__name__}")
        stored = _stored(service)
        with self._script() as run:
            code, sid = run.register(stored, join, _own_timeout(service))
        if code == "name_taken":
            raise ServiceAlreadyExists.named(service.name, sid)
        if code == "id_taken":
            raise ServiceAlreadyExists.with_id(sid)
        return ServiceId(sid), code == "joined"

    def restore(self, service: ExtensionService, timeout: float) -> bool:
        """Re-register `service` as RUNNING with a full deadline if the registry lost it."""
        stored = _stored(service)
        with self._script(timeout) as run:
            return run.restore(stored, _own_timeout(service))

    def unregister(self, id: str) -> RegistrationInfo:
        """Remove the service and return its last registration record."""
        return self._unregister(id, emit=False)[0]

    def finish_stop(self, id: str) -> _Events:
        """STOPPED, unregister, `service_stopped`."""
        return self._unregister(id, emit=True)[1]

    def _unregister(self, id: str, *, emit: bool) -> tuple[RegistrationInfo, _Events]:
        if not isinstance(id, str):
            raise _not_found(id)
        with self._script() as run:
            before = run.unregister(id, emit)
        if before is None:
            raise _not_found(id)
        return _snapshot(before), run.out

    def get(self, id: str) -> ExtensionService | None:
        """A snapshot of the service, or None."""
        info = self.get_registration(id)
        return None if info is None else info.service

    def get_by_name(self, name: str) -> ExtensionService | None:
        """A snapshot of the service called `name`, or None."""
        sid = self.data.names.get(name) if isinstance(name, str) else None
        return None if sid is None else self.get(sid)

    def get_registration(self, id: str) -> RegistrationInfo | None:
        """A snapshot of the registration record, or None."""
        if not _is_text(id):
            return None
        with self._script() as run:
            info = run.info(id) if id in self.data.status else None
        return None if info is None else _snapshot(info)

    def update_status(self, id: str, status: ServiceStatus, *, expected: ServiceStatus | None = None
                      ) -> ServiceStatus:
        """Set the status (only if it is `expected`, when given); returns the status found."""
        status = _status(status)
        expected = None if expected is None else _status(expected)
        if not isinstance(id, str):
            raise _not_found(id)
        with self._script() as run:
            prior = run.set_status_if(id, status, expected)
        if prior is None:
            raise _not_found(id)
        return prior

    def heartbeat(self, id: str) -> ServiceStatus:
        """Record a heartbeat now (not for a STOPPING or STOPPED service); returns the prior status.

        As in `RedisRegistry`, a RECONNECTING or ERROR service is also made RUNNING again.
        """
        prior = self.beat(id, self.heartbeat_timeout_secs)[0]
        if prior is None:
            raise _not_found(id)
        return prior

    def beat(self, id: str, timeout: float) -> tuple[ServiceStatus | None, _Events]:
        """Record a heartbeat; a RECONNECTING or ERROR service becomes RUNNING. Returns the prior status."""
        if not isinstance(id, str):
            raise _not_found(id)
        with self._script(timeout) as run:
            prior = run.beat(id)
        return prior, run.out

    def beat_many(self, ids: Sequence[str], timeout: float | None = None
                  ) -> list[tuple[ServiceStatus | None, _Events]]:
        """`beat` of each id, in order, each its own atomic step (as `RedisRegistry.beat_many`)."""
        for id in ids:
            if not isinstance(id, str):
                raise _not_found(id)
        return [self.beat(id, self.heartbeat_timeout_secs if timeout is None else timeout) for id in ids]

    def activate(self, id: str, timeout: float) -> _Events:
        """STARTING -> RUNNING with a full deadline; the start counts as a heartbeat."""
        with self._script(timeout) as run:
            run.activate(id)
        return run.out

    def expire(self, id: str, timeout: float, status: ServiceStatus) -> ServiceStatus | None:
        """If RUNNING and silent for `timeout` seconds, set `status` and return RUNNING; else None."""
        status = _status(status)
        with self._script() as run:
            expired = run.expire(id, status, _us(timeout))
        return ServiceStatus.RUNNING if expired else None

    def silence(self, id: str) -> tuple[ServiceStatus, float | None] | None:
        """(status, seconds since the last heartbeat, or None), or None if unknown."""
        if not _is_text(id):
            return None
        with self._script() as run:
            status = self.data.status.get(id)
            silent = run.silent(id)
        if status is None:
            return None
        return status, None if silent is None else silent / US

    def timing(self, id: str) -> Timing | None:
        """Status, seconds since the last heartbeat (None: never) and the service's heartbeat timeout."""
        if not _is_text(id):
            return None
        with self._script() as run:
            status = self.data.status.get(id)
            silent, timeout = run.silent(id), run.tmo(id)
        if status is None:
            return None
        return Timing(status, None if silent is None else silent / US, timeout / US)

    def is_healthy(self, id: str) -> bool:
        """RUNNING and heard within its own heartbeat timeout; False if unknown."""
        timing = self.timing(id)
        return timing is not None and timing.healthy

    def report_error(self, id: str, error: str, plan: Plan | None) -> tuple[ServiceStatus | None, _Events]:
        """`service_error`; unless RECONNECTING: ERROR, then `plan`. Returns the prior status."""
        with self._script() as run:
            prior = run.report_error(id, str(error), None if plan is None else _plan_args(plan))
        return prior, run.out

    def restart(self, id: str, plan: Plan) -> tuple[ServiceStatus | None, _Events]:
        """Restart on request: from RUNNING, RECONNECTING or ERROR, RECONNECTING and then `plan`."""
        if not isinstance(id, str):
            raise _not_found(id)
        if not isinstance(plan, Plan):
            raise TypeError(f"plan must be a Plan, not {type(plan).__name__}")
        with self._script() as run:
            prior = run.restart_now(id, _plan_args(plan))
        return prior, run.out

    def restarts(self, id: str) -> int:
        """Restarts within the restart window now; 0 without `max_restarts` or for an unknown id."""
        if self._settings is None or self._settings.max_restarts is None or not isinstance(id, str):
            return 0
        with self._script() as run:
            return len(run.restart_times(id))

    def phi(self, id: str) -> float:
        """The phi detector's suspicion level for the service now; 0.0 without phi or history."""
        settings = None if self._settings is None else self._settings.phi
        if settings is None or not isinstance(id, str):
            return 0.0
        with self._script() as run:
            history, silent = self.data.phi.get(id), run.silent(id)
            sums = None if history is None else (history.total, history.squares, history.n)
        if sums is None or silent is None:
            return 0.0
        total, squares, n = sums
        mean = total / n
        std = max(0.0, squares / n - mean * mean) ** 0.5 / US
        return phi_of(silent / US, mean / US + settings.acceptable_pause, max(std, settings.min_std_deviation))

    def begin_stop(self, id: str) -> tuple[ServiceStatus | None, _Events]:
        """STOPPING unless already stopping or stopped; returns the prior status."""
        with self._script() as run:
            prior = run.begin_stop(id)
        return prior, run.out

    def list_all(self) -> _Services:
        """Snapshots of every service, in registration order."""
        return self._list(None)

    def list(self, filter: ServiceFilter | None = None) -> _Services:
        """Snapshots of the services matching `filter` (all of them without one)."""
        if filter is None:
            return self.list_all()
        if not isinstance(filter, ServiceFilter):
            raise TypeError(f"filter must be a ServiceFilter, not {type(filter).__name__}")
        return [s for s in self._list(filter.status) if filter.matches(s)]

    def _list(self, status: ServiceStatus | None) -> _Services:
        with self._script() as run:
            infos = [run.info(id) for id, st in self.data.status.items() if status is None or st is status]
        return [_snapshot(info).service for info in infos]

    def find_by_capability(self, name: str) -> _Services:
        """Snapshots of the services offering capability `name`."""
        return self.list(ServiceFilter(capability=name))

    def stats(self) -> RegistryStats:
        """Counts per status."""
        with self.data.lock:
            statuses = list(self.data.status.values())
        count = statuses.count
        S = ServiceStatus
        return RegistryStats(total=len(statuses), starting=count(S.STARTING), running=count(S.RUNNING),
                             stopping=count(S.STOPPING), stopped=count(S.STOPPED), errors=count(S.ERROR),
                             reconnecting=count(S.RECONNECTING))

    def health_check(self) -> _Ids:
        """Mark every RUNNING service silent for its heartbeat timeout RECONNECTING; return their ids."""
        with self._script() as run:
            stale = run.health_check(ServiceStatus.RECONNECTING)
        return [ServiceId(id) for id in stale]

    def clear(self) -> None:
        """Forget every service, the lease, the event log and the generation marker (as `RedisRegistry.clear`)."""
        with self.data.lock:
            self.data.clear()

    def flush(self) -> None:
        """Simulate a server that lost its data (FLUSHALL, a restart without persistence).

        Everything goes, the generation marker too: the next lease request sets a new one, so
        every manager registers its own services again at its next tick.
        """
        self.clear()

    def count(self) -> int:
        """How many services are registered."""
        return len(self.data.status)

    def partition_of(self, id: str) -> int:
        """The partition holding service `id`: 0, the store being one partition (see `_PartitionedMemory`)."""
        return 0

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, id: object) -> bool:
        return isinstance(id, str) and id in self.data.status

    # -- the leader's operations ---------------------------------------------------------------

    def lease(self, owner: str, ttl: float, *, polite: bool = False) -> Lease:
        """Take or renew the leader lease for `ttl` seconds (`polite`: leave a free one free, see `SharedRegistry`)."""
        with self._script() as run:
            code, generation = run.lease(owner, max(1, round(ttl * 1000)) if ttl > 0 else 0, uuid.uuid4().hex, polite)
        return Lease(code == "leader", generation, code == "free")

    def leader(self) -> str | None:
        """The owner token of the manager holding the lease, or None."""
        with self._script() as run:
            return self.data.holder(run.now)

    def release(self, owner: str) -> None:
        """Give the lease up if `owner` holds it."""
        with self._script() as run:
            run.release(owner)

    def sweep(self, owner: str, timeout: float, grace: float, limit: int, *, onset: Onset,
              tick: float | None = None) -> Sweep | None:
        """Time out what is due now and claim due attempts (see `SharedRegistry.sweep`); None if `owner` is fenced.

        A claim is parked for its service's `transport.timeout_secs` plus `tick` (default: `lease_ttl_secs`).
        """
        tick = self.lease_ttl_secs if tick is None else _validate.duration(tick, "tick", positive=False)
        with self._script(timeout) as run:
            result = run.sweep(owner, _us(grace), limit, _us(tick), onset)
        if result is None:
            return None
        due, claimed, nxt, rebased = result
        return Sweep(
            due=[ServiceId(row[0]) for row in due],
            details={ServiceId(i): Detail(name, auto, most) for i, name, auto, most in due},
            attempts=[(ServiceId(i), k) for i, k in claimed],
            next_in=None if nxt is None else nxt / US,
            rebased=rebased,
            events=run.out,
        )

    def attempt_done(self, id: str, owner: str, attempt: int, ok: bool, plan: Plan, *,
                     timeout: float | None = None) -> _Events | None:
        """A claimed attempt's outcome; None when fenced, [] when stale."""
        with self._script(timeout) as run:
            code = run.attempt_done(id, owner, attempt, ok, _plan_args(plan))
        if code == "fenced":
            return None
        return run.out if code == "ok" else []

    # -- ownership of process-bound services ------------------------------------------------------

    def own(self, id: str, owner: str, ttl: float, tick: float, child: str | None = None) -> Owned:
        """Take or renew ownership of `id` for `ttl` s; as owner, claim the due attempt (parked timeout + `tick`)."""
        with self._script() as run:
            return Owned(*run.own(id, owner, max(1, round(ttl * 1000)), _us(tick), "-" if child is None else child))

    def disown(self, id: str, owner: str) -> None:
        """Give ownership of `id` up if `owner` holds it."""
        with self._script() as run:
            run.disown(id, owner)

    def owner_of(self, id: str) -> str | None:
        """The live owner of `id`, or None."""
        with self._script() as run:
            return run.holder_of(id)

    def last_event_id(self) -> str:
        """The id of the fleet log's newest entry ("0-0" when empty)."""
        with self.data.lock:
            events = self.data.events
            return f"{events[-1][0][0]}-{events[-1][0][1]}" if events else "0-0"

    def read_events(self, after: str = "$", *, block: float | None = None, count: int = 100) -> _Rows:
        """Events of the fleet log after entry `after` ("$": only new ones), oldest first; waits up to `block` s."""
        data = self.data
        with data.appended:
            start = data.last_entry if after == "$" else _entry(after)

            def ready() -> bool:
                return bool(data.events) and data.events[-1][0] > start

            if block is not None and not ready():
                data.appended.wait_for(ready, max(1, round(block * 1000)) / 1000)
            rows = [(f"{ms}-{seq}", event) for (ms, seq), event in data.events if (ms, seq) > start]
        return rows[:count]


class _PartitionedMemory(Partitioned, SharedMemoryRegistry):
    """A `SharedMemoryRegistry` of `partitions` > 1: one part (with its own data, lease and log) per partition."""

    def __init__(self, data: Data | None = None, *, partitions: int = 1, **options: Any) -> None:
        super().__init__(data, partitions=partitions, **options)
        with self.data.lock:
            if not self.data.parts:
                self.data.parts = [Data() for _ in range(self.partitions)]
        self._parts = [SharedMemoryRegistry(part, **options) for part in self.data.parts]
        self._claims = [_MemoryClaims(part) for part in self.data.parts]

    def __repr__(self) -> str:
        return f"<SharedMemoryRegistry services={self.count()} partitions={self.partitions}>"

    def flush(self) -> None:
        """Simulate servers that lost their data: every partition's."""
        self.clear()

    def members(self, owner: str, ttl: float, leads: int, standing: float = 0.0) -> Members:
        """The namespace's live members and the fewest partitions others lead (as `PartitionedRedis.members`)."""
        with self._script() as run:
            return Members(*run.members(owner, max(0, round(ttl * US)), leads, max(0, round(standing * US))))


class _MemoryClaims:
    """A part's claims on names (`NameClaims`), under its data's lock."""

    def __init__(self, data: Data) -> None:
        self._data = data

    def claim(self, name: str, id: str, expected: str = "") -> tuple[str, bool]:
        with self._data.lock:
            claims = self._data.name_claims
            held = claims.get(name)
            if held == id:
                return id, False
            if held is None or held == expected:
                claims[name] = id
                return id, True
            return held, False

    def claim_free(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        with self._data.lock:
            return [self._data.name_claims.setdefault(name, id) == id for name, id in pairs]

    def release(self, name: str, id: str) -> None:
        with self._data.lock:
            if self._data.name_claims.get(name) == id:
                del self._data.name_claims[name]

    def holder(self, name: str) -> str | None:
        with self._data.lock:
            return self._data.name_claims.get(name)

    def clear(self) -> None:
        with self._data.lock:
            self._data.name_claims.clear()


_all_data: weakref.WeakSet[Data] = weakref.WeakSet()


def _renew_locks() -> None:
    for data in list(_all_data):
        data.lock = threading.Lock()
        data.appended = threading.Condition(data.lock)


hold_across_fork(lambda: [data.lock for data in list(_all_data)], _renew_locks)
