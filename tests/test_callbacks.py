"""User code the manager calls back: receivers and connectors that re-enter, raise, hang or are slow.

Deterministic cases run in manual mode under freezegun (fixtures from conftest.py); the cases
about threads (the watchdog, the connector pool) use real threads with sub-second timeouts and
only bounded waits on Events/Conditions.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import warnings
from typing import Any

import pytest
from helpers import MANUAL, WAIT, new_threads_exit

import lifecycle
from lifecycle import (
    ConnectionFailed,
    ExtensionService,
    LifecycleConfig,
    LifecycleManager,
    ServiceStatus,
    TransportConfig,
)
from lifecycle.testing import EventRecorder

RUNNING = ServiceStatus.RUNNING
ERROR = ServiceStatus.ERROR
RECONNECTING = ServiceStatus.RECONNECTING
STOPPING = ServiceStatus.STOPPING


# Manual mode: whole seconds, no jitter.
CFG = MANUAL

# Real threads: sub-second everything.
FAST = LifecycleConfig(
    heartbeat_interval_secs=0.05,
    heartbeat_timeout_secs=0.2,
    reconnect_delay_ms=20,
    max_reconnect_delay_ms=100,
    max_reconnect_attempts=3,
)


class Boom(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit (like trio.Cancelled)."""


# BaseException subclasses other than KeyboardInterrupt/SystemExit a connector might raise.
ODD_EXCEPTIONS = [
    pytest.param(lambda: Boom("custom BaseException"), id="custom-BaseException"),
    pytest.param(lambda: asyncio.CancelledError(), id="CancelledError"),
    pytest.param(lambda: GeneratorExit(), id="GeneratorExit"),
]


class Counting:
    """A connector: connect succeeds unless `fail_with` is set (a factory of the exception to raise)."""

    def __init__(self) -> None:
        self.connects = 0
        self.disconnects = 0
        self.fail_with: Any = None

    def connect(self, service: ExtensionService) -> None:
        self.connects += 1
        if self.fail_with is not None:
            raise self.fail_with()

    def disconnect(self, service: ExtensionService) -> None:
        self.disconnects += 1


def seen(name: str, sid: str, **fields: Any) -> Any:
    return lambda events: any(
        e.signal_name == name and e.service_id == sid and all(getattr(e, k) == v for k, v in fields.items())
        for e in events
    )


@pytest.fixture
def threaded():
    """A real-thread manager (autostart) with an EventRecorder on all its signals; shut down afterwards."""
    before = set(threading.enumerate())
    m = LifecycleManager(config=FAST)
    waiter = EventRecorder()
    connection = lifecycle.connect(waiter, sender=m)
    yield m, waiter
    connection.disconnect()
    m.shutdown(timeout=WAIT)
    new_threads_exit(before)


# -- receivers calling back into the manager -------------------------------------------------------


def test_receiver_stopping_the_same_service_during_handle_error_cancels_its_reconnect(
        make_manager, record, frozen_lifecycle):
    m = make_manager(CFG)
    rec = record(m)
    conn = Counting()
    sid = m.start_service(ExtensionService("a", "1"), connector=conn)

    def stop_it(sender: LifecycleManager, **kw: Any) -> None:
        sender.stop_service(kw["service_id"])

    with lifecycle.connect(stop_it, "service_error", sender=m):
        m.handle_error(sid, "boom")
    assert m.get_status(sid) is None and m.count() == 0 and m.registry.count() == 0
    assert m.armed_timers() == 0, "the retry scheduled by handle_error must be cancelled by the stop"
    assert rec.names().count("service_stopped") == 1
    connects = conn.connects
    frozen_lifecycle.advance(60, m)
    assert conn.connects == connects, "no reconnect attempt may run for a stopped service"
    assert conn.disconnects == 1


def test_stop_service_from_a_receiver_of_its_own_stopping_returns_at_once(make_manager, record):
    m = make_manager(CFG)
    rec = record(m)
    sid = m.start_service(ExtensionService("a", "1"))
    returned: list[bool] = []

    def again(sender: LifecycleManager, **kw: Any) -> None:
        if kw["new_status"] is STOPPING:
            sender.stop_service(kw["service_id"])  # already STOPPING: returns at once
            returned.append(True)

    with lifecycle.connect(again, "status_changed", sender=m):
        m.stop_service(sid)
    assert returned == [True]
    assert rec.names().count("service_stopped") == 1
    assert m.count() == 0 and m.armed_timers() == 0


