"""Shutdown: bounded in time whatever user code does, idempotent, re-entrant, and quiet at exit.

Real-thread cases use sub-second timeouts and only bounded waits; the interpreter-exit cases
run a child `python -c` and bound it with a timeout.
"""

from __future__ import annotations

import queue
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from helpers import MANUAL, WAIT, new_threads_exit

import lifecycle
from lifecycle import (
    ExtensionService,
    LifecycleConfig,
    LifecycleError,
    LifecycleManager,
    ManagerClosed,
    TransportConfig,
)

FAST = LifecycleConfig(
    heartbeat_interval_secs=0.05,
    heartbeat_timeout_secs=0.2,
    reconnect_delay_ms=10,
    max_reconnect_delay_ms=50,
    max_reconnect_attempts=5,
)

CFG = MANUAL


class Storm:
    """connect succeeds the first time per service, then hangs until released; counts what hangs."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.cond = threading.Condition()
        self.connected: set[str] = set()
        self.hanging = 0

    def connect(self, service: ExtensionService) -> None:
        with self.cond:
            if service.id not in self.connected:
                self.connected.add(service.id)
                return
            self.hanging += 1
            self.cond.notify_all()
        self.release.wait(WAIT)

    def disconnect(self, service: ExtensionService) -> None:
        pass

    def wait_hanging(self, n: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.hanging >= n, WAIT)


# -- shutdown under load -----------------------------------------------------------------------------


@pytest.mark.threaded
def test_shutdown_during_a_reconnect_storm_of_200_services_returns_within_its_timeout():
    before = set(threading.enumerate())
    storm = Storm()
    m = LifecycleManager(config=FAST, connector=storm)
    transport = TransportConfig(timeout_secs=0.1)  # hung attempts time out, the next ones queue up
    try:
        ids = [m.start_service(ExtensionService(f"s{i}", "1", transport=transport)) for i in range(200)]
        for sid in ids:
            m.handle_error(sid, "network down")
        assert storm.wait_hanging(8), "the storm never got going"  # every pool worker is stuck
        began = time.monotonic()
        m.shutdown(timeout=0.5)
        took = time.monotonic() - began
        assert took < 3.0, f"shutdown(timeout=0.5) took {took:.2f} s"  # unbounded it would wait 5 s
        assert m.closed and m.count() == 0 and m.registry.count() == 0 and m.armed_timers() == 0
        with pytest.raises(ManagerClosed):
            m.handle_heartbeat(ids[0])
    finally:
        storm.release.set()
    # Released, the late connects find nobody to deliver to; every worker then exits.
    new_threads_exit(before)


@pytest.mark.threaded
def test_shutdown_returns_within_its_timeout_when_every_disconnect_hangs():
    before = set(threading.enumerate())
    release = threading.Event()

    class StuckDisconnect:
        def connect(self, service: ExtensionService) -> None:
            pass

        def disconnect(self, service: ExtensionService) -> None:
            release.wait(WAIT)

    m = LifecycleManager(config=FAST, connector=StuckDisconnect())
    try:
        for i in range(50):
            m.start_service(ExtensionService(f"s{i}", "1", transport=TransportConfig(timeout_secs=30)))
        began = time.monotonic()
        m.shutdown(timeout=0.3)
        assert time.monotonic() - began < 3.0  # unbounded: >= 5 s per hanging disconnect
        assert m.count() == 0 and m.registry.count() == 0 and m.armed_timers() == 0
    finally:
        release.set()
    new_threads_exit(before)


@pytest.mark.threaded
def test_shutdown_while_a_start_service_hangs_in_connect_leaves_nothing_behind():
    before = set(threading.enumerate())
    entered, release = threading.Event(), threading.Event()

    class SlowStart:
        def connect(self, service: ExtensionService) -> None:
            entered.set()
            release.wait(WAIT)

    m = LifecycleManager(config=FAST)
    outcome: list[BaseException | str] = []

    def start() -> None:
        try:
            outcome.append(m.start_service(ExtensionService("slow", "1"), connector=SlowStart()))
        except BaseException as exc:
            outcome.append(exc)

    starter = threading.Thread(target=start, name="starter", daemon=True)
    starter.start()
    try:
        assert entered.wait(WAIT)
        began = time.monotonic()
        m.shutdown(timeout=0.5)
        assert time.monotonic() - began < 3.0  # unbounded: the connect hangs 5 s
    finally:
        release.set()
        starter.join(WAIT)
    assert not starter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], LifecycleError), outcome
    assert m.count() == 0 and m.registry.count() == 0 and m.armed_timers() == 0
    new_threads_exit(before)


# -- idempotence and re-entrance ---------------------------------------------------------------------


@pytest.mark.threaded
def test_shutdown_is_idempotent_even_from_several_threads_at_once():
    before = set(threading.enumerate())
    m = LifecycleManager(config=FAST)
    stopped: list[str] = []
    for i in range(20):
        m.start_service(ExtensionService(f"s{i}", "1"), connector=lambda s: None)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def shut() -> None:
        try:
            barrier.wait(WAIT)
            m.shutdown(timeout=2.0)
        except BaseException as exc:
            errors.append(exc)

    def on_stop(sender: object, **kw: Any) -> None:
        stopped.append(kw["service_id"])

    with lifecycle.connect(on_stop, "service_stopped", sender=m):
        threads = [threading.Thread(target=shut, name=f"shut-{i}", daemon=True) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert not any(t.is_alive() for t in threads)
        m.shutdown()
        m.shutdown(timeout=0)
    assert errors == []
    assert len(stopped) == len(set(stopped)) == 20, "each service is stopped exactly once"
    assert m.closed and m.count() == 0 and m.armed_timers() == 0
    new_threads_exit(before)


def test_shutdown_from_a_receiver_in_manual_mode(make_manager, record, frozen_lifecycle):
    m = make_manager(CFG)
    rec = record(m)
    a = m.start_service(ExtensionService("a", "1"))
    m.start_service(ExtensionService("b", "1"))

    def shut(sender: LifecycleManager, **kw: Any) -> None:
        sender.shutdown()

    with lifecycle.connect(shut, "service_error", sender=m):
        m.handle_error(a, "fatal")  # the receiver shuts the manager down mid-dispatch
    assert m.closed and m.count() == 0 and m.registry.count() == 0 and m.armed_timers() == 0
    assert rec.names().count("service_stopped") == 2
    assert frozen_lifecycle.advance(100, m) == 0
    for call in (lambda: m.handle_error(a, "x"), lambda: m.handle_heartbeat(a), lambda: m.stop_service(a),
                 m.health_check, m.subscribe,
                 lambda: m.start_service(ExtensionService("c", "1"))):
        with pytest.raises(ManagerClosed):
            call()
    assert m.get_status(a) is None and not m.is_healthy(a)


def test_the_context_manager_shuts_down_on_exit_even_on_error():
    with pytest.raises(RuntimeError), LifecycleManager(config=CFG, autostart=False) as m:
        m.start_service(ExtensionService("a", "1"))
        raise RuntimeError("host code failed")
    assert m.closed and m.count() == 0 and m.armed_timers() == 0


# -- subscriptions at shutdown -----------------------------------------------------------------------


def drain_in_thread(sub: lifecycle.Subscription) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []
    t = threading.Thread(target=lambda: got.extend(sub), name="drain", daemon=True)
    t.start()
    return t, got


@pytest.mark.threaded
def test_subscription_iteration_ends_after_shutdown_with_every_pending_event():
    m = LifecycleManager(config=FAST)
    sub = m.subscribe(maxsize=10_000)
    reader, got = drain_in_thread(sub)
    ids = [m.start_service(ExtensionService(f"s{i}", "1")) for i in range(10)]
    for sid in ids:
        m.handle_heartbeat(sid)
    m.shutdown(timeout=WAIT)
    reader.join(WAIT)
    assert not reader.is_alive(), "iteration did not end after shutdown"
    stopped = [e.service_id for e in got if e.signal_name == "service_stopped"]
    assert sorted(stopped) == sorted(ids), "events pending at shutdown are still delivered"
    assert sub.dropped == 0


def test_subscription_yields_what_is_pending_then_ends_after_shutdown(make_manager):
    m = make_manager(CFG)
    sub = m.subscribe()
    sid = m.start_service(ExtensionService("a", "1"))
    m.shutdown()
    reader, got = drain_in_thread(sub)
    reader.join(WAIT)
    assert not reader.is_alive()
    assert [e.signal_name for e in got] == [
        "service_started", "status_changed", "status_changed", "status_changed", "service_stopped"]
    assert all(e.service_id == sid for e in got)
    with pytest.raises(queue.Empty):
        sub.get(timeout=0)


def test_a_closed_subscription_ends_iteration_at_once_and_discards_pending(make_manager):
    m = make_manager(CFG)
    sub = m.subscribe()
    m.start_service(ExtensionService("a", "1"))
    assert sub.pending() == 2
    sub.close()
    reader, got = drain_in_thread(sub)
    reader.join(WAIT)
    assert not reader.is_alive() and got == []
    began = time.monotonic()
    with pytest.raises(queue.Empty):
        sub.get(timeout=WAIT)  # raises at once, it does not wait out the timeout
    assert time.monotonic() - began < 1.0


# -- interpreter exit with a manager still running ----------------------------------------------------

PRELUDE = """
import sys, threading
import lifecycle
from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, TransportConfig
cfg = LifecycleConfig(heartbeat_interval_secs=0.02, heartbeat_timeout_secs=0.05,
                      reconnect_delay_ms=5, max_reconnect_delay_ms=20, max_reconnect_attempts=1000)
