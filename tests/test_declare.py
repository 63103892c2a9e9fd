"""`declare`: desired state, idempotent, never raising for an unreachable registry or a failed connect.

In memory and in a fleet (on `SharedMemoryRegistry`, so time is frozen and every step is
deterministic): manual-mode managers, `run_pending` driving the retries. One case runs again on a
real redis-server, the retries still driven by the frozen clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, RegistryUnavailable, ServiceStatus
from lifecycle.dispatch import SIGNALS
from lifecycle.events import HeartbeatTimeout, LifecycleEvent, Started
from lifecycle.redis import RedisRegistry
from lifecycle.shared_memory import SharedMemoryRegistry, _PartitionedMemory
from lifecycle.testing import FrozenLifecycle

CFG = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=5.0, reconnect_delay_ms=100,
                      max_reconnect_delay_ms=400, max_reconnect_attempts=3, jitter=0.0)


class Flaky:
    """A connector whose first `failures` connects raise."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.calls = 0

    def connect(self, service: ExtensionService) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"connect #{self.calls} refused")


def logged(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.name == "lifecycle" and text in r.getMessage())


def test_declaring_twice_starts_once_and_returns_the_same_id(frozen_lifecycle, make_lifecycle_manager, record):
    manager = make_lifecycle_manager(CFG)
    events = record(manager)
    first = manager.declare(ExtensionService("search", "1", id="search"))
    again = manager.declare(ExtensionService("search", "1", id="search"))
    assert first == again == "search"
    assert manager.count() == 1 and len(events.of(Started)) == 1


