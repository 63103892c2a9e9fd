"""Fleet mode on `SharedMemoryRegistry`: several managers, one in-process store, frozen time.

The fleet scenarios of tests/test_fleet.py that need no server, driven deterministically: every
manager is in manual mode (`autostart=False`), time is freezegun's, and `Fleet.run` advances it in
small steps, running each manager's due timers (ticks, attempts) after every step. Each manager
has its own handle on the store, so its own owner token: a process of the fleet.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import hearing_every_signal

from lifecycle import (
    ExtensionService,
    LifecycleConfig,
    LifecycleManager,
    RegistryUnavailable,
    ServiceStatus,
    TransportConfig,
)
from lifecycle.events import (
    Error,
    HeartbeatTimeout,
    LifecycleEvent,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    ServiceFlapping,
    Started,
)
from lifecycle.fleet import Onset, Plan, is_shared
from lifecycle.phi import History
from lifecycle.shared_memory import SharedMemoryRegistry
from lifecycle.testing import FrozenLifecycle

S = ServiceStatus
TTL = 3.0  # a tick (lease renewal) every second
STEP = 0.05
CONFIG = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=5.0, reconnect_delay_ms=100,
                         max_reconnect_delay_ms=400, max_reconnect_attempts=3, jitter=0.0)

_Rows = list[tuple[object, LifecycleEvent]]


class Counting:
    """A connector recording its calls (service id, frozen time); `fail_from` makes connect raise from that call on."""

    def __init__(self, fail_from: int | None = None) -> None:
        self.calls: list[tuple[str, float]] = []
        self.fail_from = fail_from

    def connect(self, service: ExtensionService) -> None:
        self.calls.append((service.id, time.monotonic()))
        if self.fail_from is not None and len(self.calls) >= self.fail_from:
            raise ConnectionError(f"connect #{len(self.calls)} refused")


class Fleet:
    """Managers on one store in frozen time; every lifecycle signal of the process recorded with its sender."""

    def __init__(self, frozen: FrozenLifecycle, make: Callable[..., LifecycleManager]) -> None:
        self.frozen = frozen
        self._make = make
        self.store = SharedMemoryRegistry(lease_ttl_secs=TTL)
        self.managers: list[LifecycleManager] = []
        self.rows: _Rows = []
        self._lock = threading.Lock()

    def __call__(self, sender: object, **kwargs: Any) -> None:
        with self._lock:
            self.rows.append((sender, kwargs["event"]))

    def add(self, n: int = 1, config: LifecycleConfig = CONFIG, connector: object = None) -> list[LifecycleManager]:
        made = [self._make(registry=self.store.handle(), config=config, connector=connector) for _ in range(n)]
        self.managers += made
        return made

    def run(self, seconds: float) -> None:
        """Let `seconds` of frozen time pass in steps, running every manager's due timers after each."""
        for _ in range(round(seconds / STEP)):
            self.frozen.advance(STEP, *self.managers)

    @property
    def leader(self) -> LifecycleManager:
        leaders = [m for m in self.managers if m.is_leader]
        assert len(leaders) == 1, f"{len(leaders)} leaders"
        return leaders[0]

    def follower(self) -> LifecycleManager:
        return next(m for m in self.managers if not m.is_leader)

    def of(self, cls: type[LifecycleEvent]) -> _Rows:
        with self._lock:
            return [(s, e) for s, e in self.rows if type(e) is cls]

    def senders(self, *classes: type[LifecycleEvent]) -> set[object]:
        return {s for cls in classes for s, _ in self.of(cls)}


@pytest.fixture
def fleet(frozen_lifecycle: FrozenLifecycle, make_lifecycle_manager: Callable[..., LifecycleManager]
          ) -> Iterator[Fleet]:
    made = Fleet(frozen_lifecycle, make_lifecycle_manager)
    with hearing_every_signal(made):
        yield made


