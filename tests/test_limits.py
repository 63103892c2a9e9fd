"""Every duration the library accepts works: bigger than one year is refused naming the field.

The property tests draw from the whole float range (NaN, infinities, subnormals, the largest
floats), huge ints and an int subclass. A value is either refused at once with a typed error
naming the field (and nothing is left half-done), or accepted; then the manager, with the
value in use and a long timer armed, still fires a short deadline on its real watchdog thread.
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from helpers import WAIT
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lifecycle import (
    ExtensionService,
    FieldError,
    LifecycleConfig,
    LifecycleManager,
    Subscription,
    TransportConfig,
)
from lifecycle._validate import MAX_DURATION_SECS
from lifecycle.contrib._settings import ConfigurationError, parse_settings
from lifecycle.events import HeartbeatTimeout, LifecycleEvent, ReconnectFailed
from lifecycle.watchdog import Watchdog

pytestmark = pytest.mark.threaded


class Seconds(int):
    """An int subclass, as a units library might hand over."""


_EDGES = [
    0, 0.0, -0.0, 5e-324, sys.float_info.min, 1e-9, 0.5, 1, MAX_DURATION_SECS,
    math.nextafter(MAX_DURATION_SECS, math.inf), 1e10, threading.TIMEOUT_MAX, math.nextafter(threading.TIMEOUT_MAX, 0),
    sys.float_info.max, 2**1024, -(2**1024), True, "1", None,
]

durations = st.one_of(
    st.floats(),  # NaN, +/-inf, subnormals, the largest floats
    st.floats(min_value=0, max_value=MAX_DURATION_SECS * 1.01),
    st.integers(min_value=-(2**1100), max_value=2**1100),
    st.integers(min_value=0, max_value=10**11).map(Seconds),
    st.sampled_from(_EDGES),
)
durations_ms = st.one_of(durations, durations.map(lambda v: v * 1000 if isinstance(v, float) else v))

PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SHORT = {"heartbeat_interval_secs": 0.01, "heartbeat_timeout_secs": 0.03, "reconnect_delay_ms": 1,
         "max_reconnect_delay_ms": 1, "max_reconnect_attempts": 1, "jitter": 0.0}


def accepted(build: Any, field: str) -> Any:
    """`build()`'s result, or None when it refused the value with an error naming `field`."""
    try:
        return build()
    except (TypeError, ValueError) as exc:
        assert isinstance(exc, FieldError), f"untyped error: {exc!r}"
        assert exc.field == field and field in str(exc), (exc.field, str(exc))
        return None


@contextmanager
def running(config: LifecycleConfig) -> Iterator[tuple[LifecycleManager, Subscription]]:
    manager = LifecycleManager(config=config)
    try:
        yield manager, manager.subscribe(maxsize=10_000)
    finally:
        manager.shutdown(timeout=WAIT)


def next_event(subscription: Subscription, kind: type[LifecycleEvent], service_id: str | None = None) -> LifecycleEvent:
    """The next event of `kind` (for `service_id`), waited for on the subscription; fails after WAIT."""
    while True:
        try:
            event = subscription.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"no {kind.__name__} within {WAIT} s: the watchdog stopped firing")
        if isinstance(event, kind) and service_id in (None, event.service_id):
            return event


def asleep_towards(manager: LifecycleManager, seconds: float) -> None:
    """Wait (bounded) until the watchdog thread sleeps towards a timer at least `seconds` away, or died.

    Only then is a short timer entered "afterwards": while earlier short timers are pending the
    thread never waits for the long one.
    """
    if seconds < 1:
        return
    watchdog, pause = manager._watchdog, threading.Event()
    end = time.monotonic() + WAIT
    while time.monotonic() < end:
        thread = watchdog.thread
        if thread is not None and (not thread.is_alive() or watchdog._wake_at - time.monotonic() > 0.5):
            return
        pause.wait(0.001)


def assert_short_deadline_fires(manager: LifecycleManager, subscription: Subscription, after: float = 0) -> None:
    """A service started now, never beating, is timed out by the watchdog thread (after it waits `after` s)."""
    asleep_towards(manager, after)
    sid = manager.start_service(ExtensionService("probe", "1"))
    next_event(subscription, HeartbeatTimeout, sid)


# -- the watchdog survives its own arithmetic and wait ----------------------------------------


