"""Events: the signal kwargs contract, senders, event classes, delivery rules, `lifecycle.signals`."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import types
from typing import Any

import blinker
import pytest

import lifecycle
from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceStatus, events, signals
from lifecycle.events import LifecycleEvent, StatusChanged
from lifecycle.testing import FrozenLifecycle

S = ServiceStatus
CFG = LifecycleConfig(
    heartbeat_interval_secs=1, heartbeat_timeout_secs=3, reconnect_delay_ms=1000, max_reconnect_attempts=1, jitter=0
)

#: Section 5 of the contract: each signal's keyword arguments besides ``event``.
KWARGS: dict[str, set[str]] = {
    "service_started": {"service_id"},
    "service_stopped": {"service_id"},
    "status_changed": {"service_id", "old_status", "new_status"},
    "heartbeat_received": {"service_id"},
    "heartbeat_timeout": {"service_id"},
    "reconnecting": {"service_id", "attempt", "max_attempts", "delay"},
    "reconnected": {"service_id"},
    "reconnect_failed": {"service_id", "attempts"},
    "service_error": {"service_id", "error"},
}

CLASSES: dict[str, type[LifecycleEvent]] = {
    "service_started": events.Started,
    "service_stopped": events.Stopped,
    "status_changed": events.StatusChanged,
    "heartbeat_received": events.Heartbeat,
    "heartbeat_timeout": events.HeartbeatTimeout,
    "reconnecting": events.Reconnecting,
    "reconnected": events.Reconnected,
    "reconnect_failed": events.ReconnectFailed,
    "service_error": events.Error,
}

TYPES: dict[str, type] = {
    "service_id": str,
    "old_status": ServiceStatus,
    "new_status": ServiceStatus,
    "attempt": int,
    "max_attempts": int,
    "delay": float,
    "attempts": int,
    "error": str,
}


def run_every_signal(m: LifecycleManager, frozen_lifecycle: FrozenLifecycle) -> str:
    """Drive one service through a life that sends each of the nine signals at least once."""
    sid = m.start_service(ExtensionService("alpha", "1"))  # service_started, status_changed
    m.handle_heartbeat(sid)  # heartbeat_received
    frozen_lifecycle.advance(3, m)  # heartbeat_timeout, status_changed, reconnecting
    frozen_lifecycle.advance(1, m)  # attempt 1 due without a heartbeat: status_changed, reconnect_failed
    m.handle_heartbeat(sid)  # status_changed, reconnected, heartbeat_received
    m.handle_error(sid, "boom")  # service_error, status_changed x2, reconnecting
    m.stop_service(sid)  # status_changed x2, service_stopped
    return sid


@pytest.mark.parametrize("name", sorted(KWARGS))
def test_signal_is_sent_with_the_contract_kwargs(make_manager, frozen_lifecycle, record, name):
    m = make_manager(CFG)
    rec = record(m)
    sid = run_every_signal(m, frozen_lifecycle)
    sent = [kw for kw in rec.kwargs if kw["event"].signal_name == name]
    assert sent, f"{name} was never sent"
    for kwargs in sent:
        assert set(kwargs) == KWARGS[name] | {"event"}
        event = kwargs["event"]
        assert type(event) is CLASSES[name]
        assert kwargs["service_id"] == sid
        for key in KWARGS[name]:
            assert kwargs[key] == getattr(event, key)
            assert isinstance(kwargs[key], TYPES[key]), key
            assert not isinstance(kwargs[key], bool), key


def test_signal_values_match_what_happened(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    rec = record(m)
    run_every_signal(m, frozen_lifecycle)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for kw in rec.kwargs:
        by_name.setdefault(kw["event"].signal_name, []).append(kw)
    assert [(k["attempt"], k["max_attempts"], k["delay"]) for k in by_name["reconnecting"]] == [(1, 1, 1.0)] * 2
    assert [k["attempts"] for k in by_name["reconnect_failed"]] == [1]
    assert [k["error"] for k in by_name["service_error"]] == ["boom"]
    assert [(k["old_status"], k["new_status"]) for k in by_name["status_changed"]] == [
        (S.STARTING, S.RUNNING),
        (S.RUNNING, S.RECONNECTING),
        (S.RECONNECTING, S.ERROR),
        (S.ERROR, S.RUNNING),
        (S.RUNNING, S.ERROR),
        (S.ERROR, S.RECONNECTING),
        (S.RECONNECTING, S.STOPPING),
        (S.STOPPING, S.STOPPED),
    ]


#: Section 6: the only status changes the manager makes.
LEGAL = {
    S.STARTING: {S.RUNNING, S.STOPPING},
    S.RUNNING: {S.RECONNECTING, S.ERROR, S.STOPPING},
    S.ERROR: {S.RECONNECTING, S.RUNNING, S.STOPPING},
    S.RECONNECTING: {S.RUNNING, S.ERROR, S.STOPPING},
    S.STOPPING: {S.STOPPED},
}


@pytest.mark.parametrize("auto_reconnect", [True, False])
def test_every_status_change_is_in_the_transition_table(make_manager, frozen_lifecycle, record, auto_reconnect):
    cfg = LifecycleConfig(
        heartbeat_interval_secs=1,
        heartbeat_timeout_secs=3,
        max_reconnect_attempts=1,
        auto_reconnect=auto_reconnect,
        jitter=0,
    )
    m = make_manager(cfg)
    rec = record(m)
    run_every_signal(m, frozen_lifecycle)
    sid = m.start_service(ExtensionService("beta", "1"))
    m.handle_error(sid, "x")
    m.handle_heartbeat(sid)
    frozen_lifecycle.advance(10, m)
    m.shutdown()
    changes = rec.of(StatusChanged)
    assert len(changes) >= 10
    for change in changes:
        assert change.new_status in LEGAL[change.old_status], change


def test_sender_is_the_manager(make_manager):
    m = make_manager(CFG)
    senders: list[object] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        senders.append(sender)

    with signals.service_started.connected_to(receiver), signals.status_changed.connected_to(receiver):
        m.start_service(ExtensionService("alpha", "1"))
    assert len(senders) == 2
    assert all(s is m for s in senders)


def test_receiver_for_another_manager_receives_nothing(make_manager):
    m, other = make_manager(CFG), make_manager(CFG)
    got: list[object] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        got.append(sender)

    with signals.service_started.connected_to(receiver, sender=other):
        m.start_service(ExtensionService("alpha", "1"))
        assert got == []
        other.start_service(ExtensionService("beta", "1"))
        assert got == [other]


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_event_class_is_a_frozen_dataclass_with_service_id_at_and_kwargs(name):
    cls = CLASSES[name]
    assert cls.__module__ == "lifecycle.events"
    assert getattr(events, cls.__name__) is cls
    assert issubclass(cls, LifecycleEvent)
    assert dataclasses.is_dataclass(cls)
    assert cls.__dataclass_params__.frozen
    assert {f.name for f in dataclasses.fields(cls)} == KWARGS[name] | {"at"}


def test_lifecycle_event_is_exported_top_level():
    assert lifecycle.LifecycleEvent is events.LifecycleEvent
    assert not hasattr(lifecycle, "ReconnectFailed")


def test_events_cannot_be_mutated(make_manager, record):
    m = make_manager(CFG)
    rec = record(m)
    m.start_service(ExtensionService("alpha", "1"))
    event = rec.events[1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.new_status = S.ERROR  # type: ignore[misc]


def test_event_at_is_the_frozen_monotonic_time(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    rec = record(m)
    t0 = time.monotonic()
    m.start_service(ExtensionService("alpha", "1"))
    frozen_lifecycle.advance(1.5, m)
    m.handle_error(rec.events[0].service_id, "x")
    frozen_lifecycle.advance(1, m)  # the attempt (no connector) fails at t0+2.5
    assert [e.at for e in rec.events] == [t0] * 2 + [t0 + 1.5] * 4 + [t0 + 2.5] * 2


def test_status_changed_is_never_sent_for_an_unchanged_status(make_manager, frozen_lifecycle, record):
    m = make_manager(LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=3, auto_reconnect=False))
    rec = record(m)
    sid = m.start_service(ExtensionService("alpha", "1"))
    m.handle_heartbeat(sid)  # RUNNING stays RUNNING
    m.handle_error(sid, "one")  # RUNNING -> ERROR
    rec.clear()
    m.handle_error(sid, "two")  # ERROR stays ERROR
    assert rec.names() == ["service_error"]
    m0 = make_manager(LifecycleConfig(max_reconnect_attempts=0))
    rec0 = record(m0)
    sid0 = m0.start_service(ExtensionService("beta", "1"))
    m0.handle_error(sid0, "x")  # ERROR, and giving up keeps it ERROR
    m0.handle_error(sid0, "y")
    changes = rec0.of(StatusChanged) + [e for e in rec.events if isinstance(e, StatusChanged)]
    assert all(e.old_status != e.new_status for e in changes)
    assert rec0.names().count("status_changed") == 2  # STARTING->RUNNING, RUNNING->ERROR


def test_receiver_may_call_back_into_the_manager(make_manager, record):
    m = make_manager(CFG)
    seen: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        if kwargs["new_status"] is S.RUNNING:
            seen.append(sender.get_status(kwargs["service_id"]))
            sender.handle_heartbeat(kwargs["service_id"])
            seen.append(sender.is_healthy(kwargs["service_id"]))

    rec = record(m)
    with signals.status_changed.connected_to(receiver, sender=m):
        sid = m.start_service(ExtensionService("alpha", "1"))
    assert seen == [S.RUNNING, True]
    assert rec.names() == ["service_started", "status_changed", "heartbeat_received"]
    assert m.get_status(sid) is S.RUNNING


def _from_another_thread(fn: Any) -> list[Any]:
    """Run `fn` in a fresh thread; returns its result in a list, empty if it blocked on a held lock."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(fn()), daemon=True)
    thread.start()
    thread.join(2)
    return list(result)  # a copy: a late answer, after the receiver returned, must not count


