"""LifecycleManager: start_service, stop_service, queries, stop_all, shutdown and the context manager.

Everything runs in manual mode (autostart=False) under frozen time; `frozen_lifecycle.advance` moves time
and runs the timers that became due, like the watchdog would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from lifecycle import (
    ConnectionFailed,
    ExtensionService,
    InvalidState,
    LifecycleConfig,
    ManagerClosed,
    RegistryService,
    ServiceAlreadyExists,
    ServiceNotFound,
    ServiceStatus,
)
from lifecycle.events import Started, StatusChanged, Stopped

S = ServiceStatus
CFG = LifecycleConfig(
    heartbeat_interval_secs=1, heartbeat_timeout_secs=3, reconnect_delay_ms=1000, max_reconnect_attempts=2, jitter=0
)


class Conn:
    """A connector recording its calls; optional hooks run inside connect/disconnect, optional failures."""

    def __init__(
        self,
        *,
        fail_connect: BaseException | None = None,
        fail_disconnect: BaseException | None = None,
        on_connect: Callable[[ExtensionService], Any] | None = None,
        on_disconnect: Callable[[ExtensionService], Any] | None = None,
    ) -> None:
        self.fail_connect = fail_connect
        self.fail_disconnect = fail_disconnect
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.calls: list[tuple[str, str]] = []

    def connect(self, service: ExtensionService) -> None:
        self.calls.append(("connect", service.id))
        if self.on_connect is not None:
            self.on_connect(service)
        if self.fail_connect is not None:
            raise self.fail_connect

    def disconnect(self, service: ExtensionService) -> None:
        self.calls.append(("disconnect", service.id))
        if self.on_disconnect is not None:
            self.on_disconnect(service)
        if self.fail_disconnect is not None:
            raise self.fail_disconnect


def registry_status(m: Any, sid: str) -> ServiceStatus | None:
    service = m.registry.get(sid)
    return None if service is None else service.status


# -- start_service ---------------------------------------------------------------------------


def test_start_service_registers_the_service_and_returns_its_id(make_manager):
    m = make_manager(CFG)
    svc = ExtensionService("alpha", "1.0")
    sid = m.start_service(svc)
    assert sid == svc.id
    stored = m.registry.get(sid)
    assert stored is not None
    assert (stored.name, stored.version) == ("alpha", "1.0")
    assert m.count() == 1


def test_status_is_starting_while_connect_runs_and_running_after(make_manager):
    m = make_manager(CFG)
    seen: list[tuple[Any, ...]] = []

    def inside(service: ExtensionService) -> None:
        seen.append((service.status, m.get_status(service.id), registry_status(m, service.id)))

    sid = m.start_service(ExtensionService("alpha", "1"), connector=Conn(on_connect=inside))
    assert seen == [(S.STARTING, S.STARTING, S.STARTING)]
    assert m.get_status(sid) is S.RUNNING
    assert registry_status(m, sid) is S.RUNNING


def test_start_counts_as_a_heartbeat(make_manager):
    m = make_manager(CFG)
    sid = m.start_service(ExtensionService("alpha", "1"))
    assert m.registry.get(sid).last_heartbeat == time.monotonic()
    assert m.is_healthy(sid) is True


def test_fresh_service_gets_the_full_timeout_as_grace(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    rec = record(m)
    t0 = time.monotonic()
    sid = m.start_service(ExtensionService("alpha", "1"))
    frozen_lifecycle.advance(2.999, m)
    assert "heartbeat_timeout" not in rec.names()
    assert m.get_status(sid) is S.RUNNING
    assert m.is_healthy(sid)
    frozen_lifecycle.advance(0.001, m)
    timeouts = [e for e in rec.events if e.signal_name == "heartbeat_timeout"]
    assert [e.at for e in timeouts] == [t0 + 3]
    assert m.get_status(sid) is S.RECONNECTING


def test_start_emits_started_then_status_changed_starting_to_running(make_manager, record):
    m = make_manager(CFG)
    rec = record(m)
    t0 = time.monotonic()
    sid = m.start_service(ExtensionService("alpha", "1"))
    assert rec.events == [Started(sid, t0), StatusChanged(sid, t0, S.STARTING, S.RUNNING)]


def test_connector_object_connect_is_called_once_in_the_caller_thread(make_manager):
    m = make_manager(CFG)
    threads: list[threading.Thread] = []
    conn = Conn(on_connect=lambda s: threads.append(threading.current_thread()))
    sid = m.start_service(ExtensionService("alpha", "1"), connector=conn)
    assert conn.calls == [("connect", sid)]
    assert threads == [threading.current_thread()]


def test_plain_callable_is_accepted_as_connect(make_manager):
    m = make_manager(CFG)
    got: list[str] = []
    sid = m.start_service(ExtensionService("alpha", "1"), connector=lambda service: got.append(service.id))
    assert got == [sid]
    assert m.get_status(sid) is S.RUNNING


def test_failing_plain_callable_connect_raises_connection_failed(make_manager):
    m = make_manager(CFG)

    def refuse(service: ExtensionService) -> None:
        raise OSError("refused")

    with pytest.raises(ConnectionFailed):
        m.start_service(ExtensionService("alpha", "1"), connector=refuse)
    assert m.count() == 0


def test_manager_default_connector_is_used_when_start_service_gets_none(make_manager):
    default = Conn()
    m = make_manager(CFG, connector=default)
    sid = m.start_service(ExtensionService("alpha", "1"))
    m.stop_service(sid)
    assert default.calls == [("connect", sid), ("disconnect", sid)]


def test_per_call_connector_overrides_the_manager_default(make_manager):
    default, override = Conn(), Conn()
    m = make_manager(CFG, connector=default)
    sid = m.start_service(ExtensionService("alpha", "1"), connector=override)
    m.stop_service(sid)
    assert default.calls == []
    assert override.calls == [("connect", sid), ("disconnect", sid)]


@pytest.mark.parametrize("error", [OSError("refused"), RuntimeError("boom"), ValueError("bad")])
def test_failing_connect_raises_connection_failed_chained_and_leaves_nothing(make_manager, record, error):
    m = make_manager(CFG)
    rec = record(m)
    svc = ExtensionService("alpha", "1")
    with pytest.raises(ConnectionFailed) as info:
        m.start_service(svc, connector=Conn(fail_connect=error))
    assert info.value.__cause__ is error
    assert "alpha" in str(info.value) or svc.id in str(info.value)
    assert m.registry.get(svc.id) is None
    assert m.registry.count() == 0
    assert m.get_status(svc.id) is None
    assert m.count() == 0
    assert m.armed_timers() == 0
    assert rec.events == []


def test_after_a_failed_start_the_same_name_can_be_started_again(make_manager):
    m = make_manager(CFG)
    with pytest.raises(ConnectionFailed):
        m.start_service(ExtensionService("alpha", "1"), connector=Conn(fail_connect=OSError("x")))
    sid = m.start_service(ExtensionService("alpha", "1"))
    assert m.get_status(sid) is S.RUNNING


class Abort(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit."""


