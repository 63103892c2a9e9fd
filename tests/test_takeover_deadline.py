"""A take-over of a RUNNING process-bound service gives it a deadline from the grant, not from the old child's beat.

When an owner dies or pauses past its ownership, the member that gets a fresh grant of a RUNNING
service spawns a new child; the store's OWN step gives that service a deadline from the grant in
the same atomic step, so a heartbeat timeout shorter than the ownership's TTL plus a tick plus the
child's start-up no longer times it out while the new child starts. Store-level: the shared-memory
store under freezegun, then a namespace of each real server (whose clock cannot be frozen: bounds
are generous); then two members with real children, in real time. Each with one partition and with
three.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from transport_support import WAIT, wait_until

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceStatus, TransportConfig
from lifecycle.connectors import SubprocessConnector
from lifecycle.events import Heartbeat, HeartbeatTimeout, Reconnecting
from lifecycle.fleet import Onset
from lifecycle.shared_memory import SharedMemoryRegistry
from lifecycle.testing import EventRecorder

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
    """The leader's sweep of `sid`'s partition: was `sid` due, and timed out?"""
    swept = reg.sweep(LEADER, TIMEOUT, 60.0, 100, onset=Onset(True, 3, 0.0, 0.0), tick=TICK, **_partition(reg, sid))
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
    in_time(grant)
    assert reg.silence(sid)[0] is ServiceStatus.RUNNING
    prior, events = reg.beat(sid, TIMEOUT)  # the new child's first beat: a plain heartbeat, nothing to announce
    assert (prior, events) == (ServiceStatus.RUNNING, [])
    clock.at(clock.now() + TIMEOUT + 0.2)  # the new child goes silent: it still times out
    assert _due(reg, sid)
    assert reg.silence(sid)[0] is ServiceStatus.RECONNECTING


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


# -- members with real children -----------------------------------------------------------------------
#
# Real time (the children are real processes; the server's clock cannot be frozen). Member B starts
# first and leads every partition; member A's ticks stop before it starts the service (as a
# SIGKILLed or paused owner's would), so A's ownership runs out one TTL after A took it. A's child
# beats once, at its start; B then takes over and spawns the next run, which writes its first beat
# only after a start-up of START seconds. Without a deadline from the grant, the old one (A's
# beat + CHILD_TIMEOUT) falls during that start-up: CHILD_TIMEOUT is shorter than the TTL plus
# START, longer than the TTL plus a tick and than START alone.

OWN_TTL = 1.5  # a tick every 0.5 s
START = 2.0
CHILD_TIMEOUT = 2.8

RELAY = r"""
import os, select, sys, time
path, start = sys.argv[1], float(sys.argv[2])
runs = int(open(path).read() or 0) + 1 if os.path.exists(path) else 1
with open(path, "w") as f:
    f.write(str(runs))
if runs == 1:  # the first owner's child: one beat at its start, then silent until its stdin closes
    sys.stdout.write("heartbeat\n")
    sys.stdout.flush()
    sys.stdin.buffer.read()
    sys.exit(0)
time.sleep(start)  # every later run: a slow start, then a beat every 0.1 s
while True:
    sys.stdout.write("heartbeat\n")
    sys.stdout.flush()
    ready, _, _ = select.select([0], [], [], 0.1)
    if ready and not os.read(0, 4096):
        sys.exit(0)
"""


def _relay(runs: str) -> ExtensionService:
    return ExtensionService("owned", "1", transport=TransportConfig(
        command=sys.executable, args=["-c", RELAY, runs, str(START)], timeout_secs=START + 5.0))


def _members(new_registry: Callable[[], Any], probe: Any) -> Iterator[Callable[[], Any]]:
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=CHILD_TIMEOUT,
                             reconnect_delay_ms=50, max_reconnect_delay_ms=100, max_reconnect_attempts=3, jitter=0.0)
    made: list[Any] = []

    def member() -> Any:
        connector = SubprocessConnector()
        made.append(LifecycleManager(new_registry(), config, connector=connector))
        return made[-1], connector

    yield member
    for manager in made:
        manager.shutdown()
    probe.clear()


@pytest.fixture(params=PARTITIONS, ids=lambda p: f"p{p}")
def memory_members(request: pytest.FixtureRequest) -> Iterator[tuple[Callable[[], Any], Any]]:
    new_registry = SharedMemoryRegistry(lease_ttl_secs=OWN_TTL, partitions=request.param).handle
    probe = new_registry()
    for made in _members(new_registry, probe):
        yield made, probe


@pytest.fixture(params=PARTITIONS, ids=lambda p: f"p{p}")
def server_members(request: pytest.FixtureRequest, redis_server: Any,
                   namespace: str) -> Iterator[tuple[Callable[[], Any], Any]]:
    pytest.importorskip("redis", reason="needs the redis extra")
    from lifecycle.redis import RedisRegistry

    def new_registry() -> Any:
        return RedisRegistry.from_url(redis_server.url, namespace=namespace, partitions=request.param,
                                      lease_ttl_secs=OWN_TTL)

    probe = new_registry()
    for made in _members(new_registry, probe):
        yield made, probe


def _leaders(probe: Any) -> list[str | None]:
    leaders = getattr(probe, "leaders", None)
    return list(leaders()) if callable(leaders) else [probe.leader()]


def test_the_new_owners_child_is_not_timed_out_while_it_starts_in_memory(memory_members, tmp_path):
    _the_new_owners_child_is_not_timed_out_while_it_starts(memory_members, tmp_path)


def test_the_new_owners_child_is_not_timed_out_while_it_starts_on_a_server(server_members, tmp_path):
    _the_new_owners_child_is_not_timed_out_while_it_starts(server_members, tmp_path)


def _the_new_owners_child_is_not_timed_out_while_it_starts(members: Any, tmp_path: Any) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("STDIO children with PR_SET_PDEATHSIG")
    member, probe = members
    runs = tmp_path / "runs"
    b, b_children = member()
    wait_until(lambda: all(holder == b._engine.ticker.owner for holder in _leaders(probe)),
               what="member B to lead every partition")
    a, _ = member()
    a._engine.ticker.close()  # A's ticks stop (it leads nothing: no lease to give up); it owns what it takes
    recorder = EventRecorder().record(a).record(b)
    try:
        sid = a.start_service(_relay(str(runs)))
        assert b.start_service(_relay(str(runs))) == sid  # joined: a candidate
        assert probe.owner_of(sid) == a._engine.ticker.owner
        wait_until(lambda: probe.owner_of(sid) == b._engine.ticker.owner, timeout=OWN_TTL + WAIT,
                   what="member B to take the service over")
        granted = time.monotonic()
        beats = len(recorder.of(Heartbeat))
        wait_until(lambda: b_children.pid(sid) is not None, what="member B to spawn")
        child = b_children.pid(sid)
        # The new child's first beat comes START s after its spawn; by then the old deadline has fallen.
        assert recorder.wait_for(lambda es: len([e for e in es if isinstance(e, Heartbeat)]) > beats
                                 or any(isinstance(e, HeartbeatTimeout) for e in es), timeout=START + WAIT)
        if time.monotonic() >= granted + CHILD_TIMEOUT:
            pytest.skip("the machine stalled past the new child's deadline; the checks prove nothing this run")
        assert recorder.of(HeartbeatTimeout) == [] and recorder.of(Reconnecting) == []
        assert b.get_status(sid) is ServiceStatus.RUNNING
        assert b_children.pid(sid) == child and runs.read_text() == "2"  # A's run, then exactly one spawn by B
    finally:
        recorder.close()
