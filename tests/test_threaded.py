"""Real threads, real time: the watchdog fires at the deadline and survives what user code does.

Timeouts are sub-second; every wait is on an Event with a generous bound, so a loaded
2-core machine makes these slower, not flaky.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from helpers import WAIT

from lifecycle import (
    ExtensionService,
    LifecycleConfig,
    LifecycleManager,
    ServiceStatus,
    TransportConfig,
    connect,
    signals,
)
from lifecycle.testing import EventRecorder
from lifecycle.watchdog import Watchdog

pytestmark = pytest.mark.threaded


FAST = LifecycleConfig(
    heartbeat_interval_secs=0.05,
    heartbeat_timeout_secs=0.2,
    reconnect_delay_ms=20,
    max_reconnect_delay_ms=100,
    max_reconnect_attempts=3,
)


def named(name: str, sid: str) -> Any:
    return lambda events: any(e.signal_name == name and e.service_id == sid for e in events)


@pytest.fixture
def manager():
    m = LifecycleManager(config=FAST)
    yield m
    m.shutdown()


@pytest.fixture
def waiter(manager, lifecycle_events):
    return lifecycle_events.record(manager)


def test_no_thread_is_started_before_the_first_service():
    before = set(threading.enumerate())
    m = LifecycleManager(config=FAST)
    try:
        assert set(threading.enumerate()) == before
        assert m._watchdog.thread is None
    finally:
        m.shutdown()


def test_manual_mode_starts_no_thread_at_all():
    before = set(threading.enumerate())
    m = LifecycleManager(config=FAST, autostart=False)
    m.start_service(ExtensionService("a", "1"), connector=lambda s: None)
    m.handle_error(m.registry.get_by_name("a").id, "boom")
    assert set(threading.enumerate()) == before
    m.shutdown()


def test_watchdog_fires_the_heartbeat_timeout_at_the_deadline(manager, waiter):
    sid = manager.start_service(ExtensionService("a", "1"))
    started = manager.registry.get(sid).last_heartbeat
    assert waiter.wait_for(named("heartbeat_timeout", sid))
    timeout_event = next(e for e in waiter.events if e.signal_name == "heartbeat_timeout")
    lag = timeout_event.at - (started + FAST.heartbeat_timeout_secs)
    assert lag >= 0
    assert lag < 0.15, f"detected {lag * 1000:.1f} ms after the deadline"


def test_heartbeats_keep_a_service_running_past_many_timeouts(manager, waiter):
    sid = manager.start_service(ExtensionService("a", "1"))
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.02):
            manager.handle_heartbeat(sid)

    beater = threading.Thread(target=beat)
    beater.start()
    try:
        # Another service, never heartbeating, proves the watchdog ran meanwhile.
        other = manager.start_service(ExtensionService("b", "1"))
        assert waiter.wait_for(named("reconnect_failed", other))
    finally:
        stop.set()
        beater.join(WAIT)
    assert not any(e.signal_name == "heartbeat_timeout" and e.service_id == sid for e in waiter.events)
    assert manager.get_status(sid) is ServiceStatus.RUNNING


def test_watchdog_wakes_early_for_a_timer_entered_from_another_thread():
    watchdog = Watchdog()
    fired = threading.Event()
    try:
        watchdog.call_later(30.0, lambda: None)  # the thread now sleeps towards +30 s
        time.sleep(0)  # let it reach its wait; correctness does not depend on this
        entered = time.monotonic()
        watchdog.call_later(0.05, fired.set)
        assert fired.wait(WAIT)
        assert time.monotonic() - entered < 2.0
    finally:
        assert watchdog.stop(WAIT)


def test_watchdog_survives_an_action_that_raises_anything():
    watchdog = Watchdog()
    fired = threading.Event()

    class Weird(BaseException):
        pass

    def explode() -> None:
        raise Weird("from user code")

    try:
        watchdog.call_later(0.01, explode)
        watchdog.call_later(0.01, lambda: 1 / 0)
        watchdog.call_later(0.05, fired.set)
        assert fired.wait(WAIT)
        assert watchdog.thread is not None and watchdog.thread.is_alive()
    finally:
        assert watchdog.stop(WAIT)


def test_watchdog_survives_a_raising_receiver_and_later_deadlines_still_fire(manager, waiter, caplog):
    def bad(sender: object, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.heartbeat_timeout.connect(bad, sender=manager, weak=False)
    try:
        first = manager.start_service(ExtensionService("a", "1"))
        assert waiter.wait_for(named("heartbeat_timeout", first))
        second = manager.start_service(ExtensionService("b", "1"))
        assert waiter.wait_for(named("heartbeat_timeout", second))
        assert waiter.wait_for(named("reconnecting", second))
    finally:
        signals.heartbeat_timeout.disconnect(bad)
    assert any("receiver bug" in r.getMessage() or (r.exc_info and "receiver bug" in str(r.exc_info[1]))
               for r in caplog.records)


class HangingConnector:
    """`connect` succeeds at start, then hangs on reconnect until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0
        self.disconnected = threading.Event()

    def connect(self, service: ExtensionService) -> None:
        self.calls += 1
        if self.calls > 1:
            self.release.wait(WAIT)

    def disconnect(self, service: ExtensionService) -> None:
        self.disconnected.set()


