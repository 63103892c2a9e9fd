"""Stores and a harness for the parity suite (tests/test_parity.py): one scenario, every store.

A *store* is what a `LifecycleManager` keeps its services in: the default in-memory registry,
or a registry shared by a fleet of managers (a `RedisRegistry` on a fresh namespace of each
real server). Every test of the suite that takes the `store` fixture runs once per entry of
`STORES`, with the same expectations.

Adding a store
--------------
Append one `StoreKind` to `STORES` below; nothing else changes. `open(request)` is called once
per test and returns a `Store`. For a shared store, `SharedStore(name, new_registry)` is enough:
`new_registry()` is called once per manager and must return a new handle on the *same* shared
data (so the managers form one fleet), for example an in-process shared store::

    StoreKind("fleet_memory", lambda request: SharedStore("fleet_memory", FleetMemory().registry)),

`SharedStore.close()` clears the data through the first handle and calls each handle's
`close()` if it has one. A store that cannot run here (a server binary missing) calls
`pytest.skip` in `open`.

Marking a known parity bug
--------------------------
Decorate the test with `xfail_on("redis", "valkey", reason=...)`: the test is marked
`xfail(strict=True)` for those stores only; every other store still has to pass.

The harness (`Supervision`) builds the managers of one test on its store, records the events
of all of them in one ordered list (one `EventRecorder`), and describes events as small tuples
so expected sequences read like the spec.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis_server as servers

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, Registry
from lifecycle.events import (
    Error,
    Heartbeat,
    HeartbeatTimeout,
    LifecycleEvent,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    ServiceFlapping,
    Started,
    StatusChanged,
    Stopped,
)
from lifecycle.testing import EventRecorder

WAIT = 10.0
"""Generous bound for anything that should take well under a second (2 noisy cores)."""

TTL = 3.0
"""RedisRegistry lease TTL: no tick misses it on a loaded machine (as tests/test_fleet.py)."""


# -- stores -----------------------------------------------------------------------------------------


class Store:
    """One test's store. `shared`: several managers built on it form one fleet."""

    name: str = "?"
    shared: bool = False

    def registry(self) -> Registry | None:
        """A registry for one more manager (None: the manager's own in-memory registry)."""
        raise NotImplementedError

    def close(self) -> None:
        """Drop what the test left in the store (after its managers are shut down)."""


class MemoryStore(Store):
    """The default: each manager has its own `RegistryService` (so a fleet is one manager)."""

    name = "memory"

    def registry(self) -> None:
        return None


class SharedStore(Store):
    """A shared registry: `new_registry()` gives each manager its own handle on the same data."""

    shared = True

    def __init__(self, name: str, new_registry: Callable[[], Registry]) -> None:
        self.name = name
        self._new = new_registry
        self._handles: list[Registry] = []

    def registry(self) -> Registry:
        handle = self._new()
        self._handles.append(handle)
        return handle

    def close(self) -> None:
        if self._handles:
            self._handles[0].clear()
        for handle in self._handles:
            close = getattr(handle, "close", None) or getattr(getattr(handle, "client", None), "close", None)
            if close is not None:
                close()


def redis_store(binary: str, partitions: int = 1) -> Callable[[pytest.FixtureRequest], Store]:
    """A `RedisRegistry` on a fresh namespace of the session's server `binary` ("redis", "valkey")."""

    def open_store(request: pytest.FixtureRequest) -> Store:
        if binary not in servers.binaries():
            pytest.skip(f"no {binary}-server here")
        from lifecycle.redis import RedisRegistry

        server = request.getfixturevalue("redis_servers")(binary)  # conftest: one server per binary
        namespace = f"parity-{uuid.uuid4().hex[:10]}"
        name = binary if partitions == 1 else f"{binary}_p{partitions}"
        return SharedStore(name, lambda: RedisRegistry.from_url(
            server.url, namespace=namespace, partitions=partitions, lease_ttl_secs=TTL, socket_timeout=1.0,
            socket_connect_timeout=1.0))

    return open_store


def shared_memory_store(partitions: int = 1) -> Store:
    """A `SharedMemoryRegistry`: every manager gets its own handle on one in-process namespace."""
    from lifecycle.shared_memory import SharedMemoryRegistry

    name = "shared_memory" if partitions == 1 else f"shared_memory_p{partitions}"
    return SharedStore(name, SharedMemoryRegistry(lease_ttl_secs=TTL, partitions=partitions).handle)


