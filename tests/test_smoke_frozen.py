from lifecycle import ExtensionService, LifecycleConfig, ServiceStatus


def test_deadline_fires_exactly_at_timeout_under_frozen_time(make_manager, clock, record):
    m = make_manager(LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=3))
    rec = record(m)
    sid = m.start_service(ExtensionService("a", "1"))
    clock.advance(2.999, m)
    assert m.get_status(sid) is ServiceStatus.RUNNING
    clock.advance(0.001, m)
    assert m.get_status(sid) is ServiceStatus.RECONNECTING
    assert rec.names()[-3:] == ["heartbeat_timeout", "status_changed", "reconnecting"]
