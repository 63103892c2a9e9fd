"""Fleet mode: several managers sharing one namespace on a real server act as one manager.

Each manager has its own `RedisRegistry` client, as separate processes would; they live in one
process here so the tests can see every event and drive every tick. Threaded tests use
sub-second timeouts and wait on conditions with generous bounds; manual-mode tests
(`autostart=False`) drive each manager's tick with `run_pending()`. The server's clock cannot be
frozen, so durations that must pass on it pass for real.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis_server as servers
from redis.crc import key_slot

from lifecycle import (
    ExtensionService,
    InvalidState,
    LifecycleConfig,
    LifecycleManager,
    RegistryRefused,
    RegistryUnavailable,
    ServiceAlreadyExists,
    ServiceNotFound,
    ServiceStatus,
    connect,
)
from lifecycle.dispatch import SIGNALS
from lifecycle.events import (
    Error,
    Heartbeat,
    HeartbeatTimeout,
    LifecycleEvent,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    Started,
    Stopped,
)
from lifecycle.fleet import Onset, Plan
from lifecycle.redis import RedisRegistry

pytestmark = pytest.mark.threaded

TIMEOUT = 0.4
CONFIG = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=TIMEOUT, reconnect_delay_ms=20,
                         max_reconnect_delay_ms=50, max_reconnect_attempts=3, jitter=0.0)
TTL = 3.0  # a lease no tick misses on a loaded machine; tests about losing it say so
WAIT = 10.0  # generous bound for what takes well under a second
RETRY_AT_ONCE = Onset(True, 3, 0.0, 0.0)  # a leader's sweep by hand: a timeout's attempt 1 due at once
LATER = Onset(True, 3, 10.0, 10.0)  # the same, attempt 1 in 10 s: no test waits for it
PASSWORD = "pw-Zq8-never-printed"

_Rows = list[tuple[object, LifecycleEvent]]


def eventually(predicate: Callable[[], object], timeout: float = WAIT, *, drive: tuple[LifecycleManager, ...] = (),
               what: str = "condition") -> None:
    """Poll `predicate` (running due timers of the manual-mode managers in `drive`) until it holds."""
    end = time.monotonic() + timeout
    while True:
        for manager in drive:
            manager.run_pending()
        if predicate():
            return
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)  # real time must pass on the server's clock: nothing to wait on in-process


class FleetEvents:
    """Every lifecycle signal sent in this process, with its sender (the manager that emitted it)."""

    def __init__(self) -> None:
        self.rows: _Rows = []
        self._cond = threading.Condition()

    def __call__(self, sender: object, **kwargs: Any) -> None:
        with self._cond:
            self.rows.append((sender, kwargs["event"]))
            self._cond.notify_all()

    def of(self, cls: type[LifecycleEvent]) -> _Rows:
        with self._cond:
            return [(s, e) for s, e in self.rows if type(e) is cls]

    def senders(self, cls: type[LifecycleEvent]) -> set[object]:
        return {s for s, _ in self.of(cls)}

    def wait_for(self, predicate: Callable[[_Rows], object], timeout: float = WAIT) -> bool:
        with self._cond:
            return bool(self._cond.wait_for(lambda: predicate(self.rows), timeout))

    def wait_of(self, cls: type[LifecycleEvent], n: int = 1, timeout: float = WAIT) -> bool:
        return self.wait_for(lambda rows: sum(type(e) is cls for _, e in rows) >= n, timeout)


@pytest.fixture
def events() -> Iterator[FleetEvents]:
    recorder = FleetEvents()
    for signal in SIGNALS.values():
        signal.connect(recorder, weak=False)
    try:
        yield recorder
    finally:
        for signal in SIGNALS.values():
            signal.disconnect(recorder)


class Counting:
    """A connector recording its calls; `fail_from` makes connect raise from that call on (1-based)."""

    def __init__(self, fail_from: int | None = None, on_call: Callable[[int], None] | None = None) -> None:
        self.calls: list[str] = []
        self.disconnects: list[str] = []
        self.fail_from = fail_from
        self.on_call = on_call
        self._lock = threading.Lock()

    def connect(self, service: ExtensionService) -> None:
        with self._lock:
            self.calls.append(service.id)
            n = len(self.calls)
        if self.on_call is not None:
            self.on_call(n)
        if self.fail_from is not None and n >= self.fail_from:
            raise ConnectionError(f"connect #{n} refused")

    def disconnect(self, service: ExtensionService) -> None:
        self.disconnects.append(service.id)


_Make = Callable[..., LifecycleManager]


@pytest.fixture
def make(redis_server: servers.RedisServer, namespace: str) -> Iterator[_Make]:
    """`make(url=..., ttl=TTL, config=CONFIG, **manager_kwargs)`: a manager with its own client on the namespace."""
    made: list[LifecycleManager] = []
    # Only this test's readers are waited for: a reader another test leaked would cost every later test WAIT.
    before = set(threading.enumerate())

    def build(*, url: str | None = None, ttl: float = TTL, config: LifecycleConfig = CONFIG,
              **kwargs: Any) -> LifecycleManager:
        registry = RedisRegistry.from_url(url or redis_server.url, namespace=namespace, lease_ttl_secs=ttl,
                                          socket_timeout=1.0, socket_connect_timeout=1.0)
        manager = LifecycleManager(registry, config, **kwargs)
        made.append(manager)
        return manager

    yield build
    for manager in made:
        manager.shutdown()
    for thread in threading.enumerate():
        if thread.name == "lifecycle-fleet-log" and thread not in before:
            thread.join(WAIT)  # it notices the end of its subscription within a poll; then clients may close
    for manager in made:
        with contextlib.suppress(RegistryUnavailable):  # a test's own server may be gone
            manager.registry.clear()
        manager.registry.client.close()  # type: ignore[attr-defined]


def leader_of(managers: list[LifecycleManager], *, drive: bool = False) -> LifecycleManager:
    """Wait until exactly one of `managers` is the leader and return it."""
    eventually(lambda: sum(m.is_leader for m in managers) == 1, drive=tuple(managers) if drive else (),
               what="exactly one leader")
    return next(m for m in managers if m.is_leader)


def lease_key(manager: LifecycleManager) -> str:
    return manager.registry.keys["lease"]  # type: ignore[attr-defined, no-any-return]


def client_of(manager: LifecycleManager) -> redis.Redis:
    return manager.registry.client  # type: ignore[attr-defined, no-any-return]


def traces(client: redis.Redis, keys: dict[str, str], sid: str) -> list[str]:
    """The keys of the namespace that still mention `sid`."""
    found = []
    for name, key in keys.items():
        kind = client.type(key)
        if (kind == "hash" and client.hexists(key, sid)) or (kind == "zset" and client.zscore(key, sid) is not None):
            found.append(name)
    if sid in client.hvals(keys["names"]):
        found.append("names")
    return found


# -- joining and serving ---------------------------------------------------------------------------


def test_start_is_a_join_by_id_or_by_name_and_version_and_calls_no_connector(make, events):
    first, second = Counting(), Counting()
    a, b = make(connector=first), make(connector=second)
    service = ExtensionService("svc", "1")
    sid = a.start_service(service)
    assert b.start_service(service) == sid  # the same id
    assert b.start_service(ExtensionService("svc", "1")) == sid  # the same name and version
    with pytest.raises(ServiceAlreadyExists) as caught:
        b.start_service(ExtensionService("svc", "2"))
    assert caught.value.id == sid
    assert first.calls == [sid] and second.calls == []
    assert a.registry.count() == 1
    assert [s for s, _ in events.of(Started)] == [a]
    assert b.get_status(sid) is ServiceStatus.RUNNING


def test_any_manager_serves_a_service_another_started(make, events):
    starter, other = Counting(), Counting()
    a, b = make(connector=starter), make(connector=other)
    sid = a.start_service(ExtensionService("svc", "1"))
    assert b.get_status(sid) is ServiceStatus.RUNNING and b.is_healthy(sid)
    b.handle_heartbeat(sid)
    assert a.registry.silence(sid)[1] < TIMEOUT
    assert [s for s, _ in events.of(Heartbeat)] == [b]
    b.handle_error(sid, "boom")
    assert [(s, e.error) for s, e in events.of(Error)] == [(b, "boom")]
    assert a.get_status(sid) in (ServiceStatus.RECONNECTING, ServiceStatus.RUNNING)
    b.stop_service(sid)
    assert a.get_status(sid) is None and b.get_status(sid) is None and not a.is_healthy(sid)
    assert [s for s, _ in events.of(Stopped)] == [b]
    assert other.disconnects == [sid]  # the stopping manager's connector: the starter's is in another process
    with pytest.raises(ServiceNotFound):
        a.handle_heartbeat(sid)
    with pytest.raises(ServiceNotFound):
        b.stop_service(sid)


def test_exactly_one_manager_leads_and_holds_the_lease(make):
    managers = [make() for _ in range(3)]
    leader = leader_of(managers)
    assert client_of(leader).get(lease_key(leader)) == leader._engine.ticker.owner


def test_a_silent_service_gives_one_timeout_and_one_reconnect_sequence_in_the_fleet(make, events):
    connector = Counting(fail_from=2)  # the start connects; every attempt fails
    managers = [make(connector=connector) for _ in range(3)]
    sid = managers[1].start_service(ExtensionService("silent", "1"))
    assert events.wait_of(ReconnectFailed), "the silent service was never given up on"
    for m in managers:
        m.shutdown()  # joins the watchdogs: any duplicate would be recorded by now
    assert len(events.of(HeartbeatTimeout)) == 1
    attempts = [e.attempt for _, e in events.of(Reconnecting)]
    assert attempts == [1, 2, 3]
    assert [e.attempts for _, e in events.of(ReconnectFailed)] == [3]
    assert len(connector.calls) == 1 + 3
    actors = events.senders(HeartbeatTimeout) | events.senders(Reconnecting) | events.senders(ReconnectFailed)
    assert len(actors) == 1  # the leader did it all
    assert managers[0].registry.get(sid).status is ServiceStatus.ERROR


@pytest.mark.parametrize("ok", [True, False], ids=["connects", "fails"])
def test_an_error_reported_to_a_follower_is_retried_by_the_leader(make, events, ok):
    connectors = [Counting() for _ in range(3)]
    config = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=5.0, reconnect_delay_ms=20,
                             max_reconnect_delay_ms=50, max_reconnect_attempts=1, jitter=0.0)
    managers = [make(connector=c, config=config) for c in connectors]
    leader = leader_of(managers)
    follower = next(m for m in managers if m is not leader)
    fc = connectors[managers.index(follower)]
    lc = connectors[managers.index(leader)]
    sid = follower.start_service(ExtensionService("svc", "1"))
    assert fc.calls == [sid]
    fc.fail_from = 1  # whatever the follower's connector would do, it must not be asked
    lc.fail_from = None if ok else 1
    follower.handle_error(sid, "boom")
    assert [(s, e.attempt) for s, e in events.of(Reconnecting)] == [(follower, 1)]
    final = Reconnected if ok else ReconnectFailed
    assert events.wait_of(final)
    assert events.senders(final) == {leader}
    assert lc.calls == [sid]  # the one attempt, in the leader
    assert fc.calls == [sid]
    expected = ServiceStatus.RUNNING if ok else ServiceStatus.ERROR
    assert follower.get_status(sid) is expected


# -- fencing: a leader that lost its lease cannot act ------------------------------------------------


def test_a_leader_whose_lease_was_taken_cannot_expire(make, events):
    a = make(autostart=False)
    a.run_pending()  # first tick: takes the lease
    assert a.is_leader
    sid = a.start_service(ExtensionService("svc", "1"))
    client_of(a).delete(lease_key(a))  # the lease ran out while a was paused
    b = make(autostart=False)
    b.run_pending()
    assert b.is_leader and a.is_leader  # a has not noticed: it has not ticked
    eventually(lambda: a.registry.silence(sid)[1] >= TIMEOUT, what="the service's silence")
    registry = a.registry
    assert registry.sweep(a._engine.ticker.owner, TIMEOUT, TTL, 10, onset=RETRY_AT_ONCE) is None
    assert registry.attempt_done(sid, a._engine.ticker.owner, 1, True, Plan("retry", 2, 0.0, 3)) is None
    assert a.health_check() == []
    assert not a.is_leader and events.of(HeartbeatTimeout) == []
    assert registry.get(sid).status is ServiceStatus.RUNNING
    assert b.health_check() == [sid]
    assert events.senders(HeartbeatTimeout) == {b}


def test_a_leader_that_loses_its_lease_during_a_connect_cannot_finish_the_attempt(make, events):
    b_holder: list[LifecycleManager] = []

    def take_over(n: int) -> None:
        if n == 2:  # a's first attempt: meanwhile its lease runs out and b takes over
            b = b_holder[0]
            client_of(b).delete(lease_key(b))
            eventually(lambda: b.is_leader, drive=(b,), what="b to take the lease")

    a = make(autostart=False, ttl=0.6)
    a.run_pending()
    b_holder.append(make(autostart=False, ttl=0.6, connector=Counting()))
    b = b_holder[0]
    b.run_pending()
    assert a.is_leader and not b.is_leader
    sid = a.start_service(ExtensionService("svc", "1"), connector=Counting(on_call=take_over))
    eventually(lambda: events.of(Reconnected), drive=(a,), what="the reconnect")
    assert [(s, e.attempt) for s, e in events.of(Reconnecting)] == [(a, 1)]
    assert events.senders(HeartbeatTimeout) == {a}
    # b voided a's claim and ran attempt 1 itself; a's success came too late and changed nothing.
    assert [s for s, _ in events.of(Reconnected)] == [b]
    assert not a.is_leader and b.is_leader
    assert b.get_status(sid) is ServiceStatus.RUNNING


def test_a_lease_that_expired_on_the_server_fences_its_old_holder(make):
    # A 1 s lease: is_leader also asks that the lease was renewed less than a TTL ago, which a
    # loaded host can take longer than 0.3 s to see through one run_pending.
    a = make(autostart=False, ttl=1.0)
    a.run_pending()
    assert a.is_leader
    client = client_of(a)
    eventually(lambda: not client.exists(lease_key(a)), what="the lease to expire on the server")
    b = make(autostart=False, ttl=1.0)
    b.run_pending()
    assert b.is_leader
    assert a.registry.sweep(a._engine.ticker.owner, TIMEOUT, 1.0, 10, onset=RETRY_AT_ONCE) is None


def test_graceful_shutdown_hands_the_lease_on_at_the_next_tick(frozen_lifecycle, make_lifecycle_manager,
                                                                redis_server, namespace):
    def manager() -> LifecycleManager:
        registry = RedisRegistry.from_url(redis_server.url, namespace=namespace, lease_ttl_secs=30.0)
        return make_lifecycle_manager(registry=registry, config=CONFIG)

    a, b = manager(), manager()
    try:
        frozen_lifecycle.advance(0)
        assert a.is_leader and not b.is_leader
        frozen_lifecycle.advance(10.0, b)  # a 30 s lease outlives a renewal period of b's
        assert not b.is_leader
        a.shutdown()
        assert client_of(a).get(lease_key(a)) is None
        frozen_lifecycle.advance(10.0, b)  # one tick of b's; the server-side lease would last 30 s
        assert b.is_leader
    finally:
        a.registry.clear()
        for m in (a, b):
            client_of(m).close()


# -- the fleet event log ---------------------------------------------------------------------------


def test_a_fleet_subscription_gets_every_event_emitted_anywhere_in_order(make, events):
    a, b = make(), make()
    with a.subscribe(fleet=True) as log:
        sid = b.start_service(ExtensionService("svc", "1"))
        b.handle_error(sid, "boom")
        a.handle_heartbeat(sid)  # a revival: emitted in a
        b.stop_service(sid)
        expected = [(e.signal_name, e.service_id) for _, e in events.rows if type(e) is not Heartbeat]
        got = []
        while len(got) < len(expected):
            event = log.get(timeout=WAIT)
            got.append((event.signal_name, event.service_id))
    assert got == expected
    assert ("reconnected", sid) in got and got[-1] == ("service_stopped", sid)


# -- races -------------------------------------------------------------------------------------------


def race(*calls: Callable[[], object]) -> list[object]:
    """Run `calls` in threads released together; their results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait(WAIT)
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    return results