def test_receiver_restarting_a_service_by_name_when_it_stopped(make_manager, record):
    m = make_manager(CFG)
    rec = record(m)
    old = m.start_service(ExtensionService("a", "1"))
    fresh: list[str] = []

    def restart(sender: LifecycleManager, **kw: Any) -> None:
        if not fresh:
            fresh.append(sender.start_service(ExtensionService("a", "2")))

    with lifecycle.connect(restart, "service_stopped", sender=m):
        m.stop_service(old)
    assert len(fresh) == 1 and fresh[0] != old
    assert m.get_status(fresh[0]) is RUNNING and m.get_status(old) is None
    assert m.count() == 1 and m.armed_timers() == 1  # the new service's deadline only
    assert rec.names()[-2:] == ["service_started", "status_changed"]


class _Called:
    """A receiver object whose bound method is connected (blinker holds it weakly, by object and function)."""

    def __init__(self, calls: list[int], n: int) -> None:
        self.calls, self.n = calls, n

    def hear(self, sender: object, **kw: Any) -> None:
        self.calls.append(self.n)


def test_receivers_run_in_the_order_they_were_connected(make_manager):
    # blinker keeps receivers in a set of their ids: without an order of our own they ran in the order of
    # their memory addresses, so a receiver connected first (a recorder) could hear an event after one
    # connected later had already reacted to it.
    m = make_manager(CFG)
    calls: list[int] = []
    kept: list[Any] = []
    connections = []
    for n in range(24):
        if n % 3 == 0:
            connections.append(lifecycle.connect(lambda sender, n=n, **kw: calls.append(n), "service_started",
                                                 sender=m))
        elif n % 3 == 1:
            def plain(sender: object, n: int = n, **kw: Any) -> None:
                calls.append(n)
            kept.append(plain)
            lifecycle.signals.service_started.connect(plain)  # weakly, by blinker itself
        else:
            kept.append(_Called(calls, n))
            lifecycle.signals.service_started.connect(kept[-1].hear)
    try:
        m.start_service(ExtensionService("a", "1"))
        assert calls == list(range(24))
        del calls[:]
        connections.pop(0).disconnect()  # receiver 0 goes; the others keep their places
        m.start_service(ExtensionService("b", "1"))
        assert calls == list(range(1, 24))
    finally:
        for connection in connections:
            connection.disconnect()
        for receiver in kept:
            lifecycle.signals.service_started.disconnect(getattr(receiver, "hear", receiver))


def test_receiver_heartbeating_from_reconnecting_revives_and_cancels_the_retry(make_manager, record, frozen_lifecycle):
    m = make_manager(CFG)
    rec = record(m)
    conn = Counting()
    sid = m.start_service(ExtensionService("a", "1"), connector=conn)

    def revive(sender: LifecycleManager, **kw: Any) -> None:
        sender.handle_heartbeat(kw["service_id"])

    with lifecycle.connect(revive, "reconnecting", sender=m):
        m.handle_error(sid, "boom")
    assert m.get_status(sid) is RUNNING
    assert m.attempts(sid) == 0
    assert m.armed_timers() == 1  # the deadline; the retry was cancelled
    assert "reconnected" in rec.names()
    frozen_lifecycle.advance(2, m)  # past every retry that could have been due, before the deadline
    assert conn.connects == 1, "the cancelled retry must not run"
    assert m.get_status(sid) is RUNNING


@pytest.mark.threaded
def test_receiver_may_stop_the_service_from_its_timeout_on_the_watchdog_thread(threaded):
    m, waiter = threaded
    conn = Counting()
    stopped = threading.Event()
    errors: list[BaseException] = []

    def stop_it(sender: LifecycleManager, **kw: Any) -> None:
        try:
            sender.stop_service(kw["service_id"])
        except BaseException as exc:
            errors.append(exc)
        stopped.set()

    with lifecycle.connect(stop_it, "heartbeat_timeout", sender=m):
        sid = m.start_service(ExtensionService("a", "1"), connector=conn)
        assert stopped.wait(WAIT)
    assert errors == []
    assert waiter.wait_for(seen("service_stopped", sid))
    assert m.get_status(sid) is None and m.count() == 0
    assert m.armed_timers() == 0, "the retry the timeout scheduled must be cancelled by the stop"
    assert conn.connects == 1  # no reconnect attempt ran
    assert waiter.names(sid).count("service_stopped") == 1