@pytest.mark.parametrize("far", [1e10, threading.TIMEOUT_MAX * 2, sys.float_info.max, math.inf])
def test_a_far_timer_neither_raises_nor_stops_a_short_one_from_firing(far):
    watchdog = Watchdog()
    fired = threading.Event()
    try:
        watchdog.call_later(far, fired.set)  # the thread now sleeps towards "far"
        assert not fired.wait(0.05)
        watchdog.call_later(0.01, fired.set)
        assert fired.wait(WAIT), "the watchdog thread died or overslept"
    finally:
        assert watchdog.stop(WAIT)


def test_a_nan_time_is_refused_in_the_callers_thread():
    watchdog = Watchdog()
    try:
        with pytest.raises(ValueError, match="NaN"):
            watchdog.call_at(math.nan, lambda: None)
        assert watchdog.armed() == 0
    finally:
        watchdog.stop(WAIT)


def test_the_watchdog_loop_survives_a_failing_wait(caplog):
    """Whatever its own wait raises, the loop logs it and goes on."""
    watchdog = Watchdog()
    fired = threading.Event()
    failures = [RuntimeError("wait failed")]

    class FailingOnce(threading.Condition):
        def wait(self, timeout: float | None = None) -> bool:
            if failures:
                raise failures.pop()
            return super().wait(timeout)

    watchdog._cond = FailingOnce(threading.Lock())
    try:
        watchdog.call_later(60, lambda: None)  # the thread's first wait raises
        watchdog.call_later(0.05, fired.set)
        assert fired.wait(WAIT), "the watchdog thread died"
        assert failures == [] and "watchdog loop caught an exception" in caplog.text
    finally:
        assert watchdog.stop(WAIT)


# -- LifecycleConfig ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["heartbeat_interval_secs", "heartbeat_timeout_secs"])
def test_a_timeout_above_one_year_is_refused_naming_the_field(field):
    with pytest.raises(ValueError, match=field) as caught:
        LifecycleConfig(**{"heartbeat_interval_secs": 1.0, field: 1e10})
    assert (caught.value.field, caught.value.code) == (field, "too_large")
    assert "one year" in str(caught.value)


@PROPERTY
@given(field=st.sampled_from(["heartbeat_interval_secs", "heartbeat_timeout_secs"]), value=durations)
@example(field="heartbeat_timeout_secs", value=1e10)
def test_any_heartbeat_duration_is_refused_or_works(field, value):
    # The other field takes a value every valid one is compatible with.
    other = {"heartbeat_interval_secs": 5e-324} if field == "heartbeat_timeout_secs" else {
        "heartbeat_timeout_secs": MAX_DURATION_SECS}
    config = accepted(lambda: LifecycleConfig(**{**SHORT, **other, field: value}), field)
    if config is None:
        return
    with running(config) as (manager, subscription):
        sid = manager.start_service(ExtensionService("long", "1"))  # its deadline is `value` away
        manager.handle_error(sid, "probe")  # one attempt, 1 ms later: a short timer after the long one
        next_event(subscription, ReconnectFailed, sid)


@PROPERTY
@given(field=st.sampled_from(["reconnect_delay_ms", "max_reconnect_delay_ms"]), value=durations_ms)
@example(field="max_reconnect_delay_ms", value=1e300)
def test_any_reconnect_delay_is_refused_or_works(field, value):
    if field == "reconnect_delay_ms":  # the cap is checked second, so a bad value is blamed on the delay
        other = {"max_reconnect_delay_ms": value}
    else:  # attempt 1 after 1 ms, attempt 2 after the cap (`value`)
        other = {"reconnect_delay_ms": 1, "reconnect_backoff_multiplier": sys.float_info.max}
    config = accepted(lambda: LifecycleConfig(**{**SHORT, **other, "max_reconnect_attempts": 3, field: value}),
                      field)
    if config is None:
        return
    with running(config) as (manager, subscription):
        sid = manager.start_service(ExtensionService("long", "1"))
        manager.handle_error(sid, "probe")  # a retry `value` ms away
        assert_short_deadline_fires(manager, subscription, after=float(value) / 1000)


