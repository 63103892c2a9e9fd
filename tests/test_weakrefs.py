"""blinker holds receivers weakly; `lifecycle.connect` holds them strongly until disconnected.

The pitfall first (a lambda connected the plain blinker way disappears at the next garbage
collection and silently receives nothing), then the helper that avoids it: strong references,
the context-manager form, sender scoping, clean disconnects and argument checks.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from typing import Any

import blinker
import pytest
from helpers import listeners, receiver_ids

import lifecycle
from lifecycle import ExtensionService, LifecycleConfig, signals
from lifecycle.dispatch import SIGNALS, ScopedReceiver


def listeners_of(stored: object) -> object:
    return stored.receiver if isinstance(stored, ScopedReceiver) else stored


CFG = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=3.0, jitter=0.0)


def receivers_snapshot() -> dict[str, set[int]]:
    return receiver_ids()


@pytest.fixture
def manager(make_manager):
    return make_manager(CFG)


@pytest.fixture
def service_id(manager):
    return manager.start_service(ExtensionService("a", "1"))


# -- the pitfall -----------------------------------------------------------------------------


def test_a_lambda_connected_the_naive_way_disappears_after_gc_and_receives_nothing(manager, service_id):
    got: list[Any] = []
    before = receiver_ids()
    signals.heartbeat_received.connect(lambda sender, **kw: got.append(kw["service_id"]))
    gc.collect()
    assert receiver_ids() == before, "blinker dropped the lambda"
    manager.handle_heartbeat(service_id)
    assert got == [], "the naive lambda silently received nothing"


def test_a_closure_and_a_bound_method_of_a_temporary_vanish_the_same_way(manager, service_id):
    got: list[Any] = []

    def make() -> Any:
        def closure(sender: object, **kw: Any) -> None:
            got.append("closure")
        return closure

    class Listener:
        def on_event(self, sender: object, **kw: Any) -> None:
            got.append("method")

    before = receiver_ids()
    signals.heartbeat_received.connect(make())
    signals.heartbeat_received.connect(Listener().on_event)
    gc.collect()
    assert receiver_ids() == before
    manager.handle_heartbeat(service_id)
    assert got == []


# -- the helper ----------------------------------------------------------------------------------


def test_lifecycle_connect_keeps_a_lambda_alive_until_disconnect(manager, service_id):
    got: list[Any] = []
    connection = lifecycle.connect(lambda sender, **kw: got.append(kw["service_id"]), "heartbeat_received")
    try:
        gc.collect()
        manager.handle_heartbeat(service_id)
        assert got == [service_id]
    finally:
        connection.disconnect()
    manager.handle_heartbeat(service_id)
    assert got == [service_id], "nothing arrives after disconnect()"
    assert connection.connected is False
    connection.disconnect()  # idempotent


def test_the_signal_itself_holds_the_receiver_even_when_the_handle_is_dropped(manager, service_id):
    """The strong reference lives in the signal, not just in the returned Connection."""
    got: list[Any] = []
    signal = signals.heartbeat_received
    before = set(listeners(signal))
    lifecycle.connect(lambda sender, **kw: got.append(kw["service_id"]), signal)  # handle not kept
    gc.collect()
    try:
        manager.handle_heartbeat(service_id)
        assert got == [service_id]
    finally:
        nobody = object()
        for receiver in list(signal.receivers_for(nobody)):  # clean up through blinker itself
            if listeners_of(receiver) not in before:
                signal.disconnect(receiver)


def test_lifecycle_connect_holds_closures_and_bound_methods_of_temporaries(manager, service_id):
    got: list[str] = []

    class Listener:
        def on_event(self, sender: object, **kw: Any) -> None:
            got.append("method")

    def make() -> Any:
        return lambda sender, **kw: got.append("closure")

    with lifecycle.connect(make(), "heartbeat_received"), lifecycle.connect(Listener().on_event, "heartbeat_received"):
        gc.collect()
        manager.handle_heartbeat(service_id)
    assert sorted(got) == ["closure", "method"]


def test_the_context_manager_form_disconnects_on_exit_even_on_error(manager, service_id):
    got: list[Any] = []
    before = receivers_snapshot()
    with pytest.raises(RuntimeError), lifecycle.connect(lambda sender, **kw: got.append(1), sender=manager) as conn:
        assert isinstance(conn, lifecycle.Connection) and conn.connected
        manager.handle_heartbeat(service_id)
        raise RuntimeError("host code failed")
    assert got == [1]
    assert receivers_snapshot() == before
    manager.handle_heartbeat(service_id)
    assert got == [1]


def test_connect_without_signals_listens_to_every_lifecycle_signal(manager):
    names: list[str] = []
    with lifecycle.connect(lambda sender, **kw: names.append(kw["event"].signal_name), sender=manager):
        sid = manager.start_service(ExtensionService("b", "1"))
        manager.handle_heartbeat(sid)
        manager.handle_error(sid, "boom")
        manager.stop_service(sid)
    assert set(names) == {"service_started", "status_changed", "heartbeat_received", "service_error",
                          "reconnecting", "service_stopped"}


def test_signals_can_be_named_or_given_as_objects(manager, service_id):
    got: list[str] = []
    with lifecycle.connect(lambda sender, **kw: got.append(kw["event"].signal_name),
                           "heartbeat_received", signals.service_error):
        manager.handle_heartbeat(service_id)
        manager.handle_error(service_id, "x")
    assert got == ["heartbeat_received", "service_error"]


def test_sender_scoping_hears_one_manager_only(make_manager):
    first, second = make_manager(CFG), make_manager(CFG)
    got: list[Any] = []
    with lifecycle.connect(lambda sender, **kw: got.append(sender), "service_started", sender=first):
        first.start_service(ExtensionService("a", "1"))
        second.start_service(ExtensionService("a", "1"))
    assert got == [first]


def test_two_scoped_connections_of_one_receiver_are_independent(make_manager):
    first, second = make_manager(CFG), make_manager(CFG)
    got: list[Any] = []

    def receiver(sender: object, **kw: Any) -> None:
        got.append(sender)

    before = receivers_snapshot()
    c1 = lifecycle.connect(receiver, "service_started", sender=first)
    c2 = lifecycle.connect(receiver, "service_started", sender=second)
    c1.disconnect()
    first.start_service(ExtensionService("a", "1"))
    second.start_service(ExtensionService("a", "1"))
    assert got == [second], "disconnecting one scoped connection leaves the other working"
    c2.disconnect()
    assert receivers_snapshot() == before


def test_disconnect_leaves_signal_receivers_clean(manager):
    before = receivers_snapshot()
    had = {name: bool(sig.receivers) for name, sig in SIGNALS.items()}
    conn = lifecycle.connect(lambda sender, **kw: None, sender=manager)
    assert all(len(ids) == len(before[n]) + 1 for n, ids in receivers_snapshot().items())
    assert all(sig.has_receivers_for(manager) for sig in SIGNALS.values())
    conn.disconnect()
    assert receivers_snapshot() == before
    # Checking the truth of `receivers` is public; nothing is left for any sender either.
    assert {name: bool(sig.receivers) for name, sig in SIGNALS.items()} == had
    assert not any(sig.has_receivers_for(manager) for sig in SIGNALS.values() if not had[sig.name])


def test_connect_returns_before_connecting_anything_when_an_argument_is_bad():
    before = receivers_snapshot()
    with pytest.raises(ValueError, match="no_such_signal"):
        lifecycle.connect(lambda sender, **kw: None, "service_started", "no_such_signal")
    with pytest.raises(TypeError, match="signals"):
        lifecycle.connect(lambda sender, **kw: None, "service_started", blinker.Signal())
    with pytest.raises(TypeError, match="signals"):
        lifecycle.connect(lambda sender, **kw: None, blinker.Namespace().signal("service_started"))
    with pytest.raises(TypeError, match="receiver"):
        lifecycle.connect(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="receiver"):
        lifecycle.connect(None, "service_started")  # type: ignore[arg-type]
    assert receivers_snapshot() == before


class _Sender:
    """A weak-referenceable sender that is not a manager."""


@pytest.mark.threaded
def test_connect_and_disconnect_from_two_threads_never_raise_nor_leak():
    """Scoped connections made and dropped from two threads at once, as per-request code would."""
    signal = signals.service_started
    # Many live senders with empty buckets (what blinker leaves behind) make every sender-less
    # disconnect walk a long dict: the window in which another thread may change it.
    senders = [_Sender() for _ in range(50_000)]

    def parked(sender: object, **kw: Any) -> None:
        pass

    for s in senders:
        signal.connect(parked, sender=s, weak=False)
    signal.disconnect(parked)
    before = receivers_snapshot()
    errors: list[BaseException] = []
    stop = threading.Event()
    switch = sys.getswitchinterval()

    def mine(sender: object, **kw: Any) -> None:
        pass

    def theirs(sender: object, **kw: Any) -> None:
        pass

    def other_thread() -> None:
        while not stop.is_set():
            try:
                lifecycle.connect(theirs, signal, sender=_Sender()).disconnect()
            except RuntimeError as exc:
                errors.append(exc)
                return

    sys.setswitchinterval(1e-5)
    worker = threading.Thread(target=other_thread, name="connect-churn", daemon=True)
    worker.start()
    try:
        end = time.monotonic() + 3.0
        while time.monotonic() < end and not errors:
            connection = lifecycle.connect(mine, signal, sender=_Sender())
            try:
                connection.disconnect()
            except RuntimeError as exc:
                errors.append(exc)
    finally:
        stop.set()
        worker.join(5.0)
        sys.setswitchinterval(switch)
        leaked = receivers_snapshot() != before
        for receiver in (mine, theirs):  # undo whatever the failure left connected
            for sig in SIGNALS.values():
                sig.disconnect(receiver)
        del senders
    assert not worker.is_alive()
    assert errors == [], errors[:1]
    assert not leaked, "a receiver stayed connected after its Connection was disconnected"
