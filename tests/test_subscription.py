"""Subscriptions: a manager's events pulled from a bounded queue."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest

from lifecycle import ExtensionService, LifecycleConfig, LifecycleEvent, LifecycleManager, ServiceStatus, Subscription
from lifecycle.events import Heartbeat, Started, StatusChanged, Stopped

S = ServiceStatus
CFG = LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=3, jitter=0)


@pytest.fixture
def live_manager() -> Iterator[LifecycleManager]:
    """A manual-mode manager outside frozen time, for the waits that need a running clock."""
    manager = LifecycleManager(config=CFG, autostart=False)
    yield manager
    manager.shutdown()


def test_subscription_gets_the_events_in_order(make_manager, record):
    m = make_manager(CFG)
    rec = record(m)
    sub = m.subscribe(maxsize=16)
    assert isinstance(sub, Subscription)
    sid = m.start_service(ExtensionService("alpha", "1"))
    m.handle_heartbeat(sid)
    got = [sub.get_nowait() for _ in range(3)]
    assert [type(e) for e in got] == [Started, StatusChanged, Heartbeat]
    assert all(isinstance(e, LifecycleEvent) for e in got)
    assert got == rec.events
    assert got[0].service_id == sid


def test_every_subscription_gets_every_event_of_its_manager_only(make_manager):
    m, other = make_manager(CFG), make_manager(CFG)
    a, b, theirs = m.subscribe(), m.subscribe(), other.subscribe()
    m.start_service(ExtensionService("alpha", "1"))
    assert [type(a.get_nowait()) for _ in range(2)] == [Started, StatusChanged]
    assert [type(b.get_nowait()) for _ in range(2)] == [Started, StatusChanged]
    with pytest.raises(queue.Empty):
        theirs.get_nowait()


def test_get_returns_a_pending_event_at_once(make_manager):
    m = make_manager(CFG)
    sub = m.subscribe()
    m.start_service(ExtensionService("alpha", "1"))
    assert isinstance(sub.get(), Started)
    assert isinstance(sub.get(timeout=0), StatusChanged)


def test_get_with_a_timeout_raises_empty_when_nothing_is_pending(live_manager):
    sub = live_manager.subscribe()
    with pytest.raises(queue.Empty):
        sub.get(timeout=0.01)


@pytest.mark.timeout(0.25, method="signal")
def test_get_with_a_timeout_raises_empty_under_frozen_time(make_manager):
    sub = make_manager(CFG).subscribe()
    with pytest.raises(queue.Empty):
        sub.get(timeout=0.01)


def test_get_nowait_raises_empty_when_nothing_is_pending(make_manager):
    m = make_manager(CFG)
    sub = m.subscribe()
    with pytest.raises(queue.Empty):
        sub.get_nowait()
    m.start_service(ExtensionService("alpha", "1"))
    assert isinstance(sub.get_nowait(), Started)


def test_iteration_after_shutdown_yields_the_pending_events_then_ends(make_manager):
    m = make_manager(CFG)
    sub = m.subscribe()
    sid = m.start_service(ExtensionService("alpha", "1"))
    m.shutdown()
    got = list(sub)
    assert [type(e) for e in got] == [Started, StatusChanged, StatusChanged, StatusChanged, Stopped]
    assert got[-1].service_id == sid
    assert list(sub) == []
    with pytest.raises(queue.Empty):
        sub.get()  # ended and empty: at once, no blocking


def test_after_close_get_raises_empty_at_once_and_iteration_ends(make_manager):
    m = make_manager(CFG)
    sub = m.subscribe()
    m.start_service(ExtensionService("alpha", "1"))
    sub.close()
    with pytest.raises(queue.Empty):
        sub.get()  # pending events were discarded; would block forever if delivery went on
    with pytest.raises(queue.Empty):
        sub.get_nowait()
    assert list(sub) == []


def test_closed_subscription_receives_no_more_events(make_manager):
    m = make_manager(CFG)
    sub = m.subscribe()
    sub.close()
    m.start_service(ExtensionService("alpha", "1"))
    with pytest.raises(queue.Empty):
        sub.get_nowait()
    assert list(sub) == []


def test_close_is_idempotent_and_usable_as_context_manager(make_manager):
    m = make_manager(CFG)
    with m.subscribe() as sub:
        m.start_service(ExtensionService("alpha", "1"))
    sub.close()
    with pytest.raises(queue.Empty):
        sub.get()


def test_when_full_the_oldest_events_are_dropped_and_counted(make_manager):
    m = make_manager(CFG)
    sub = m.subscribe(maxsize=2)
    assert sub.dropped == 0
    sid = m.start_service(ExtensionService("alpha", "1"))  # Started, StatusChanged
    for _ in range(3):
        m.handle_heartbeat(sid)  # three Heartbeats
    assert sub.dropped == 3
    assert [type(sub.get_nowait()) for _ in range(2)] == [Heartbeat, Heartbeat]
    with pytest.raises(queue.Empty):
        sub.get_nowait()


def test_maxsize_one_keeps_only_the_newest_event(make_manager):
    m = make_manager(CFG)
    sub = m.subscribe(maxsize=1)
    m.start_service(ExtensionService("alpha", "1"))
    assert sub.dropped == 1
    assert isinstance(sub.get_nowait(), StatusChanged)


@pytest.mark.parametrize(
    ("maxsize", "error"),
    [(0, ValueError), (-1, ValueError), (True, TypeError), ("8", TypeError), (2.0, TypeError)],
)
def test_bad_maxsize_is_refused(make_manager, maxsize, error):
    m = make_manager(CFG)
    with pytest.raises(error):
        m.subscribe(maxsize)