def test_a_heartbeat_racing_expiry_at_the_deadline_is_never_lost(redis_server, namespace):
    reg = RedisRegistry.from_url(redis_server.url, namespace=namespace)
    # Longer than a loaded host may delay one of the racing threads: a beat that wins by more than a
    # timeout would be timed out again, rightly, and the race would not be the one tested here.
    timeout = 0.5
    try:
        assert reg.lease("me", 30.0).leader
        reg.sweep("me", timeout, 30.0, 10, onset=LATER)  # the first sweep: no outage to rebase after it
        outcomes = set()
        for i in range(12):
            sid = reg.register(ExtensionService(f"s{i}", "1"))
            reg.activate(sid, timeout)
            eventually(lambda sid=sid: reg.silence(sid)[1] >= timeout, what="the deadline")
            expired, (prior, revived) = race(
                lambda sid=sid: [e for e in reg.sweep("me", timeout, 30.0, 10, onset=LATER).events
                                 if e.service_id == sid],  # (the services of earlier rounds go silent too)
                lambda sid=sid: reg.beat(sid, timeout),
            )
            status, silent = reg.silence(sid)
            assert status is ServiceStatus.RUNNING and silent < 1.0  # the beat counted, whichever came first
            if expired:  # the expiry came first: the beat found it RECONNECTING and revived it
                assert [e.signal_name for e in expired][:1] == ["heartbeat_timeout"]
                assert prior is ServiceStatus.RECONNECTING and any(type(e) is Reconnected for e in revived)
                outcomes.add("expired first")
            else:  # the beat came first: nothing expired
                assert prior is ServiceStatus.RUNNING and revived == []
                outcomes.add("beat first")
            assert reg.sweep("me", timeout, 30.0, 10, onset=LATER).attempts == []  # no attempt left behind
        # Both orders are legal; which ones occurred is up to the scheduler.
        assert outcomes
    finally:
        reg.clear()
        reg.client.close()


