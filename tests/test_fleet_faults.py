"""Fleet mode under server faults: whatever the server refuses for a while, nothing stops watching.

Each scenario runs two or three threaded managers on one namespace of a real server of the
test's own (its configuration, users and process are what the scenario breaks), puts a fault in
place for a few seconds, lifts it, and then asks the same two things: a silent service times out
exactly once in the fleet, and exactly one manager leads. Faults: the server out of memory
(`maxmemory 1`, noeviction), the managers' user losing EVAL/EVALSHA, the script cache flushed,
the server SIGKILLed during a reconnect attempt and restarted; and the tick's own guard against
an exception it does not know.

Calls made through the managers during a fault may be refused with a `LifecycleError`; the
scenarios record which were refused and which leaked a raw redis exception (none may), and
`test_public_calls_raise_only_lifecycle_errors_while_the_server_refuses` holds every public call
to it: out of memory is `RegistryUnavailable` ("out_of_memory"), EVAL revoked `RegistryRefused`
("permission"); tests/test_redis_errors.py covers the other faults.

Waits are for events, log records or polled conditions with deadlines; the only fixed sleeps
keep a fault in place for its span.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis_server as servers
import test_fleet as fleet

from lifecycle import (
    ExtensionService,
    LifecycleConfig,
    LifecycleError,
    LifecycleManager,
    RegistryRefused,
    RegistryUnavailable,
    ServiceStatus,
    TransportConfig,
)
from lifecycle.events import HeartbeatTimeout, Reconnected, ReconnectFailed, Reconnecting
from lifecycle.fleet import Lease, Onset, Sweep
from lifecycle.redis import RedisRegistry

pytestmark = pytest.mark.threaded

# The fixtures and helpers of the fleet tests, reused (fixtures are found by name in this module).
events = fleet.events
log_waiter = fleet.log_waiter
eventually = fleet.eventually
leader_of = fleet.leader_of
WAIT = fleet.WAIT

TIMEOUT = 0.4
ATTEMPTS = 2
CONFIG = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=TIMEOUT, reconnect_delay_ms=20,
                         max_reconnect_delay_ms=50, max_reconnect_attempts=ATTEMPTS, jitter=0.0)
BACKOFF = 0.05  # the longest delay before a next attempt (max_reconnect_delay_ms)
TTL = 1.5  # short, so that a lease left behind by a fault runs out within the test
CONNECT_TIMEOUT = 1.0  # the services' transport.timeout_secs: what bounds one reconnect attempt
SLACK = 0.5  # scheduling on a loaded two-core machine, on top of any bound computed from the settings
USER, USER_PASSWORD = "fleet-member", "pw-Xk3-never-printed"


def service(name: str) -> ExtensionService:
    return ExtensionService(name, "1", transport=TransportConfig(timeout_secs=CONNECT_TIMEOUT))


# -- servers, managers and their traffic ----------------------------------------------------------


@pytest.fixture
def server(redis_binary: str, tmp_path: Path) -> Iterator[servers.RedisServer]:
    """A server of the test's own: the faults change its configuration and users, or kill it."""
    own = servers.RedisServer(redis_binary, tmp_path / "redis").start()
    yield own
    own.stop()


@pytest.fixture
def admin(server: servers.RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=5.0)
    yield client
    client.close()


_Make = Callable[..., LifecycleManager]


@pytest.fixture
def make_on(namespace: str) -> Iterator[_Make]:
    """`make_on(url, registry=RedisRegistry, ttl=TTL, config=CONFIG, **manager_kwargs)`: a threaded manager."""
    made: list[LifecycleManager] = []

    def build(url: str, *, registry: type[RedisRegistry] = RedisRegistry, ttl: float = TTL,
              config: LifecycleConfig = CONFIG, **kwargs: Any) -> LifecycleManager:
        reg = registry.from_url(url, namespace=namespace, lease_ttl_secs=ttl, socket_timeout=1.0,
                                socket_connect_timeout=1.0)
        manager = LifecycleManager(reg, config, **kwargs)
        made.append(manager)
        return manager

    yield build
    for manager in made:
        manager.shutdown()
    for manager in made:
        with contextlib.suppress(LifecycleError, redis.RedisError):  # the test's own server may be gone
            manager.registry.clear()
        manager.registry.client.close()  # type: ignore[attr-defined]


