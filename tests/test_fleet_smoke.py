"""Fleet mode end to end in one process: two managers on one namespace act as one."""

from __future__ import annotations

import threading

import pytest

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceStatus, signals
from lifecycle.redis import RedisRegistry

pytestmark = pytest.mark.threaded

CONFIG = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=0.4, reconnect_delay_ms=20,
                         max_reconnect_delay_ms=50, max_reconnect_attempts=2)


def test_a_timeout_is_emitted_once_by_the_leader_and_a_heartbeat_anywhere_revives(redis_server, namespace):
    managers = [LifecycleManager(RedisRegistry.from_url(redis_server.url, namespace=namespace, lease_ttl_secs=1.0),
                                 CONFIG) for _ in range(2)]
    timeouts: list[object] = []
    failed = threading.Event()

    def on_timeout(sender: object, **kw: object) -> None:
        timeouts.append(sender)

    def on_failed(sender: object, **kw: object) -> None:
        failed.set()

    signals.heartbeat_timeout.connect(on_timeout, weak=False)
    signals.reconnect_failed.connect(on_failed, weak=False)
    try:
        sid = managers[0].start_service(ExtensionService("a", "1"))
        assert managers[1].start_service(ExtensionService("a", "1")) == sid  # a join
        assert managers[1].get_status(sid) is ServiceStatus.RUNNING
        assert failed.wait(10), "the silent service was never given up on"
        assert len(timeouts) == 1
        assert [m.is_leader for m in managers].count(True) == 1
        assert timeouts[0] is next(m for m in managers if m.is_leader)
        follower = next(m for m in managers if not m.is_leader)
        follower.handle_heartbeat(sid)
        assert managers[0].get_status(sid) is ServiceStatus.RUNNING
    finally:
        signals.heartbeat_timeout.disconnect(on_timeout)
        signals.reconnect_failed.disconnect(on_failed)
        for m in managers:
            m.shutdown()
