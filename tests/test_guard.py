"""Nothing stops watching: a timer action whose store raises is retried with backoff, logged once per cause.

Manual mode under frozen time, with a registry that fails on purpose: the failure must not lose
the deadline, the attempt or the pings it was carrying.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest

from lifecycle import ExtensionService, LifecycleConfig, RegistryService, ServiceStatus
from lifecycle.events import HeartbeatTimeout, Reconnected

CFG = LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=5, max_reconnect_attempts=3,
                      reconnect_delay_ms=1000, jitter=0)


class Failing(RegistryService):
    """An in-memory registry whose chosen operations raise the next `times` times they are called."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures: dict[str, int] = {}

    def _maybe_fail(self, name: str) -> None:
        left = self.failures.get(name, 0)
        if left:
            self.failures[name] = left - 1
            raise OSError(f"{name} is broken")

    def silence_many(self, ids: Sequence[str]) -> Any:
        self._maybe_fail("silence_many")
        return super().silence_many(ids)

    def get(self, id: str) -> Any:
        self._maybe_fail("get")
        return super().get(id)


class Connector:
    def __init__(self) -> None:
        self.connects = 0

    def connect(self, service: ExtensionService) -> None:
        self.connects += 1


def lifecycle_logs(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.name == "lifecycle" and text in r.getMessage())


def test_a_deadline_whose_registry_read_fails_is_retried_and_still_times_the_service_out(
        frozen_lifecycle, make_lifecycle_manager, record, caplog):
    registry = Failing(heartbeat_timeout_secs=5)
    manager = make_lifecycle_manager(CFG, registry=registry)
    sid = manager.start_service(ExtensionService("svc", "1"))
    events = record(manager)
    registry.failures["silence_many"] = 3
    with caplog.at_level(logging.WARNING, logger="lifecycle"):
        frozen_lifecycle.advance(5.0)  # the deadline fires and its read fails
        assert events.of(HeartbeatTimeout) == []
        for _ in range(10):  # backoff 0.05, 0.1, 0.2 s: within a second it has run again three times
            frozen_lifecycle.advance(0.2)
    assert len(events.of(HeartbeatTimeout)) == 1, "the deadline was lost with its failed action"
    assert manager.get_status(sid) is ServiceStatus.RECONNECTING
    assert lifecycle_logs(caplog, "is broken") == 1, "one cause is logged once, however often it repeats"
    assert lifecycle_logs(caplog, "runs again") == 1


def test_an_attempt_whose_registry_read_fails_is_run_later_not_lost(frozen_lifecycle, make_lifecycle_manager,
                                                                     record):
    registry = Failing(heartbeat_timeout_secs=5)
    connector = Connector()
    manager = make_lifecycle_manager(CFG, registry=registry, connector=connector)
    sid = manager.start_service(ExtensionService("svc", "1"))
    events = record(manager)
    manager.handle_error(sid, "boom")  # attempt 1 is due in 1 s
    registry.failures["get"] = 2  # the attempt's snapshot fails twice
    frozen_lifecycle.advance(1.0)
    assert connector.connects == 1 and manager.get_status(sid) is ServiceStatus.RECONNECTING
    for _ in range(5):
        frozen_lifecycle.advance(0.2)
    assert connector.connects == 2, "the attempt ran once its read worked again"
    assert len(events.of(Reconnected)) == 1 and manager.get_status(sid) is ServiceStatus.RUNNING