@pytest.mark.threaded
def test_shutdown_from_a_receiver_on_the_watchdog_thread_returns_and_the_watchdog_exits():
    before = set(threading.enumerate())
    m = LifecycleManager(config=FAST)
    done = threading.Event()
    took: list[float] = []
    errors: list[BaseException] = []

    def shut(sender: LifecycleManager, **kw: Any) -> None:
        began = time.monotonic()
        try:
            sender.shutdown(timeout=2.0)
        except BaseException as exc:
            errors.append(exc)
        took.append(time.monotonic() - began)
        done.set()

    with lifecycle.connect(shut, "heartbeat_timeout", sender=m):
        m.start_service(ExtensionService("a", "1"), connector=Counting())
        m.start_service(ExtensionService("b", "1"))
        assert done.wait(WAIT), "the receiver never ran"
    assert errors == []
    assert took[0] < 3.0
    assert m.closed and m.count() == 0 and m.registry.count() == 0 and m.armed_timers() == 0
    m.shutdown()  # idempotent from another thread too
    new_threads_exit(before)  # the watchdog that ran the receiver exits on its own


# -- receivers that raise ----------------------------------------------------------------------------


def test_raising_receivers_are_logged_and_every_other_receiver_still_gets_every_event(
        make_manager, record, frozen_lifecycle, caplog):
    m = make_manager(CFG)
    rec = record(m)

    def bad(sender: object, **kw: Any) -> None:
        raise RuntimeError(f"receiver bug on {kw['event'].signal_name}")

    with lifecycle.connect(bad, sender=m), caplog.at_level(logging.ERROR, logger="lifecycle"):
        sid = m.start_service(ExtensionService("a", "1"))
        m.handle_heartbeat(sid)
        m.handle_error(sid, "boom")
        for step in (1, 2, 4):  # every retry fails (no connector, no heartbeat): reconnect_failed
            frozen_lifecycle.advance(step, m)
        m.handle_heartbeat(sid)
        m.stop_service(sid)
    names = rec.names()
    assert names == [
        "service_started", "status_changed", "heartbeat_received",
        "service_error", "status_changed", "status_changed", "reconnecting",
        "reconnecting", "reconnecting", "status_changed", "reconnect_failed",
        "status_changed", "reconnected", "heartbeat_received",
        "status_changed", "status_changed", "service_stopped",
    ]
    failures = [r for r in caplog.records if r.name == "lifecycle" and r.exc_info and r.exc_info[0] is RuntimeError]
    assert len(failures) == len(names), "every raising call is logged on the 'lifecycle' logger"
    assert m.count() == 0


@pytest.mark.threaded
def test_a_raising_receiver_on_the_watchdog_thread_does_not_stop_later_deadlines(threaded, caplog):
    m, waiter = threaded

    def bad(sender: object, **kw: Any) -> None:
        raise ValueError("receiver bug")

    with lifecycle.connect(bad, sender=m):
        first = m.start_service(ExtensionService("a", "1"))
        assert waiter.wait_for(seen("reconnect_failed", first))
        second = m.start_service(ExtensionService("b", "1"))
        assert waiter.wait_for(seen("reconnect_failed", second))
    assert waiter.names(second) == [
        "service_started", "status_changed", "heartbeat_timeout", "status_changed",
        "reconnecting", "reconnecting", "reconnecting", "status_changed", "reconnect_failed",
    ]
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)


