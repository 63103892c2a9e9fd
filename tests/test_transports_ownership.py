"""Ownership of STDIO children in a fleet: one live member spawns, respawns and stops each child.

Two managers on one store, each with its own `SubprocessConnector`, stand for two processes of
a fleet; the store is a `SharedMemoryRegistry`, then a namespace of each real server
(redis-server, valkey-server); the children are real processes, checked through /proc.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from transport_support import WAIT, child_service, proc_state, wait_until

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, Registry, ServiceStatus
from lifecycle.connectors import SubprocessConnector
from lifecycle.events import Error, Reconnected, Stopped
from lifecycle.registry import Released
from lifecycle.shared_memory import SharedMemoryRegistry
from lifecycle.testing import EventRecorder

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks children through /proc")

TTL = 1.0  # ownership and leader lease; a tick every 1/3 s
CONFIG = LifecycleConfig(heartbeat_interval_secs=0.2, heartbeat_timeout_secs=2.0, reconnect_delay_ms=50,
                         max_reconnect_delay_ms=100, max_reconnect_attempts=3, jitter=0.0)


class Fleet:
    """A store for one test: `member()` adds a manager with its own connector on it."""

    def __init__(self, new_registry: Callable[[], Registry]) -> None:
        self.new_registry = new_registry
        self.members: list[Member] = []
        self.probe = new_registry()

    def member(self, host: str | None = None, connector: SubprocessConnector | None = None) -> Member:
        member = Member(self.new_registry(), host, connector)
        self.members.append(member)
        return member

    def owner_of(self, sid: str) -> str | None:
        return self.probe.owner_of(sid)  # type: ignore[attr-defined,no-any-return]


class Member:
    """One member of the fleet (on `host`, default this machine's): a manager and its own connector."""

    def __init__(self, registry: Registry, host: str | None = None,
                 connector: SubprocessConnector | None = None) -> None:
        self.connector = connector or SubprocessConnector()
        self.manager = LifecycleManager(registry, CONFIG, connector=self.connector, host=host)
        self.token = self.manager._engine.ticker.owner  # type: ignore[attr-defined]

    def pid(self, sid: str) -> int | None:
        return self.connector.pid(sid)

    def ticks(self) -> int:
        return _tick_count(self.manager._engine.ticker)  # type: ignore[attr-defined]


def _run(made: Fleet) -> Iterator[Fleet]:
    yield made
    for member in made.members:
        member.manager.shutdown()
    made.probe.clear()


@pytest.fixture
def memory_fleet() -> Iterator[Fleet]:
    yield from _run(Fleet(SharedMemoryRegistry(lease_ttl_secs=TTL).handle))


def _on_server(redis_server, namespace: str, ttl: float) -> Iterator[Fleet]:
    pytest.importorskip("redis", reason="needs the redis extra")
    from lifecycle.redis import RedisRegistry

    yield from _run(Fleet(lambda: RedisRegistry.from_url(redis_server.url, namespace=namespace, lease_ttl_secs=ttl)))


@pytest.fixture
def server_fleet(redis_server, namespace: str) -> Iterator[Fleet]:
    yield from _on_server(redis_server, namespace, TTL)


LONG_TTL = 6.0  # a lease whose candidates tick 2 s apart: a take-over at a tick is easy to tell from a wake


@pytest.fixture
def long_memory_fleet() -> Iterator[Fleet]:
    yield from _run(Fleet(SharedMemoryRegistry(lease_ttl_secs=LONG_TTL).handle))


@pytest.fixture
def long_server_fleet(redis_server, namespace: str) -> Iterator[Fleet]:
    yield from _on_server(redis_server, namespace, LONG_TTL)


class Spawns(SubprocessConnector):
    """A `SubprocessConnector` that notes when it spawned a child and how many ticks its member had made then."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned = threading.Event()
        self.at = 0.0
        self.ticks = -1
        self.member: Member | None = None

    def connect(self, service: ExtensionService) -> None:
        super().connect(service)
        if self.member is not None and not self.spawned.is_set():
            self.at, self.ticks = time.monotonic(), self.member.ticks()
            self.spawned.set()


def _tick_count(ticker: object) -> int:
    return int(getattr(ticker, "ticks", 0))


def _alive(pid: int | None) -> bool:
    return pid is not None and proc_state(pid) not in (None, "Z")


def _children(members: list[Member], sid: str) -> list[int]:
    return [pid for m in members if _alive(pid := m.pid(sid))]  # type: ignore[misc]


def _one_member_owns_the_child_and_a_graceful_shutdown_hands_it_over(fleet: Fleet) -> None:
    a, b = fleet.member(), fleet.member()
    members = fleet.members
    sid = a.manager.start_service(child_service("owned", "steady", "0.1"))
    assert b.manager.start_service(child_service("owned", "steady", "0.1")) == sid  # joined: a candidate
    first = a.pid(sid)
    assert _alive(first) and b.pid(sid) is None
    assert fleet.owner_of(sid) == a.token
    ticks = b.manager._engine.ticker  # type: ignore[attr-defined]
    seen = _tick_count(ticks)
    wait_until(lambda: _tick_count(ticks) >= seen + 3, what="three ticks of the other member")
    assert _children(members, sid) == [first]  # B ticked and spawned nothing while A owns the service
    a.manager.shutdown()
    assert not _alive(first)  # the owner ended its child before it gave the ownership up
    wait_until(lambda: _alive(b.pid(sid)), timeout=TTL + WAIT, what="the other member to spawn a fresh child")
    assert _children(members, sid) == [b.pid(sid)] and b.pid(sid) != first
    assert fleet.owner_of(sid) == b.token
    assert b.manager.get_status(sid) is ServiceStatus.RUNNING


def _only_the_owner_respawns_a_crashed_child_with_the_stores_attempts(fleet: Fleet) -> None:
    a, b = fleet.member(), fleet.member()
    recorder = EventRecorder().record(a.manager).record(b.manager)
    try:
        # B starts first, so A (probably the leader) is not the owner: attempts must still reach B.
        sid = b.manager.start_service(child_service("crashy", "crash", "0.4"))
        a.manager.start_service(child_service("crashy", "crash", "0.4"))
        first = b.pid(sid)
        assert recorder.wait_for(lambda es: any(isinstance(e, Reconnected) for e in es), timeout=WAIT)
        assert any("exited with code 3" in e.error for e in recorder.of(Error))
        assert a.connector.channels() == 0  # the other member never spawned a copy
        assert _alive(b.pid(sid)) and b.pid(sid) != first
        reconnected = [e for e in recorder.events if isinstance(e, Reconnected)]
        assert len(reconnected) == 1  # each event once in the fleet
    finally:
        recorder.close()


def _a_stop_made_by_another_member_reaches_the_owner_through_the_store(fleet: Fleet) -> None:
    a, b = fleet.member(), fleet.member()
    members = fleet.members
    sid = a.manager.start_service(child_service("stopped", "steady", "0.1"))
    b.manager.start_service(child_service("stopped", "steady", "0.1"))
    child = a.pid(sid)
    assert _alive(child)
    b.manager.stop_service(sid)
    wait_until(lambda: not _alive(child), timeout=TTL + WAIT, what="the owner to end its child")
    assert a.manager.get_status(sid) is None and fleet.owner_of(sid) is None
    assert _children(members, sid) == []


def test_one_member_owns_the_child_and_a_graceful_shutdown_hands_it_over_in_memory(memory_fleet: Fleet) -> None:
    _one_member_owns_the_child_and_a_graceful_shutdown_hands_it_over(memory_fleet)


def test_one_member_owns_the_child_and_a_graceful_shutdown_hands_it_over_on_a_server(server_fleet: Fleet) -> None:
    _one_member_owns_the_child_and_a_graceful_shutdown_hands_it_over(server_fleet)


def test_only_the_owner_respawns_a_crashed_child_with_the_stores_attempts_in_memory(memory_fleet: Fleet) -> None:
    _only_the_owner_respawns_a_crashed_child_with_the_stores_attempts(memory_fleet)


def test_only_the_owner_respawns_a_crashed_child_with_the_stores_attempts_on_a_server(server_fleet: Fleet) -> None:
    _only_the_owner_respawns_a_crashed_child_with_the_stores_attempts(server_fleet)


def test_a_stop_made_by_another_member_reaches_the_owner_through_the_store_in_memory(memory_fleet: Fleet) -> None:
    _a_stop_made_by_another_member_reaches_the_owner_through_the_store(memory_fleet)


def test_a_stop_made_by_another_member_reaches_the_owner_through_the_store_on_a_server(server_fleet: Fleet) -> None:
    _a_stop_made_by_another_member_reaches_the_owner_through_the_store(server_fleet)


def _a_graceful_hand_over_wakes_the_other_member_at_once(fleet: Fleet) -> list[float]:
    """The give-up is in the fleet log: the other candidate spawns long before its next tick would ask."""
    a = fleet.member()
    spawns = Spawns()
    b = fleet.member(connector=spawns)
    spawns.member = b
    sid = a.manager.start_service(child_service("woken", "steady", "0.1"))
    b.manager.start_service(child_service("woken", "steady", "0.1"))
    assert fleet.owner_of(sid) == a.token and b.pid(sid) is None
    tick = b.manager._engine.ticker.renew_every  # type: ignore[attr-defined]
    assert tick == LONG_TTL / 3
    # Right after one of B's ticks, its next is a whole tick away: a spawn before it is the wake's.
    seen = b.ticks()
    wait_until(lambda: b.ticks() > seen, timeout=tick + WAIT, what="a tick of the other member")
    subscription = b.manager.subscribe(fleet=True)
    ticks, closed = b.ticks(), time.monotonic()
    a.manager.shutdown()  # ends its child, then gives the ownership up
    assert spawns.spawned.wait(tick + WAIT), "the other member never spawned a child"
    took = spawns.at - closed
    assert spawns.ticks == ticks, "spawned at a tick, not woken by the give-up"
    # Half a tick: ending the old child, the log's round trip and a spawn on a loaded machine, never a tick's wait.
    assert took < tick / 2, took
    assert not _alive(a.pid(sid)) and _alive(b.pid(sid)) and fleet.owner_of(sid) == b.token
    # The give-up is the members' business: a fleet subscription, which reads the same log, is not given it.
    b.manager.stop_service(sid)
    got = []
    while not got or not isinstance(got[-1], Stopped):
        got.append(subscription.get(timeout=WAIT))
    assert not [e for e in got if isinstance(e, Released)] and got[-1].service_id == sid
    return [took]


def test_a_graceful_hand_over_wakes_the_other_member_at_once_in_memory(long_memory_fleet: Fleet) -> None:
    took = _a_graceful_hand_over_wakes_the_other_member_at_once(long_memory_fleet)
    print(f"hand-over in memory: {took[0]:.3f} s from the owner's shutdown to the new child")


def test_a_graceful_hand_over_wakes_the_other_member_at_once_on_a_server(long_server_fleet: Fleet) -> None:
    took = _a_graceful_hand_over_wakes_the_other_member_at_once(long_server_fleet)
    print(f"hand-over on a server: {took[0]:.3f} s from the owner's shutdown to the new child")


def _a_candidate_that_joins_a_service_nobody_owns_spawns_it_at_once(fleet: Fleet) -> float:
    """The last candidate gave the service up before the next one came (both workers recycled): no tick's wait."""
    leader = fleet.member()  # holds the lease throughout: the new member is a follower, ticking a tick apart
    wait_until(lambda: leader.manager._engine.leader, what="the first member to lead")  # type: ignore[attr-defined]
    a = fleet.member()
    sid = a.manager.start_service(child_service("unowned", "steady", "0.1"))
    a.manager.shutdown()  # no other candidate yet: the service stays registered, owned by nobody
    assert fleet.owner_of(sid) is None
    spawns = Spawns()
    b = fleet.member(connector=spawns)
    spawns.member = b
    tick = b.manager._engine.ticker.renew_every  # type: ignore[attr-defined]
    wait_until(lambda: b.ticks() >= 1, timeout=tick + WAIT, what="the new member's first tick")
    ticks, joined = b.ticks(), time.monotonic()
    assert b.manager.start_service(child_service("unowned", "steady", "0.1")) == sid  # joined: a candidate
    assert spawns.spawned.wait(tick + WAIT), "the new candidate never spawned a child"
    took = spawns.at - joined
    assert spawns.ticks == ticks, "spawned at a tick, not as it became a candidate"
    assert took < tick / 2, took  # a store round trip and a spawn, never a tick's wait
    assert _alive(b.pid(sid)) and fleet.owner_of(sid) == b.token
    return took


def test_a_candidate_that_joins_a_service_nobody_owns_spawns_it_at_once_in_memory(long_memory_fleet: Fleet) -> None:
    _a_candidate_that_joins_a_service_nobody_owns_spawns_it_at_once(long_memory_fleet)


def test_a_candidate_that_joins_a_service_nobody_owns_spawns_it_at_once_on_a_server(long_server_fleet: Fleet) -> None:
    took = _a_candidate_that_joins_a_service_nobody_owns_spawns_it_at_once(long_server_fleet)
    print(f"a joining candidate spawned {took:.3f} s after it joined")
