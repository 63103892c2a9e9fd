"""Restart intensity: max_restarts within restart_window_secs, service_flapping, restart_service.

Manual mode under frozen time with jitter 0, so every restart lands at an exact moment.
"""

from __future__ import annotations

import math
import threading

import pytest

from lifecycle import (
    ExtensionService,
    InvalidState,
    LifecycleConfig,
    LifecycleManager,
    ManagerClosed,
    ServiceNotFound,
    ServiceStatus,
    signals,
)
from lifecycle.events import HeartbeatTimeout, Reconnected, Reconnecting, ServiceFlapping, StatusChanged

S = ServiceStatus
CFG = LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=5, max_reconnect_attempts=3,
                      reconnect_delay_ms=1000, jitter=0, max_restarts=2, restart_window_secs=60)


def time_out_and_revive(frozen, manager, sid) -> None:
    """Let the service miss its deadline (one restart), then bring it back with a heartbeat."""
    frozen.advance(5)
    assert manager.get_status(sid) is S.RECONNECTING
    manager.handle_heartbeat(sid)
    assert manager.get_status(sid) is S.RUNNING


def test_the_restart_beyond_max_restarts_leaves_the_service_in_error(frozen_lifecycle, make_lifecycle_manager,
                                                                       record):
    manager = make_lifecycle_manager(CFG)
    sid = manager.start_service(ExtensionService("flappy", "1"))
    events = record(manager)
    time_out_and_revive(frozen_lifecycle, manager, sid)
    time_out_and_revive(frozen_lifecycle, manager, sid)
    assert manager.restarts(sid) == 2
    events.clear()
    frozen_lifecycle.advance(5)  # the third restart within 60 s: refused
    assert manager.get_status(sid) is S.ERROR
    assert [type(e) for e in events.events] == [HeartbeatTimeout, StatusChanged, ServiceFlapping]
    flap = events.of(ServiceFlapping)[0]
    assert (flap.service_id, flap.restarts, flap.window) == (sid, 3, 60.0)
    assert events.kwargs[-1] == {"event": flap, "service_id": sid, "restarts": 3, "window": 60.0}
    assert events.of(StatusChanged)[0].new_status is S.ERROR
    assert manager.attempts(sid) == 0 and manager.armed_timers() == 0  # nothing scheduled
    frozen_lifecycle.advance(100)
    assert manager.get_status(sid) is S.ERROR and events.of(Reconnecting) == []
    assert manager.metrics().flapping == 1


def test_restarts_older_than_the_window_do_not_count(frozen_lifecycle, make_lifecycle_manager, record):
    manager = make_lifecycle_manager(CFG)
    sid = manager.start_service(ExtensionService("steady", "1"))
    events = record(manager)
    for _ in range(6):
        time_out_and_revive(frozen_lifecycle, manager, sid)
        for _ in range(7):  # 28 s of heartbeats every 4 s: alive, no restart
            frozen_lifecycle.advance(4)
            manager.handle_heartbeat(sid)
    # Each restart is 33 s after the one before: at most two fall within any 60 s window.
    assert events.of(ServiceFlapping) == [] and manager.restarts(sid) == 1
    assert len(events.of(HeartbeatTimeout)) == 6


def test_error_reports_count_and_a_flapping_service_is_not_reconnected_by_one(frozen_lifecycle,
                                                                               make_lifecycle_manager, record):
    manager = make_lifecycle_manager(CFG)
    sid = manager.start_service(ExtensionService("erratic", "1"))
    events = record(manager)
    for _ in range(2):
        manager.handle_error(sid, "broken pipe")
        assert manager.get_status(sid) is S.RECONNECTING
        manager.handle_heartbeat(sid)
    manager.handle_error(sid, "broken pipe")
    assert manager.get_status(sid) is S.ERROR and len(events.of(ServiceFlapping)) == 1
    manager.handle_error(sid, "still broken")
    assert manager.get_status(sid) is S.ERROR and len(events.of(Reconnecting)) == 2
    assert len(events.of(ServiceFlapping)) == 1


def test_a_heartbeat_brings_a_flapping_service_back(frozen_lifecycle, make_lifecycle_manager, record):
    manager = make_lifecycle_manager(CFG.__class__(**{**CFG.as_dict(), "max_restarts": 0}))
    sid = manager.start_service(ExtensionService("once", "1"))
    events = record(manager)
    frozen_lifecycle.advance(5)  # max_restarts=0: the very first restart is refused
    assert manager.get_status(sid) is S.ERROR and len(events.of(ServiceFlapping)) == 1
    manager.handle_heartbeat(sid)
    assert manager.get_status(sid) is S.RUNNING and len(events.of(Reconnected)) == 1


class Connector:
    def __init__(self) -> None:
        self.calls = 0

    def connect(self, service: ExtensionService) -> None:
        self.calls += 1