def test_a_heartbeat_racing_unregister_never_resurrects_the_service(redis_server, namespace):
    reg = RedisRegistry.from_url(redis_server.url, namespace=namespace)
    try:
        for i in range(30):
            sid = reg.register(ExtensionService(f"s{i}", "1"))
            reg.activate(sid, TIMEOUT)
            gone, beat = race(lambda sid=sid: reg.finish_stop(sid), lambda sid=sid: reg.beat(sid, TIMEOUT))
            assert not isinstance(gone, Exception)
            assert beat[0] in (ServiceStatus.RUNNING, None)
            assert sid not in reg and reg.get(sid) is None
            assert traces(reg.client, reg.keys, sid) == []
    finally:
        reg.clear()
        reg.client.close()


def test_a_heartbeat_racing_stop_service_in_another_manager_is_refused_or_lands_before(make, events):
    a, b = make(), make()
    for i in range(10):
        sid = a.start_service(ExtensionService(f"s{i}", "1"))
        _, beat = race(lambda sid=sid: b.stop_service(sid), lambda sid=sid: a.handle_heartbeat(sid))
        assert beat is None or isinstance(beat, (ServiceNotFound, InvalidState))
        assert a.get_status(sid) is None and traces(client_of(a), a.registry.keys, sid) == []
    assert len(events.of(Stopped)) == 10


