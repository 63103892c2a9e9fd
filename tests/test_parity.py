"""Parity: the same supervision scenarios, with the same expectations, on every store.

Each test runs once per store of `parity_support.STORES`: the in-memory registry, and a
`RedisRegistry` on a fresh namespace of each real server found (redis, valkey). Shared stores
get two managers on the namespace: the services are started, beaten and reported to through
the one that is *not* the leader (unless a test says otherwise), while the leader times out and
reconnects; the events of both managers together must be the in-memory manager's, each exactly
once. To run the suite on one more store, add one line to `parity_support.STORES`.

A scenario that fails on some stores only is a parity bug: it keeps its expectations and is
marked `xfail_on(<those stores>, reason=...)` (strict), so fixing the bug turns it into a failure
until the mark goes.

Real threads and real time (a server's clock cannot be frozen): sub-second timeouts, tiny
backoffs, jitter 0, and waits on events with generous deadlines. Where the test must see that
nothing happens, it waits a bounded quiet period that wakes on any event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
from parity_support import (
    STARTED,
    WAIT,
    Connector,
    StoreKind,
    Supervision,
    eventually,
    service,
    status,
    store_params,
)

from lifecycle import InvalidState, LifecycleConfig, ServiceNotFound, ServiceStatus
from lifecycle.events import Reconnecting

pytestmark = pytest.mark.threaded

S = ServiceStatus
TIMEOUT = 0.4
FAST = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=TIMEOUT, max_reconnect_attempts=3,
                       reconnect_delay_ms=20, max_reconnect_delay_ms=50, jitter=0.0)
"""Timeouts within half a second, retries within tens of milliseconds."""

SLOW_RETRY = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=TIMEOUT, max_reconnect_attempts=3,
                             reconnect_delay_ms=2000, max_reconnect_delay_ms=2000, jitter=0.0)
"""Attempt 1 is due 2 s after a cycle begins: a heartbeat sent meanwhile revives the service."""

log = logging.getLogger("parity")  # measured latencies, in the captured log of each test

LATE = 2.0  # how late past its deadline a timeout may be detected on a loaded machine (a bound, not a wait)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test taking `store` runs on each of STORES (xfail_on marks applied per store)."""
    if "store" in metafunc.fixturenames:
        metafunc.parametrize("store", store_params(metafunc.function), indirect=True)


@pytest.fixture
def store(request: pytest.FixtureRequest) -> StoreKind:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def sup(store: StoreKind, request: pytest.FixtureRequest) -> Iterator[Supervision]:
    opened = store.open(request)
    harness = Supervision(opened)
    try:
        yield harness
    finally:
        harness.close()


def timeout_cycle(attempts: int) -> list[tuple[object, ...]]:
    """What a deadline miss gives without a connector: timeout, RECONNECTING, every attempt, ERROR, failed.

    With no attempt allowed there is no RECONNECTING: straight from RUNNING to ERROR.
    """
    if attempts == 0:
        return [("heartbeat_timeout",), status("running", "error"), ("reconnect_failed", 0)]
    return [("heartbeat_timeout",), status("running", "reconnecting"),
            *[("reconnecting", k, attempts) for k in range(1, attempts + 1)],
            status("reconnecting", "error"), ("reconnect_failed", attempts)]


# -- 1. a silent service ------------------------------------------------------------------------


def test_a_silent_service_times_out_once_and_gives_up_after_max_attempts(sup):
    sup.start(FAST)
    m = sup.follower
    started = time.monotonic()
    sid = m.start_service(service("silent"))
    expected = STARTED + timeout_cycle(3)
    ev = sup.events
    timed_out = ev.wait_event(sid, ("heartbeat_timeout",))
    ev.wait_event(sid, ("reconnect_failed", 3))
    log.info("%s: timeout detected %.3f s after the start (timeout %.1f s)", sup.store.name,
             timed_out.received - started, TIMEOUT)
    assert TIMEOUT * 0.9 <= timed_out.received - started <= TIMEOUT + LATE
    assert ev.sequence(sid) == expected
    assert [e.delay for e in ev.of(Reconnecting)] == pytest.approx([0.02, 0.04, 0.05])
    for manager in sup.each():
        assert manager.get_status(sid) is S.ERROR
        assert manager.attempts(sid) == 3
        assert manager.restarts(sid) == 0  # no max_restarts: nothing counted
        assert not manager.is_healthy(sid)
    assert ev.quiet(sid, 2 * TIMEOUT) == []  # ERROR has no deadline: nothing more, no second timeout
    m.handle_heartbeat(sid)  # a heartbeat still brings it back
    assert ev.sequence(sid) == [*expected, status("error", "running"), ("reconnected",), ("heartbeat_received",)]
    assert m.get_status(sid) is S.RUNNING and m.attempts(sid) == 0 and m.is_healthy(sid)