forever = threading.Event()  # never set: whatever waits on it hangs until the process dies
"""

EXIT_SCENARIOS = {
    "hanging-connects": """
        hung = threading.Semaphore(0)
        class Conn:
            def __init__(self): self.seen = set()
            def connect(self, s):
                if s.id in self.seen:
                    hung.release(); forever.wait()
                self.seen.add(s.id)
            def disconnect(self, s): forever.wait()
        m = LifecycleManager(config=cfg, connector=Conn())
        for i in range(20):
            m.start_service(ExtensionService(f"s{i}", "1", transport=TransportConfig(timeout_secs=0.05)))
        for s in m.registry.list_all():
            m.handle_error(s.id, "down")
        for _ in range(8):
            assert hung.acquire(timeout=10)
    """,
    "busy-watchdog": """
        m = LifecycleManager(config=cfg)
        seen = threading.Semaphore(0)
        keep = lifecycle.connect(lambda sender, **kw: seen.release(), "reconnecting", sender=m)
        sub = m.subscribe(maxsize=16)
        for i in range(300):
            m.start_service(ExtensionService(f"s{i}", "1"))
        for _ in range(500):
            assert seen.acquire(timeout=10)
    """,
    "receiver-blocked-on-watchdog": """
        m = LifecycleManager(config=cfg)
        entered = threading.Event()
        def block(sender, **kw):
            entered.set(); forever.wait()
        keep = lifecycle.connect(block, "heartbeat_timeout", sender=m)
        for i in range(5):
            m.start_service(ExtensionService(f"s{i}", "1"))
        assert entered.wait(10)
    """,
    "sys-exit-inside-with": """
        class Conn:
            def connect(self, s): pass
            def disconnect(self, s): pass
        with LifecycleManager(config=cfg, connector=Conn()) as m:
            for i in range(5):
                m.start_service(ExtensionService(f"s{i}", "1", transport=TransportConfig(timeout_secs=0.1)))
            print("ready", flush=True)
            sys.exit(0)
    """,
}


@pytest.mark.threaded
@pytest.mark.parametrize("scenario", sorted(EXIT_SCENARIOS))
def test_the_interpreter_exits_promptly_and_quietly_with_a_manager_still_running(scenario):
    code = PRELUDE + textwrap.dedent(EXIT_SCENARIOS[scenario]) + '\nprint("ready", flush=True)\n'
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    took = time.monotonic() - began
    assert proc.stdout.strip() == "ready", (proc.stdout, proc.stderr)
    assert proc.returncode == 0, proc.stderr
    for noise in ("Exception in thread", "Traceback", "Exception ignored", "Fatal Python error"):
        assert noise not in proc.stderr, proc.stderr
    assert proc.stderr == ""
    assert took < 8.0, f"the interpreter took {took:.1f} s to exit"
