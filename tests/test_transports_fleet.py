"""Transports in fleet mode: a STDIO child's restart belongs to the member that owns it.

In a fleet the leader runs reconnect attempts, but never those of a process-bound service: the
store claims them for the service's owner (docs/fleet.md, "Transports in a fleet"). A leader that
does not own a child never starts a copy of it; the owner respawns it. Two managers with a
connector each stand for two processes (tests/test_transports_ownership.py covers hand-overs).
"""

from __future__ import annotations

import logging
import time

import pytest
from transport_support import WAIT, child_service, proc_state

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceStatus
from lifecycle.connectors import SubprocessConnector
from lifecycle.events import Error, Reconnected
from lifecycle.testing import EventRecorder

pytest.importorskip("redis", reason="fleet mode needs the redis extra")

CONFIG = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=0.5, reconnect_delay_ms=50,
                         max_reconnect_delay_ms=100, max_reconnect_attempts=2, jitter=0.0)


def test_a_leader_that_does_not_own_a_child_leaves_its_restart_to_the_owner(redis_server, namespace, caplog):
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
        assert recorder.wait_for(lambda es: any(isinstance(e, Reconnected) and e.service_id == sid for e in es),
                                 timeout=WAIT * 2)
        assert leader_connector.channels() == 0 and not leader_connector.owns(sid)  # no second copy
        assert proc_state(first) is None  # the crashed child was reaped where it ran
        assert starter_connector.pid(sid) != first  # its owner spawned the next one
        assert starter.get_status(sid) is not ServiceStatus.ERROR
        assert any("exited with code 3" in e.error for e in recorder.of(Error))
        assert not any("was not started by this process" in r.getMessage() for r in caplog.records)
    finally:
        recorder.close()
        for manager in (starter, leader):
            if manager is not None:
                manager.shutdown()