def owner(manager: LifecycleManager) -> str:
    return manager._engine.ticker.owner  # type: ignore[attr-defined, no-any-return]


def test_it_is_a_shared_registry_and_handles_share_the_data():
    store = SharedMemoryRegistry()
    other = store.handle(lease_ttl_secs=1.0)
    assert is_shared(store) and other.lease_ttl_secs == 1.0
    sid = store.register(ExtensionService("svc", "1"))
    assert sid in other and other.get(sid).name == "svc"


def test_exactly_one_manager_leads_and_holds_the_lease(fleet):
    managers = fleet.add(3)
    fleet.run(2.0)
    assert fleet.store.leader() == owner(fleet.leader)
    assert fleet.leader is managers[0]  # the first to tick
    assert sum(m.is_leader for m in managers) == 1


def test_a_silent_service_gives_one_timeout_and_one_reconnect_sequence_in_the_fleet(fleet):
    connector = Counting(fail_from=2)  # the start connects; every attempt fails
    managers = fleet.add(3, connector=connector)
    fleet.run(STEP)
    sid = managers[1].start_service(ExtensionService("silent", "1"))
    fleet.run(8.0)
    assert len(fleet.of(HeartbeatTimeout)) == 1
    (_, timeout), = fleet.of(HeartbeatTimeout)
    (_, started), = fleet.of(Started)
    assert 5.0 <= timeout.at - started.at <= 5.0 + STEP  # at its deadline, not at a later tick
    assert [e.attempt for _, e in fleet.of(Reconnecting)] == [1, 2, 3]
    assert [e.delay for _, e in fleet.of(Reconnecting)] == [0.1, 0.2, 0.4]
    assert [e.attempts for _, e in fleet.of(ReconnectFailed)] == [3]
    assert len(connector.calls) == 1 + 3
    assert fleet.senders(HeartbeatTimeout, Reconnecting, ReconnectFailed) == {fleet.leader}
    assert all(m.get_status(sid) is S.ERROR and m.attempts(sid) == 3 for m in managers)
    fleet.run(10.0)  # ERROR has no deadline: nothing more
    assert len(fleet.of(HeartbeatTimeout)) == 1 and len(connector.calls) == 4


@pytest.mark.parametrize("ok", [True, False], ids=["connects", "fails"])
def test_an_error_reported_to_a_follower_is_retried_by_the_leader(fleet, ok):
    connectors = [Counting() for _ in range(3)]
    config = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=5.0, reconnect_delay_ms=20,
                             max_reconnect_delay_ms=50, max_reconnect_attempts=1, jitter=0.0)
    managers = [fleet.add(config=config, connector=c)[0] for c in connectors]
    fleet.run(STEP)
    leader, follower = fleet.leader, fleet.follower()
    fc, lc = connectors[managers.index(follower)], connectors[managers.index(leader)]
    sid = follower.start_service(ExtensionService("svc", "1"))
    fc.fail_from = 1  # whatever the follower's connector would do, it must not be asked
    lc.fail_from = None if ok else 1
    follower.handle_error(sid, "boom")
    assert [(s, e.error) for s, e in fleet.of(Error)] == [(follower, "boom")]
    assert [(s, e.attempt) for s, e in fleet.of(Reconnecting)] == [(follower, 1)]
    fleet.run(1.0 + STEP)  # the leader's next tick at the latest
    final = Reconnected if ok else ReconnectFailed
    assert fleet.senders(final) == {leader}
    assert [c for c, _ in lc.calls] == [sid] and [c for c, _ in fc.calls] == [sid]
    assert follower.get_status(sid) is (S.RUNNING if ok else S.ERROR)