@pytest.mark.threaded
def test_a_receiver_raising_a_base_exception_on_the_watchdog_thread_does_not_kill_it(threaded):
    m, waiter = threaded

    def odd(sender: object, **kw: Any) -> None:
        raise Boom("from a receiver")

    with lifecycle.connect(odd, "heartbeat_timeout", sender=m):
        first = m.start_service(ExtensionService("a", "1"))
        assert waiter.wait_for(seen("heartbeat_timeout", first))
        second = m.start_service(ExtensionService("b", "1"))
        assert waiter.wait_for(seen("heartbeat_timeout", second)), "the watchdog died"


def test_a_receiver_raising_an_odd_base_exception_is_isolated_like_any_other(make_manager, record):
    m = make_manager(CFG)
    rec = record(m)
    sid = m.start_service(ExtensionService("a", "1"))
    rec.clear()

    def odd(sender: object, **kw: Any) -> None:
        raise Boom("from a receiver")

    with lifecycle.connect(odd, "heartbeat_received", sender=m):
        m.handle_heartbeat(sid)  # must not raise
    assert rec.names() == ["heartbeat_received"]


# -- slow receivers ----------------------------------------------------------------------------------


@pytest.mark.threaded
def test_a_slow_receiver_on_the_watchdog_thread_holds_no_manager_lock(threaded):
    m, waiter = threaded
    entered = threading.Event()
    release = threading.Event()

    def slow(sender: object, **kw: Any) -> None:
        if kw["service_id"] == slow_id:
            entered.set()
            release.wait(WAIT)

    other = m.start_service(ExtensionService("other", "1", transport=TransportConfig(auto_reconnect=False)))
    with lifecycle.connect(slow, "heartbeat_timeout", sender=m):
        slow_id = m.start_service(ExtensionService("slow", "1"))
        try:
            assert entered.wait(WAIT), "the watchdog never reached the slow receiver"
            # The watchdog thread is stuck in the receiver. Every call below takes the manager
            # lock; each completing at once proves the receiver runs with no manager lock held.
            began = time.monotonic()
            m.handle_heartbeat(other)
            assert m.registry.get(other).last_heartbeat >= began
            m.handle_error(other, "report while the watchdog is busy")
            assert m.get_status(other) is ERROR
            m.handle_heartbeat(other)
            assert m.get_status(other) is RUNNING
            extra = m.start_service(ExtensionService("extra", "1"))
            m.stop_service(extra)
            m.health_check()
            assert m.is_healthy(other)
            took = time.monotonic() - began
            # The lock itself (a private detail, checked directly): free while the receiver runs.
            assert m._lock.acquire(timeout=1.0), "the manager lock is held while a receiver runs"
            m._lock.release()
            assert entered.is_set() and not release.is_set()
        finally:
            release.set()
    # Blocked behind the receiver they would wait out its WAIT (5 s); free, they take microseconds.
    assert took < 3.0, f"calls from another thread waited {took:.2f} s for the slow receiver"
    # Released, the watchdog goes on: the slow service's retries proceed to the end.
    assert waiter.wait_for(seen("reconnect_failed", slow_id))


@pytest.mark.threaded
def test_a_slow_receiver_in_a_callers_thread_does_not_delay_the_watchdog(threaded):
    m, waiter = threaded
    entered = threading.Event()
    release = threading.Event()
    beater = m.start_service(ExtensionService("beater", "1"))

    def slow(sender: object, **kw: Any) -> None:
        if kw["service_id"] == beater:
            entered.set()
            release.wait(WAIT)

    with lifecycle.connect(slow, "heartbeat_received", sender=m):
        caller = threading.Thread(target=m.handle_heartbeat, args=(beater,), name="slow-caller", daemon=True)
        caller.start()
        try:
            assert entered.wait(WAIT)
            silent = m.start_service(ExtensionService("silent", "1"))
            started = m.registry.get(silent).last_heartbeat
            assert waiter.wait_for(seen("heartbeat_timeout", silent)), "the watchdog was blocked"
            event = next(e for e in waiter.events if e.signal_name == "heartbeat_timeout" and e.service_id == silent)
            assert event.at - (started + FAST.heartbeat_timeout_secs) < 3.0  # blocked, it would be >= 5 s
            assert not release.is_set()
        finally:
            release.set()
            caller.join(WAIT)
    assert not caller.is_alive()


# -- connectors that hang past their timeout -----------------------------------------------------