def test_connect_raising_a_non_exception_base_exception_raises_connection_failed(make_manager):
    m = make_manager(CFG)
    error = Abort("gone")
    svc = ExtensionService("alpha", "1")
    try:
        with pytest.raises(ConnectionFailed) as info:
            m.start_service(svc, connector=Conn(fail_connect=error))
    except Abort:
        pytest.fail("Abort escaped start_service unwrapped")
    assert info.value.__cause__ is error


def test_connect_raising_a_non_exception_still_leaves_nothing_registered(make_manager, record):
    m = make_manager(CFG)
    rec = record(m)
    svc = ExtensionService("alpha", "1")
    with pytest.raises(ConnectionFailed):
        m.start_service(svc, connector=Conn(fail_connect=Abort("gone")))
    assert m.registry.get(svc.id) is None
    assert m.count() == 0
    assert m.armed_timers() == 0
    assert rec.events == []


def test_duplicate_name_raises_service_already_exists_and_leaves_nothing_behind(make_manager, record):
    m = make_manager(CFG)
    first = m.start_service(ExtensionService("alpha", "1"))
    rec = record(m)
    armed = m.armed_timers()
    conn = Conn()
    twin = ExtensionService("alpha", "2")
    with pytest.raises(ServiceAlreadyExists):
        m.start_service(twin, connector=conn)
    assert conn.calls == []
    assert m.count() == 1
    assert m.registry.count() == 1
    assert m.registry.get_by_name("alpha").id == first
    assert m.get_status(twin.id) is None
    assert m.get_status(first) is S.RUNNING
    assert m.armed_timers() == armed
    assert rec.events == []


# -- stop_service ----------------------------------------------------------------------------


