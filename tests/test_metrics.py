"""manager.metrics(): counts per status, this process's totals, the detection-lag histogram.

Manual mode under frozen time, so every total and every lag is exact.
"""

from __future__ import annotations

import dataclasses

import pytest

from lifecycle import ExtensionService, LifecycleConfig, Metrics, ServiceStatus
from lifecycle.metrics import LAG_BUCKETS

CFG = LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=10, max_reconnect_attempts=2,
                      reconnect_delay_ms=1000, max_reconnect_delay_ms=2000, jitter=0)


def _bucket(metrics: Metrics, bound: float) -> int:
    return dict(metrics.detection_lag.buckets)[bound]


def test_a_fresh_manager_reports_zeros_and_a_frozen_snapshot(make_lifecycle_manager):
    m = make_lifecycle_manager(CFG).metrics()
    assert dict(m.services) == {status.value: 0 for status in ServiceStatus}
    assert (m.heartbeats, m.heartbeat_timeouts, m.reconnect_attempts, m.reconnects, m.reconnect_failures,
            m.errors, m.events_dropped) == (0, 0, 0, 0, 0, 0, 0)
    assert m.detection_lag.count == 0 and m.detection_lag.buckets[-1] == (float("inf"), 0)
    assert [b for b, _ in m.detection_lag.buckets[:-1]] == list(LAG_BUCKETS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.heartbeats = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        m.services["running"] = 3  # type: ignore[index]


def test_totals_follow_what_happened(frozen_lifecycle, make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    a = manager.start_service(ExtensionService("a", "1"))
    b = manager.start_service(ExtensionService("b", "1"))
    for _ in range(3):
        manager.handle_heartbeat(a)
    assert manager.metrics().heartbeats == 3
    assert manager.metrics().services["running"] == 2
    manager.handle_error(b, "boom")  # ERROR, then RECONNECTING and attempt 1
    m = manager.metrics()
    assert (m.errors, m.reconnect_attempts, m.services["reconnecting"], m.services["running"]) == (1, 1, 1, 1)
    frozen_lifecycle.advance(1)  # attempt 1 finds no heartbeat: attempt 2 is scheduled
    frozen_lifecycle.advance(2)  # attempt 2 fails too: give up
    m = manager.metrics()
    assert (m.reconnect_attempts, m.reconnect_failures, m.services["error"]) == (2, 1, 1)
    manager.handle_heartbeat(b)  # back from ERROR
    m = manager.metrics()
    assert (m.reconnects, m.heartbeats, m.services["running"]) == (1, 4, 2)


def test_detection_lag_is_the_time_from_the_deadline_to_the_timeout(frozen_lifecycle, make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    manager.start_service(ExtensionService("late", "1"))
    frozen_lifecycle.freezer.tick(10.3)  # the deadline passed 0.3 s ago when the watchdog gets to run
    manager.run_pending()
    m = manager.metrics()
    assert m.heartbeat_timeouts == 1
    assert m.detection_lag.count == 1 and m.detection_lag.sum == pytest.approx(0.3)
    assert _bucket(m, 0.25) == 0 and _bucket(m, 0.5) == 1 and m.detection_lag.buckets[-1] == (float("inf"), 1)
    assert m.timer_lateness_secs == pytest.approx(0.3)


def test_on_time_detection_lands_in_the_first_bucket(frozen_lifecycle, make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    manager.start_service(ExtensionService("punctual", "1"))
    frozen_lifecycle.advance(10)
    m = manager.metrics()
    assert m.detection_lag.count == 1 and m.detection_lag.sum == 0.0 and _bucket(m, 0.001) == 1


def test_health_check_timeouts_are_observed_too(frozen_lifecycle, make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    sid = manager.start_service(ExtensionService("polled", "1"))
    frozen_lifecycle.freezer.tick(12)  # no run_pending: only the explicit check finds it
    assert manager.health_check() == [sid]
    m = manager.metrics()
    assert m.heartbeat_timeouts == 1 and m.detection_lag.sum == pytest.approx(2.0) and _bucket(m, 2.5) == 1


def test_dropped_events_stay_counted_after_the_subscription_closes(frozen_lifecycle, make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    subscription = manager.subscribe(maxsize=1)
    sid = manager.start_service(ExtensionService("chatty", "1"))  # started + status_changed: one dropped
    for _ in range(3):
        manager.handle_heartbeat(sid)  # each pushes out the one before
    assert subscription.dropped == 4
    assert manager.metrics().events_dropped == 4
    subscription.close()
    assert manager.metrics().events_dropped == 4
    other = manager.subscribe(maxsize=1)
    manager.handle_heartbeat(sid)
    manager.handle_heartbeat(sid)
    manager.shutdown()  # its stop events push out more
    assert other.dropped > 1 and manager.metrics().events_dropped == 4 + other.dropped
    other.close()  # after shutdown: must not count its drops twice
    assert manager.metrics().events_dropped == 4 + other.dropped


def test_timers_queued_counts_without_a_scan(frozen_lifecycle, make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    assert manager.metrics().timers_queued == 0
    manager.start_service(ExtensionService("one", "1"))
    manager.start_service(ExtensionService("two", "1"))
    assert manager.metrics().timers_queued == manager.armed_timers() == 2
    frozen_lifecycle.advance(10)  # both deadlines fire; each schedules attempt 1
    assert manager.metrics().timers_queued == manager.armed_timers() == 2


def test_a_shut_down_manager_reports_no_services_but_keeps_its_totals(frozen_lifecycle, make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    sid = manager.start_service(ExtensionService("s", "1"))
    manager.handle_heartbeat(sid)
    manager.shutdown()
    m = manager.metrics()
    assert sum(m.services.values()) == 0 and m.heartbeats == 1


def test_heartbeats_from_many_threads_are_all_counted(make_lifecycle_manager):
    import threading

    manager = make_lifecycle_manager(CFG)
    sid = manager.start_service(ExtensionService("busy", "1"))
    start = threading.Barrier(4)

    def beat() -> None:
        start.wait(5)
        for _ in range(5000):
            manager.handle_heartbeat(sid)

    threads = [threading.Thread(target=beat) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert manager.metrics().heartbeats == 20000


def test_the_snapshot_names_its_process(make_lifecycle_manager):
    import os

    assert make_lifecycle_manager(CFG).metrics().pid == os.getpid()
