"""Per-service timing: a service's TransportConfig overrides the manager's timeout, ping interval
and attempt limit (None: the config's); snapshots' retry_count equals attempts(id).

Manual mode under frozen time with jitter 0: every deadline and attempt is at a known moment.
"""

from __future__ import annotations

import pytest

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceStatus
from lifecycle import TransportConfig as T
from lifecycle.events import HeartbeatTimeout, ReconnectFailed, Reconnecting

CFG = LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=10, max_reconnect_attempts=3,
                      reconnect_delay_ms=1000, max_reconnect_delay_ms=1000, jitter=0)


def service(name: str, **transport: object) -> ExtensionService:
    return ExtensionService(name, "1", transport=T(**transport))  # type: ignore[arg-type]


def test_unset_overrides_mean_the_managers_config_and_max_retries_is_still_not_read(frozen_lifecycle,
                                                                                   make_lifecycle_manager, record):
    manager = make_lifecycle_manager(CFG)
    sid = manager.start_service(service("plain", max_retries=0, heartbeat_interval_secs=0.5))
    events = record(manager)
    frozen_lifecycle.advance(9.99)
    assert events.of(HeartbeatTimeout) == []
    frozen_lifecycle.advance(0.01)
    assert len(events.of(HeartbeatTimeout)) == 1
    for _ in range(4):
        frozen_lifecycle.advance(1)
    assert [e.attempt for e in events.of(Reconnecting)] == [1, 2, 3]
    assert [e.attempts for e in events.of(ReconnectFailed)] == [3]
    assert manager.get_status(sid) is ServiceStatus.ERROR


def test_a_services_own_timeout_and_attempt_limit_win(frozen_lifecycle, make_lifecycle_manager, record):
    manager = make_lifecycle_manager(CFG)
    fast = manager.start_service(service("fast", heartbeat_timeout_secs=2, max_reconnect_attempts=1))
    slow = manager.start_service(service("slow"))
    events = record(manager)
    frozen_lifecycle.advance(2)
    assert [e.service_id for e in events.of(HeartbeatTimeout)] == [fast]
    assert manager.is_healthy(slow) and not manager.is_healthy(fast)
    frozen_lifecycle.advance(1)  # its one attempt fails: given up after 1
    assert [(e.service_id, e.attempts) for e in events.of(ReconnectFailed)] == [(fast, 1)]
    assert [e.max_attempts for e in events.of(Reconnecting)] == [1]


def test_health_check_uses_each_services_timeout(frozen_lifecycle, make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    short = manager.start_service(service("short", heartbeat_timeout_secs=3))
    manager.start_service(service("long"))
    frozen_lifecycle.freezer.tick(4)
    assert manager.health_check() == [short]


class Pinger:
    def __init__(self) -> None:
        self.pings: dict[str, int] = {}

    def connect(self, service: ExtensionService) -> None:
        pass

    def ping(self, service: ExtensionService) -> None:
        self.pings[service.name] = self.pings.get(service.name, 0) + 1


def test_a_services_own_ping_interval_wins(frozen_lifecycle, make_lifecycle_manager):
    pinger = Pinger()
    manager = make_lifecycle_manager(CFG, connector=pinger)
    manager.start_service(service("often", ping_interval_secs=0.25))
    manager.start_service(service("usual"))
    for _ in range(8):
        frozen_lifecycle.advance(0.25)
    assert pinger.pings == {"often": 8, "usual": 2}


def test_retry_count_in_snapshots_equals_attempts(frozen_lifecycle, make_lifecycle_manager):
    manager = make_lifecycle_manager(CFG)
    sid = manager.start_service(service("counted"))
    manager.handle_error(sid, "down")
    for expected in (1, 2, 3):
        snapshot = manager.registry.get(sid)
        assert snapshot is not None and snapshot.retry_count == manager.attempts(sid) == expected
        assert [s.retry_count for s in manager.registry.list_all()] == [expected]
        frozen_lifecycle.advance(1)
    assert manager.get_status(sid) is ServiceStatus.ERROR  # given up after 3
    assert manager.registry.get(sid).retry_count == manager.attempts(sid) == 3  # type: ignore[union-attr]
    manager.handle_heartbeat(sid)
    assert manager.registry.get(sid).retry_count == manager.attempts(sid) == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(("field", "value"), [
    ("heartbeat_timeout_secs", 0), ("heartbeat_timeout_secs", "5"), ("ping_interval_secs", -1),
    ("max_reconnect_attempts", -1), ("max_reconnect_attempts", 1.5),
])
def test_bad_overrides_name_their_field(field, value):
    with pytest.raises((TypeError, ValueError), match=field):
        T(**{field: value})


def test_a_timeout_shorter_than_the_ping_interval_is_refused_and_nothing_is_registered(make_lifecycle_manager):
    with pytest.raises(ValueError, match="ping_interval_secs"):
        T(heartbeat_timeout_secs=1, ping_interval_secs=2)
    manager = make_lifecycle_manager(CFG)  # ping interval 1 s from the config
    with pytest.raises(ValueError, match="heartbeat_timeout_secs") as caught:
        manager.start_service(service("hasty", heartbeat_timeout_secs=0.5))
    assert caught.value.field == "TransportConfig.heartbeat_timeout_secs"  # type: ignore[attr-defined]
    assert manager.count() == 0 and manager.registry.count() == 0 and manager.armed_timers() == 0


def test_fleet_mode_keeps_per_service_timing(redis_server, namespace):
    from lifecycle.redis import RedisRegistry

    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace)
    with LifecycleManager(registry, LifecycleConfig(), autostart=False) as manager:
        sid = manager.start_service(service("own", heartbeat_timeout_secs=600))
        timing = registry.timing(sid)
        assert timing is not None and timing.timeout == 600 and manager.is_healthy(sid)
        with pytest.raises(ValueError, match="heartbeat_timeout_secs"):
            manager.start_service(service("hasty", heartbeat_timeout_secs=0.5))
        assert registry.count() == 1
    registry.clear()