def test_a_connector_that_succeeds_on_attempt_2_brings_the_silent_service_back(sup):
    connector = Connector(fail={2})  # call 1 is the start, 2 attempt 1 (refused), 3 attempt 2
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=0.6, max_reconnect_attempts=3,
                             reconnect_delay_ms=20, max_reconnect_delay_ms=50, jitter=0.0)
    sup.start(config, connector=connector)
    m = sup.follower
    sid = m.start_service(service("flaky"))
    ev = sup.events
    ev.wait_event(sid, ("reconnected",))
    m.handle_heartbeat(sid)  # at once: keeps it RUNNING while we look (its next deadline is 0.6 s away)
    assert ev.sequence(sid) == [*STARTED, ("heartbeat_timeout",), status("running", "reconnecting"),
                                ("reconnecting", 1, 3), ("reconnecting", 2, 3), status("reconnecting", "running"),
                                ("reconnected",), ("heartbeat_received",)]
    assert connector.calls == ["flaky"] * 3
    for manager in sup.each():
        assert manager.get_status(sid) is S.RUNNING
        assert manager.attempts(sid) == 0
        assert manager.is_healthy(sid)


# -- 2. an error reported on a RUNNING service ---------------------------------------------------


def test_an_error_on_a_running_service_starts_reconnecting_and_a_heartbeat_revives_it(sup):
    sup.start(SLOW_RETRY)
    m = sup.follower
    sid = m.start_service(service("erring"))
    ev = sup.events
    m.handle_error(sid, "broken pipe")
    # All of it emitted by the call itself, before it returns.
    after_error = [*STARTED, ("error", "broken pipe"), status("running", "error"), status("error", "reconnecting"),
                   ("reconnecting", 1, 3)]
    assert ev.sequence(sid) == after_error
    delays = [e.delay for e in ev.of(Reconnecting)]
    assert delays == [2.0]
    for manager in sup.each():
        assert manager.get_status(sid) is S.RECONNECTING
        assert manager.attempts(sid) == 1
        assert not manager.is_healthy(sid)
    m.handle_heartbeat(sid)
    assert ev.sequence(sid) == [*after_error, status("reconnecting", "running"), ("reconnected",),
                                ("heartbeat_received",)]
    for manager in sup.each():
        assert manager.get_status(sid) is S.RUNNING
        assert manager.attempts(sid) == 0
        assert manager.is_healthy(sid)


def test_an_error_on_a_reconnecting_service_only_emits(sup):
    sup.start(SLOW_RETRY)
    m = sup.follower
    sid = m.start_service(service("erring"))
    m.handle_error(sid, "first")
    m.handle_error(sid, "second")
    assert sup.events.sequence(sid) == [*STARTED, ("error", "first"), status("running", "error"),
                                        status("error", "reconnecting"), ("reconnecting", 1, 3), ("error", "second")]
    assert m.get_status(sid) is S.RECONNECTING and m.attempts(sid) == 1


def by(manager: object, seen: list[tuple[object, tuple[object, ...]]]) -> list[tuple[object, ...]]:
    """The events of `seen` that `manager` emitted, in its order (two processes' emits have no common order)."""
    return [event for sender, event in seen if sender is manager]


def by_others(manager: object, seen: list[tuple[object, tuple[object, ...]]]) -> list[tuple[object, ...]]:
    """The events of `seen` that any manager but `manager` emitted (all of them in memory: one manager)."""
    return [event for sender, event in seen if sender is not manager]


# -- 3. restart intensity --------------------------------------------------------------------------