class Connector:
    """Shared by every manager: a service's first connect (its start) succeeds, a later one (an attempt) fails.

    `hold(name)` makes the next attempt for that service block until `release(ok)`; from a
    release with ok=True on, the service's attempts succeed. `calls` keeps (service name,
    time.monotonic()) of every connect.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []
        self.disconnects: list[str] = []
        self._lock = threading.Lock()
        self._started: set[str] = set()
        self._held: dict[str, tuple[threading.Event, threading.Event]] = {}
        self._reachable: set[str] = set()

    def connect(self, svc: ExtensionService) -> None:
        with self._lock:
            self.calls.append((svc.name, time.monotonic()))
            if svc.id not in self._started:
                self._started.add(svc.id)
                return
            held = self._held.pop(svc.name, None)
        if held is not None:
            entered, released = held
            entered.set()
            assert released.wait(WAIT), "the held attempt was never released"
        with self._lock:
            if svc.name in self._reachable:
                return
        raise ConnectionError(f"{svc.name}: refused")

    def disconnect(self, svc: ExtensionService) -> None:
        self.disconnects.append(svc.name)

    def hold(self, name: str) -> tuple[threading.Event, Callable[[bool], None]]:
        """Hold the next attempt of `name`: (set when it is running, release(ok))."""
        entered, released = threading.Event(), threading.Event()

        def release(succeed: bool) -> None:
            if succeed:
                with self._lock:
                    self._reachable.add(name)
            released.set()

        with self._lock:
            self._held[name] = (entered, released)
        return entered, release

    def calls_of(self, name: str, after: float = 0.0) -> list[float]:
        with self._lock:
            return [t for n, t in self.calls if n == name and t > after]


class Traffic:
    """A client thread beating `busy` (and `silent`, until `silence()`) through every manager in turn.

    Each call's exception, if any, is counted by (call, exception type): a `LifecycleError` is
    the library's word for a refused call; anything else is a raw exception that leaked.
    """

    def __init__(self, managers: list[LifecycleManager], busy: str, silent: str) -> None:
        self.managers = managers
        self.busy, self.silent = busy, silent
        self.quiet = threading.Event()
        self.halt = threading.Event()
        self.beats = 0
        self.refused: Counter[tuple[str, str]] = Counter()
        self.reasons: Counter[str] = Counter()  # the `reason` of each refusal
        self.leaked: Counter[tuple[str, str]] = Counter()
        self._thread = threading.Thread(target=self._run, name="test-traffic")

    def __enter__(self) -> Traffic:
        self._thread.start()
        eventually(lambda: self.beats >= 2 * len(self.managers), what="the first beats")
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self._thread.join(WAIT)

    def silence(self) -> None:
        self.quiet.set()

    def _call(self, name: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except LifecycleError as exc:
            self.refused[name, type(exc).__name__] += 1
            self.reasons[str(getattr(exc, "reason", ""))] += 1
        except Exception as exc:
            self.leaked[name, f"{type(exc).__module__}.{type(exc).__name__}"] += 1

    def _run(self) -> None:
        n = 0
        while not self.halt.wait(0.05):
            m = self.managers[n % len(self.managers)]
            n += 1
            self._call("handle_heartbeat", lambda m=m: m.handle_heartbeat(self.busy))
            if not self.quiet.is_set():
                self._call("handle_heartbeat", lambda m=m: m.handle_heartbeat(self.silent))
            self._call("get_status", lambda m=m: m.get_status(self.busy))
            self._call("is_healthy", lambda m=m: m.is_healthy(self.busy))
            self._call("count", m.count)
            self.beats += 1


def assert_still_watching(managers: list[LifecycleManager], events: fleet.FleetEvents, silent: str,
                          busy: str | None = None, traffic: Traffic | None = None) -> None:
    """`silent` times out once and its attempts run out; `busy` never times out; exactly one manager leads."""
    assert events.wait_for(lambda rows: any(type(e) is ReconnectFailed and e.service_id == silent for _, e in rows)), (
        "the silent service was never given up on: nobody watched its deadline")
    leader_of(managers)
    if busy is not None:
        assert managers[0].get_status(busy) is ServiceStatus.RUNNING
        managers[0].stop_service(busy)  # before the beats stop, so that it cannot time out either
    if traffic is not None:
        traffic.__exit__()
    for m in managers:
        m.shutdown()  # joins the watchdogs and the pools: a duplicate would be recorded by now
    timeouts = [e.service_id for _, e in events.of(HeartbeatTimeout)]
    assert timeouts == [silent], f"expected one timeout of the silent service, got {timeouts}"
    assert [e.attempt for _, e in events.of(Reconnecting) if e.service_id == silent] == list(range(1, ATTEMPTS + 1))
    assert len([e for _, e in events.of(ReconnectFailed) if e.service_id == silent]) == 1


def start_fleet(make_on: _Make, url: str, n: int, connector: Connector) -> tuple[list[LifecycleManager], str, str]:
    managers = [make_on(url, connector=connector) for _ in range(n)]
    leader_of(managers)
    busy = managers[0].start_service(service("busy"))
    silent = managers[-1].start_service(service("silent"))
    return managers, busy, silent


# -- 1. the server out of memory -------------------------------------------------------------------


def test_a_server_out_of_memory_for_seconds_stops_no_watching(server, admin, make_on, events, caplog,
                                                              record_property):
    caplog.set_level(logging.INFO, logger="lifecycle")
    managers, busy, silent = start_fleet(make_on, server.url, 3, Connector())
    with Traffic(managers, busy, silent) as traffic:
        admin.config_set("maxmemory-policy", "noeviction")
        traffic.silence()
        admin.config_set("maxmemory", "1")
        try:
            time.sleep(3.0)  # the fault's span: every deadline of the silent service passes in it
            assert events.of(HeartbeatTimeout) == [], "a service timed out while the server refused writes"
        finally:
            admin.config_set("maxmemory", "0")
        during = dict(traffic.refused), dict(traffic.leaked)
        assert_still_watching(managers, events, silent, busy, traffic)
    record_property("refused", during[0])
    record_property("leaked", during[1])
    assert not during[1], f"raw exceptions leaked from public calls: {during[1]}"
    tick_errors = [r for r in caplog.records if "the fleet's tick failed" in r.getMessage()]
    record_property("tick_error_records", len(tick_errors))
    print("refused:", during[0], "leaked:", during[1], "tick error records:", len(tick_errors))


# -- 2. the managers' user loses EVAL/EVALSHA ------------------------------------------------------


@pytest.fixture
def member_url(server: servers.RedisServer, admin: redis.Redis) -> str:
    """The URL of a user allowed everything, as the managers connect."""
    admin.execute_command("ACL", "SETUSER", USER, "on", f">{USER_PASSWORD}", "+@all", "~*", "&*")
    return f"redis://{USER}:{USER_PASSWORD}@127.0.0.1:{server.port}/0"


def test_losing_eval_for_seconds_stops_no_watching(server, admin, member_url, make_on, events, caplog,
                                                  record_property):
    caplog.set_level(logging.INFO, logger="lifecycle")
    managers, busy, silent = start_fleet(make_on, member_url, 3, Connector())
    with Traffic(managers, busy, silent) as traffic:
        traffic.silence()
        admin.execute_command("ACL", "SETUSER", USER, "-evalsha", "-eval")
        try:
            time.sleep(2.0)
            assert events.of(HeartbeatTimeout) == [], "a service timed out while no script could run"
        finally:
            admin.execute_command("ACL", "SETUSER", USER, "+evalsha", "+eval")
        during = dict(traffic.refused), dict(traffic.leaked)
        assert_still_watching(managers, events, silent, busy, traffic)
    record_property("refused", during[0])
    record_property("leaked", during[1])
    print("refused:", during[0], "leaked:", during[1])
    assert not during[1], f"raw exceptions leaked from public calls: {during[1]}"
    assert set(during[0]) <= {(call, "RegistryRefused") for call in ("handle_heartbeat", "get_status", "is_healthy")}
    assert USER_PASSWORD not in caplog.text


# -- 3. the script cache flushed mid-run -----------------------------------------------------------


def test_a_script_flush_mid_run_stops_no_watching(server, admin, make_on, events):
    managers, busy, silent = start_fleet(make_on, server.url, 3, Connector())
    with Traffic(managers, busy, silent) as traffic:
        traffic.silence()
        for _ in range(4):  # while the silent service's deadline passes and its attempts run
            admin.script_flush()
            time.sleep(0.15)
        assert not traffic.leaked and not traffic.refused, (traffic.refused, traffic.leaked)
        assert_still_watching(managers, events, silent, busy, traffic)


# -- 4. the server killed during a reconnect attempt -----------------------------------------------


class Killed:
    """The scenario's marks: the held attempt's start, the kill, the restart, and what the fleet did since."""

    def __init__(self, managers: list[LifecycleManager], connector: Connector, victim: str) -> None:
        self.managers, self.connector, self.victim = managers, connector, victim
        self.started = self.killed = self.restarted = 0.0

    def resumed(self, events: fleet.FleetEvents) -> float | None:
        """When the sequence went on after the restart: the attempt run again, or its next event."""
        marks = self.connector.calls_of("victim", after=self.restarted)
        marks += [e.at for _, e in events.rows if type(e) in (Reconnecting, Reconnected, ReconnectFailed)
                  and e.service_id == self.victim and e.at > self.restarted]
        return min(marks) if marks else None


def kill_during_attempt(srv: servers.RedisServer, make_on: _Make, events: fleet.FleetEvents,
                        log_waiter: Callable[[str], fleet.LogWaiter], ok: bool) -> Killed:
    """Two managers; the victim's first attempt is held in `connect` until the server is SIGKILLed, then
    returns (`ok` or not) while the server is down; the server comes back on its port and AOF 0.5 s
    after the kill. Returns once the sequence has resumed."""
    connector = Connector()
    managers = [make_on(srv.url, connector=connector) for _ in range(2)]
    leader_of(managers)
    running, release = connector.hold("victim")
    lost = log_waiter("is lost")
    marks = Killed(managers, connector, managers[0].start_service(service("victim")))
    assert running.wait(WAIT), "the attempt never started"
    marks.started = connector.calls_of("victim")[-1]
    srv.kill()
    marks.killed = time.monotonic()
    release(ok)  # the connect returns with the server down: its outcome cannot be recorded
    assert lost.seen.wait(WAIT), "no word of the attempt's lost outcome"
    time.sleep(max(0.0, marks.killed + 0.5 - time.monotonic()))  # the outage's span
    srv.start()
    marks.restarted = time.monotonic()
    eventually(lambda: marks.resumed(events) is not None, what="the reconnect sequence to resume")
    return marks


@pytest.mark.parametrize("ok", [False, True], ids=["attempt-fails", "attempt-succeeds"])
def test_a_server_killed_during_a_reconnect_attempt_resumes_the_sequence(fresh_redis_server, make_on, events,
                                                                          log_waiter, ok, record_property):
    # fresh_redis_server: append-only, fsync always, so the claim of the attempt survives the kill.
    marks = kill_during_attempt(fresh_redis_server, make_on, events, log_waiter, ok)
    took = marks.resumed(events) - marks.started
    record_property("resumed_after_attempt_start", round(took, 3))
    record_property("resumed_after_restart", round(marks.resumed(events) - marks.restarted, 3))
    managers, victim = marks.managers, marks.victim
    outcome = Reconnected if ok else ReconnectFailed
    assert events.wait_for(lambda rows: any(type(e) is outcome and e.service_id == victim for _, e in rows))
    assert [e.service_id for _, e in events.of(HeartbeatTimeout)][:1] == [victim]
    if not ok:  # attempt 1 was run twice (its outcome was lost), attempt 2 once: still one sequence
        assert [e.attempt for _, e in events.of(Reconnecting) if e.service_id == victim] == [1, 2]
        assert len(marks.connector.calls_of("victim")) == 1 + 2 + 1
    with contextlib.suppress(LifecycleError):  # reconnected, it would go on timing out: silent as it is
        managers[0].stop_service(victim)
    # Afterwards a silent service started now times out once, and one manager leads.
    before = len(events.of(HeartbeatTimeout))
    silent = managers[1].start_service(service("silent"))
    assert events.wait_for(lambda rows: any(type(e) is ReconnectFailed and e.service_id == silent
                                            for _, e in rows)), "the silent service was never given up on"
    leader_of(managers)
    for m in managers:
        m.shutdown()
    assert [e.service_id for _, e in events.of(HeartbeatTimeout)][before:] == [silent]
    # The attempt's transport timeout bounds it from its start (the server is back before that runs
    # out); then comes the next attempt's backoff; then the leader's next tick at the latest.
    bound = max(marks.restarted - marks.started, CONNECT_TIMEOUT) + BACKOFF + TTL / 3
    assert took < bound + SLACK, (
        f"the sequence resumed {took:.2f} s after the attempt began; bound {bound:.2f} s (+{SLACK} s slack)")


# -- the tick survives an exception it does not know --------------------------------------------------


class Flaky(RedisRegistry):
    """A registry whose `lease` or `sweep` raises the exceptions queued in `failures[method]` first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures: dict[str, list[Exception]] = {"lease": [], "sweep": []}
        self.raised = 0
        self._flaky_lock = threading.Lock()

    def _maybe_raise(self, method: str) -> None:
        with self._flaky_lock:
            queue = self.failures[method]
            exc = queue.pop(0) if queue else None
            if exc is not None:
                self.raised += 1
        if exc is not None:
            raise exc

    def lease(self, owner: str, ttl: float) -> Lease:
        self._maybe_raise("lease")
        return super().lease(owner, ttl)

    def sweep(self, owner: str, timeout: float, grace: float, limit: int, *, tick: float | None = None,
              onset: Onset | None = None) -> Sweep | None:
        self._maybe_raise("sweep")
        return super().sweep(owner, timeout, grace, limit, tick=tick, onset=onset)