@dataclass(frozen=True)
class StoreKind:
    name: str
    open: Callable[[pytest.FixtureRequest], Store]


# The stores every parity scenario runs on. Add a store here (one line; see the module docstring).
STORES: list[StoreKind] = [
    StoreKind("memory", lambda request: MemoryStore()),
    StoreKind("redis", redis_store("redis")),
    StoreKind("valkey", redis_store("valkey")),
    StoreKind("shared_memory", lambda request: shared_memory_store()),
    StoreKind("shared_memory_p3", lambda request: shared_memory_store(3)),  # one namespace over 3 partitions
    StoreKind("redis_p3", redis_store("redis", 3)),
]


def xfail_on(*stores: str, reason: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a parity test `xfail(strict=True)` on the named stores only (a known parity bug)."""
    unknown = set(stores) - {kind.name for kind in STORES}
    assert not unknown, f"no such store: {sorted(unknown)}"

    def mark(test: Callable[..., Any]) -> Callable[..., Any]:
        marks: dict[str, str] = getattr(test, "parity_xfail", {})
        test.parity_xfail = {**marks, **dict.fromkeys(stores, reason)}  # type: ignore[attr-defined]
        return test

    return mark


def store_params(test: Callable[..., Any]) -> list[Any]:
    """`STORES` as pytest params for `test`, with its `xfail_on` marks."""
    marks: dict[str, str] = getattr(test, "parity_xfail", {})
    return [pytest.param(kind, id=kind.name,
                         marks=[pytest.mark.xfail(strict=True, reason=marks[kind.name])] if kind.name in marks else [])
            for kind in STORES]


# -- events ---------------------------------------------------------------------------------------


def describe(event: LifecycleEvent) -> tuple[Any, ...]:
    """An event as a small tuple of its type and key fields (times and delays left out)."""
    match event:
        case StatusChanged():
            return ("status", event.old_status.value, event.new_status.value)
        case Reconnecting():
            return ("reconnecting", event.attempt, event.max_attempts)
        case ReconnectFailed():
            return ("reconnect_failed", event.attempts)
        case Error():
            return ("error", event.error)
        case ServiceFlapping():
            return ("flapping", event.restarts, event.window)
        case Started() | Stopped() | Heartbeat() | HeartbeatTimeout() | Reconnected():
            return (event.signal_name,)
    return (type(event).__name__,)


def status(old: str, new: str) -> tuple[str, str, str]:
    return ("status", old, new)


STARTED = [("service_started",), status("starting", "running")]


@dataclass
class Seen:
    """One recorded event: the manager that emitted it and when this process received it."""

    sender: object
    event: LifecycleEvent
    received: float = field(default_factory=time.monotonic)


class Recorder(EventRecorder):
    """`EventRecorder` that also keeps each event's sender and receipt time (for every manager recorded)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Seen] = []

    def __call__(self, sender: object, **kwargs: Any) -> None:
        with self._cond:
            self.seen.append(Seen(sender, kwargs["event"]))
        super().__call__(sender, **kwargs)

    def of_service(self, sid: str, *, beats: bool = True) -> list[Seen]:
        with self._cond:
            return [s for s in self.seen if s.event.service_id == sid and (beats or type(s.event) is not Heartbeat)]

    def sequence(self, sid: str, *, beats: bool = True) -> list[tuple[Any, ...]]:
        return [describe(s.event) for s in self.of_service(sid, beats=beats)]

    def sequence_of(self, sid: str, *, beats: bool = True) -> list[tuple[object, tuple[Any, ...]]]:
        """`sequence` with each event's sender: (manager, description)."""
        return [(s.sender, describe(s.event)) for s in self.of_service(sid, beats=beats)]

    def wait_seq(self, sid: str, predicate: Callable[[list[tuple[Any, ...]]], object], what: str,
                 timeout: float = WAIT, *, beats: bool = True) -> list[tuple[Any, ...]]:
        """Wait until `predicate(sequence of sid)` holds; fail naming `what` and the sequence seen."""
        with self._cond:
            ok = self._cond.wait_for(lambda: predicate(self._seq_locked(sid, beats)), timeout)
            seq = self._seq_locked(sid, beats)
        assert ok, f"timed out ({timeout} s) waiting for {what}; events of {sid}: {seq}"
        return seq

    def wait_event(self, sid: str, wanted: tuple[Any, ...], what: str | None = None, n: int = 1,
                   timeout: float = WAIT) -> Seen:
        """Wait for the `n`th event of `sid` described as `wanted`; return it."""
        self.wait_seq(sid, lambda seq: seq.count(wanted) >= n, what or f"{wanted} #{n}", timeout)
        return [s for s in self.of_service(sid) if describe(s.event) == wanted][n - 1]

    def quiet(self, sid: str, secs: float) -> list[tuple[Any, ...]]:
        """Wait `secs` for any new event of `sid` (waking on each event); return those that came."""
        before = len(self.of_service(sid))
        with self._cond:
            self._cond.wait_for(lambda: len(self._seq_locked(sid, True)) > before, secs)
        return self.sequence(sid)[before:]

    def _seq_locked(self, sid: str, beats: bool) -> list[tuple[Any, ...]]:
        return [describe(s.event) for s in self.seen
                if s.event.service_id == sid and (beats or type(s.event) is not Heartbeat)]


# -- the harness ----------------------------------------------------------------------------------


def eventually(predicate: Callable[[], object], what: str, timeout: float = WAIT, poll: float = 0.01) -> None:
    """Poll a condition no event announces (leadership, a value that grows with time) until it holds."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out ({timeout} s) waiting for {what}"
        time.sleep(poll)  # time must pass on the server's clock too: nothing in-process to wait on


def _leads_every_partition(manager: LifecycleManager) -> bool:
    """True once `manager` leads and, on a partitioned registry, every partition has a leader (it, alone)."""
    leaders = getattr(manager.registry, "leaders", None)
    return manager.is_leader and (leaders is None or all(holder is not None for holder in leaders()))


def _settled(managers: list[LifecycleManager]) -> bool:
    """True once one manager leads (one partition), or every partition is led and the leaders spread evenly.

    A partitioned namespace's leaders spread over its members (engine/spread.py): once the counts
    are within one of each other, no member gives a lease up any more.
    """
    leaders = getattr(managers[0].registry, "leaders", None)
    if leaders is None:
        return sum(m.is_leader for m in managers) == 1
    held = leaders()
    counts = [held.count(m._engine.ticker.owner) for m in managers]  # type: ignore[attr-defined]
    return sum(counts) == len(held) and max(counts) - min(counts) <= 1


class Supervision:
    """The managers of one test on its store, their events in one recorder; shut down by `close()`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.managers: list[LifecycleManager] = []
        self.events = Recorder()

    def start(self, config: LifecycleConfig, *, fleet: int = 2, connector: object = None) -> Supervision:
        """Build `fleet` managers on a shared store (one on the in-memory store), wait for a leader."""
        for _ in range(fleet if self.store.shared else 1):
            manager = LifecycleManager(self.store.registry(), config, connector=connector)
            self.managers.append(manager)
            self.events.record(manager)
            if len(self.managers) == 1 and self.store.shared:
                # Alone, the first manager takes every partition's lease; started together, a partitioned
                # namespace may split its partitions' leases between managers (no single leader).
                eventually(lambda: _leads_every_partition(self.managers[0]), "the first manager leading")
        eventually(lambda: _settled(self.managers), "one leader, or the partitions' leaders spread evenly")
        return self

    def leader_of(self, sid: str) -> LifecycleManager:
        """The manager acting for `sid`'s partition (the fleet's one leader without partitions)."""
        ticker = getattr(self.managers[0]._engine, "ticker", None)  # type: ignore[attr-defined]
        if ticker is None:
            return self.managers[0]  # the in-memory store's only manager
        return next(m for m in self.managers if m._engine.ticker.of(sid).leader)  # type: ignore[attr-defined]

    @property
    def follower(self) -> LifecycleManager:
        """A manager that is not the leader (the in-memory store's only manager is both)."""
        return next((m for m in self.managers if not m.is_leader), self.managers[0])

    def each(self) -> Iterable[LifecycleManager]:
        return iter(self.managers)

    def close(self) -> None:
        for manager in self.managers:
            manager.shutdown()
        self.events.close()
        self.store.close()


def service(name: str, **transport: Any) -> ExtensionService:
    from lifecycle import TransportConfig

    return ExtensionService(name, "1", transport=TransportConfig(**transport))


class Connector:
    """A connector recording its calls (1-based numbers); calls numbered in `fail` raise."""

    def __init__(self, fail: Iterable[int] = ()) -> None:
        self.fail = set(fail)
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def connect(self, svc: ExtensionService) -> None:
        with self._lock:
            self.calls.append(svc.name)
            n = len(self.calls)
        if n in self.fail:
            raise ConnectionError(f"connect #{n} refused")
