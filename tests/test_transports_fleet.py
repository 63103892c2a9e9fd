"""Transports in fleet mode: a STDIO child's restart belongs to the process that spawned it.

In a fleet the leader runs reconnect attempts with its own connector. A leader that did not spawn
a service's child must not start a second copy of it; it refuses, the attempts fail, and the
service ends in ERROR (documented in docs/transports.md, "Fork, gunicorn and fleet mode").
Two managers with a connector each stand for two processes.
"""

from __future__ import annotations

import logging
import time

import pytest
from transport_support import WAIT, child_service, proc_state

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceStatus
from lifecycle.connectors import SubprocessConnector
from lifecycle.events import Error, ReconnectFailed
from lifecycle.testing import EventRecorder

pytest.importorskip("redis", reason="fleet mode needs the redis extra")

CONFIG = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=0.5, reconnect_delay_ms=50,
                         max_reconnect_delay_ms=100, max_reconnect_attempts=2, jitter=0.0)


def test_a_leader_that_did_not_spawn_a_child_refuses_to_restart_it(redis_server, namespace, caplog):
    from lifecycle.redis import RedisRegistry

    caplog.set_level(logging.WARNING, logger="lifecycle")

    def fleet_manager(connector: SubprocessConnector) -> LifecycleManager:
        registry = RedisRegistry.from_url(redis_server.url, namespace=namespace, lease_ttl_secs=1.0)
        return LifecycleManager(registry, CONFIG, connector=connector)

    leader_connector, starter_connector = SubprocessConnector(), SubprocessConnector()
    leader = fleet_manager(leader_connector)
    starter = None
    recorder = EventRecorder()
    try:
        leader.start_service(ExtensionService("anchor", "1"), connector=lambda service: None)
        end = time.monotonic() + WAIT
        while not leader.is_leader:  # its first tick takes the lease; nothing announces it
            assert time.monotonic() < end, "the first manager never took the lease"
            time.sleep(0.01)
        starter = fleet_manager(starter_connector)
        recorder.record(starter).record(leader)
        sid = starter.start_service(child_service("crashy", "crash", "0.3"))
        first = starter_connector.pid(sid)
        assert first is not None and not starter.is_leader
        assert recorder.wait_for(lambda es: any(isinstance(e, ReconnectFailed) for e in es), timeout=WAIT * 2)
        assert leader_connector.channels() == 0 and not leader_connector.owns(sid)  # no second copy
        assert proc_state(first) is None  # the crashed child was reaped where it ran
        assert starter.get_status(sid) is ServiceStatus.ERROR
        assert any("exited with code 3" in e.error for e in recorder.of(Error))
        assert any("was not started by this process" in r.getMessage() for r in caplog.records)
    finally:
        recorder.close()
        for manager in (starter, leader):
            if manager is not None:
                manager.shutdown()