def test_stop_service_is_stopping_during_disconnect_then_stopped_and_unregistered(make_manager, record):
    m = make_manager(CFG)
    seen: list[tuple[Any, ...]] = []
    conn = Conn(on_disconnect=lambda s: seen.append((m.get_status(s.id), registry_status(m, s.id))))
    sid = m.start_service(ExtensionService("alpha", "1"), connector=conn)
    rec = record(m)
    t0 = time.monotonic()
    m.stop_service(sid)
    assert conn.calls == [("connect", sid), ("disconnect", sid)]
    assert seen == [(S.STOPPING, S.STOPPING)]
    assert rec.events == [
        StatusChanged(sid, t0, S.RUNNING, S.STOPPING),
        StatusChanged(sid, t0, S.STOPPING, S.STOPPED),
        Stopped(sid, t0),
    ]
    assert m.registry.get(sid) is None
    assert m.get_status(sid) is None
    assert m.count() == 0


def test_disconnect_is_given_the_service_as_stopping(make_manager):
    m = make_manager(CFG)
    given: list[ServiceStatus] = []
    conn = Conn(on_disconnect=lambda s: given.append(s.status))
    sid = m.start_service(ExtensionService("alpha", "1"), connector=conn)
    m.stop_service(sid)
    assert given == [S.STOPPING]


def test_stop_service_cancels_the_service_timers(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    sid = m.start_service(ExtensionService("alpha", "1"))
    m.handle_error(sid, "down")  # deadline and a pending retry
    assert m.armed_timers() >= 2
    m.stop_service(sid)
    assert m.armed_timers() == 0
    rec = record(m)
    assert frozen_lifecycle.advance(100, m) == 0
    assert rec.events == []


def test_disconnect_errors_are_logged_not_raised(make_manager, record, caplog):
    m = make_manager(CFG)
    sid = m.start_service(ExtensionService("alpha", "1"), connector=Conn(fail_disconnect=OSError("pipe broke")))
    rec = record(m)
    with caplog.at_level(logging.WARNING, logger="lifecycle"):
        m.stop_service(sid)
    assert any(r.name == "lifecycle" and "pipe broke" in r.getMessage() for r in caplog.records)
    assert rec.names() == ["status_changed", "status_changed", "service_stopped"]
    assert m.get_status(sid) is None
    assert m.registry.get(sid) is None


def test_stop_service_on_an_unknown_id_raises_service_not_found(make_manager):
    m = make_manager(CFG)
    with pytest.raises(ServiceNotFound):
        m.stop_service("no-such-service")


def test_stopping_a_stopped_service_again_raises_service_not_found(make_manager):
    m = make_manager(CFG)
    sid = m.start_service(ExtensionService("alpha", "1"))
    m.stop_service(sid)
    with pytest.raises(ServiceNotFound):
        m.stop_service(sid)


def test_stop_service_on_a_stopping_service_returns_at_once(make_manager, record):
    m = make_manager(CFG)
    nested: list[object] = []

    def stop_again(service: ExtensionService) -> None:
        nested.append(m.stop_service(service.id))  # the service is STOPPING here

    conn = Conn(on_disconnect=stop_again)
    sid = m.start_service(ExtensionService("alpha", "1"), connector=conn)
    rec = record(m)
    m.stop_service(sid)
    assert nested == [None]
    assert conn.calls.count(("disconnect", sid)) == 1
    assert rec.names() == ["status_changed", "status_changed", "service_stopped"]


def test_heartbeat_and_error_on_a_stopping_service_raise_invalid_state(make_manager):
    m = make_manager(CFG)
    raised: list[type[BaseException]] = []

    def poke(service: ExtensionService) -> None:
        for call in (lambda: m.handle_heartbeat(service.id), lambda: m.handle_error(service.id, "late")):
            try:
                call()
            except Exception as exc:
                raised.append(type(exc))

    sid = m.start_service(ExtensionService("alpha", "1"), connector=Conn(on_disconnect=poke))
    m.stop_service(sid)
    assert raised == [InvalidState, InvalidState]


# -- queries ---------------------------------------------------------------------------------


def test_get_status_equals_the_registry_status_at_every_step(make_manager, frozen_lifecycle):
    cfg = LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=3, max_reconnect_attempts=1, jitter=0)
    m = make_manager(cfg)
    seen: list[tuple[Any, Any]] = []

    def both(sid: str) -> tuple[Any, Any]:
        return m.get_status(sid), registry_status(m, sid)

    class Steps(Conn):
        def connect(self, service: ExtensionService) -> None:
            seen.append(both(service.id))
            if service.status is S.RECONNECTING:
                raise OSError("still down")

    conn = Steps(on_disconnect=lambda s: seen.append(both(s.id)))
    sid = m.start_service(ExtensionService("alpha", "1"), connector=conn)
    seen.append(both(sid))
    m.handle_error(sid, "down")
    seen.append(both(sid))
    frozen_lifecycle.advance(1, m)  # the only attempt fails: ERROR
    seen.append(both(sid))
    m.handle_heartbeat(sid)
    seen.append(both(sid))
    m.stop_service(sid)
    seen.append(both(sid))
    assert seen == [
        (S.STARTING, S.STARTING),
        (S.RUNNING, S.RUNNING),
        (S.RECONNECTING, S.RECONNECTING),
        (S.RECONNECTING, S.RECONNECTING),  # inside the reconnect attempt
        (S.ERROR, S.ERROR),
        (S.RUNNING, S.RUNNING),
        (S.STOPPING, S.STOPPING),
        (None, None),
    ]