def test_the_second_cycle_within_the_window_is_flapping_and_restart_service_starts_afresh(sup):
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=TIMEOUT, max_reconnect_attempts=3,
                             reconnect_delay_ms=2000, max_reconnect_delay_ms=2000, jitter=0.0,
                             max_restarts=1, restart_window_secs=60)
    connector = Connector()
    sup.start(config, connector=connector)
    m = sup.follower
    sid = m.start_service(service("flappy"))
    ev = sup.events
    # Cycle 1: a deadline miss, revived by a heartbeat before attempt 1 is due (2 s later).
    ev.wait_event(sid, ("reconnecting", 1, 3))
    assert m.restarts(sid) == 1
    m.handle_heartbeat(sid)
    cycle1 = [*STARTED, ("heartbeat_timeout",), status("running", "reconnecting"), ("reconnecting", 1, 3),
              status("reconnecting", "running"), ("reconnected",), ("heartbeat_received",)]
    assert ev.sequence(sid) == cycle1
    # Cycle 2 within the window: over max_restarts, so ERROR and service_flapping, no reconnecting.
    ev.wait_event(sid, ("flapping", 2, 60.0))
    flapped = [*cycle1, ("heartbeat_timeout",), status("running", "error"), ("flapping", 2, 60.0)]
    assert ev.sequence(sid) == flapped
    assert ev.quiet(sid, 2 * TIMEOUT) == []  # no attempt is ever scheduled
    for manager in sup.each():
        assert manager.get_status(sid) is S.ERROR
        assert manager.restarts(sid) == 2
        assert manager.attempts(sid) == 0
    # A flapping service is not reconnected by an error report either: it only emits.
    m.handle_error(sid, "still broken")
    flapped.append(("error", "still broken"))
    assert ev.sequence(sid) == flapped
    assert m.get_status(sid) is S.ERROR and m.restarts(sid) == 2
    calls = len(connector.calls)
    # restart_service: RECONNECTING and attempt 1 at once (a connector: no delay), a fresh window.
    asked = time.monotonic()
    m.restart_service(sid)
    restarted = [*flapped, status("error", "reconnecting"), ("reconnecting", 1, 3)]
    # The restart's events are m's; attempt 1 is the leader's and may already be under way.
    assert by(m, ev.sequence_of(sid)[len(flapped):])[:2] == restarted[len(flapped):]
    assert [e.delay for e in ev.of(Reconnecting)][-1] == 0.0
    for manager in sup.each():
        assert manager.get_status(sid) in (S.RECONNECTING, S.RUNNING)  # attempt 1 may have run already
        assert manager.restarts(sid) == 0
    back = ev.wait_event(sid, ("reconnected",), n=2)
    log.info("%s: restart_service to reconnected: %.3f s", sup.store.name, back.received - asked)
    assert back.received - asked <= LATE
    assert len(connector.calls) == calls + 1
    # The window counts again from zero: the next deadline miss is restart 1, allowed.
    ev.wait_event(sid, ("heartbeat_timeout",), n=3)
    ev.wait_event(sid, ("reconnecting", 1, 3), n=3)
    after = ev.sequence_of(sid)[len(flapped):]
    assert by(m, after) + by_others(m, after) == [*restarted[len(flapped):], status("reconnecting", "running"),
                                                  ("reconnected",), ("heartbeat_timeout",),
                                                  status("running", "reconnecting"), ("reconnecting", 1, 3)]
    for manager in sup.each():
        assert manager.restarts(sid) == 1
        assert manager.get_status(sid) is S.RECONNECTING
    m.stop_service(sid)