class Hanging:
    """connect succeeds at start; on reconnect it hangs until released, then succeeds (too late)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.cond = threading.Condition()
        self.calls = 0
        self.hanging = 0
        self.disconnects = 0

    def connect(self, service: ExtensionService) -> None:
        with self.cond:
            self.calls += 1
            first = self.calls == 1
            if not first:
                self.hanging += 1
                self.cond.notify_all()
        if not first:
            self.release.wait(WAIT)

    def disconnect(self, service: ExtensionService) -> None:
        with self.cond:
            self.disconnects += 1
            self.cond.notify_all()

    def wait_for(self, predicate: Any) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self), WAIT)


@pytest.mark.threaded
def test_connects_hanging_past_their_timeout_count_as_failed_and_late_connections_are_closed(threaded):
    m, waiter = threaded
    hanging = Hanging()
    sid = m.start_service(ExtensionService("a", "1", transport=TransportConfig(timeout_secs=0.1)), connector=hanging)
    try:
        m.handle_error(sid, "lost it")
        # Every attempt hangs; each counts as failed after timeout_secs, then the manager gives up.
        assert waiter.wait_for(seen("reconnect_failed", sid, attempts=3))
        assert m.get_status(sid) is ERROR
        assert [e.attempt for e in waiter.events if e.signal_name == "reconnecting"] == [1, 2, 3]
        assert hanging.hanging == 3 and hanging.disconnects == 0
    finally:
        hanging.release.set()
    # The three late connections succeed after nobody wants them: each is closed via disconnect,
    # and none of them revives the service.
    assert hanging.wait_for(lambda h: h.disconnects == 3)
    assert m.get_status(sid) is ERROR
    assert "reconnected" not in waiter.names(sid)


# -- connectors raising BaseException subclasses -----------------------------------------------


@pytest.mark.parametrize("odd", ODD_EXCEPTIONS)
def test_start_service_wraps_an_odd_base_exception_in_connection_failed(make_manager, record, odd):
    m = make_manager(CFG)
    rec = record(m)
    conn = Counting()
    conn.fail_with = odd
    with pytest.raises(ConnectionFailed, match="'a'") as info:
        m.start_service(ExtensionService("a", "1"), connector=conn)
    assert isinstance(info.value.__cause__, BaseException)
    assert not isinstance(info.value.__cause__, Exception)
    assert m.count() == 0 and m.registry.count() == 0 and m.armed_timers() == 0 and rec.events == []
    conn.fail_with = None
    assert m.get_status(m.start_service(ExtensionService("a", "1"), connector=conn)) is RUNNING


@pytest.mark.threaded
@pytest.mark.parametrize("odd", ODD_EXCEPTIONS)
def test_start_service_wraps_an_odd_base_exception_with_threads_too(odd):
    conn = Counting()
    conn.fail_with = odd
    with LifecycleManager(config=FAST) as m:
        with pytest.raises(ConnectionFailed, match="'a'"):
            m.start_service(ExtensionService("a", "1"), connector=conn)
        assert m.count() == 0 and m.registry.count() == 0 and m.armed_timers() == 0


@pytest.mark.parametrize("odd", ODD_EXCEPTIONS)
def test_a_reconnect_raising_an_odd_base_exception_counts_as_a_failed_attempt(
        make_manager, record, frozen_lifecycle, odd):
    m = make_manager(CFG)
    rec = record(m)
    conn = Counting()
    sid = m.start_service(ExtensionService("a", "1"), connector=conn)
    conn.fail_with = odd
    m.handle_error(sid, "boom")
    frozen_lifecycle.advance(1, m)  # attempt 1 runs inline and raises
    assert m.attempts(sid) == 2 and m.get_status(sid) is RECONNECTING
    frozen_lifecycle.advance(2, m)
    frozen_lifecycle.advance(4, m)
    assert [e.attempt for e in rec.events if e.signal_name == "reconnecting"] == [1, 2, 3]
    assert rec.names()[-1] == "reconnect_failed" and m.get_status(sid) is ERROR
    assert conn.connects == 4
    assert m.armed_timers() == 0  # the deadline found the service not RUNNING and retired


@pytest.mark.threaded
@pytest.mark.parametrize("odd", ODD_EXCEPTIONS)
def test_a_reconnect_raising_an_odd_base_exception_on_a_worker_counts_as_failed(threaded, odd):
    m, waiter = threaded
    conn = Counting()
    sid = m.start_service(ExtensionService("a", "1"), connector=conn)
    conn.fail_with = odd
    m.handle_error(sid, "boom")
    assert waiter.wait_for(seen("reconnect_failed", sid, attempts=3))
    assert conn.connects == 4
    # The pool threads survived: a later reconnect still runs (and now succeeds).
    conn.fail_with = None
    m.handle_error(sid, "again")
    assert waiter.wait_for(seen("reconnected", sid))


# -- KeyboardInterrupt / SystemExit in manual mode ---------------------------------------------


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_from_connect_in_start_service_propagates_and_leaves_nothing(make_manager, record, exc):
    m = make_manager(CFG)
    rec = record(m)
    conn = Counting()
    conn.fail_with = exc
    with pytest.raises(exc):
        m.start_service(ExtensionService("a", "1"), connector=conn)
    assert m.count() == 0 and m.registry.count() == 0 and m.armed_timers() == 0 and rec.events == []
    conn.fail_with = None
    m.start_service(ExtensionService("a", "1"), connector=conn)  # the name is free again


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_from_connect_in_run_pending_propagates_and_the_manager_stays_usable(
        make_manager, record, frozen_lifecycle, exc):
    m = make_manager(CFG)
    record(m)
    conn = Counting()
    sid = m.start_service(ExtensionService("a", "1"), connector=conn)
    other = m.start_service(ExtensionService("b", "1"))  # no connector
    conn.fail_with = exc
    m.handle_error(sid, "boom")
    m.handle_error(other, "boom")  # both retries fall due at the same instant
    frozen_lifecycle.freezer.tick(1)
    with pytest.raises(exc):
        m.run_pending()  # not swallowed, not wrapped: the owner's Ctrl-C reaches the owner
    for s in (sid, other):
        assert m.get_status(s) is m.registry.get(s).status
    # Whatever was still due runs on the next call; nothing was lost from the queue.
    m.run_pending()
    assert m.attempts(other) == 2
    conn.fail_with = None
    m.handle_heartbeat(sid)  # a heartbeat still brings the interrupted service back
    assert m.get_status(sid) is RUNNING
    m.shutdown()
    assert m.armed_timers() == 0 and m.count() == 0


def test_a_reconnect_interrupted_by_keyboard_interrupt_is_counted_and_retried(make_manager, record, frozen_lifecycle):
    m = make_manager(CFG)
    rec = record(m)
    conn = Counting()
    sid = m.start_service(ExtensionService("a", "1"), connector=conn)
    conn.fail_with = KeyboardInterrupt
    m.handle_error(sid, "boom")
    frozen_lifecycle.freezer.tick(1)
    with pytest.raises(KeyboardInterrupt):
        m.run_pending()
    conn.fail_with = None
    frozen_lifecycle.advance(10, m)  # the interrupted attempt counted as failed: attempt 2 follows and succeeds
    assert [e.attempt for e in rec.events if e.signal_name == "reconnecting"] == [1, 2]
    assert m.get_status(sid) is RUNNING


# -- async receivers -------------------------------------------------------------------------------


def test_async_receivers_are_skipped_with_an_error_log_and_others_still_run(make_manager, record, caplog):
    m = make_manager(CFG)
    rec = record(m)
    sid = m.start_service(ExtensionService("a", "1"))
    rec.clear()
    called: list[str] = []

    async def coro_receiver(sender: object, **kw: Any) -> None:
        called.append(kw["service_id"])

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.ERROR, logger="lifecycle"):
        warnings.simplefilter("always")
        with lifecycle.connect(coro_receiver, "heartbeat_received", sender=m):
            m.handle_heartbeat(sid)  # must not raise "Cannot send to a coroutine function"
        gc.collect()
    assert called == []
    assert rec.names() == ["heartbeat_received"]
    assert any(r.levelno == logging.ERROR and "async" in r.getMessage() and r.name == "lifecycle"
               for r in caplog.records)
    assert not [w for w in caught if "never awaited" in str(w.message)], "no coroutine may be left un-awaited"
