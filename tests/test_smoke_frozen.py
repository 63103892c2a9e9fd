from lifecycle import ExtensionService, LifecycleConfig, ServiceStatus


def test_deadline_fires_exactly_at_timeout_under_frozen_time(make_manager, frozen_lifecycle, record):
    m = make_manager(LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=3))
    rec = record(m)
    sid = m.start_service(ExtensionService("a", "1"))
    frozen_lifecycle.advance(2.999, m)
    assert m.get_status(sid) is ServiceStatus.RUNNING
    frozen_lifecycle.advance(0.001, m)
    assert m.get_status(sid) is ServiceStatus.RECONNECTING
    assert rec.names()[-3:] == ["heartbeat_timeout", "status_changed", "reconnecting"]
