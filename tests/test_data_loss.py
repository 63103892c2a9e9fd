"""Loud data loss: every process that sees the registry lost its data logs it once, and what it restored.

On a real redis-server / valkey-server: three manual-mode managers of one namespace, FLUSHALL,
and a new process whose plain `declare` registers the shared service before any survivor ticks.
Each survivor still logs the loss exactly once, naming what it registered again and what
another process had already brought back. Real time passes (the lease lives on the server's
clock); each manager ticks only when the test drives it with `run_pending`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis_server as servers

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, RegistryUnavailable, ServiceStatus
from lifecycle.redis import RedisRegistry

CONFIG = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=30.0)
TTL = 0.6  # ticks every 0.2 s: a few renewals fit in well under a second
WAIT = 10.0  # generous bound for what takes well under a second
LOST = "the registry lost its data"


class Lines(logging.Handler):
    """The lifecycle logger's messages containing LOST, in order; waitable."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if LOST in message:
            with self._cond:
                self.lines.append(message)
                self._cond.notify_all()


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("lifecycle")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def make(fresh_redis_server: servers.RedisServer, namespace: str) -> Iterator[Callable[[], LifecycleManager]]:
    """Managers on a server of the test's own: FLUSHALL there reaches no manager another test left running,
    whose own "lost its data" lines would be counted here."""
    made: list[LifecycleManager] = []
    redis_server = fresh_redis_server

    def build() -> LifecycleManager:
        registry = RedisRegistry.from_url(redis_server.url, namespace=namespace, lease_ttl_secs=TTL,
                                          socket_timeout=2.0, socket_connect_timeout=2.0)
        made.append(LifecycleManager(registry, CONFIG, autostart=False))
        return made[-1]

    yield build
    for manager in made:
        manager.shutdown()
    for manager in made:
        with contextlib.suppress(RegistryUnavailable):
            manager.registry.clear()
        manager.registry.client.close()  # type: ignore[attr-defined]


def ticks(manager: LifecycleManager) -> int:
    return manager._engine.ticker.ticks  # type: ignore[attr-defined, no-any-return]


def drive(manager: LifecycleManager, until: Callable[[], object], what: str) -> None:
    """Run `manager`'s due timers (its lease tick among them) until `until()` holds, within WAIT."""
    end = time.monotonic() + WAIT
    while not until():
        manager.run_pending()
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)  # the next tick is due after real time passed: nothing in-process to wait on


def tick_once(manager: LifecycleManager) -> None:
    seen = ticks(manager)
    drive(manager, lambda: ticks(manager) > seen, "a tick")


def test_every_survivor_logs_the_loss_once_and_what_it_restored_whoever_restored_first(make, lines):
    search = ExtensionService("search", "1", id="search")
    a, b, c = make(), make(), make()
    for manager in (a, b, c):
        tick_once(manager)  # each has read the generation marker before the loss
    assert a.declare(search) == "search"  # a starts it
    alpha = a.start_service(ExtensionService("alpha", "1"))
    assert b.declare(search) == "search"  # b and c join
    beta = b.start_service(ExtensionService("beta", "1"))
    assert c.declare(search) == "search"
    assert a.registry.count() == 3

    a.registry.client.flushall()  # type: ignore[attr-defined]
    newcomer = make()  # a worker booted after the loss: its plain declaration registers the service first
    assert newcomer.declare(search) == "search" and a.registry.count() == 1

    for manager in (a, b, c):
        tick_once(manager)
    assert lines.lines == [
        f"lifecycle: {LOST}; 1 service(s) of this process registered again: 'alpha'; "
        "already registered again by another process: 'search'",
        f"lifecycle: {LOST}; 1 service(s) of this process registered again: 'beta'; "
        "already registered again by another process: 'search'",
        f"lifecycle: {LOST}; 0 service(s) of this process registered again; "
        "already registered again by another process: 'search'",
    ]
    # Once per loss: later renewals (and the newcomer, which never saw the old data) log nothing.
    for manager in (a, b, c, newcomer, a, b, c, newcomer):
        tick_once(manager)
    assert len(lines.lines) == 3
    for sid in ("search", alpha, beta):
        service = a.registry.get(sid)
        assert service is not None and service.status is ServiceStatus.RUNNING, sid


def test_a_second_loss_is_logged_again_by_each(make, lines):
    a, b = make(), make()
    for manager in (a, b):
        tick_once(manager)
    sid = a.start_service(ExtensionService("one", "1"))
    for round in (1, 2):
        a.registry.client.flushall()  # type: ignore[attr-defined]
        tick_once(a)
        tick_once(b)
        assert len(lines.lines) == 2 * round, lines.lines
        assert lines.lines[-2] == f"lifecycle: {LOST}; 1 service(s) of this process registered again: 'one'"
        assert lines.lines[-1] == f"lifecycle: {LOST}; 0 service(s) of this process registered again"
        assert a.registry.get(sid) is not None
