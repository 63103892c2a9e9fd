"""LifecycleManager: heartbeats, the deadline, health_check, and timeouts without auto-reconnect.

Manual mode under frozen time: `frozen_lifecycle.advance` ticks time and runs whatever became due.
Times used are exact binary fractions so deadlines compare exactly.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import lifecycle.manager as manager_module
from lifecycle import (
    ExtensionService,
    InvalidState,
    LifecycleConfig,
    RegistryService,
    ServiceNotFound,
    ServiceStatus,
    TransportConfig,
    signals,
)
from lifecycle.events import (
    Heartbeat,
    HeartbeatTimeout,
    Reconnected,
    Reconnecting,
    StatusChanged,
)

S = ServiceStatus
CFG = LifecycleConfig(
    heartbeat_interval_secs=1, heartbeat_timeout_secs=3, reconnect_delay_ms=1000, max_reconnect_attempts=3, jitter=0
)
NO_AUTO = LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=3, auto_reconnect=False, jitter=0)


class StoppingProbe:
    """A connector whose disconnect tries heartbeat and error reports while the service is STOPPING."""

    def __init__(self, manager: Any) -> None:
        self.manager = manager
        self.raised: list[BaseException] = []

    def connect(self, service: ExtensionService) -> None:
        pass

    def disconnect(self, service: ExtensionService) -> None:
        for call in (self.manager.handle_heartbeat, lambda i: self.manager.handle_error(i, "late")):
            try:
                call(service.id)
            except Exception as exc:
                self.raised.append(exc)


def test_handle_heartbeat_records_the_heartbeat_in_the_registry(make_manager, frozen_lifecycle):
    m = make_manager(CFG)
    t0 = time.monotonic()
    sid = m.start_service(ExtensionService("alpha", "1"))
    frozen_lifecycle.advance(2, m)
    assert m.registry.get(sid).last_heartbeat == t0
    m.handle_heartbeat(sid)
    assert m.registry.get(sid).last_heartbeat == t0 + 2


def test_heartbeat_pushes_the_deadline(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    rec = record(m)
    t0 = time.monotonic()
    sid = m.start_service(ExtensionService("alpha", "1"))
    frozen_lifecycle.advance(2, m)
    m.handle_heartbeat(sid)
    frozen_lifecycle.advance(1, m)  # t=3: the start deadline passes without a timeout
    assert m.get_status(sid) is S.RUNNING
    frozen_lifecycle.advance(1.5, m)  # t=4.5
    assert rec.of(HeartbeatTimeout) == []
    frozen_lifecycle.advance(0.5, m)  # t=5 = heartbeat + timeout
    assert [e.at for e in rec.of(HeartbeatTimeout)] == [t0 + 5]
    assert m.get_status(sid) is S.RECONNECTING


def test_many_heartbeats_do_not_add_timers(make_manager):
    m = make_manager(CFG)
    sid = m.start_service(ExtensionService("alpha", "1"))
    armed = m.armed_timers()
    for _ in range(50):
        m.handle_heartbeat(sid)
    assert m.armed_timers() == armed == 1


def test_heartbeat_emits_heartbeat_received(make_manager, record):
    m = make_manager(CFG)
    sid = m.start_service(ExtensionService("alpha", "1"))
    rec = record(m)
    m.handle_heartbeat(sid)
    assert rec.events == [Heartbeat(sid, time.monotonic())]
    assert rec.kwargs[0]["service_id"] == sid


def test_heartbeat_on_a_running_service_changes_no_status(make_manager, record):
    m = make_manager(CFG)
    sid = m.start_service(ExtensionService("alpha", "1"))
    rec = record(m)
    m.handle_heartbeat(sid)
    assert rec.names() == ["heartbeat_received"]
    assert m.get_status(sid) is S.RUNNING


def test_heartbeat_on_a_reconnecting_service_brings_it_back(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    sid = m.start_service(ExtensionService("alpha", "1"))
    m.handle_error(sid, "down")
    assert m.get_status(sid) is S.RECONNECTING
    assert m.attempts(sid) == 1
    assert m.armed_timers() == 2  # the deadline and attempt 1
    rec = record(m)
    now = time.monotonic()
    m.handle_heartbeat(sid)
    assert rec.events == [
        StatusChanged(sid, now, S.RECONNECTING, S.RUNNING),
        Reconnected(sid, now),
        Heartbeat(sid, now),
    ]
    assert m.get_status(sid) is S.RUNNING
    assert m.attempts(sid) == 0
    assert m.armed_timers() == 1  # attempt 1 was cancelled
    rec.clear()
    frozen_lifecycle.advance(2.5, m)  # the cancelled attempt 1 (due at +1) must not run
    assert rec.events == []
    assert m.get_status(sid) is S.RUNNING


def test_heartbeat_on_an_error_service_brings_it_back(make_manager, frozen_lifecycle, record):
    m = make_manager(NO_AUTO)
    sid = m.start_service(ExtensionService("alpha", "1"))
    m.handle_error(sid, "down")
    assert m.get_status(sid) is S.ERROR
    rec = record(m)
    m.handle_heartbeat(sid)
    assert rec.names() == ["status_changed", "reconnected", "heartbeat_received"]
    assert (rec.events[0].old_status, rec.events[0].new_status) == (S.ERROR, S.RUNNING)
    assert m.get_status(sid) is S.RUNNING
    assert m.is_healthy(sid)


def test_revived_service_gets_a_fresh_deadline(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    rec = record(m)
    t0 = time.monotonic()
    sid = m.start_service(ExtensionService("alpha", "1"))
    frozen_lifecycle.advance(3, m)  # timeout at t=3, attempt 1 due at t=4
    frozen_lifecycle.advance(0.5, m)
    m.handle_heartbeat(sid)  # back at t=3.5: next deadline t=6.5
    rec.clear()
    frozen_lifecycle.advance(2.75, m)
    assert rec.events == []
    frozen_lifecycle.advance(0.25, m)
    assert [e.at for e in rec.of(HeartbeatTimeout)] == [t0 + 6.5]


def test_deadline_follows_the_config_timeout_not_the_registry_timeout(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG, registry=RegistryService(heartbeat_timeout_secs=100))
    sid = m.start_service(ExtensionService("alpha", "1"))
    rec = record(m)
    frozen_lifecycle.advance(2.75, m)
    assert rec.events == []
    assert m.is_healthy(sid)
    frozen_lifecycle.advance(0.25, m)
    assert rec.names()[0] == "heartbeat_timeout"
    assert not m.is_healthy(sid)


def test_heartbeat_with_a_wrong_id_type_raises_type_error(make_manager):
    m = make_manager(CFG)
    with pytest.raises(TypeError):
        m.handle_heartbeat(42)


def test_heartbeat_on_an_unknown_id_raises_service_not_found(make_manager):
    m = make_manager(CFG)
    outsider = m.registry.register(ExtensionService("outsider", "1"))
    with pytest.raises(ServiceNotFound):
        m.handle_heartbeat("no-such-service")
    with pytest.raises(ServiceNotFound):
        m.handle_heartbeat(outsider)


def test_heartbeat_and_error_on_a_stopping_service_raise_invalid_state(make_manager):
    m = make_manager(CFG)
    probe = StoppingProbe(m)
    sid = m.start_service(ExtensionService("alpha", "1"), connector=probe)
    m.stop_service(sid)
    assert [type(e) for e in probe.raised] == [InvalidState, InvalidState]
    assert m.get_status(sid) is None


def test_deadline_fires_exactly_at_the_deadline_not_at_a_poll(make_manager, frozen_lifecycle, record):
    # 2.5 s is no multiple of the 1 s interval: a poller would notice at t=3 at the earliest.
    cfg = LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=2.5, jitter=0)
    m = make_manager(cfg)
    rec = record(m)
    t0 = time.monotonic()
    sid = m.start_service(ExtensionService("alpha", "1"))
    assert m.armed_timers() == 1  # just the deadline: nothing polls
    for _ in range(4):
        assert frozen_lifecycle.advance(0.609375, m) == 0  # no timer wakes before the deadline
    assert rec.of(HeartbeatTimeout) == []
    assert frozen_lifecycle.advance(0.0625, m) == 1
    assert rec.of(HeartbeatTimeout) == [HeartbeatTimeout(sid, t0 + 2.5)]
    assert rec.names()[-3:] == ["heartbeat_timeout", "status_changed", "reconnecting"]


def test_deadline_miss_emits_timeout_then_reconnecting(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    sid = m.start_service(ExtensionService("alpha", "1"))
    rec = record(m)
    frozen_lifecycle.advance(3, m)
    now = time.monotonic()
    assert rec.events == [
        HeartbeatTimeout(sid, now),
        StatusChanged(sid, now, S.RUNNING, S.RECONNECTING),
        Reconnecting(sid, now, 1, 3, 1.0),
    ]


def _normalised(rec: Any) -> list[tuple[Any, ...]]:
    """Events without the service id, for comparing two runs."""
    return [
        (type(e).__name__, {k: v for k, v in kw.items() if k not in ("service_id", "event")})
        for e, kw in zip(rec.events, rec.kwargs, strict=True)
    ]


@pytest.mark.parametrize("config", [CFG, NO_AUTO], ids=["auto-reconnect", "no-auto-reconnect"])
def test_health_check_handles_a_stale_service_exactly_like_a_deadline_miss(
        make_manager, frozen_lifecycle, record, config):
    by_deadline, by_check = make_manager(config), make_manager(config)
    a = by_deadline.start_service(ExtensionService("a", "1"))
    b = by_check.start_service(ExtensionService("b", "1"))
    rec_deadline, rec_check = record(by_deadline), record(by_check)
    frozen_lifecycle.freezer.tick(3)  # due, but no timer has run
    assert by_check.health_check() == [b]
    by_deadline.run_pending()
    assert _normalised(rec_check) == _normalised(rec_deadline)
    assert rec_check.names()[0] == "heartbeat_timeout"
    assert by_check.get_status(b) is by_deadline.get_status(a) is (S.RECONNECTING if config.auto_reconnect else S.ERROR)
    rec_check.clear()
    by_check.run_pending()  # the stale deadline timer finds nothing left to do
    assert rec_check.events == []


def test_health_check_returns_only_stale_running_services(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    old = m.start_service(ExtensionService("old", "1"))
    broken = m.start_service(ExtensionService("broken", "1"))
    m.handle_error(broken, "down")  # RECONNECTING: not RUNNING, not checked
    frozen_lifecycle.freezer.tick(1)
    young = m.start_service(ExtensionService("young", "1"))
    frozen_lifecycle.freezer.tick(2)  # old and broken are 3 s silent, young 2 s
    rec = record(m)
    assert m.health_check() == [old]
    assert [e.service_id for e in rec.of(HeartbeatTimeout)] == [old]
    assert m.get_status(young) is S.RUNNING
    assert m.health_check() == []


def test_health_check_before_the_timeout_finds_nothing(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    m.start_service(ExtensionService("alpha", "1"))
    frozen_lifecycle.freezer.tick(2.75)
    rec = record(m)
    assert m.health_check() == []
    assert rec.events == []


@pytest.mark.parametrize(
    ("config", "transport"),
    [(NO_AUTO, TransportConfig()), (CFG, TransportConfig(auto_reconnect=False))],
    ids=["config-off", "transport-off"],
)
def test_without_auto_reconnect_a_timeout_goes_to_error_only(make_manager, frozen_lifecycle, record, config, transport):
    m = make_manager(config)
    sid = m.start_service(ExtensionService("alpha", "1", transport=transport))
    rec = record(m)
    frozen_lifecycle.advance(3, m)
    now = time.monotonic()
    assert rec.events == [HeartbeatTimeout(sid, now), StatusChanged(sid, now, S.RUNNING, S.ERROR)]
    assert m.armed_timers() == 0
    frozen_lifecycle.advance(100, m)
    assert rec.names() == ["heartbeat_timeout", "status_changed"]
    assert m.get_status(sid) is S.ERROR
    assert m.count() == 1


def test_heartbeat_works_with_no_receivers_and_no_subscription(make_manager, monkeypatch):
    assert not signals.heartbeat_received.receivers  # conftest checks no test leaks a receiver
    built: list[object] = []
    real = manager_module.Heartbeat

    def counting(*args: Any) -> Heartbeat:
        built.append(args)
        return real(*args)

    monkeypatch.setattr(manager_module, "Heartbeat", counting)
    m = make_manager(CFG)
    sid = m.start_service(ExtensionService("alpha", "1"))
    m.handle_heartbeat(sid)
    assert m.registry.get(sid).last_heartbeat == time.monotonic()
    assert built == []  # nobody listens: no event object is built
    subscription = m.subscribe()
    m.handle_heartbeat(sid)
    assert len(built) == 1
    assert subscription.get_nowait() == Heartbeat(sid, time.monotonic())