def test_graceful_shutdown_hands_the_lease_on_and_the_sequence_goes_on_without_repeats(fleet):
    config = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=2.0, reconnect_delay_ms=300,
                             max_reconnect_delay_ms=300, max_reconnect_attempts=4, jitter=0.0)
    connector = Counting(fail_from=2)
    a, b = fleet.add(2, config=config, connector=connector)
    fleet.run(STEP)
    assert a.is_leader and not b.is_leader
    sid = a.start_service(ExtensionService("silent", "1"))
    fleet.run(2.0 + 0.65)  # the timeout, attempts 1 and 2
    assert [e.attempt for _, e in fleet.of(Reconnecting)] == [1, 2, 3]
    assert len(connector.calls) == 3
    a.shutdown()  # mid-sequence: releases the lease
    assert fleet.store.leader() is None
    fleet.run(1.0 + STEP)  # b's next tick takes the lease
    assert b.is_leader and fleet.store.leader() == owner(b)
    fleet.run(2.0)
    assert [e.attempt for _, e in fleet.of(Reconnecting)] == [1, 2, 3, 4]
    assert len(connector.calls) == 1 + 4
    assert len(fleet.of(HeartbeatTimeout)) == 1
    assert fleet.senders(ReconnectFailed) == {b}
    assert b.get_status(sid) is S.ERROR


def test_a_leader_whose_lease_ran_out_is_fenced(fleet):
    a, b = fleet.add(2)
    fleet.run(STEP)
    assert a.is_leader
    sid = a.start_service(ExtensionService("svc", "1"))
    # a is paused (its ticks do not run) for longer than its lease: b takes over.
    for _ in range(round((TTL + 1.0) / STEP)):
        fleet.frozen.advance(STEP, b)
    assert b.is_leader and fleet.store.leader() == owner(b)
    assert not a.is_leader  # its lease is older than a TTL, whatever it last heard
    registry = a.registry
    assert registry.sweep(owner(a), 5.0, TTL, 10, onset=Onset(True, 3, 0.0, 0.0)) is None
    assert registry.attempt_done(sid, owner(a), 1, True, Plan("retry", 2, 0.0, 3)) is None
    fleet.frozen.freezer.tick(2.0)  # no tick runs: the service is now 6 s silent
    assert a.health_check() == [] and fleet.of(HeartbeatTimeout) == []  # beyond its 5 s, but a cannot act
    assert b.health_check() == [sid]
    assert fleet.senders(HeartbeatTimeout) == {b}