def test_error_reports_count_as_restarts_which_leave_the_window_as_it_passes(sup):
    window = 1.0
    sup.start(LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=3.0, max_reconnect_attempts=3,
                              reconnect_delay_ms=2000, max_reconnect_delay_ms=2000, jitter=0.0,
                              max_restarts=1, restart_window_secs=window))
    m = sup.follower
    sid = m.start_service(service("erratic"))
    ev = sup.events
    first = time.monotonic()
    m.handle_error(sid, "one")
    m.handle_heartbeat(sid)
    cycle = [("error", "one"), status("running", "error"), status("error", "reconnecting"), ("reconnecting", 1, 3),
             status("reconnecting", "running"), ("reconnected",), ("heartbeat_received",)]
    assert ev.sequence(sid) == [*STARTED, *cycle]
    assert [manager.restarts(sid) for manager in sup.each()] == [1] * len(sup.managers)
    # The restart leaves the window `window` seconds after it was counted (on the store's clock).
    eventually(lambda: m.restarts(sid) == 0, "the restart leaving the window", poll=0.02)
    left = time.monotonic() - first
    log.info("%s: a restart left the %.1f s window after %.3f s", sup.store.name, window, left)
    assert window * 0.9 <= left <= window + LATE
    # So the next error is restart 1 again: reconnecting, not flapping.
    m.handle_error(sid, "two")
    m.handle_heartbeat(sid)
    assert ev.sequence(sid) == [*STARTED, *cycle, *[("error", "two") if e == ("error", "one") else e for e in cycle]]
    # And one more within the window is restart 2: flapping, ERROR, nothing scheduled.
    m.handle_error(sid, "three")
    flapping = [("error", "three"), status("running", "error"), ("flapping", 2, window)]
    assert ev.sequence(sid)[-3:] == flapping
    for manager in sup.each():
        assert manager.get_status(sid) is S.ERROR and manager.restarts(sid) == 2 and manager.attempts(sid) == 0
    # A heartbeat still brings a flapping service back.
    m.handle_heartbeat(sid)
    assert ev.sequence(sid)[-6:] == [*flapping, status("error", "running"), ("reconnected",), ("heartbeat_received",)]
    assert m.get_status(sid) is S.RUNNING


def test_restart_service_without_a_connector_waits_the_first_delay_for_a_heartbeat(sup):
    sup.start(SLOW_RETRY)
    m = sup.follower
    sid = m.start_service(service("plain"))
    m.restart_service(sid)
    restarted = [*STARTED, status("running", "reconnecting"), ("reconnecting", 1, 3)]
    assert sup.events.sequence(sid) == restarted
    assert [e.delay for e in sup.events.of(Reconnecting)] == [2.0]
    for manager in sup.each():
        assert manager.get_status(sid) is S.RECONNECTING and manager.attempts(sid) == 1
    m.handle_heartbeat(sid)
    assert sup.events.sequence(sid) == [*restarted, status("reconnecting", "running"), ("reconnected",),
                                        ("heartbeat_received",)]
    with pytest.raises(ServiceNotFound):
        m.restart_service("no-such-service")


# -- 4. per-service timing -----------------------------------------------------------------------


def test_each_service_keeps_its_own_timeout_and_attempt_limit(sup):
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=3.0, max_reconnect_attempts=3,
                             reconnect_delay_ms=20, max_reconnect_delay_ms=50, jitter=0.0)
    sup.start(config)
    m = sup.follower
    started = time.monotonic()
    short = m.start_service(service("short", heartbeat_timeout_secs=0.4, max_reconnect_attempts=1))
    long = m.start_service(service("long", heartbeat_timeout_secs=1.6, max_reconnect_attempts=2))
    ev = sup.events
    short_out = ev.wait_event(short, ("heartbeat_timeout",))
    log.info("%s: 0.4 s service timed out after %.3f s", sup.store.name, short_out.received - started)
    assert 0.4 * 0.9 <= short_out.received - started <= 0.4 + LATE
    # The longer one is still healthy and has had no event since its start.
    assert ev.sequence(long) == STARTED
    for manager in sup.each():
        assert manager.is_healthy(long) and manager.get_status(long) is S.RUNNING
    ev.wait_event(short, ("reconnect_failed", 1))
    assert ev.sequence(short) == STARTED + timeout_cycle(1)
    long_out = ev.wait_event(long, ("heartbeat_timeout",))
    log.info("%s: 1.6 s service timed out after %.3f s", sup.store.name, long_out.received - started)
    assert 1.6 * 0.9 <= long_out.received - started <= 1.6 + LATE
    ev.wait_event(long, ("reconnect_failed", 2))
    assert ev.sequence(long) == STARTED + timeout_cycle(2)
    assert ev.sequence(short) == STARTED + timeout_cycle(1)
    for manager in sup.each():
        assert manager.get_status(short) is S.ERROR and manager.attempts(short) == 1
        assert manager.get_status(long) is S.ERROR and manager.attempts(long) == 2


