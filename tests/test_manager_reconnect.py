"""LifecycleManager: handle_error, reconnect attempts with backoff, giving up, pings.

Manual mode under frozen time; with jitter=0 the delays are exactly 1, 2, 4, 8 s, so the
tests assert the exact moments attempts run. Connect calls run inline in run_pending().
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import pytest

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceNotFound, ServiceStatus
from lifecycle.events import (
    Error,
    HeartbeatTimeout,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    StatusChanged,
)

S = ServiceStatus
CFG = LifecycleConfig(
    heartbeat_interval_secs=1,
    heartbeat_timeout_secs=10,
    max_reconnect_attempts=4,
    reconnect_delay_ms=1000,
    max_reconnect_delay_ms=30000,
    reconnect_backoff_multiplier=2.0,
    jitter=0,
)
DELAYS = [1.0, 2.0, 4.0, 8.0]


class Abort(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit."""


class FlakyConnector:
    """Connects at start; afterwards the next `fail_times` connects raise `error`. Records call times."""

    def __init__(self, fail_times: int = 0, error: BaseException | None = None) -> None:
        self.fail_times = fail_times
        self.error = error if error is not None else ConnectionError("still down")
        self.connects: list[float] = []
        self.disconnects: list[float] = []

    def connect(self, service: ExtensionService) -> None:
        self.connects.append(time.monotonic())
        if len(self.connects) > 1 and self.fail_times > 0:
            self.fail_times -= 1
            raise self.error

    def disconnect(self, service: ExtensionService) -> None:
        self.disconnects.append(time.monotonic())


class PingConnector:
    """Connect always works; ping records its call times and raises while `ping_error` is set."""

    def __init__(self, ping_error: BaseException | None = None) -> None:
        self.ping_error = ping_error
        self.pings: list[float] = []
        self.connect_fails = False

    def connect(self, service: ExtensionService) -> None:
        if self.connect_fails:
            raise ConnectionError("no route")

    def ping(self, service: ExtensionService) -> None:
        self.pings.append(time.monotonic())
        if self.ping_error is not None:
            raise self.ping_error


def start(m: LifecycleManager, connector: Any = None, name: str = "alpha") -> str:
    return m.start_service(ExtensionService(name, "1"), connector=connector)


# -- handle_error ----------------------------------------------------------------------------


def test_handle_error_with_a_string_emits_service_error_with_that_text(make_manager, record):
    m = make_manager(CFG)
    sid = start(m)
    rec = record(m)
    m.handle_error(sid, "disk full")
    assert rec.of(Error) == [Error(sid, time.monotonic(), "disk full")]
    assert rec.kwargs[0]["error"] == "disk full"


def test_handle_error_with_an_exception_reports_its_text(make_manager, record):
    m = make_manager(CFG)
    sid = start(m)
    rec = record(m)
    m.handle_error(sid, ValueError("bad frame"))
    (error,) = rec.of(Error)
    assert isinstance(error.error, str)
    assert "bad frame" in error.error


def test_handle_error_goes_error_then_reconnecting_and_schedules_attempt_1(make_manager, record):
    m = make_manager(CFG)
    conn = FlakyConnector()
    sid = start(m, conn)
    rec = record(m)
    t0 = time.monotonic()
    m.handle_error(sid, "down")
    assert rec.events == [
        Error(sid, t0, "down"),
        StatusChanged(sid, t0, S.RUNNING, S.ERROR),
        StatusChanged(sid, t0, S.ERROR, S.RECONNECTING),
        Reconnecting(sid, t0, 1, 4, 1.0),
    ]
    assert time.monotonic() == t0  # returned without waiting
    assert conn.connects == [t0]  # only the start: attempt 1 is not run inline
    assert m.get_status(sid) is S.RECONNECTING
    assert m.attempts(sid) == 1


def test_reconnecting_delay_is_the_jittered_delay_from_the_manager_rng(make_manager, record):
    cfg = LifecycleConfig(max_reconnect_attempts=3)  # default jitter 0.1
    m = make_manager(cfg, rng=random.Random(42))
    twin = LifecycleManager(config=cfg, autostart=False, rng=random.Random(42))
    try:
        expected = twin.calculate_reconnect_delay(0)
    finally:
        twin.shutdown()
    sid = start(m)
    rec = record(m)
    m.handle_error(sid, "down")
    (event,) = rec.of(Reconnecting)
    assert (event.attempt, event.max_attempts) == (1, 3)
    assert event.delay == expected
    assert 0.9 <= event.delay <= 1.1
    assert event.delay != 1.0