def test_get_status_is_none_for_unknown_and_unmanaged_ids(make_manager):
    m = make_manager(CFG)
    m.start_service(ExtensionService("alpha", "1"))
    outsider = m.registry.register(ExtensionService("outsider", "1"))
    assert m.registry.get(outsider) is not None
    assert m.get_status(outsider) is None
    assert m.is_healthy(outsider) is False
    assert m.get_status("no-such-service") is None
    assert m.count() == 1


def test_manager_with_a_shared_registry_only_answers_for_its_own_services(make_manager):
    registry = RegistryService(heartbeat_timeout_secs=3)
    mine, theirs = make_manager(CFG, registry=registry), make_manager(CFG, registry=registry)
    a = mine.start_service(ExtensionService("a", "1"))
    b = theirs.start_service(ExtensionService("b", "1"))
    assert (mine.get_status(a), mine.get_status(b)) == (S.RUNNING, None)
    assert (theirs.get_status(a), theirs.get_status(b)) == (None, S.RUNNING)
    assert mine.count() == theirs.count() == 1


def test_is_healthy_only_while_running_within_the_timeout(make_manager, frozen_lifecycle):
    m = make_manager(CFG)
    sid = m.start_service(ExtensionService("alpha", "1"))
    assert m.is_healthy(sid) is True
    m.handle_error(sid, "down")  # RECONNECTING although the last heartbeat is fresh
    assert m.is_healthy(sid) is False
    m.handle_heartbeat(sid)
    assert m.is_healthy(sid) is True
    frozen_lifecycle.freezer.tick(3)  # past the timeout, before the deadline timer has run
    assert m.is_healthy(sid) is False
    assert m.is_healthy("no-such-service") is False


def test_count_and_len_follow_starts_and_stops(make_manager):
    m = make_manager(CFG)
    assert (m.count(), len(m)) == (0, 0)
    a = m.start_service(ExtensionService("a", "1"))
    m.start_service(ExtensionService("b", "1"))
    assert (m.count(), len(m)) == (2, 2)
    m.stop_service(a)
    assert (m.count(), len(m)) == (1, 1)


# -- stop_all, shutdown, context manager -----------------------------------------------------


def test_stop_all_stops_every_service_even_when_one_disconnect_fails(make_manager, record, caplog):
    m = make_manager(CFG)
    good1, bad, good2 = Conn(), Conn(fail_disconnect=RuntimeError("stuck")), Conn()
    ids = [
        m.start_service(ExtensionService(name, "1"), connector=conn)
        for name, conn in (("a", good1), ("b", bad), ("c", good2))
    ]
    rec = record(m)
    with caplog.at_level(logging.WARNING, logger="lifecycle"):
        m.stop_all()
    for sid, conn in zip(ids, (good1, bad, good2), strict=True):
        assert conn.calls[-1] == ("disconnect", sid)
    assert [e.service_id for e in rec.of(Stopped)] == ids
    assert m.count() == 0
    assert m.registry.count() == 0
    assert "stuck" in caplog.text


