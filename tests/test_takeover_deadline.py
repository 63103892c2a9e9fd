"""A take-over of a RUNNING process-bound service gives it a deadline from the grant, not from the old child's beat.

When an owner dies or pauses past its ownership, the member that gets a fresh grant of a RUNNING
service spawns a new child; the store's OWN step gives that service a deadline from the grant in
the same atomic step, so a heartbeat timeout shorter than the ownership's TTL plus a tick plus the
child's start-up no longer times it out while the new child starts. Store-level: the shared-memory
store under freezegun, then a namespace of each real server (whose clock cannot be frozen: bounds
are generous), each with one partition and with three.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lifecycle import ExtensionService, ServiceStatus, TransportConfig
from lifecycle.events import HeartbeatTimeout
from lifecycle.fleet import Plan
from lifecycle.shared_memory import SharedMemoryRegistry

LEADER = "leader-1"
TIMEOUT = 3.0  # the service's own heartbeat timeout: shorter than TTL + tick + the time to the new child's beat
TTL = 1.5  # each member's ownership
TICK = TTL / 3
PARTITIONS = [1, 3]


class Frozen:
    """Time under freezegun: `at(t)` moves the clock to `t` seconds after `start()`."""

    def __init__(self, frozen: Any) -> None:
        self.frozen = frozen
        self.origin = 0.0

    def start(self) -> None:
        self.origin = time.monotonic()

    def at(self, t: float) -> None:
        self.frozen.tick(self.origin + t - time.monotonic())

    def now(self) -> float:
        return time.monotonic() - self.origin


class Real(Frozen):
    """Real time (the server's clock): `at(t)` waits until `t` seconds after `start()` passed."""

    def __init__(self) -> None:
        super().__init__(None)

    def at(self, t: float) -> None:
        left = self.origin + t - time.monotonic()
        if left > 0:
            time.sleep(left)  # real time has to pass on the server's clock; nothing else is awaited


@pytest.fixture(params=PARTITIONS, ids=lambda p: f"p{p}")
def memory(request: pytest.FixtureRequest) -> Iterator[tuple[SharedMemoryRegistry, Frozen]]:
    freezegun = pytest.importorskip("freezegun")
    with freezegun.freeze_time("2026-01-01") as frozen:
        yield SharedMemoryRegistry(lease_ttl_secs=60.0, partitions=request.param), Frozen(frozen)


@pytest.fixture(params=PARTITIONS, ids=lambda p: f"p{p}")
def server(request: pytest.FixtureRequest, redis_server: Any, namespace: str) -> Iterator[tuple[Any, Real]]:
    pytest.importorskip("redis", reason="needs the redis extra")
    from lifecycle.redis import RedisRegistry

    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace, partitions=request.param,
                                      lease_ttl_secs=60.0)
    yield registry, Real()
    registry.clear()


def _partition(reg: Any, sid: str) -> dict[str, int]:
    """The keyword a partitioned store wants for the lease and the sweep of `sid`'s partition."""
    return {"partition": reg.partition_of(sid)} if getattr(reg, "partitions", 1) > 1 else {}


def _due(reg: Any, sid: str) -> bool:
    """The leader's sweep of `sid`'s partition: is `sid` due to be timed out?"""
    swept = reg.sweep(LEADER, TIMEOUT, 60.0, 100, tick=TICK, **_partition(reg, sid))
    assert swept is not None, "the leader lost its lease"
    return sid in swept.due


def _a_take_over_restarts_the_deadline(reg: Any, clock: Frozen, in_time: Callable[[float], None]) -> None:
    transport = TransportConfig(heartbeat_timeout_secs=TIMEOUT)
    sid = reg.register(ExtensionService("owned", "1", transport=transport))
    assert reg.lease(LEADER, 60.0, **_partition(reg, sid)).leader
    reg.activate(sid, TIMEOUT)
    assert not _due(reg, sid)  # the leader's first sweep: later ones see no outage to rebase
    clock.start()  # the old child's last heartbeat: about now
    assert reg.own(sid, "member-a", TTL, TICK, "").fresh
    clock.at(TTL + 0.1)  # member A died (or paused): its ownership ran out; no beat since
    assert not _due(reg, sid)
    granted = reg.own(sid, "member-b", TTL, TICK, "")
    assert (granted.code, granted.fresh, granted.status) == ("owner", True, "running")
    grant = clock.now()
    clock.at(TIMEOUT + 0.2)  # past the old child's deadline; the new child is still starting
    assert not _due(reg, sid)
    events = reg.expire_many(LEADER, TIMEOUT, [(sid, Plan("retry", 1, 0.0, 3))])
    in_time(grant)
    assert not any(isinstance(e, HeartbeatTimeout) for e in events)
    assert reg.silence(sid)[0] is ServiceStatus.RUNNING
    prior, events = reg.beat(sid, TIMEOUT)  # the new child's first beat: a plain heartbeat, nothing to announce
    assert (prior, events) == (ServiceStatus.RUNNING, [])
    clock.at(clock.now() + TIMEOUT + 0.2)  # the new child goes silent: it still times out
    assert _due(reg, sid)
    assert any(isinstance(e, HeartbeatTimeout) for e in
               reg.expire_many(LEADER, TIMEOUT, [(sid, Plan("retry", 1, 0.0, 3))]))


def test_a_take_over_gives_the_new_child_a_deadline_from_the_grant_in_memory(memory):
    reg, clock = memory
    _a_take_over_restarts_the_deadline(reg, clock, lambda grant: None)


def test_a_take_over_gives_the_new_child_a_deadline_from_the_grant_on_a_server(server):
    reg, clock = server

    def in_time(grant: float) -> None:
        # The checks must have run before the grant's own deadline, else they prove nothing.
        if clock.now() >= grant + TIMEOUT - 0.2:
            pytest.skip("the machine stalled past the new deadline; the checks prove nothing this run")

    _a_take_over_restarts_the_deadline(reg, clock, in_time)


def test_a_renewal_and_a_grant_of_a_service_not_running_leave_its_deadline_alone_in_memory(memory):
    """Only a fresh grant of a RUNNING service restarts its deadline: a renewal by the owner never does."""
    reg, clock = memory
    sid = reg.register(ExtensionService("owned", "1", transport=TransportConfig(heartbeat_timeout_secs=TIMEOUT)))
    assert reg.lease(LEADER, 60.0, **_partition(reg, sid)).leader
    assert reg.own(sid, "member-a", 60.0, TICK, "").status == "starting"  # fresh, but not RUNNING yet
    reg.activate(sid, TIMEOUT)
    assert not _due(reg, sid)
    clock.start()
    clock.at(TIMEOUT - 0.5)
    assert not reg.own(sid, "member-a", 60.0, TICK, "").fresh  # a renewal: the child is the same
    clock.at(TIMEOUT + 0.1)
    assert _due(reg, sid)