def test_an_attempt_whose_outcome_was_lost_is_run_again_after_its_timeout_and_a_tick(fleet, monkeypatch):
    connector = Counting()
    a, b = fleet.add(2, connector=connector)
    fleet.run(STEP)
    sid = b.start_service(ExtensionService("svc", "1", transport=_transport(timeout_secs=2.0)))
    real = a.registry.attempt_done
    lost: list[int] = []

    def lose_once(*args: Any, **kwargs: Any) -> Any:
        if not lost:
            lost.append(args[2])
            raise RegistryUnavailable("the reply was lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(a.registry, "attempt_done", lose_once)
    b.handle_error(sid, "boom")
    fleet.run(1.0 + STEP)
    assert lost == [1] and len(connector.calls) == 2  # the start, attempt 1 (its outcome lost)
    assert a.get_status(sid) is S.RECONNECTING
    fleet.run(4.0)
    (_, first), (_, again) = connector.calls[1:]
    assert 2.0 + a._engine.ticker.renew_every <= again - first <= 3.0 + STEP  # timeout 2 s + a 1 s tick
    assert [s for s, _ in fleet.of(Reconnected)] == [a]
    assert [e.attempt for _, e in fleet.of(Reconnecting)] == [1]  # the same attempt, handed out again
    assert b.get_status(sid) is S.RUNNING


def _transport(**kwargs: Any) -> TransportConfig:
    return TransportConfig(**kwargs)


def test_a_store_that_lost_its_data_gets_each_managers_services_back(fleet, caplog):
    caplog.set_level(logging.WARNING, logger="lifecycle")
    a, b = fleet.add(2)
    fleet.run(STEP)
    one = a.start_service(ExtensionService("one", "1"))
    two = b.start_service(ExtensionService("two", "1"))
    fleet.run(3.0)
    fleet.store.flush()
    assert fleet.store.count() == 0
    fleet.run(1.0 + STEP)  # each manager's next tick sees a new generation marker
    for sid, name in ((one, "one"), (two, "two")):
        service = fleet.store.get(sid)
        assert service is not None and service.name == name and service.status is S.RUNNING
        assert fleet.store.silence(sid)[1] <= 1.0 + STEP  # a full timeout from the restore
    assert sum("registered again" in r.getMessage() for r in caplog.records) == 2
    fleet.run(4.5)
    assert fleet.of(HeartbeatTimeout) == []  # a full 5 s from the restore, not from the last beat
    fleet.run(1.0)
    assert {e.service_id for _, e in fleet.of(HeartbeatTimeout)} == {one, two}


def test_the_second_restart_within_the_window_is_flapping_and_restart_service_starts_afresh(fleet):
    config = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=5.0, reconnect_delay_ms=2000,
                             max_reconnect_delay_ms=2000, max_reconnect_attempts=3, jitter=0.0, max_restarts=1,
                             restart_window_secs=60)
    connector = Counting()
    fleet.add(2, config=config, connector=connector)
    fleet.run(STEP)
    m = fleet.follower()
    sid = m.start_service(ExtensionService("flappy", "1"))
    m.handle_error(sid, "one")
    assert m.get_status(sid) is S.RECONNECTING and m.restarts(sid) == 1
    m.handle_heartbeat(sid)  # revived before attempt 1 is due
    m.handle_error(sid, "two")
    (_, flap), = fleet.of(ServiceFlapping)
    assert (flap.restarts, flap.window) == (2, 60.0)
    assert all(x.get_status(sid) is S.ERROR and x.restarts(sid) == 2 for x in fleet.managers)
    fleet.run(5.0)
    assert len(connector.calls) == 1  # a flapping service is not reconnected
    m.handle_error(sid, "three")  # nor by an error report: it only emits
    assert m.get_status(sid) is S.ERROR and len(fleet.of(Reconnecting)) == 1
    m.restart_service(sid)  # a connector: attempt 1 at once, in the leader's next tick
    assert [e.delay for _, e in fleet.of(Reconnecting)] == [2.0, 0.0]
    assert all(x.restarts(sid) == 0 for x in fleet.managers)
    fleet.run(1.0 + STEP)
    assert fleet.senders(Reconnected) == {m, fleet.leader}  # the heartbeat's revival, then the attempt
    assert len(connector.calls) == 2 and m.get_status(sid) is S.RUNNING
    m.handle_error(sid, "four")  # the window starts afresh: restart 1 is allowed again
    assert m.get_status(sid) is S.RECONNECTING and m.restarts(sid) == 1


def test_each_service_keeps_its_own_timeout_and_attempt_limit(fleet):
    fleet.add(2)
    fleet.run(STEP)
    m = fleet.follower()
    short = m.start_service(ExtensionService("short", "1", transport=_transport(heartbeat_timeout_secs=1.5,
                                                                                max_reconnect_attempts=1)))
    long = m.start_service(ExtensionService("long", "1", transport=_transport(heartbeat_timeout_secs=8.0,
                                                                               max_reconnect_attempts=2)))
    (_, started), _ = fleet.of(Started)
    fleet.run(3.0)
    timeouts = fleet.of(HeartbeatTimeout)
    assert [e.service_id for _, e in timeouts] == [short]
    assert 1.5 <= timeouts[0][1].at - started.at <= 1.5 + 1.0  # at the latest at the leader's next tick
    assert all(x.is_healthy(long) and not x.is_healthy(short) for x in fleet.managers)
    assert [e.attempts for _, e in fleet.of(ReconnectFailed)] == [1]
    fleet.run(6.0)
    assert [e.service_id for _, e in fleet.of(HeartbeatTimeout)] == [short, long]
    assert 8.0 <= fleet.of(HeartbeatTimeout)[1][1].at - started.at <= 8.0 + STEP
    assert [(e.service_id, e.attempts) for _, e in fleet.of(ReconnectFailed)] == [(short, 1), (long, 2)]
    assert fleet.store.timing(short).timeout == 1.5 and fleet.store.timing(long).timeout == 8.0