@pytest.mark.parametrize("method", ["lease", "sweep"])
def test_the_tick_survives_an_exception_it_does_not_know_and_logs_each_cause_once(server, make_on, events,
                                                                                    caplog, method):
    caplog.set_level(logging.INFO, logger="lifecycle")
    a = make_on(server.url, registry=Flaky, connector=Connector())
    reg: Flaky = a.registry  # type: ignore[assignment]
    leader_of([a])
    causes = [RuntimeError("the store exploded")] * 3 + [RuntimeError("the store exploded differently")] * 2
    reg.failures[method].extend(causes)
    eventually(lambda: reg.raised >= 1, what="the first failure")
    silent = a.start_service(service("silent"))  # its deadline passes while the ticks fail
    eventually(lambda: reg.raised == len(causes), what="every failure")
    assert_still_watching([a], events, silent)
    failed = [r for r in caplog.records if "the fleet's tick failed" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.ERROR] * 2, [r.getMessage() for r in failed]
    assert "the store exploded;" in failed[0].getMessage() and "differently" in failed[1].getMessage()
    assert all(r.exc_info is not None for r in failed)
    back = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(back) == 1


# -- companions of 1 and 2: which public calls leak a raw redis exception -------------------------------


_PUBLIC_CALLS: dict[str, Callable[[LifecycleManager, str], object]] = {
    "start_service": lambda m, sid: m.start_service(service("another")),
    "handle_heartbeat": lambda m, sid: m.handle_heartbeat(sid),
    "handle_error": lambda m, sid: m.handle_error(sid, "boom"),
    "get_status": lambda m, sid: m.get_status(sid),
    "is_healthy": lambda m, sid: m.is_healthy(sid),
    "attempts": lambda m, sid: m.attempts(sid),
    "count": lambda m, sid: m.count(),
    "health_check": lambda m, sid: m.health_check(),
    "stop_service": lambda m, sid: m.stop_service(sid),
}