# -- the server's script cache, keys and secrets ------------------------------------------------------


def test_a_flushed_script_cache_is_reloaded_transparently(make, events):
    a = make()
    leader_of([a])
    sid = a.start_service(ExtensionService("svc", "1"))
    client_of(a).script_flush()
    a.handle_heartbeat(sid)
    assert a.get_status(sid) is ServiceStatus.RUNNING
    client_of(a).script_flush()
    assert events.wait_of(HeartbeatTimeout), "the leader's scripts did not come back after SCRIPT FLUSH"


def test_every_key_of_a_namespace_shares_one_hash_tag(make, namespace):
    a, b = make(), make()
    leader_of([a, b])
    with a.subscribe(fleet=True):
        sid = a.start_service(ExtensionService("svc", "1"))
        b.handle_error(sid, "boom")
        keys = client_of(a).keys("*")
    mine = [k for k in keys if namespace in k]
    assert len(mine) >= 8  # services, status, names, deadlines, attempts, lease, events, ...
    assert all(f"{{{namespace}}}" in k for k in mine)
    assert len({key_slot(k.encode()) for k in mine}) == 1
    prefix = f"lifecycle:{{{namespace}}}:"
    operations = {k for k in mine if k.startswith(prefix + "op:")}  # each state change's own key, for a minute
    assert operations, "no operation key: a re-sent script would run twice"
    assert set(mine) - operations <= set(a.registry.keys.values())


def test_repr_and_errors_never_show_the_password(redis_binary, tmp_path):
    server = servers.RedisServer(redis_binary, tmp_path / "redis", password=PASSWORD).start()
    try:
        for url in (server.url, server.url.replace("redis://:", "redis://default:")):
            reg = RedisRegistry.from_url(url, namespace="secret", socket_timeout=1.0, socket_connect_timeout=1.0)
            assert reg.count() == 0  # the password works
            assert PASSWORD not in repr(reg)
            assert PASSWORD not in repr(LifecycleManager(reg, CONFIG, autostart=False))
            reg.client.close()
        wrong = RedisRegistry.from_url(server.url.replace(PASSWORD, PASSWORD + "-wrong"), namespace="secret")
        with pytest.raises(RegistryRefused) as caught:  # a wrong password is a refusal, not an outage
            wrong.count()
        assert caught.value.reason == "auth"
        shown = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
        assert PASSWORD not in shown
        assert caught.value.host == "127.0.0.1" and caught.value.port == server.port
    finally:
        server.stop()
    reg = RedisRegistry.from_url(server.url, namespace="secret", socket_timeout=1.0, socket_connect_timeout=1.0)
    with pytest.raises(RegistryUnavailable) as caught:
        reg.heartbeat("x")
    assert f"127.0.0.1:{server.port}" in str(caught.value)
    assert PASSWORD not in "".join(traceback.format_exception(caught.value)) + repr(caught.value)


# -- outages -----------------------------------------------------------------------------------------


class LogWaiter(logging.Handler):
    """Sets an event when the library logs a message containing `text`."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = threading.Event()
        self.at = 0.0  # time.monotonic() when first seen

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage() and not self.seen.is_set():
            self.at = time.monotonic()
            self.seen.set()


@pytest.fixture
def log_waiter() -> Iterator[Callable[[str], LogWaiter]]:
    handlers: list[LogWaiter] = []

    def add(text: str) -> LogWaiter:
        handlers.append(LogWaiter(text))
        logging.getLogger("lifecycle").addHandler(handlers[-1])
        return handlers[-1]

    yield add
    for handler in handlers:
        logging.getLogger("lifecycle").removeHandler(handler)


@pytest.fixture
def secret_server(redis_binary: str, tmp_path: Path) -> Iterator[servers.RedisServer]:
    """A server of the test's own with a password and append-only persistence."""
    server = servers.RedisServer(redis_binary, tmp_path / "redis", appendonly=True, password=PASSWORD).start()
    yield server
    server.stop()