PROMPT = 0.35  # how late past its deadline a timeout may be detected here (memory: ~1 ms)


def test_a_services_own_shorter_timeout_is_detected_at_its_deadline(sup):
    sup.start(LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=3.0, max_reconnect_attempts=1,
                              reconnect_delay_ms=20, max_reconnect_delay_ms=50, jitter=0.0))
    m = sup.follower
    started = time.monotonic()
    sid = m.start_service(service("short", heartbeat_timeout_secs=0.3))
    out = sup.events.wait_event(sid, ("heartbeat_timeout",))
    lag = out.received - started
    log.info("%s: a 0.3 s service (config 3 s) timed out %.3f s after its start", sup.store.name, lag)
    assert 0.3 * 0.9 <= lag <= 0.3 + PROMPT


def test_phi_detects_a_fresh_silent_service_at_its_phi_deadline(sup):
    sup.start(LifecycleConfig(heartbeat_interval_secs=0.05, heartbeat_timeout_secs=3.0, max_reconnect_attempts=1,
                              reconnect_delay_ms=20, max_reconnect_delay_ms=50, jitter=0.0, detector="phi",
                              phi_min_std_deviation_secs=0.05, phi_acceptable_pause_secs=0.0))
    m = sup.follower
    started = time.monotonic()
    sid = m.start_service(service("fresh"))
    out = sup.events.wait_event(sid, ("heartbeat_timeout",))
    lag = out.received - started
    log.info("%s: a fresh silent phi service (due ~0.31 s) timed out %.3f s after its start", sup.store.name, lag)
    assert 0.25 <= lag <= 0.31 + PROMPT


def test_restart_service_on_the_acting_manager_reconnects_at_once(sup):
    sup.start(SLOW_RETRY, connector=Connector())
    sid = sup.follower.start_service(service("restarted"))
    m = sup.leader_of(sid)  # on a follower it waits for the event log to reach the leader (docs/fleet.md, Limits)
    asked = time.monotonic()
    m.restart_service(sid)
    back = sup.events.wait_event(sid, ("reconnected",))
    log.info("%s: restart_service on the leader to reconnected: %.3f s", sup.store.name, back.received - asked)
    assert back.received - asked <= PROMPT
    assert sup.events.sequence(sid) == [*STARTED, status("running", "reconnecting"), ("reconnecting", 1, 3),
                                        status("reconnecting", "running"), ("reconnected",)]


def test_no_auto_reconnect_and_zero_attempts_per_service(sup):
    sup.start(FAST)
    m = sup.follower
    manual = m.start_service(service("manual", auto_reconnect=False))
    hopeless = m.start_service(service("hopeless", max_reconnect_attempts=0))
    reported = m.start_service(service("reported", auto_reconnect=False))
    m.handle_error(reported, "gone")
    ev = sup.events
    assert ev.sequence(reported) == [*STARTED, ("error", "gone"), status("running", "error")]
    ev.wait_event(manual, ("heartbeat_timeout",))
    ev.wait_event(hopeless, ("reconnect_failed", 0))
    assert ev.quiet(manual, 2 * TIMEOUT) == []
    # Without auto-reconnect: the timeout and ERROR, no reconnecting and no reconnect_failed.
    assert ev.sequence(manual) == [*STARTED, ("heartbeat_timeout",), status("running", "error")]
    # No attempt allowed: straight to ERROR and reconnect_failed(attempts=0).
    assert ev.sequence(hopeless) == STARTED + timeout_cycle(0)
    for manager in sup.each():
        for sid in (manual, hopeless, reported):
            assert manager.get_status(sid) is S.ERROR and manager.attempts(sid) == 0


class Pinging(Connector):
    def __init__(self) -> None:
        super().__init__()
        self.pings: dict[str, int] = {}

    def ping(self, svc) -> None:
        with self._lock:
            self.pings[svc.name] = self.pings.get(svc.name, 0) + 1