@pytest.mark.parametrize("fault", ["out-of-memory", "no-eval"])
def test_public_calls_raise_only_lifecycle_errors_while_the_server_refuses(server, admin, member_url, make_on,
                                                                           fault):
    a = make_on(member_url, autostart=False, config=LifecycleConfig(heartbeat_timeout_secs=30.0))
    a.run_pending()
    assert a.is_leader
    sid = a.start_service(service("svc"))
    if fault == "out-of-memory":
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", "1")
    else:
        admin.execute_command("ACL", "SETUSER", USER, "-evalsha", "-eval")
    leaked: dict[str, str] = {}
    expected = (RegistryUnavailable, "out_of_memory") if fault == "out-of-memory" else (RegistryRefused, "permission")
    try:
        for name, call in _PUBLIC_CALLS.items():
            try:
                call(a, sid)
            except LifecycleError as exc:
                if (type(exc), getattr(exc, "reason", None)) != expected:
                    leaked[name] = f"{type(exc).__name__}({getattr(exc, 'reason', None)}): {exc}"
            except Exception as exc:
                leaked[name] = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    finally:
        admin.config_set("maxmemory", "0")
        admin.execute_command("ACL", "SETUSER", USER, "+evalsha", "+eval")
    shown = "\n".join(f"{k}: {v}" for k, v in leaked.items())
    assert not leaked, f"raw or misclassified exceptions from public calls:\n{shown}"