def test_each_attempt_delay_comes_from_calculate_reconnect_delay(make_manager, frozen_lifecycle, record):
    cfg = LifecycleConfig(heartbeat_timeout_secs=1000, max_reconnect_attempts=4)  # default jitter 0.1
    m = make_manager(cfg, rng=random.Random(7))
    twin = LifecycleManager(config=cfg, autostart=False, rng=random.Random(7))
    try:
        expected = [twin.calculate_reconnect_delay(i) for i in range(4)]
    finally:
        twin.shutdown()
    sid = start(m)  # no connector: every attempt fails for want of a heartbeat
    rec = record(m)
    m.handle_error(sid, "down")
    for _ in range(4):
        frozen_lifecycle.advance(rec.of(Reconnecting)[-1].delay, m)
    assert [e.delay for e in rec.of(Reconnecting)] == expected
    assert [e.attempt for e in rec.of(Reconnecting)] == [1, 2, 3, 4]
    assert rec.names()[-1] == "reconnect_failed"


def test_handle_error_with_a_wrong_error_type_raises_type_error_and_changes_nothing(make_manager, record):
    m = make_manager(CFG)
    sid = start(m)
    rec = record(m)
    with pytest.raises(TypeError):
        m.handle_error(sid, 42)
    assert rec.events == []
    assert m.get_status(sid) is S.RUNNING


def test_handle_error_on_an_unknown_id_raises_service_not_found(make_manager):
    m = make_manager(CFG)
    with pytest.raises(ServiceNotFound):
        m.handle_error("no-such-service", "x")