PHI = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=30.0, reconnect_delay_ms=100,
                      max_reconnect_delay_ms=100, max_reconnect_attempts=1, jitter=0.0, detector="phi",
                      phi_min_std_deviation_secs=0.1, phi_acceptable_pause_secs=0.0)


def test_phi_learns_every_managers_heartbeats_and_detects_silence_long_before_the_timeout(fleet):
    managers = fleet.add(3, config=PHI)
    fleet.run(STEP)
    sid = managers[1].start_service(ExtensionService("steady", "1"))
    assert PHI.phi is not None
    model = History(PHI.phi, 0.0)
    for n in range(20):
        fleet.run(1.0)
        managers[n % 3].handle_heartbeat(sid)  # every second, through any manager
        model.beat(float(n + 1), PHI.phi, cap=30.0)
    assert all(m.is_healthy(sid) and m.phi(sid) < 1.0 for m in managers)
    samples = []
    while not fleet.of(HeartbeatTimeout):
        fleet.run(0.1)
        samples.append(managers[0].phi(sid))
    silent = fleet.store.silence(sid)
    (_, out), = fleet.of(HeartbeatTimeout)
    limit = model.limit(PHI.phi, PHI.phi.score)
    assert silent is not None and math.isclose(out.at - (model.last + _start_of(fleet)), limit, abs_tol=0.1)
    assert limit < 2.0  # 30 s fixed timeout
    assert samples[:-1] == sorted(samples[:-1]) and samples[-2] > 5.0  # rising towards the threshold (8)


def _start_of(fleet: Fleet) -> float:
    (_, started), = fleet.of(Started)
    return started.at


def test_phi_is_read_as_history_computes_it(fleet):
    managers = fleet.add(2, config=PHI)
    fleet.run(STEP)
    sid = managers[0].start_service(ExtensionService("steady", "1"))
    assert PHI.phi is not None
    model = History(PHI.phi, 0.0)
    for n, pause in enumerate((1.0, 1.2, 0.8, 1.0), start=1):
        fleet.frozen.freezer.tick(pause)
        managers[n % 2].handle_heartbeat(sid)
        model.beat(model.last + pause, PHI.phi, cap=30.0)
    fleet.frozen.freezer.tick(1.5)
    expected = model.phi(model.last + 1.5, PHI.phi)
    assert all(math.isclose(m.phi(sid), expected, rel_tol=1e-9) for m in managers)


def test_a_fleet_subscription_gets_the_events_of_every_manager(fleet):
    a, b = fleet.add(2)
    fleet.run(STEP)
    with a.subscribe(fleet=True) as log:
        sid = b.start_service(ExtensionService("svc", "1"))
        b.handle_error(sid, "boom")
        got = [log.get(timeout=5.0).signal_name for _ in range(6)]
    assert got == ["service_started", "status_changed", "service_error", "status_changed", "status_changed",
                   "reconnecting"]


def test_fleet_mode_is_chosen_by_name_not_by_shape():
    # Every method of SharedMemoryRegistry, on a class that does not name SharedRegistry as a base.
    names = {name: value for name, value in vars(SharedMemoryRegistry).items()
             if name not in ("__dict__", "__weakref__")}
    lookalike = type("Lookalike", (), names)()
    assert not is_shared(lookalike)
    assert is_shared(SharedMemoryRegistry())
    manager = LifecycleManager(registry=lookalike, autostart=False)
    try:
        assert manager.fleet is False
    finally:
        manager.shutdown()