class FailingStopRegistry(RegistryService):
    """A registry that refuses to mark one service STOPPING (a broken shared store, say)."""

    def __init__(self, doomed_name: str) -> None:
        super().__init__(heartbeat_timeout_secs=3)
        self.doomed_name = doomed_name

    def update_status(self, id: str, status: ServiceStatus) -> ServiceStatus:
        service = self.get(id)
        if status is S.STOPPING and service is not None and service.name == self.doomed_name:
            raise RuntimeError("store unavailable")
        return super().update_status(id, status)


def test_stop_all_goes_on_when_stopping_one_service_raises(make_manager, record, caplog):
    m = make_manager(CFG, registry=FailingStopRegistry("b"))
    ids = [m.start_service(ExtensionService(name, "1")) for name in ("a", "b", "c")]
    rec = record(m)
    with caplog.at_level(logging.ERROR, logger="lifecycle"):
        m.stop_all()
    assert [e.service_id for e in rec.of(Stopped)] == [ids[0], ids[2]]
    assert m.registry.get(ids[0]) is None
    assert m.registry.get(ids[2]) is None
    assert "store unavailable" in caplog.text


def test_shutdown_stops_every_service_and_is_idempotent(make_manager, record):
    m = make_manager(CFG)
    conns = [Conn(), Conn()]
    ids = [m.start_service(ExtensionService(f"s{i}", "1"), connector=c) for i, c in enumerate(conns)]
    rec = record(m)
    m.shutdown()
    assert m.closed
    assert [e.service_id for e in rec.of(Stopped)] == ids
    assert [c.calls[-1] for c in conns] == [("disconnect", sid) for sid in ids]
    assert m.registry.count() == 0
    rec.clear()
    m.shutdown()
    assert rec.events == []
    assert [len(c.calls) for c in conns] == [2, 2]


def _start_new(m: Any, sid: str) -> None:
    m.start_service(ExtensionService("fresh", "1"))


MUTATORS: dict[str, Callable[[Any, str], Any]] = {
    "start_service": _start_new,
    "stop_service": lambda m, sid: m.stop_service(sid),
    "handle_heartbeat": lambda m, sid: m.handle_heartbeat(sid),
    "handle_error": lambda m, sid: m.handle_error(sid, "late"),
    "health_check": lambda m, sid: m.health_check(),
    "subscribe": lambda m, sid: m.subscribe(),
}


@pytest.mark.parametrize("which", ["known", "unknown"])
@pytest.mark.parametrize("call", sorted(MUTATORS))
def test_after_shutdown_mutating_calls_raise_manager_closed(make_manager, call, which):
    m = make_manager(CFG)
    known = m.start_service(ExtensionService("alpha", "1"))
    m.shutdown()
    with pytest.raises(ManagerClosed):
        MUTATORS[call](m, known if which == "known" else "no-such-service")


def test_after_shutdown_queries_answer_as_for_an_empty_manager(make_manager, frozen_lifecycle, record):
    m = make_manager(CFG)
    sid = m.start_service(ExtensionService("alpha", "1"))
    m.handle_error(sid, "down")
    m.shutdown()
    rec = record(m)
    assert m.get_status(sid) is None
    assert m.is_healthy(sid) is False
    assert (m.count(), len(m)) == (0, 0)
    assert m.attempts(sid) == 0
    assert frozen_lifecycle.advance(100, m) == 0
    assert m.run_pending() == 0
    assert rec.events == []


def test_stop_all_after_shutdown_does_nothing(make_manager, record):
    m = make_manager(CFG)
    m.shutdown()
    outsider = m.registry.register(ExtensionService("outsider", "1"))
    rec = record(m)
    m.stop_all()
    assert rec.events == []
    assert m.registry.get(outsider).status is S.STARTING


def test_context_manager_shuts_down_on_exit(make_manager, record):
    m = make_manager(CFG)
    conn = Conn()
    rec = record(m)
    with m as entered:
        assert entered is m
        sid = m.start_service(ExtensionService("alpha", "1"), connector=conn)
    assert m.closed
    assert conn.calls == [("connect", sid), ("disconnect", sid)]
    assert rec.names()[-1] == "service_stopped"
    with pytest.raises(ManagerClosed):
        m.start_service(ExtensionService("beta", "1"))


def test_context_manager_shuts_down_when_the_body_raises(make_manager):
    m = make_manager(CFG)
    with pytest.raises(KeyError), m:
        m.start_service(ExtensionService("alpha", "1"))
        raise KeyError("body failed")
    assert m.closed
    assert m.count() == 0