def test_a_server_outage_raises_typed_errors_and_times_nothing_out_for_it(make, secret_server, events, caplog,
                                                                          log_waiter):
    caplog.set_level(logging.INFO, logger="lifecycle")
    timeout = 0.6
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=timeout, reconnect_delay_ms=20,
                             max_reconnect_delay_ms=50, max_reconnect_attempts=1, jitter=0.0)
    down, back = log_waiter("keeps trying"), log_waiter("reachable again")
    a = make(url=secret_server.url, config=config)
    leader_of([a])
    silent = a.start_service(ExtensionService("silent", "1"))
    busy = a.start_service(ExtensionService("busy", "1"))
    refused: list[RegistryUnavailable] = []
    stop = threading.Event()

    def beat() -> None:  # a client that keeps beating through the outage
        while not stop.wait(0.05):
            try:
                a.handle_heartbeat(busy)
            except RegistryUnavailable as exc:
                refused.append(exc)

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        secret_server.stop()
        assert down.seen.wait(WAIT), "the watchdog did not notice the outage"
        with pytest.raises(RegistryUnavailable) as caught:
            a.get_status(busy)
        assert f"127.0.0.1:{secret_server.port}" in str(caught.value) and PASSWORD not in str(caught.value)
        # Longer than the heartbeat timeout and shorter than the lease: every deadline passes
        # while nobody can beat.
        time.sleep(timeout + 0.3)
        secret_server.start()
        assert back.seen.wait(WAIT), "the watchdog did not notice the server came back"
        assert a.registry.count() == 2  # AOF: no registration lost
        assert events.wait_of(HeartbeatTimeout), "the really silent service was never timed out"
        timed_out = time.monotonic()
    finally:
        stop.set()
        beater.join(WAIT)
    assert refused and all(PASSWORD not in str(e) for e in refused)
    assert [e.service_id for _, e in events.of(HeartbeatTimeout)] == [silent]  # not busy
    # The silent service got a full timeout counted from the watchdog's recovery, not from its
    # last beat before the outage (a lower bound: load only delays).
    assert timed_out - back.at >= timeout - 0.05
    errors = [r for r in caplog.records if "keeps trying" in r.getMessage()]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR  # once per outage, not per call or retry
    assert PASSWORD not in caplog.text


def test_a_manager_built_while_the_server_is_down_recovers_without_a_restart(make, redis_binary, tmp_path,
                                                                            log_waiter):
    server = servers.RedisServer(redis_binary, tmp_path / "redis")
    down, back = log_waiter("keeps trying"), log_waiter("reachable again")
    try:
        a = make(url=server.url)
        assert down.seen.wait(WAIT)
        with pytest.raises(RegistryUnavailable):
            a.start_service(ExtensionService("svc", "1"))
        assert not a.is_leader
        server.start()
        assert back.seen.wait(WAIT)
        leader_of([a])
        sid = a.start_service(ExtensionService("svc", "1"))
        a.handle_heartbeat(sid)
        assert a.get_status(sid) is ServiceStatus.RUNNING and a.registry.count() == 1
    finally:
        server.stop()


def test_an_emptied_server_gets_each_process_services_registered_again(make, events, log_waiter):
    config = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=5.0)  # outlasts a renewal
    a, b = make(config=config), make(config=config)
    restored = log_waiter("registered again")
    leader_of([a, b])
    one = a.start_service(ExtensionService("one", "1"))
    two = b.start_service(ExtensionService("two", "1"))
    client_of(a).flushall()
    assert restored.seen.wait(WAIT)
    eventually(lambda: one in a.registry and two in a.registry, what="both services back")
    for sid, name in ((one, "one"), (two, "two")):
        service = a.registry.get(sid)
        assert service.name == name and service.status is ServiceStatus.RUNNING
        assert a.registry.silence(sid)[1] < 5.0  # a full timeout from now
    a.handle_heartbeat(one)
    b.handle_heartbeat(two)


def test_a_loss_before_a_process_first_ticks_is_noticed_by_that_process(make, log_waiter):
    """A process registers, the server is emptied, and only then comes its first tick (late on a loaded host)."""
    a = make(autostart=False)
    restored = log_waiter("registered again")
    sid = a.start_service(ExtensionService("early", "1"))
    assert a.registry.leader() is None  # learning the generation sought no lease: leadership stays with the ticks
    client_of(a).flushall()
    assert sid not in a.registry
    a.run_pending()
    assert restored.seen.wait(WAIT)
    assert a.registry.get(sid).name == "early"


# -- clocks -------------------------------------------------------------------------------------------


def test_the_host_clock_plays_no_part_in_deadlines(redis_server, namespace):
    """Host time frozen, thrown years ahead and back: silence and expiry follow the server's clock.

    freezegun replaces this process's time.time/monotonic/datetime: exactly what a host with a
    skewed or jumping clock would feed the library. It cannot touch the server, which is the
    point: had any deadline been computed from host time, the jumps below would time the service
    out at once, and the frozen clock would never let it time out. (It says nothing about a skewed
    server clock; there is only one server.)
    """
    freezegun = pytest.importorskip("freezegun")
    with freezegun.freeze_time("2001-01-01") as frozen:
        reg = RedisRegistry.from_url(redis_server.url, namespace=namespace, lease_ttl_secs=TTL)
        a = LifecycleManager(reg, CONFIG, autostart=False)
        try:
            a.run_pending()
            assert a.is_leader
            sid = a.start_service(ExtensionService("svc", "1"))
            for when in ("2040-06-01", "1990-01-01", "2001-01-01 00:00:10"):
                frozen.move_to(when)
                assert a.is_healthy(sid) and a.health_check() == []
                assert reg.silence(sid)[1] < TIMEOUT
            # Real time passes on the server while the host clock stands still: the silence counts.
            eventually(lambda: reg.silence(sid)[1] >= TIMEOUT, what="real silence")
            assert not a.is_healthy(sid)
            assert a.health_check() == [sid]
        finally:
            a.shutdown()
            reg.clear()
            reg.client.close()