@pytest.mark.parametrize("signal_name", ["status_changed", "heartbeat_timeout"])
def test_receivers_run_with_no_manager_lock_held(make_manager, frozen_lifecycle, signal_name):
    m = make_manager(CFG)
    answers: list[list[Any]] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        answers.append(_from_another_thread(lambda: sender.get_status(kwargs["service_id"])))

    with getattr(signals, signal_name).connected_to(receiver, sender=m):
        m.start_service(ExtensionService("alpha", "1"))
        frozen_lifecycle.advance(3, m)  # the timeout fires inside run_pending, as on the watchdog
    assert answers
    assert all(len(a) == 1 for a in answers)


def test_raising_receiver_is_logged_and_others_and_the_caller_go_on(make_manager, frozen_lifecycle, caplog):
    m = make_manager(CFG)
    got: dict[str, list[str]] = {"first": [], "second": []}

    def make_receiver(key: str) -> Any:
        def receiver(sender: Any, **kwargs: Any) -> None:
            got[key].append(kwargs["event"].signal_name)
            raise RuntimeError(f"receiver {key} broke")

        return receiver

    first, second = make_receiver("first"), make_receiver("second")
    with (
        caplog.at_level(logging.ERROR, logger="lifecycle"),
        signals.service_started.connected_to(first, sender=m),
        signals.service_started.connected_to(second, sender=m),
        signals.heartbeat_timeout.connected_to(first, sender=m),
        signals.heartbeat_timeout.connected_to(second, sender=m),
    ):
        sid = m.start_service(ExtensionService("alpha", "1"))  # the caller is not disturbed
        frozen_lifecycle.advance(3, m)  # nor is the timer run
    # Whatever order blinker picks, each receiver ran although the other raised.
    assert got == {k: ["service_started", "heartbeat_timeout"] for k in got}
    assert m.get_status(sid) is S.RECONNECTING  # the deadline action completed
    records = [r for r in caplog.records if r.name == "lifecycle" and r.exc_info]
    assert {str(r.exc_info[1]) for r in records} == {"receiver first broke", "receiver second broke"}
    assert len(records) == 4