def test_a_hanging_connector_delays_no_other_deadline_and_counts_as_failed(manager, waiter):
    hanging = HangingConnector()
    transport = TransportConfig(timeout_secs=0.15)
    slow = manager.start_service(ExtensionService("slow", "1", transport=transport), connector=hanging)
    try:
        assert waiter.wait_for(lambda ev: any(e.signal_name == "reconnecting" and e.service_id == slow
                                              and e.attempt == 1 for e in ev))
        # While slow's connect hangs on a worker thread, a fresh service still times out on time.
        other = manager.start_service(ExtensionService("other", "1"))
        started = manager.registry.get(other).last_heartbeat
        assert waiter.wait_for(named("heartbeat_timeout", other))
        event = next(e for e in waiter.events if e.signal_name == "heartbeat_timeout" and e.service_id == other)
        # A watchdog blocked by the connect would wait for `release` (set only below): any finite bound tells
        # it apart; 1 s leaves room for a starved thread on a loaded 2-core machine (0.36 s was seen).
        assert event.at - (started + FAST.heartbeat_timeout_secs) < 1.0
        # The hanging attempt is counted as failed after transport.timeout_secs: attempt 2 follows.
        assert waiter.wait_for(lambda ev: any(e.signal_name == "reconnecting" and e.service_id == slow
                                              and e.attempt == 2 for e in ev))
    finally:
        hanging.release.set()
    # The late connection that nobody wants any more is closed through disconnect.
    assert hanging.disconnected.wait(WAIT)


def test_shutdown_joins_the_watchdog_and_workers():
    before = set(threading.enumerate())
    m = LifecycleManager(config=FAST)
    m.start_service(ExtensionService("a", "1"), connector=lambda s: None)
    m.handle_error(m.registry.get_by_name("a").id, "boom")  # a reconnect runs on a worker
    m.shutdown(timeout=WAIT)
    leftover = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert leftover == []


def test_shutdown_returns_within_its_timeout_when_disconnect_hangs():
    release = threading.Event()

    class StuckDisconnect:
        def connect(self, service: ExtensionService) -> None:
            pass

        def disconnect(self, service: ExtensionService) -> None:
            release.wait(WAIT)

    m = LifecycleManager(config=FAST, connector=StuckDisconnect())
    m.start_service(ExtensionService("a", "1", transport=TransportConfig(timeout_secs=10)))
    began = time.monotonic()
    try:
        m.shutdown(timeout=0.3)
        assert time.monotonic() - began < 2.0
        assert m.count() == 0
    finally:
        release.set()


def test_a_receiver_may_call_back_into_the_manager_from_the_watchdog_thread(manager, waiter):
    seen: list[ServiceStatus | None] = []
    done = threading.Event()

    def reenter(sender: LifecycleManager, **kwargs: Any) -> None:
        seen.append(sender.get_status(kwargs["service_id"]))
        sender.handle_heartbeat(kwargs["service_id"])
        done.set()

    signals.heartbeat_timeout.connect(reenter, sender=manager, weak=False)
    try:
        sid = manager.start_service(ExtensionService("a", "1"))
        assert done.wait(WAIT)
        assert waiter.wait_for(named("reconnected", sid))
    finally:
        signals.heartbeat_timeout.disconnect(reenter)
    assert seen and seen[0] is not None


def test_shutdown_does_not_wait_for_a_worker_stuck_in_an_abandoned_connect():
    hanging = HangingConnector()
    m = LifecycleManager(config=FAST, connector=hanging)
    w = EventRecorder()
    connection = connect(w, sender=m)
    try:
        sid = m.start_service(ExtensionService("a", "1", transport=TransportConfig(timeout_secs=0.1)))
        # Attempt 2 is scheduled only once attempt 1 (stuck on a worker) was given up on.
        assert w.wait_for(lambda ev: any(e.signal_name == "reconnecting" and e.service_id == sid
                                         and e.attempt == 2 for e in ev))
        began = time.monotonic()
        m.shutdown(timeout=5.0)
        assert time.monotonic() - began < 2.0
    finally:
        connection.disconnect()
        hanging.release.set()
