"""How `RedisRegistry` stores a service's description: compact JSON, defaults left out, read back whole.

A namespace of a million services keeps a million of these, so their size is the memory bill.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from lifecycle import Capability, ExtensionService, TransportConfig, TransportType
from lifecycle.fleet import Detail, Onset

redis_module = pytest.importorskip("redis")

from lifecycle.redis import RedisRegistry  # noqa: E402

ONSET = Onset(True, 3, 30.0, 30.0)  # a timeout's attempt 1 in 30 s: no test waits for it


@pytest.fixture
def registry(redis_server, namespace):
    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace)
    yield registry
    registry.clear()
    registry.client.close()


def _stored(registry: RedisRegistry, id: str) -> dict[str, object]:
    raw = registry.client.hget(registry.keys["svc"], id)
    assert raw is not None
    found: dict[str, object] = json.loads(raw)
    return found


def test_a_plain_service_is_stored_as_its_name_and_version_alone(registry):
    sid = registry.register(ExtensionService("plain", "1"))
    stored = _stored(registry, sid)
    assert stored.pop("r") == pytest.approx(time.time() * 1e6, abs=5e6)  # registered: the server's clock, µs
    assert stored == {"name": "plain", "version": "1"}
    assert registry.get(sid) == ExtensionService("plain", "1", id=sid)


def test_every_field_that_differs_from_its_default_is_kept_and_read_back(registry):
    transport = TransportConfig(TransportType.WEBSOCKET, address="ws://h", port=9, args=["-v"], env={"A": "1"},
                                cwd="/tmp", timeout_secs=2.5, auto_reconnect=False, max_retries=0,
                                heartbeat_interval_secs=1.0, heartbeat_timeout_secs=3.0,
                                ping_interval_secs=0.5, max_reconnect_attempts=4)
    service = ExtensionService("full", "2", description="d", metadata={"k": [1]},
                               capabilities=[Capability("c", "1", {"x": 1})], transport=transport)
    sid = registry.register(service)
    stored = _stored(registry, sid)
    assert "id" not in stored
    assert set(stored["transport"]) == {  # type: ignore[arg-type]
        "transport_type", "address", "port", "args", "env", "cwd", "timeout_secs", "auto_reconnect",
        "max_retries", "heartbeat_interval_secs", "heartbeat_timeout_secs", "ping_interval_secs",
        "max_reconnect_attempts"}
    found = registry.get(sid)
    assert found is not None
    assert (found.description, found.metadata, found.capabilities, found.transport) == (
        "d", {"k": [1]}, [Capability("c", "1", {"x": 1})], transport)


def test_a_record_in_the_earlier_full_form_reads_the_same(registry):
    sid = registry.register(ExtensionService("old", "1"))
    full = {"id": sid, "name": "old", "version": "1", "description": "", "metadata": {}, "capabilities": [],
            "transport": {"transport_type": "stdio", "address": None, "port": None, "command": None, "args": [],
                          "env": {}, "cwd": None, "timeout_secs": 30.0, "auto_reconnect": False, "max_retries": 3,
                          "heartbeat_interval_secs": 30.0, "heartbeat_timeout_secs": None,
                          "ping_interval_secs": None, "max_reconnect_attempts": None}}
    registered = registry.get_registration(sid)
    assert registered is not None
    registry.client.hset(registry.keys["svc"], sid, json.dumps(full))
    registry.client.hset(registry.keys["reg"], sid, int(registered.registered_at.timestamp() * 1e6))
    info = registry.get_registration(sid)
    assert info is not None and info.service.id == sid and info.service.transport.auto_reconnect is False
    assert abs((info.registered_at - registered.registered_at).total_seconds()) < 0.5


@pytest.mark.parametrize("auto_reconnect", [True, False])
def test_the_leader_reads_auto_reconnect_from_the_compact_form(registry, auto_reconnect):
    """A default `auto_reconnect` (left out of the record) is read as True by the sweep; False as False."""
    service = ExtensionService("s", "1", transport=TransportConfig(auto_reconnect=auto_reconnect))
    sid = registry.register(service)
    registry.activate(sid, 0.01)
    assert registry.lease("me", 5.0).leader
    deadline = time.monotonic() + 5.0  # the server's clock must pass the 10 ms deadline (after the rebase)
    sweep = registry.sweep("me", 0.01, 60.0, 10, onset=ONSET)
    while sweep is not None and not sweep.due and time.monotonic() < deadline:
        threading.Event().wait(0.005)
        sweep = registry.sweep("me", 0.01, 60.0, 10, onset=ONSET)
    assert sweep is not None and sweep.due == [sid]
    assert sweep.details[sid] == Detail("s", auto_reconnect, None)
    # and its plan followed from it: a reconnect cycle, or ERROR without one
    assert [e.signal_name for e in sweep.events][2:] == (["reconnecting"] if auto_reconnect else [])


def test_the_sweep_reads_each_due_services_name_and_reconnect_settings_whatever_its_record_holds(registry):
    """The details the leader plans with, from any record: names JSON escapes, transport settings, look-alikes."""
    manual = TransportConfig(auto_reconnect=False, timeout_secs=5.0)
    services = [
        (ExtensionService("plain-name", "1"), Detail("plain-name", True, None)),
        (ExtensionService('say "hi", {ok}', "1"), Detail('say "hi", {ok}', True, None)),
        (ExtensionService("café ☕", "1"), Detail("café ☕", True, None)),
        (ExtensionService("back\\slash", "1"), Detail("back\\slash", True, None)),
        (ExtensionService("looks", "1", description='"transport":{"auto_reconnect":false}'),
         Detail("looks", True, None)),
        (ExtensionService("meta", "1", metadata={"transport": {"auto_reconnect": False}}),
         Detail("meta", True, None)),
        (ExtensionService("limited", "1", transport=TransportConfig(max_reconnect_attempts=3)),
         Detail("limited", True, 3)),
        (ExtensionService("manual", "1", transport=manual), Detail("manual", False, None)),
        (ExtensionService("x" * 200, "1"), Detail("x" * 200, True, None)),
    ]
    expected = {registry.register(service): detail for service, detail in services}
    for sid in expected:
        registry.activate(sid, 0.01)
    assert registry.lease("me", 5.0).leader
    deadline = time.monotonic() + 5.0  # the server's clock must pass the 10 ms deadlines (after the rebase)
    details: dict[str, Detail] = {}
    while len(details) < len(expected) and time.monotonic() < deadline:
        sweep = registry.sweep("me", 0.01, 60.0, 100, onset=ONSET)
        assert sweep is not None
        details.update(sweep.details)
        threading.Event().wait(0.005)
    assert details == expected