@PROPERTY
@given(value=durations)
@example(value=1e10)
def test_any_restart_window_is_refused_or_works(value):
    config = accepted(lambda: LifecycleConfig(**SHORT, max_restarts=1, restart_window_secs=value),
                      "restart_window_secs")
    if config is None:
        return
    with running(config) as (manager, subscription):
        sid = manager.start_service(ExtensionService("flaps", "1"))
        for _ in range(3):  # restarts counted against the window
            manager.handle_error(sid, "probe")
            manager.handle_heartbeat(sid)
        assert_short_deadline_fires(manager, subscription)


# -- a service's transport timeout -------------------------------------------------------------


class HangingReconnect:
    """Connects at start; every later `connect` blocks until released (so its timeout timer is armed)."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def connect(self, service: ExtensionService) -> None:
        self.calls += 1
        if self.calls > 1:
            self.entered.set()
            self.release.wait(WAIT)

    def disconnect(self, service: ExtensionService) -> None:
        pass


@PROPERTY
@given(value=durations)
@example(value=1e10)
@example(value=sys.float_info.max)
def test_any_transport_timeout_is_refused_or_works(value):
    transport = accepted(lambda: TransportConfig(timeout_secs=value), "TransportConfig.timeout_secs")
    if transport is None:
        return
    connector = HangingReconnect()
    with running(LifecycleConfig(**SHORT)) as (manager, subscription):
        try:
            sid = manager.start_service(ExtensionService("long", "1", transport=transport), connector=connector)
            manager.handle_error(sid, "probe")  # attempt 1 hangs; its timeout timer is `value` away
            assert connector.entered.wait(WAIT)
            assert_short_deadline_fires(manager, subscription, after=float(value))
            manager.stop_service(sid)  # waits for disconnect, bounded by `value`
        finally:
            connector.release.set()


# -- waits the caller makes ---------------------------------------------------------------------


@PROPERTY
@given(value=durations)
@example(value=1e10)
def test_any_shutdown_timeout_is_refused_leaving_the_manager_working_or_works(value):
    with running(LifecycleConfig(**SHORT)) as (manager, subscription):
        manager.start_service(ExtensionService("a", "1"))
        if accepted(lambda: manager.shutdown(value) or True, "timeout") is None:
            assert not manager.closed, "a refused timeout left the manager half shut down"
            assert_short_deadline_fires(manager, subscription)
        else:
            assert manager.closed and manager.count() == 0
            thread = manager._watchdog.thread
            if thread is not None:  # shutdown(0) does not wait for it; it must end by itself
                thread.join(WAIT)
                assert not thread.is_alive()


@PROPERTY
@given(value=durations)
@example(value=1e10)
def test_any_subscription_get_timeout_is_refused_or_works(value):
    config = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=60.0)
    with running(config) as (manager, subscription):
        sid = manager.start_service(ExtensionService("a", "1"))
        while subscription.pending():
            subscription.get_nowait()
        beat = threading.Timer(0.01, manager.handle_heartbeat, (sid,))
        beat.start()
        try:
            event = accepted(lambda: subscription.get(value), "timeout")
        except queue.Empty:
            assert value < 1, "a wait of a second or more gave up before the event came"
        else:
            if event is not None:
                assert event.service_id == sid
        finally:
            beat.join(WAIT)


@PROPERTY
@given(value=st.one_of(durations, st.integers(min_value=-(2**1100), max_value=2**1100).map(Seconds)))
def test_any_maxsize_is_refused_or_works(value):
    with running(LifecycleConfig(**SHORT)) as (manager, _):
        subscription = accepted(lambda: manager.subscribe(maxsize=value), "maxsize")
        if subscription is None:
            return
        sid = manager.start_service(ExtensionService("a", "1"))
        manager.handle_heartbeat(sid)
        assert subscription.pending() == min(value, 3)  # started, status_changed, heartbeat


@PROPERTY
@given(value=durations)
@example(value=1e10)
def test_any_shutdown_timeout_setting_is_refused_or_works(value):
    def spell(key: str) -> str:
        return f"LIFECYCLE_{key}"

    try:
        parsed = parse_settings({"SHUTDOWN_TIMEOUT": value}, spell)
    except ConfigurationError as exc:
        assert exc.key == "LIFECYCLE_SHUTDOWN_TIMEOUT"
        return
    manager = LifecycleManager(config=parsed.config)
    manager.start_service(ExtensionService("a", "1"))  # a watchdog thread for shutdown to join
    manager.shutdown(parsed.shutdown_timeout)
    assert manager.closed