def test_restart_service_reconnects_now_with_a_fresh_window(frozen_lifecycle, make_lifecycle_manager, record):
    connector = Connector()
    manager = make_lifecycle_manager(CFG, connector=connector)
    sid = manager.start_service(ExtensionService("flappy", "1"))
    events = record(manager)
    for _ in range(2):
        manager.handle_error(sid, "x")
        frozen_lifecycle.advance(1)  # attempt 1 connects: RUNNING
        assert manager.get_status(sid) is S.RUNNING
    manager.handle_error(sid, "x")
    assert manager.get_status(sid) is S.ERROR and manager.restarts(sid) == 3
    events.clear()
    calls = connector.calls
    manager.restart_service(sid)
    assert manager.get_status(sid) is S.RECONNECTING and manager.restarts(sid) == 0
    assert [(e.attempt, e.delay) for e in events.of(Reconnecting)] == [(1, 0.0)]
    assert manager.run_pending() >= 1  # due at once, no time has to pass
    assert connector.calls == calls + 1 and manager.get_status(sid) is S.RUNNING
    # The window starts afresh: two more restarts are allowed before the next flap.
    for _ in range(2):
        manager.handle_error(sid, "x")
        frozen_lifecycle.advance(1)
    assert events.of(ServiceFlapping) == [] and manager.get_status(sid) is S.RUNNING


def test_restart_service_from_running_and_without_a_connector_waits_for_a_heartbeat(frozen_lifecycle,
                                                                                    make_lifecycle_manager, record):
    manager = make_lifecycle_manager(CFG)
    sid = manager.start_service(ExtensionService("plain", "1"))
    events = record(manager)
    manager.restart_service(sid)
    assert manager.get_status(sid) is S.RECONNECTING
    assert [(e.attempt, e.delay) for e in events.of(Reconnecting)] == [(1, 1.0)]  # the usual first delay
    manager.handle_heartbeat(sid)
    assert manager.get_status(sid) is S.RUNNING


def test_restart_service_refuses_what_it_cannot_restart(make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    with pytest.raises(ServiceNotFound):
        manager.restart_service("nope")
    with pytest.raises(TypeError):
        manager.restart_service(42)  # type: ignore[arg-type]
    entered = threading.Event()
    release = threading.Event()

    class Slow:
        def connect(self, service: ExtensionService) -> None:
            pass

        def disconnect(self, service: ExtensionService) -> None:
            entered.set()
            assert release.wait(5)

    sid = manager.start_service(ExtensionService("slow", "1"), connector=Slow())
    stopper = threading.Thread(target=manager.stop_service, args=(sid,))
    stopper.start()
    try:
        assert entered.wait(5)
        with pytest.raises(InvalidState):
            manager.restart_service(sid)
    finally:
        release.set()
        stopper.join(5)
    manager.shutdown()
    with pytest.raises(ManagerClosed):
        manager.restart_service(sid)


def test_none_keeps_todays_behaviour(frozen_lifecycle, make_lifecycle_manager, record):
    manager = make_lifecycle_manager(CFG.__class__(**{**CFG.as_dict(), "max_restarts": None}))
    sid = manager.start_service(ExtensionService("free", "1"))
    events = record(manager)
    for _ in range(10):
        time_out_and_revive(frozen_lifecycle, manager, sid)
    assert events.of(ServiceFlapping) == [] and manager.restarts(sid) == 0


@pytest.mark.parametrize(("field", "value"), [
    ("max_restarts", -1), ("max_restarts", True), ("max_restarts", 1.5), ("max_restarts", "3"),
    ("restart_window_secs", 0), ("restart_window_secs", -5), ("restart_window_secs", math.nan),
    ("restart_window_secs", math.inf), ("restart_window_secs", None),
])
def test_bad_settings_name_their_field(field, value):
    with pytest.raises(ValueError, match=field):
        LifecycleConfig(**{field: value})


def test_the_signal_is_in_the_namespace():
    assert signals.service_flapping.name == "service_flapping"


def test_fleet_mode_counts_restarts_and_restarts_on_request(redis_server, namespace):
    from lifecycle.redis import RedisRegistry

    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace)
    with LifecycleManager(registry, CFG, autostart=False) as manager:
        manager.run_pending()
        sid = manager.start_service(ExtensionService("fleet", "1"))
        manager.handle_error(sid, "boom")  # a reconnect cycle begins: one restart in the window
        assert manager.restarts(sid) == 1
        manager.restart_service(sid)  # a fresh window
        assert manager.restarts(sid) == 0 and manager.get_status(sid) is ServiceStatus.RECONNECTING
        with pytest.raises(ServiceNotFound):
            manager.restart_service("any")
        assert manager.restarts("any") == 0
    registry.clear()


@pytest.mark.parametrize(("key", "value"), [("MAX_RESTARTS", -1), ("RESTART_WINDOW_SECS", 0)])
def test_framework_settings_name_the_key(key, value):
    from lifecycle.contrib._settings import ConfigurationError, parse_settings

    assert parse_settings({"MAX_RESTARTS": 3, "RESTART_WINDOW_SECS": 10}, lambda k: f"LIFECYCLE_{k}").config \
        .max_restarts == 3
    with pytest.raises(ConfigurationError) as caught:
        parse_settings({key: value}, lambda k: f"LIFECYCLE_{k}")
    assert caught.value.key == f"LIFECYCLE_{key}"