def test_the_fleet_log_reader_survives_an_error_it_does_not_expect(make, events, log_waiter):
    a, b = make(), make()
    failed = log_waiter("fleet event log")
    with a.subscribe(fleet=True) as log:
        key = a.registry.keys["events"]
        client_of(a).set(key, "not a stream")  # every read now fails with WRONGTYPE
        assert failed.seen.wait(WAIT)
        client_of(a).delete(key)
        sid = b.start_service(ExtensionService("svc", "1"))
        event = log.get(timeout=WAIT)
    assert (event.signal_name, event.service_id) == ("service_started", sid)


def test_the_leader_runs_each_attempt_when_its_backoff_is_due_not_at_its_next_lease_renewal(make, events):
    """Backoff delays of 20-50 ms are kept; the leader's lease renewals (every 10 s here) set no pace."""
    connector = Counting(fail_from=2)
    a = make(connector=connector, ttl=30.0)
    leader_of([a])
    a.start_service(ExtensionService("silent", "1"))
    # Deadline 0.4 s, then three attempts 20-50 ms apart: seconds at most, far from one renewal (10 s).
    assert events.wait_of(ReconnectFailed, timeout=5.0), "attempts waited for the lease renewals"
    assert [e.attempt for _, e in events.of(Reconnecting)] == [1, 2, 3]


class Pinging(Counting):
    """A connector whose ping succeeds (a successful ping counts as a heartbeat)."""

    def __init__(self) -> None:
        super().__init__()
        self.pings = 0

    def ping(self, service: ExtensionService) -> None:
        self.pings += 1


def test_pings_keep_a_service_alive_again_after_it_was_reconnected(make, events):
    # The attempt comes 0.3 s after the error: pings fall due while the service is not RUNNING.
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=1.0, reconnect_delay_ms=300,
                             max_reconnect_delay_ms=300, max_reconnect_attempts=3, jitter=0.0)
    connector = Pinging()
    a = make(config=config)
    leader_of([a])
    sid = a.start_service(ExtensionService("pinged", "1"), connector=connector)
    eventually(lambda: connector.pings >= 2, what="pings")
    a.handle_error(sid, "a blip")
    assert events.wait_of(Reconnected)
    # Its pings are its only heartbeats: had they stopped, it would time out within a timeout.
    assert not events.wait_of(HeartbeatTimeout, timeout=3 * config.heartbeat_timeout_secs)
    assert a.get_status(sid) is ServiceStatus.RUNNING


def test_the_leader_pings_a_service_it_reconnected_once_its_starter_is_gone(make, events):
    """Pings come from the process holding the connection: the starter, then the leader that reconnected it."""
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=0.6, reconnect_delay_ms=50,
                             max_reconnect_delay_ms=50, max_reconnect_attempts=3, jitter=0.0)
    held = Pinging()
    b = make(config=config, connector=held)
    leader_of([b])
    a = make(config=config, connector=Pinging())
    sid = a.start_service(ExtensionService("adopted", "1"))
    a.shutdown()  # the starter and its pings are gone; the service stays registered in the fleet
    assert events.wait_of(Reconnected), "the leader never reconnected the silent service"
    assert held.calls == [sid]
    eventually(lambda: held.pings >= 3, what="the leader's pings")
    # Pings are now its only heartbeats: without them it would time out again within a timeout.
    assert not events.wait_of(HeartbeatTimeout, n=2, timeout=4 * config.heartbeat_timeout_secs)
    assert b.get_status(sid) is ServiceStatus.RUNNING


def test_a_reconnected_service_gets_the_managers_timeout_not_the_registrys(make, events):
    """The registry's own `heartbeat_timeout_secs` (60 s by default) is not the fleet's deadline."""
    a = make(connector=Counting())
    assert a.registry.heartbeat_timeout_secs == 60.0 != TIMEOUT
    leader_of([a])
    a.start_service(ExtensionService("silent", "1"))
    # Silent throughout: timed out, reconnected, and timed out again one (0.4 s) timeout later.
    assert events.wait_of(HeartbeatTimeout, 2, timeout=WAIT), "the deadline after the reconnect was not 0.4 s"
    assert [type(e) for _, e in events.rows if type(e) in (HeartbeatTimeout, Reconnected)][:3] == [
        HeartbeatTimeout, Reconnected, HeartbeatTimeout]


def test_a_reconnect_sequence_survives_the_leaders_shutdown_without_repeating_attempts(make, events):
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=TIMEOUT, reconnect_delay_ms=100,
                             max_reconnect_delay_ms=100, max_reconnect_attempts=4, jitter=0.0)
    connector = Counting(fail_from=2)
    managers = [make(connector=connector, config=config) for _ in range(2)]
    leader = leader_of(managers)
    sid = leader.start_service(ExtensionService("silent", "1"))
    assert events.wait_for(lambda rows: any(type(e) is Reconnecting and e.attempt == 2 for _, e in rows))
    leader.shutdown()  # mid-sequence: releases the lease
    other = next(m for m in managers if m is not leader)
    assert events.wait_of(ReconnectFailed), "the new leader did not finish the sequence"
    other.shutdown()
    assert [e.attempt for _, e in events.of(Reconnecting)] == [1, 2, 3, 4]
    assert len(events.of(HeartbeatTimeout)) == 1
    assert events.senders(ReconnectFailed) == {other}
    assert other.registry.get(sid).status is ServiceStatus.ERROR


def test_services_beaten_through_random_managers_never_time_out(make, events):
    """Every beat lands in one manager or another; no manager ever declares a false timeout."""
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=1.5)
    managers = [make(config=config) for _ in range(3)]
    leader_of(managers)
    ids = [managers[i % 3].start_service(ExtensionService(f"s{i}", "1")) for i in range(20)]
    stop = threading.Event()
    beats = [0]

    def beat() -> None:
        n = 0
        while not stop.wait(0.1):
            for sid in ids:
                managers[n % 3].handle_heartbeat(sid)
                n += 1
        beats[0] = n

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        # Two timeouts' worth of beating; a false timeout would show up in that time.
        assert not events.wait_of(HeartbeatTimeout, timeout=2 * config.heartbeat_timeout_secs)
    finally:
        stop.set()
        beater.join(WAIT)
    assert beats[0] >= len(ids)
    assert all(m.get_status(sid) is ServiceStatus.RUNNING for m in managers for sid in ids)