def test_handle_error_on_a_reconnecting_service_only_emits_service_error(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    conn = FlakyConnector(fail_times=1)
    sid = start(m, conn)
    t0 = time.monotonic()
    m.handle_error(sid, "down")
    frozen_lifecycle.advance(0.5, m)
    rec = record(m)
    m.handle_error(sid, "again")
    assert rec.events == [Error(sid, t0 + 0.5, "again")]
    assert m.get_status(sid) is S.RECONNECTING
    assert m.attempts(sid) == 1
    frozen_lifecycle.advance(0.5, m)  # attempt 1 still runs when it was first due
    assert conn.connects == [t0, t0 + 1]


# -- reconnect attempts ----------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, 1, 3])
def test_connector_failing_k_times_then_succeeding(make_manager, frozen_lifecycle, record, k):
    m = make_manager(CFG)
    conn = FlakyConnector(fail_times=k)
    sid = start(m, conn)
    rec = record(m)
    t0 = time.monotonic()
    m.handle_error(sid, "down")
    expected_times: list[float] = []
    t = t0
    for delay in DELAYS[: k + 1]:
        frozen_lifecycle.advance(delay - 0.5, m)
        assert len(conn.connects) == 1 + len(expected_times)  # not early
        frozen_lifecycle.advance(0.5, m)
        t += delay
        expected_times.append(t)
        assert conn.connects[1:] == expected_times
    assert [(e.attempt, e.max_attempts, e.delay) for e in rec.of(Reconnecting)] == [
        (i + 1, 4, DELAYS[i]) for i in range(k + 1)
    ]
    assert rec.names()[-2:] == ["status_changed", "reconnected"]
    assert rec.events[-2] == StatusChanged(sid, t, S.RECONNECTING, S.RUNNING)
    assert rec.events[-1] == Reconnected(sid, t)
    assert m.get_status(sid) is S.RUNNING
    assert m.attempts(sid) == 0


def test_reconnect_counts_as_a_heartbeat_without_heartbeat_received(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    conn = FlakyConnector(fail_times=1)
    t0 = time.monotonic()
    sid = start(m, conn)
    rec = record(m)
    m.handle_error(sid, "down")
    frozen_lifecycle.advance(1, m)
    frozen_lifecycle.advance(2, m)  # attempt 2 succeeds at t0+3
    assert m.get_status(sid) is S.RUNNING
    assert m.registry.get(sid).last_heartbeat == t0 + 3
    assert m.is_healthy(sid)
    assert "heartbeat_received" not in rec.names()
    # The new deadline is t0+3+10: the start's deadline at t0+10 passes quietly.
    rec.clear()
    frozen_lifecycle.advance(9.75, m)
    assert rec.events == []
    frozen_lifecycle.advance(0.25, m)
    assert rec.of(HeartbeatTimeout) == [HeartbeatTimeout(sid, t0 + 13)]


def test_a_later_failure_starts_again_at_attempt_1(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    conn = FlakyConnector(fail_times=2)
    sid = start(m, conn)
    m.handle_error(sid, "down")
    for delay in DELAYS[:3]:
        frozen_lifecycle.advance(delay, m)
    assert m.get_status(sid) is S.RUNNING
    rec = record(m)
    m.handle_error(sid, "down again")
    assert [(e.attempt, e.delay) for e in rec.of(Reconnecting)] == [(1, 1.0)]
    assert m.attempts(sid) == 1


def test_all_attempts_failing_ends_in_error_and_reconnect_failed(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    conn = FlakyConnector(fail_times=100)
    sid = start(m, conn)
    rec = record(m)
    t0 = time.monotonic()
    m.handle_error(sid, "down")
    for delay in DELAYS:
        frozen_lifecycle.advance(delay, m)
    t_end = t0 + sum(DELAYS)
    assert conn.connects[1:] == [t0 + 1, t0 + 3, t0 + 7, t0 + 15]
    assert rec.names() == [
        "service_error",
        "status_changed",
        "status_changed",
        "reconnecting",
        "reconnecting",
        "reconnecting",
        "reconnecting",
        "status_changed",
        "reconnect_failed",
    ]
    assert [e.attempt for e in rec.of(Reconnecting)] == [1, 2, 3, 4]
    assert rec.events[-2:] == [
        StatusChanged(sid, t_end, S.RECONNECTING, S.ERROR),
        ReconnectFailed(sid, t_end, 4),
    ]
    assert m.get_status(sid) is S.ERROR
    assert m.count() == 1
    assert m.registry.get(sid) is not None
    rec.clear()
    frozen_lifecycle.advance(100, m)
    assert rec.events == []
    assert len(conn.connects) == 5


def test_a_heartbeat_after_giving_up_brings_the_service_back(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    sid = start(m, FlakyConnector(fail_times=100))
    m.handle_error(sid, "down")
    for delay in DELAYS:
        frozen_lifecycle.advance(delay, m)
    assert m.get_status(sid) is S.ERROR
    rec = record(m)
    m.handle_heartbeat(sid)
    assert rec.names() == ["status_changed", "reconnected", "heartbeat_received"]
    assert m.get_status(sid) is S.RUNNING
    assert m.attempts(sid) == 0


def test_handle_error_on_a_service_that_gave_up_starts_a_new_cycle(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    sid = start(m, FlakyConnector(fail_times=100))
    m.handle_error(sid, "down")
    for delay in DELAYS:
        frozen_lifecycle.advance(delay, m)
    rec = record(m)
    m.handle_error(sid, "still down")
    assert rec.names() == ["service_error", "status_changed", "reconnecting"]
    assert (rec.events[1].old_status, rec.events[1].new_status) == (S.ERROR, S.RECONNECTING)
    assert rec.events[2].attempt == 1


def test_max_reconnect_attempts_zero_goes_straight_to_error(make_manager, frozen_lifecycle, record):
    m = make_manager(LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=10, max_reconnect_attempts=0))
    conn = FlakyConnector()
    sid = start(m, conn)
    rec = record(m)
    t0 = time.monotonic()
    m.handle_error(sid, "down")
    assert rec.events == [
        Error(sid, t0, "down"),
        StatusChanged(sid, t0, S.RUNNING, S.ERROR),
        ReconnectFailed(sid, t0, 0),
    ]
    frozen_lifecycle.advance(100, m)
    assert len(conn.connects) == 1
    assert m.get_status(sid) is S.ERROR


def test_max_reconnect_attempts_zero_on_a_deadline_miss(make_manager, frozen_lifecycle, record):
    m = make_manager(LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=10, max_reconnect_attempts=0))
    sid = start(m)
    rec = record(m)
    frozen_lifecycle.advance(10, m)
    now = time.monotonic()
    assert rec.events == [
        HeartbeatTimeout(sid, now),
        StatusChanged(sid, now, S.RUNNING, S.ERROR),
        ReconnectFailed(sid, now, 0),
    ]


def test_without_a_connector_an_attempt_succeeds_only_by_a_heartbeat_before_it_is_due(
        make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    sid = start(m)
    rec = record(m)
    m.handle_error(sid, "down")
    frozen_lifecycle.advance(1, m)  # attempt 1 due: no heartbeat came
    assert m.get_status(sid) is S.RECONNECTING
    assert [e.attempt for e in rec.of(Reconnecting)] == [1, 2]
    frozen_lifecycle.advance(1, m)  # attempt 2 is due at +3
    m.handle_heartbeat(sid)
    assert m.get_status(sid) is S.RUNNING
    assert rec.names()[-3:] == ["status_changed", "reconnected", "heartbeat_received"]
    rec.clear()
    frozen_lifecycle.advance(5, m)
    assert rec.events == []


def test_without_a_connector_and_without_heartbeats_every_attempt_fails(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    sid = start(m)
    rec = record(m)
    m.handle_error(sid, "down")
    for delay in DELAYS:
        frozen_lifecycle.advance(delay, m)
    assert [e.attempt for e in rec.of(Reconnecting)] == [1, 2, 3, 4]
    assert rec.of(ReconnectFailed) == [ReconnectFailed(sid, time.monotonic(), 4)]
    assert m.get_status(sid) is S.ERROR


def test_stop_service_during_a_pending_retry_cancels_it(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    conn = FlakyConnector(fail_times=1)
    sid = start(m, conn)
    m.handle_error(sid, "down")
    frozen_lifecycle.advance(1, m)  # attempt 1 fails, attempt 2 pending
    m.stop_service(sid)
    rec = record(m)
    assert m.armed_timers() == 0
    frozen_lifecycle.advance(100, m)
    assert rec.events == []
    assert len(conn.connects) == 2


def test_connector_raising_a_base_exception_counts_as_a_failed_attempt(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    conn = FlakyConnector(fail_times=1, error=Abort("gone"))
    sid = start(m, conn)
    rec = record(m)
    m.handle_error(sid, "down")
    frozen_lifecycle.advance(1, m)  # Abort: a failed attempt, not an escape
    assert [e.attempt for e in rec.of(Reconnecting)] == [1, 2]
    frozen_lifecycle.advance(2, m)
    assert m.get_status(sid) is S.RUNNING
    assert rec.names()[-1] == "reconnected"


def test_failed_attempts_are_logged(make_manager, frozen_lifecycle, caplog):
    m = make_manager(CFG)
    sid = start(m, FlakyConnector(fail_times=1, error=ConnectionError("no route to host")))
    m.handle_error(sid, "down")
    with caplog.at_level(logging.WARNING, logger="lifecycle"):
        frozen_lifecycle.advance(1, m)
    assert "no route to host" in caplog.text


# -- ping ------------------------------------------------------------------------------------

PING_CFG = LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=2.5, max_reconnect_attempts=2, jitter=0)


def test_ping_is_called_every_interval_starting_one_interval_after_running(make_manager, frozen_lifecycle):
    m = make_manager(PING_CFG)
    conn = PingConnector()
    t0 = time.monotonic()
    start(m, conn)
    frozen_lifecycle.advance(0.75, m)
    assert conn.pings == []
    frozen_lifecycle.advance(0.25, m)
    assert conn.pings == [t0 + 1]
    frozen_lifecycle.advance(1, m)
    frozen_lifecycle.advance(1, m)
    assert conn.pings == [t0 + 1, t0 + 2, t0 + 3]


def test_successful_ping_counts_as_a_heartbeat(make_manager, frozen_lifecycle, record):
    m = make_manager(PING_CFG)
    conn = PingConnector()
    t0 = time.monotonic()
    sid = start(m, conn)
    rec = record(m)
    for _ in range(10):
        frozen_lifecycle.advance(1, m)
    assert rec.names() == ["heartbeat_received"] * 10
    assert m.registry.get(sid).last_heartbeat == t0 + 10
    assert m.get_status(sid) is S.RUNNING


def test_failing_ping_is_logged_and_the_deadline_decides(make_manager, frozen_lifecycle, record, caplog):
    m = make_manager(PING_CFG)
    conn = PingConnector(ping_error=OSError("ping lost"))
    t0 = time.monotonic()
    sid = start(m, conn)
    rec = record(m)
    with caplog.at_level(logging.WARNING, logger="lifecycle"):
        frozen_lifecycle.advance(1, m)
        frozen_lifecycle.advance(1, m)
    assert conn.pings == [t0 + 1, t0 + 2]
    assert caplog.text.count("ping lost") == 2
    assert rec.events == []
    assert m.get_status(sid) is S.RUNNING
    frozen_lifecycle.advance(0.5, m)
    assert rec.events[0] == HeartbeatTimeout(sid, t0 + 2.5)
    assert m.get_status(sid) is S.RECONNECTING


def test_ping_is_not_called_while_the_service_is_not_running(make_manager, frozen_lifecycle):
    m = make_manager(PING_CFG)
    conn = PingConnector()
    sid = start(m, conn)
    conn.connect_fails = True
    m.handle_error(sid, "down")
    for _ in range(10):
        frozen_lifecycle.advance(1, m)
    assert m.get_status(sid) is S.ERROR
    assert conn.pings == []


def test_pings_resume_one_interval_after_a_reconnect(make_manager, frozen_lifecycle):
    m = make_manager(PING_CFG)
    conn = PingConnector()
    t0 = time.monotonic()
    sid = start(m, conn)
    m.handle_error(sid, "down")
    frozen_lifecycle.advance(1, m)  # attempt 1 succeeds at t0+1
    assert m.get_status(sid) is S.RUNNING
    assert conn.pings == []
    frozen_lifecycle.advance(1, m)
    assert conn.pings == [t0 + 2]
