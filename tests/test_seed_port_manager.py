"""The Rust seed's manager unit tests, ported to the Python API and made to check behaviour.

Source: the `mod tests` block at the end of the seed (test_lifecycle_manager_creation,
test_start_stop_service, test_handle_heartbeat, test_handle_error, test_lifecycle_events).
"""

from __future__ import annotations

import queue
import time

import pytest

from lifecycle import (
    ExtensionService,
    LifecycleConfig,
    RegistryService,
    ServiceStatus,
    TransportConfig,
)
from lifecycle.events import Error, Heartbeat, Started, StatusChanged

S = ServiceStatus


def test_lifecycle_manager_creation(make_manager):
    registry = RegistryService()
    manager = make_manager(registry=registry)
    assert manager.registry is registry
    assert manager.count() == 0
    assert len(manager) == 0


def test_start_stop_service(make_manager):
    manager = make_manager()
    sid = manager.start_service(ExtensionService("test", "1.0.0"))
    assert manager.count() == 1
    assert manager.get_status(sid) is S.RUNNING
    manager.stop_service(sid)
    assert manager.count() == 0
    assert manager.get_status(sid) is None
    assert manager.registry.get(sid) is None


def test_handle_heartbeat(make_manager, frozen_lifecycle, record):
    manager = make_manager()
    sid = manager.start_service(ExtensionService("test", "1.0.0"))
    rec = record(manager)
    frozen_lifecycle.advance(1, manager)
    assert manager.handle_heartbeat(sid) is None
    assert manager.registry.get(sid).last_heartbeat == time.monotonic()
    assert rec.events == [Heartbeat(sid, time.monotonic())]


@pytest.mark.parametrize(
    ("config", "transport"),
    [
        (LifecycleConfig(auto_reconnect=False), TransportConfig()),
        (LifecycleConfig(), TransportConfig(auto_reconnect=False)),
    ],
    ids=["config-auto-reconnect-off", "transport-auto-reconnect-off"],
)
def test_handle_error(make_manager, frozen_lifecycle, record, config, transport):
    manager = make_manager(config)
    sid = manager.start_service(ExtensionService("test", "1.0.0", transport=transport))
    rec = record(manager)
    now = time.monotonic()
    manager.handle_error(sid, "Test error")
    assert manager.get_status(sid) is S.ERROR
    assert rec.events == [Error(sid, now, "Test error"), StatusChanged(sid, now, S.RUNNING, S.ERROR)]
    frozen_lifecycle.advance(60, manager)  # no reconnect attempt is ever scheduled
    assert rec.names() == ["service_error", "status_changed"]
    assert manager.get_status(sid) is S.ERROR


def test_lifecycle_events(make_manager, record):
    manager = make_manager()
    rec = record(manager)
    events = manager.subscribe()
    now = time.monotonic()
    sid = manager.start_service(ExtensionService("test", "1.0.0"))
    expected = [Started(sid, now), StatusChanged(sid, now, S.STARTING, S.RUNNING)]
    assert [events.get_nowait(), events.get_nowait()] == expected
    with pytest.raises(queue.Empty):
        events.get_nowait()
    assert rec.events == expected