# -- lost replies: redis-py retries a command whose reply was lost, so every script runs twice --------


@pytest.fixture
def dropper(redis_server: servers.RedisServer) -> Iterator[servers.ReplyDropper]:
    proxy = servers.ReplyDropper(redis_server.port)
    yield proxy
    proxy.close()


def lossy(registry: RedisRegistry, dropper: servers.ReplyDropper, call: Callable[[], Any]) -> Any:
    """`call()` with its reply lost once (the script ran; redis-py retried it)."""
    dropper.armed.set()
    try:
        return call()
    finally:
        assert dropper.dropped == 1 and not dropper.armed.is_set()
        dropper.dropped = 0


@pytest.fixture
def lossy_registry(dropper: servers.ReplyDropper, namespace: str) -> Iterator[RedisRegistry]:
    reg = RedisRegistry.from_url(dropper.url(), namespace=namespace, heartbeat_timeout_secs=TIMEOUT)
    # Every script loaded and cached first, so that the reply dropped is the script's own.
    warm = reg.register(ExtensionService("warm-up", "1"))
    reg.update_status(warm, ServiceStatus.RUNNING, expected=ServiceStatus.RUNNING)
    reg.activate(warm, TIMEOUT)
    reg.begin_stop(warm)
    reg.finish_stop(warm)
    reg.lease("me", 30.0)
    reg.sweep("me", TIMEOUT, 30.0, 10, onset=RETRY_AT_ONCE)
    yield reg
    reg.clear()
    reg.client.close()


def test_a_lost_register_reply_is_harmless(lossy_registry, dropper):
    reg = lossy_registry
    service = ExtensionService("svc", "1")
    assert lossy(reg, dropper, lambda: reg.register(service)) == service.id
    assert reg.count() == 1


def test_a_lost_join_reply_still_registers_rather_than_joins(lossy_registry, dropper):
    reg = lossy_registry
    service = ExtensionService("svc", "1")
    assert lossy(reg, dropper, lambda: reg.join(service)) == (service.id, False)


def test_a_lost_activate_reply_still_reports_the_start(lossy_registry, dropper):
    reg = lossy_registry
    sid = reg.register(ExtensionService("svc", "1"))
    events = lossy(reg, dropper, lambda: reg.activate(sid, TIMEOUT))
    assert [e.signal_name for e in events][:1] == ["service_started"]
    assert reg.get(sid).status is ServiceStatus.RUNNING


def test_a_lost_compare_and_set_reply_still_says_it_won(lossy_registry, dropper):
    reg = lossy_registry
    sid = reg.register(ExtensionService("svc", "1"))
    found = lossy(reg, dropper, lambda: reg.update_status(sid, ServiceStatus.RUNNING, expected=ServiceStatus.STARTING))
    assert found is ServiceStatus.STARTING and reg.get(sid).status is ServiceStatus.RUNNING


def test_a_lost_begin_stop_reply_still_lets_the_caller_finish_the_stop(lossy_registry, dropper):
    reg = lossy_registry
    sid = reg.register(ExtensionService("svc", "1"))
    reg.activate(sid, TIMEOUT)
    prior, _ = lossy(reg, dropper, lambda: reg.begin_stop(sid))
    assert prior is ServiceStatus.RUNNING  # so the caller goes on to finish the stop


def test_a_lost_sweep_reply_loses_no_claimed_attempt(lossy_registry, dropper):
    reg = lossy_registry
    sid = reg.register(ExtensionService("svc", "1"))
    reg.activate(sid, TIMEOUT)
    reg.report_error(sid, "boom", Plan("retry", 1, 0.0, 3))
    sweep = lossy(reg, dropper, lambda: reg.sweep("me", TIMEOUT, 30.0, 10, onset=RETRY_AT_ONCE))
    assert sweep.attempts == [(sid, 1)]


def test_a_lost_reply_of_a_sweep_that_timed_services_out_still_says_each_timeout_once(lossy_registry, dropper):
    reg = lossy_registry
    sids = [reg.register(ExtensionService(f"svc{i}", "1")) for i in range(3)]
    for sid in sids:
        reg.activate(sid, 0.05)
    onset = Onset(True, 3, 5.0, 5.0, seed=7)
    eventually(lambda: (reg.timing(sids[-1]).silent or 0.0) > 0.2, what="the deadlines passed")
    sweep = lossy(reg, dropper, lambda: reg.sweep("me", TIMEOUT, 30.0, 10, onset=onset))
    assert sorted(sweep.due) == sorted(sids)
    timeouts = [e.service_id for e in sweep.events if e.signal_name == "heartbeat_timeout"]
    assert sorted(timeouts) == sorted(sids)  # the retry got the first run's reply, events and all
    plans = [e for e in sweep.events if isinstance(e, Reconnecting)]
    assert [(e.attempt, e.max_attempts, e.delay) for e in plans] == [(1, 3, 5.0)] * 3
    logged = [e.signal_name for _, e in reg.read_events("0-0", count=1000) if e.service_id in sids]
    assert logged.count("heartbeat_timeout") == 3  # the script ran once
    assert all(reg.get(sid).status is ServiceStatus.RECONNECTING for sid in sids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_is_a_new_member_of_the_fleet(make):
    """After a fork (gunicorn's workers) the child has its own owner token and connections, and follows."""
    a = make()
    leader = leader_of([a])
    sid = a.start_service(ExtensionService("svc", "1"))
    parent_owner = leader._engine.ticker.owner
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running any of the parent's cleanup
        code = 1
        try:
            a.handle_heartbeat(sid)
            eventually(lambda: a.registry.silence(sid) is not None, what="a reply")
            report = {"owner": a._engine.ticker.owner, "leader": a.is_leader, "status": str(a.get_status(sid)),
                      "holder": client_of(a).get(lease_key(a))}
            os.write(write, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = json.loads(pipe.read() or "{}")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert report["owner"] != parent_owner and report["leader"] is False
    assert report["holder"] == parent_owner and report["status"] == "running"
    a.handle_heartbeat(sid)  # the parent's connections were not disturbed by the child's
    assert a.is_leader


def test_pings_resume_after_an_outage_and_are_not_logged_per_ping(make, fresh_redis_server, events, caplog,
                                                                   log_waiter):
    caplog.set_level(logging.INFO, logger="lifecycle")
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=1.0, jitter=0.0)
    connector = Pinging()
    down, back = log_waiter("keeps trying"), log_waiter("reachable again")
    a = make(url=fresh_redis_server.url, config=config)
    leader_of([a])
    sid = a.start_service(ExtensionService("pinged", "1"), connector=connector)
    fresh_redis_server.stop()
    assert down.seen.wait(WAIT)
    time.sleep(0.5)  # several ping intervals fall due while the server is down
    fresh_redis_server.start()
    assert back.seen.wait(WAIT)
    # Its pings are its only heartbeats: had they stopped for good, it would time out within a second.
    assert not events.wait_of(HeartbeatTimeout, timeout=3 * config.heartbeat_timeout_secs)
    assert a.get_status(sid) is ServiceStatus.RUNNING
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING and "keeps trying" not in r.getMessage()
             and "reachable again" not in r.getMessage() and "fresh full timeout" not in r.getMessage()]
    assert len(noisy) <= 1, [r.getMessage() for r in noisy]