def test_each_service_is_pinged_at_its_own_interval(sup):
    config = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=3.0, jitter=0.0)
    pinger = Pinging()
    sup.start(config, connector=pinger)
    m = sup.follower
    started = time.monotonic()
    # A 1 s timeout is ten pings: one ping thread starved for a few hundred ms on a loaded machine is no miss.
    often = m.start_service(service("often", ping_interval_secs=0.1, heartbeat_timeout_secs=1.0))
    usual = m.start_service(service("usual"))
    ev = sup.events
    # Pinged every 0.1 s, "often" outlives its 1 s timeout (shorter than "usual"'s 3 s) twice over.
    ev.wait_event(often, ("heartbeat_received",), n=22)
    elapsed = time.monotonic() - started
    assert ev.sequence(often, beats=False) == STARTED
    for manager in sup.each():
        assert manager.is_healthy(often) and manager.is_healthy(usual)
    assert pinger.pings["often"] >= 22
    assert pinger.pings.get("usual", 0) <= elapsed + 1  # one a second
    assert ev.sequence(usual, beats=False) == STARTED


# -- 5. the phi detector ---------------------------------------------------------------------------


def test_phi_detects_silence_long_before_the_fixed_timeout_and_grows_while_silent(sup):
    config = LifecycleConfig(heartbeat_interval_secs=0.05, heartbeat_timeout_secs=3.0, max_reconnect_attempts=1,
                             reconnect_delay_ms=20, max_reconnect_delay_ms=50, jitter=0.0, detector="phi",
                             phi_min_std_deviation_secs=0.1, phi_acceptable_pause_secs=0.0)
    sup.start(config)
    m = sup.follower
    sid = m.start_service(service("steady"))
    ev = sup.events
    stop = threading.Event()
    last = [time.monotonic()]

    def beat() -> None:
        while not stop.wait(0.05):
            m.handle_heartbeat(sid)
            last[0] = time.monotonic()

    beater = threading.Thread(target=beat, name="parity-beater", daemon=True)
    beater.start()
    try:
        ev.wait_event(sid, ("heartbeat_received",), n=20)
        for manager in sup.each():
            assert manager.is_healthy(sid)
            assert 0.0 <= manager.phi(sid) < config.phi_threshold
    finally:
        stop.set()
        beater.join(WAIT)
    silent_from = last[0]
    eventually(lambda: m.phi(sid) >= 1.0, "phi rising above 1", timeout=3.0, poll=0.005)
    samples = [m.phi(sid)]
    out = None
    while out is None and time.monotonic() - silent_from < 3.0:
        time.sleep(0.05)  # sampling phi as silence goes on
        samples.append(m.phi(sid))
        out = next((s for s in ev.of_service(sid) if s.event.signal_name == "heartbeat_timeout"), None)
    out = out or ev.wait_event(sid, ("heartbeat_timeout",))
    detected = out.received - silent_from
    log.info("%s: phi detected silence after %.3f s; phi samples %s", sup.store.name, detected,
             [round(x, 2) for x in samples])
    assert detected < 1.2, f"phi detected silence after {detected:.2f} s (fixed timeout 3 s)"
    rising = samples[:-1] if samples and samples[-1] == 0.0 else samples  # a reset once timed out
    assert rising == sorted(rising) and rising[-1] > rising[0], f"phi while silent: {samples}"
    ev.wait_event(sid, ("reconnect_failed", 1))
    assert ev.sequence(sid, beats=False) == STARTED + timeout_cycle(1)


def test_phi_is_zero_with_the_fixed_detector(sup):
    sup.start(SLOW_RETRY)
    m = sup.follower
    sid = m.start_service(service("fixed"))
    m.handle_heartbeat(sid)
    for manager in sup.each():
        assert manager.phi(sid) == 0.0