def test_raising_receiver_does_not_stop_a_recording_one(make_manager, record, caplog):
    m = make_manager(CFG)
    rec = record(m)

    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("broken receiver")

    with signals.status_changed.connected_to(broken, sender=m), caplog.at_level(logging.ERROR, logger="lifecycle"):
        sid = m.start_service(ExtensionService("alpha", "1"))
    assert rec.names() == ["service_started", "status_changed"]
    assert m.get_status(sid) is S.RUNNING
    assert "broken receiver" in caplog.text


def test_muted_signal_delivers_nothing_until_the_block_ends(make_manager, record):
    m = make_manager(CFG)
    rec = record(m)
    with signals.service_started.muted():
        a = m.start_service(ExtensionService("a", "1"))
    assert rec.names() == ["status_changed"]
    b = m.start_service(ExtensionService("b", "1"))
    assert [e.service_id for e in rec.events if e.signal_name == "service_started"] == [b]
    assert a != b


def test_signals_module_holds_named_signals_of_one_namespace():
    assert isinstance(signals, types.ModuleType)
    assert lifecycle.signals is signals
    namespaces = [v for v in vars(signals).values() if isinstance(v, blinker.Namespace)]
    assert len(namespaces) == 1
    (namespace,) = namespaces
    for name in KWARGS:
        sig = getattr(signals, name)
        assert isinstance(sig, blinker.NamedSignal)
        assert sig.name == name
        assert namespace[name] is sig
        assert isinstance(sig.__doc__, str)
        assert sig.__doc__.strip()
        assert blinker.signal(name) is not sig  # not blinker's default namespace


def test_every_event_class_sends_exactly_its_fields_but_at_as_signal_kwargs():
    from lifecycle import ServiceId
    from lifecycle import events as ev

    samples = {
        ev.StatusChanged: {"old_status": ServiceStatus.RUNNING, "new_status": ServiceStatus.ERROR},
        ev.Reconnecting: {"attempt": 2, "max_attempts": 5, "delay": 1.5},
        ev.ReconnectFailed: {"attempts": 5},
        ev.Error: {"error": "boom"},
    }
    classes = [ev.Started, ev.Stopped, ev.StatusChanged, ev.Heartbeat, ev.HeartbeatTimeout,
               ev.Reconnecting, ev.Reconnected, ev.ReconnectFailed, ev.Error]
    for cls in classes:
        extra = samples.get(cls, {})
        event = cls(ServiceId("x"), 1.0, **extra)
        names = {f.name for f in dataclasses.fields(event)} - {"at"}
        assert event.signal_kwargs() == {name: getattr(event, name) for name in names}, cls.__name__