def test_a_service_started_imperatively_is_found_by_name(make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    sid = manager.start_service(ExtensionService("search", "1"))
    assert manager.declare(ExtensionService("search", "1")) == sid
    assert manager.count() == 1


def test_a_failed_connect_never_raises_and_is_retried_with_backoff_logged_once(
        frozen_lifecycle, make_lifecycle_manager, caplog):
    connector = Flaky(failures=3)
    manager = make_lifecycle_manager(CFG, connector=connector)
    with caplog.at_level(logging.INFO, logger="lifecycle"):
        sid = manager.declare(ExtensionService("db", "1", id="db"))  # no exception
        assert sid == "db" and manager.get_status(sid) is None and connector.calls == 1
        frozen_lifecycle.advance(0.5)  # retry 1 (0.5 s): fails
        frozen_lifecycle.advance(1.0)  # retry 2 (1 s later): fails
        assert connector.calls == 3 and manager.get_status(sid) is None
        frozen_lifecycle.advance(2.0)  # retry 3 (2 s later): connects
    assert connector.calls == 4
    assert manager.get_status(sid) is ServiceStatus.RUNNING
    assert logged(caplog, "is not registered yet") == 1, "one cause is logged once"
    assert logged(caplog, "is registered again") == 1


def test_a_declared_service_stopped_on_purpose_is_not_brought_back(frozen_lifecycle, make_lifecycle_manager):
    connector = Flaky(failures=1)
    manager = make_lifecycle_manager(CFG, connector=connector)
    sid = manager.declare(ExtensionService("db", "1", id="db"))  # fails; a retry is armed
    frozen_lifecycle.advance(0.5)
    assert manager.get_status(sid) is ServiceStatus.RUNNING
    manager.stop_service(sid)
    frozen_lifecycle.advance(60.0)
    assert manager.get_status(sid) is None and connector.calls == 2


def test_declare_checks_its_arguments_first(make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    with pytest.raises(TypeError, match="ExtensionService"):
        manager.declare("search")  # type: ignore[arg-type]
    assert manager.count() == 0 and manager.armed_timers() == 0


# -- in a fleet ------------------------------------------------------------------------------------


class Unreachable(SharedMemoryRegistry):
    """A handle on the shared data whose registry calls fail while `down` is set, as a Redis outage would."""

    down = threading.Event()

    def join(self, service: ExtensionService) -> Any:
        if self.down.is_set():
            raise RegistryUnavailable("the registry at 127.0.0.1:6379 cannot be reached (ConnectionError)")
        return super().join(service)


@pytest.fixture
def fleet(frozen_lifecycle: FrozenLifecycle, make_lifecycle_manager: Callable[..., LifecycleManager]
          ) -> Iterator[tuple[SharedMemoryRegistry, Callable[..., LifecycleManager], list[LifecycleEvent]]]:
    store = SharedMemoryRegistry(lease_ttl_secs=3.0)
    events: list[LifecycleEvent] = []

    def record(sender: object, **kwargs: Any) -> None:
        events.append(kwargs["event"])

    for signal in SIGNALS.values():
        signal.connect(record, weak=False)

    def make(**kwargs: Any) -> LifecycleManager:
        handle = Unreachable(store.data, lease_ttl_secs=3.0)
        return make_lifecycle_manager(CFG, registry=handle, **kwargs)

    Unreachable.down.clear()
    try:
        yield store, make, events
    finally:
        Unreachable.down.clear()
        for signal in SIGNALS.values():
            signal.disconnect(record)


def run(frozen: FrozenLifecycle, managers: list[LifecycleManager], seconds: float) -> None:
    for _ in range(round(seconds / 0.05)):
        frozen.advance(0.05, *managers)


def test_boot_with_the_registry_down_registers_the_service_when_it_comes_back(fleet, frozen_lifecycle, caplog):
    store, make, _events = fleet
    Unreachable.down.set()
    a = make()
    with caplog.at_level(logging.ERROR, logger="lifecycle"):
        sid = a.declare(ExtensionService("search", "1", id="search"))  # boot goes on
        assert sid == "search" and store.get(sid) is None
        run(frozen_lifecycle, [a], 2.0)
    assert store.get(sid) is None and logged(caplog, "is not registered yet") == 1
    Unreachable.down.clear()
    run(frozen_lifecycle, [a], 5.0)
    assert store.get(sid) is not None and store.get(sid).status is ServiceStatus.RUNNING


def test_every_declaring_process_joins_one_service(fleet, frozen_lifecycle):
    store, make, events = fleet
    a, b = make(), make()
    run(frozen_lifecycle, [a, b], 0.1)
    assert a.declare(ExtensionService("search", "1", id="search")) == "search"
    assert b.declare(ExtensionService("search", "1", id="search")) == "search"
    assert store.count() == 1 and sum(isinstance(e, Started) for e in events) == 1


def test_after_the_starter_died_and_the_data_was_lost_a_declaring_process_registers_it_again(
        fleet, frozen_lifecycle, caplog):
    store, make, events = fleet
    a, b = make(), make()
    run(frozen_lifecycle, [a, b], 0.1)
    a.declare(ExtensionService("search", "1", id="search"))  # a starts it
    b.declare(ExtensionService("search", "1", id="search"))  # b joins
    a.shutdown()  # the starter is gone (recycled, killed)
    store.flush()  # and the registry lost its data
    with caplog.at_level(logging.WARNING, logger="lifecycle"):
        run(frozen_lifecycle, [b], 1.5)  # b's next tick sees a new generation
    service = store.get("search")
    assert service is not None and service.status is ServiceStatus.RUNNING
    assert logged(caplog, "registered again: 'search'") == 1
    b.handle_heartbeat("search")
    assert not any(isinstance(e, HeartbeatTimeout) for e in events)


def test_after_a_data_loss_a_service_stopped_on_purpose_comes_back_from_the_others_declarations(
        fleet, frozen_lifecycle, caplog):
    """As documented (operations: boot under gunicorn): the stop is forgotten with the data; every
    process that still declares the service registers it again and says so."""
    store, make, _events = fleet
    a, b = make(), make()
    run(frozen_lifecycle, [a, b], 0.1)
    a.declare(ExtensionService("search", "1", id="search"))
    b.declare(ExtensionService("search", "1", id="search"))
    a.stop_service("search")  # on purpose, in a
    run(frozen_lifecycle, [a, b], 2.0)
    assert store.get("search") is None  # no declaration brings it back while the data lasts
    store.flush()
    with caplog.at_level(logging.WARNING, logger="lifecycle"):
        run(frozen_lifecycle, [a, b], 1.5)
    assert store.get("search") is not None and store.get("search").status is ServiceStatus.RUNNING
    assert logged(caplog, "1 service(s) of this process registered again: 'search'") == 1  # b
    assert logged(caplog, "0 service(s) of this process registered again") == 1  # a: nothing of its own


# -- a retry and a stop made elsewhere -------------------------------------------------------------


def test_a_pending_retry_does_not_revive_a_service_stopped_on_purpose_elsewhere(fleet, frozen_lifecycle, caplog):
    """b could not reach the registry when it declared; meanwhile a started the service and stopped it on
    purpose. b's retry reads the stop in the fleet's log and leaves it stopped; a data loss still brings it back
    (b keeps declaring it), as a process that starts later does."""
    store, make, _events = fleet
    a, b = make(), make()
    run(frozen_lifecycle, [a, b], 0.1)
    Unreachable.down.set()
    b.declare(ExtensionService("search", "1", id="search"))  # fails: a retry is armed in b
    Unreachable.down.clear()
    a.declare(ExtensionService("search", "1", id="search"))
    assert store.get("search") is not None
    a.stop_service("search")
    with caplog.at_level(logging.WARNING, logger="lifecycle"):
        run(frozen_lifecycle, [a, b], 65.0)  # b's retry came due (0.5 s), and would have again to 30 s apart
    assert store.get("search") is None, "revived by b's pending retry"
    assert logged(caplog, "is registered again") == 0
    assert logged(caplog, "'search' was stopped on purpose by another process: not registered from here") == 1
    store.flush()  # a data loss: the stop is gone with the data, b still declares the service
    run(frozen_lifecycle, [a, b], 1.5)
    assert store.get("search") is not None and store.get("search").status is ServiceStatus.RUNNING


def test_a_retry_after_a_failed_connect_does_not_revive_a_service_stopped_on_purpose_elsewhere(
        fleet, frozen_lifecycle):
    store, make, _events = fleet
    refused = Flaky(failures=1)
    a, b = make(), make(connector=refused)
    run(frozen_lifecycle, [a, b], 0.1)
    b.declare(ExtensionService("search", "1", id="search"))  # registers, the connect fails: undone, retried
    assert store.get("search") is None and refused.calls == 1
    a.declare(ExtensionService("search", "1", id="search"))  # a registers and connects it
    a.stop_service("search")
    run(frozen_lifecycle, [a, b], 65.0)
    assert store.get("search") is None and refused.calls == 1
    c = make()  # a process that starts later declares as usual: registered again
    c.declare(ExtensionService("search", "1", id="search"))
    assert store.get("search") is not None and store.get("search").status is ServiceStatus.RUNNING


def test_a_pending_retry_joins_a_service_started_again_after_a_stop_elsewhere(fleet, frozen_lifecycle, caplog):
    """Only the last word counts: stopped, then declared again by a later process: b's retry joins it."""
    store, make, events = fleet
    a, b = make(), make()
    run(frozen_lifecycle, [a, b], 0.1)
    Unreachable.down.set()
    b.declare(ExtensionService("search", "1", id="search"))
    Unreachable.down.clear()
    a.declare(ExtensionService("search", "1", id="search"))
    a.stop_service("search")
    c = make()
    c.declare(ExtensionService("search", "1", id="search"))
    with caplog.at_level(logging.WARNING, logger="lifecycle"):
        run(frozen_lifecycle, [a, b, c], 1.0)
    assert logged(caplog, "is registered again (search)") == 1  # b: its declaration holds (joined)
    assert logged(caplog, "stopped on purpose by another process") == 0
    assert store.count() == 1 and sum(isinstance(e, Started) for e in events) == 2  # a's, c's: b joined


def test_on_a_real_server_a_retry_does_not_revive_a_service_stopped_on_purpose_elsewhere(
        redis_server, namespace, frozen_lifecycle, make_lifecycle_manager):
    def registry() -> RedisRegistry:
        return RedisRegistry.from_url(redis_server.url, namespace=namespace, socket_timeout=2.0,
                                      socket_connect_timeout=2.0)

    refused = Flaky(failures=1)
    a = make_lifecycle_manager(CFG, registry=registry())
    b = make_lifecycle_manager(CFG, registry=registry(), connector=refused)
    try:
        b.declare(ExtensionService("search", "1", id="search"))  # the connect fails: retried
        a.declare(ExtensionService("search", "1", id="search"))
        assert a.get_status("search") is ServiceStatus.RUNNING
        a.stop_service("search")
        run(frozen_lifecycle, [a, b], 5.0)  # b's retries at 0.5 s, 1.5 s, 3.5 s
        assert a.registry.get("search") is None and refused.calls == 1
    finally:
        a.registry.clear()


class UnreachableParts(_PartitionedMemory):
    """`Unreachable`, over a namespace of two partitions (a position in its log is one per partition)."""

    def join(self, service: ExtensionService) -> Any:
        if Unreachable.down.is_set():
            raise RegistryUnavailable("the registry at 127.0.0.1:6379 cannot be reached (ConnectionError)")
        return super().join(service)


def test_over_partitions_a_pending_retry_does_not_revive_a_service_stopped_on_purpose_elsewhere(
        fleet, frozen_lifecycle, make_lifecycle_manager, caplog):
    store = SharedMemoryRegistry(partitions=2, lease_ttl_secs=3.0)
    a, b = (make_lifecycle_manager(CFG, registry=UnreachableParts(store.data, partitions=2, lease_ttl_secs=3.0))
            for _ in range(2))
    run(frozen_lifecycle, [a, b], 0.1)
    Unreachable.down.set()
    b.declare(ExtensionService("search", "1", id="search"))
    Unreachable.down.clear()
    a.declare(ExtensionService("search", "1", id="search"))
    a.stop_service("search")
    with caplog.at_level(logging.WARNING, logger="lifecycle"):
        run(frozen_lifecycle, [a, b], 5.0)
    assert store.get("search") is None and logged(caplog, "is registered again") == 0
    assert logged(caplog, "'search' was stopped on purpose by another process") == 1