def _a_reconnect_held_open(make: _Make) -> tuple[LifecycleManager, LifecycleManager, str, Counting, threading.Event]:
    """Two managers; the leader's reconnect attempt of a fresh service is held in `connect` until `release`."""
    release = threading.Event()
    connecting = threading.Event()

    def block(n: int) -> None:
        if n == 2:  # the reconnect attempt (call 1 was the start)
            connecting.set()
            release.wait(WAIT)

    connector = Counting(on_call=block)
    a, b = make(), make()
    leader = leader_of([a, b])
    other = b if leader is a else a
    sid = leader.start_service(ExtensionService("svc", "1"), connector=connector)
    leader.handle_error(sid, "boom")
    assert connecting.wait(WAIT)
    return leader, other, sid, connector, release


def test_a_connection_made_after_another_manager_stopped_the_service_is_closed(make, events):
    _leader, other, sid, connector, release = _a_reconnect_held_open(make)
    other.stop_service(sid)
    release.set()
    eventually(lambda: connector.disconnects == [sid], what="the late connection to be closed")
    assert events.of(Reconnected) == []


def test_a_connection_made_after_a_heartbeat_revived_the_service_is_kept(make, events):
    leader, other, sid, connector, release = _a_reconnect_held_open(make)
    other.handle_heartbeat(sid)  # the service is back on its own
    release.set()
    eventually(lambda: len(connector.calls) == 2, what="the attempt to return")
    assert leader.get_status(sid) is ServiceStatus.RUNNING
    leader.shutdown()  # waits for the pool: a disconnect of the late connection would have happened
    assert connector.disconnects == []
    assert len(events.of(Reconnected)) == 1  # the heartbeat's revival, not the attempt


def test_a_restarts_events_reach_receivers_before_the_attempt_it_made_due_runs():
    """A restart sets attempt 1 due at once, then its caller sends the restart's events; the leader's sweep,
    woken by those events in the log, may claim the attempt meanwhile. It waits for the caller: a receiver
    that holds the restart's first event up for a while sees nothing of the attempt overtake the rest."""
    from lifecycle.shared_memory import SharedMemoryRegistry

    store = SharedMemoryRegistry(lease_ttl_secs=TTL)
    manager = LifecycleManager(store, CONFIG, connector=lambda service: None)
    seen: list[tuple[str, ...]] = []
    cond = threading.Condition()
    held = threading.Event()

    def receiver(sender: object, *, event: LifecycleEvent, **_: object) -> None:
        with cond:
            seen.append((event.signal_name, *(str(v) for k, v in event.signal_kwargs().items()
                                              if k in ("old_status", "new_status"))))
            cond.notify_all()
            if seen[-1] == ("status_changed", "running", "reconnecting") and not held.is_set():
                held.set()  # the restart's first event: long enough for the log, the sweep and the attempt to go by
                cond.wait_for(lambda: any(name == "reconnected" for name, *_ in seen), 0.8)

    connection = connect(receiver, sender=manager)
    try:
        end = time.monotonic() + WAIT
        while not manager.is_leader:
            assert time.monotonic() < end, "the manager never led"
            time.sleep(0.01)  # the lease is taken on the watchdog thread: nothing to wait on here
        sid = manager.start_service(ExtensionService("restarted", "1"))
        manager.restart_service(sid)
        with cond:
            assert cond.wait_for(lambda: any(name == "reconnected" for name, *_ in seen), WAIT)
            after = seen[[name for name, *_ in seen].index("service_started"):]
        assert after == [("service_started",), ("status_changed", "starting", "running"),
                         ("status_changed", "running", "reconnecting"), ("reconnecting",),
                         ("status_changed", "reconnecting", "running"), ("reconnected",)]
    finally:
        connection.disconnect()
        manager.shutdown()


def test_an_attempt_held_for_a_callers_events_that_fails_to_start_is_logged_not_raised_to_that_caller(caplog):
    """The caller's restart went through; the attempt it made due failing to start is not its error."""
    from lifecycle.engine.announce import Announcements

    def run(id: str, attempt: int) -> None:
        raise RegistryUnavailable("the registry is gone for a moment")

    announce = Announcements(run)
    with caplog.at_level(logging.ERROR, logger="lifecycle"), announce.announcing("svc"):
        assert announce.hold("svc", 1)
    assert "starting held attempt 1 of svc failed" in caplog.text
    assert not announce.hold("svc", 2)  # the window is closed: nothing is held any more