def test_a_starting_service_is_starting_everywhere_and_refuses_errors_and_restarts(sup):
    entered, release = threading.Event(), threading.Event()

    class Slow(Connector):
        def connect(self, svc) -> None:
            super().connect(svc)
            entered.set()
            assert release.wait(WAIT)

    sup.start(SLOW_RETRY)
    m = sup.follower
    svc = service("starting")
    starter = threading.Thread(target=m.start_service, args=(svc,), kwargs={"connector": Slow()},
                               name="parity-starter")
    starter.start()
    try:
        assert entered.wait(WAIT)
        for manager in sup.each():
            assert manager.get_status(svc.id) is S.STARTING
            assert not manager.is_healthy(svc.id)
            with pytest.raises(InvalidState):
                manager.handle_error(svc.id, "early")
            with pytest.raises(InvalidState):
                manager.restart_service(svc.id)
        m.handle_heartbeat(svc.id)  # accepted; the status stays STARTING
        assert m.get_status(svc.id) is S.STARTING
    finally:
        release.set()
        starter.join(WAIT)
    assert sup.events.sequence(svc.id) == [("heartbeat_received",), *STARTED]
    for manager in sup.each():
        assert manager.get_status(svc.id) is S.RUNNING and manager.is_healthy(svc.id)


# -- 6. stopping ---------------------------------------------------------------------------------


def test_a_stopped_service_is_stopped_once_then_silent_and_refuses_reports(sup):
    sup.start(FAST)
    m = sup.follower
    sid = m.start_service(service("leaving"))
    m.handle_heartbeat(sid)
    m.stop_service(sid)
    stopped = [*STARTED, ("heartbeat_received",), status("running", "stopping"), status("stopping", "stopped"),
               ("service_stopped",)]
    ev = sup.events
    assert ev.sequence(sid) == stopped
    assert ev.quiet(sid, 2 * TIMEOUT) == []  # its deadline is gone with it
    for manager in sup.each():
        with pytest.raises(ServiceNotFound):
            manager.handle_heartbeat(sid)
        with pytest.raises(ServiceNotFound):
            manager.handle_error(sid, "late")
        with pytest.raises(ServiceNotFound):
            manager.stop_service(sid)
        with pytest.raises(ServiceNotFound):
            manager.restart_service(sid)
        assert manager.get_status(sid) is None
        assert not manager.is_healthy(sid)
        assert manager.attempts(sid) == 0 and manager.restarts(sid) == 0 and manager.phi(sid) == 0.0
    assert ev.sequence(sid) == stopped


def test_stopping_a_reconnecting_service_cancels_its_attempts(sup):
    sup.start(LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=TIMEOUT, max_reconnect_attempts=3,
                              reconnect_delay_ms=300, max_reconnect_delay_ms=300, jitter=0.0))
    m = sup.follower
    sid = m.start_service(service("leaving"))
    ev = sup.events
    ev.wait_event(sid, ("reconnecting", 1, 3))
    sup.leader_of(sid).stop_service(sid)
    expected = [*STARTED, ("heartbeat_timeout",), status("running", "reconnecting"), ("reconnecting", 1, 3),
                status("reconnecting", "stopping"), status("stopping", "stopped"), ("service_stopped",)]
    assert ev.sequence(sid) == expected
    assert ev.quiet(sid, 1.0) == []  # attempt 1 (0.3 s) and any later one never run
    with pytest.raises(ServiceNotFound):
        m.handle_heartbeat(sid)


def test_a_service_being_stopped_refuses_reports_with_invalid_state(sup):
    entered, release = threading.Event(), threading.Event()

    class Slow(Connector):
        def disconnect(self, svc) -> None:
            entered.set()
            assert release.wait(WAIT)

    sup.start(SLOW_RETRY, connector=Slow())
    m = sup.follower
    sid = m.start_service(service("slow"))
    stopper = threading.Thread(target=m.stop_service, args=(sid,), name="parity-stopper")
    stopper.start()
    try:
        assert entered.wait(WAIT)
        for manager in sup.each():
            assert manager.get_status(sid) is S.STOPPING
            with pytest.raises(InvalidState):
                manager.handle_heartbeat(sid)
            with pytest.raises(InvalidState):
                manager.handle_error(sid, "late")
            with pytest.raises(InvalidState):
                manager.restart_service(sid)
            manager.stop_service(sid)  # already stopping: returns at once
    finally:
        release.set()
        stopper.join(WAIT)
    assert sup.events.sequence(sid) == [*STARTED, status("running", "stopping"), status("stopping", "stopped"),
                                        ("service_stopped",)]
