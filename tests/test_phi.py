"""The phi accrual detector: its formula, the deadline it arms, the hard ceiling, manager.phi(id).

Manual mode under frozen time: heartbeats at exact moments, so every deadline is known.
"""

from __future__ import annotations

import math
import time

import pytest

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceStatus
from lifecycle.events import HeartbeatTimeout
from lifecycle.phi import History, PhiSettings, phi_of

PHI = LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=30, detector="phi", phi_threshold=8.0,
                      phi_min_std_deviation_secs=0.1, phi_acceptable_pause_secs=0.0, jitter=0)


def test_phi_grows_with_silence_and_is_log10_2_at_the_mean():
    assert phi_of(10.0, 10.0, 1.0) == pytest.approx(math.log10(2))
    values = [phi_of(t / 10, 10.0, 1.0) for t in range(0, 300)]
    assert values == sorted(values) and values[0] < 1e-6 and values[-1] > 30


@pytest.mark.parametrize("threshold", [0.5, 1.0, 3.0, 8.0, 16.0, 40.0])
def test_the_limit_is_where_phi_reaches_the_threshold(threshold):
    settings = PhiSettings(threshold, 1000, 0.1, 0.5, 2.0)
    history = History(settings, 0.0)
    for t in (1.7, 3.9, 6.0, 7.6, 10.1):
        history.beat(t, settings)
    limit = history.limit(settings, settings.score)
    assert history.phi(history.last + limit, settings) == pytest.approx(threshold, rel=1e-9)
    assert history.phi(history.last + limit * 0.99, settings) < threshold


def test_the_history_keeps_at_most_max_sample_size_intervals():
    settings = PhiSettings(8.0, 5, 0.1, 0.0, 1.0)
    history = History(settings, 0.0)
    for t in range(1, 20):
        history.beat(t * 3.0, settings)
    assert list(history.intervals) == [3.0] * 5
    assert history.estimate(settings) == (pytest.approx(3.0), 0.1)  # zero variance: the floor


def beat_every(frozen, manager, sid, interval: float, count: int) -> None:
    for _ in range(count):
        frozen.advance(interval)
        manager.handle_heartbeat(sid)


def test_regular_beats_are_timed_out_long_before_the_fixed_timeout(frozen_lifecycle, make_lifecycle_manager,
                                                                    record):
    manager = make_lifecycle_manager(PHI)
    sid = manager.start_service(ExtensionService("steady", "1"))
    events = record(manager)
    beat_every(frozen_lifecycle, manager, sid, 1.0, 50)
    # Intervals of 1 s (two seeds of 0.75 and 1.25 among 52): mean ~1, tiny deviation.
    entry = manager._engine._entries[sid]
    limit = manager._engine._detector.limit(entry)
    assert 1.0 < limit < 2.0
    frozen_lifecycle.advance(limit * 0.999)
    assert events.of(HeartbeatTimeout) == [] and manager.phi(sid) < 8.0
    frozen_lifecycle.advance(limit * 0.002)
    assert len(events.of(HeartbeatTimeout)) == 1 and manager.get_status(sid) is ServiceStatus.RECONNECTING
    lag = manager.metrics().detection_lag
    assert lag.count == 1 and lag.sum < limit * 0.002 + 1e-6  # fired at the phi deadline, not polled


def test_irregular_beats_earn_more_patience():
    settings = PhiSettings(8.0, 1000, 0.1, 0.0, 1.0)
    regular, irregular = History(settings, 0.0), History(settings, 0.0)
    t = 0.0
    for i in range(40):
        t += 1.0
        regular.beat(t, settings)
        irregular.beat(t + (0.6 if i % 2 else -0.6), settings)  # the same mean, jittered
    score = settings.score
    assert irregular.limit(settings, score) > 2 * regular.limit(settings, score)


def test_the_fixed_timeout_stays_a_hard_ceiling(frozen_lifecycle, make_lifecycle_manager, record):
    config = LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=5, detector="phi",
                             phi_acceptable_pause_secs=60.0)  # phi alone would wait over a minute
    manager = make_lifecycle_manager(config)
    sid = manager.start_service(ExtensionService("patient", "1"))
    events = record(manager)
    frozen_lifecycle.advance(4.99)
    assert events.of(HeartbeatTimeout) == []
    frozen_lifecycle.advance(0.01)
    assert len(events.of(HeartbeatTimeout)) == 1
    assert manager.phi(sid) < 8.0  # timed out by the ceiling, not by phi


def test_a_shrinking_estimate_pulls_the_armed_deadline_in(frozen_lifecycle, make_lifecycle_manager, record):
    # First estimate 10 s (heartbeat_interval_secs): the start arms a deadline ~17 s out. Fast
    # beats then shrink the estimate, and the deadline must follow them in, not fire late.
    config = LifecycleConfig(heartbeat_interval_secs=10, heartbeat_timeout_secs=60, detector="phi",
                             phi_acceptable_pause_secs=0.0, phi_max_sample_size=10)
    manager = make_lifecycle_manager(config)
    sid = manager.start_service(ExtensionService("quickening", "1"))
    first = manager._engine._entries[sid].deadline
    assert first is not None
    events = record(manager)
    beat_every(frozen_lifecycle, manager, sid, 0.5, 20)
    deadline = manager._engine._entries[sid].deadline
    assert deadline is not None and deadline.when < first.when
    entry = manager._engine._entries[sid]
    assert entry.history is not None
    due = entry.history.last + manager._engine._detector.limit(entry)  # 1.02 s after the last beat: 0.5 s intervals
    assert due < first.when
    frozen_lifecycle.advance(due - time.monotonic() - 0.01)
    assert events.of(HeartbeatTimeout) == []
    frozen_lifecycle.advance(0.01 + 1e-5)  # freezegun keeps microseconds
    assert len(events.of(HeartbeatTimeout)) == 1
    lag = manager.metrics().detection_lag
    assert lag.count == 1 and lag.sum < 1e-4


def test_phi_of_a_service(frozen_lifecycle, make_lifecycle_manager):
    manager = make_lifecycle_manager(PHI)
    sid = manager.start_service(ExtensionService("s", "1"))
    beat_every(frozen_lifecycle, manager, sid, 1.0, 10)
    quiet = manager.phi(sid)
    frozen_lifecycle.freezer.tick(1.1)
    assert manager.phi(sid) > quiet
    assert manager.phi("unknown") == 0.0
    fixed = make_lifecycle_manager(LifecycleConfig())
    other = fixed.start_service(ExtensionService("f", "1"))
    frozen_lifecycle.freezer.tick(100)
    assert fixed.phi(other) == 0.0


def test_the_fixed_detector_behaves_as_before(frozen_lifecycle, make_lifecycle_manager, record):
    manager = make_lifecycle_manager(LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=5))
    sid = manager.start_service(ExtensionService("s", "1"))
    events = record(manager)
    beat_every(frozen_lifecycle, manager, sid, 1.0, 10)
    frozen_lifecycle.advance(4.99)
    assert events.of(HeartbeatTimeout) == []
    frozen_lifecycle.advance(0.01)
    assert len(events.of(HeartbeatTimeout)) == 1
    assert manager._engine._entries[sid].history is None


@pytest.mark.parametrize(("field", "value"), [
    ("detector", "adaptive"), ("detector", None), ("phi_threshold", 0), ("phi_threshold", 1000),
    ("phi_threshold", math.nan), ("phi_max_sample_size", 1), ("phi_max_sample_size", 2.5),
    ("phi_min_std_deviation_secs", 0), ("phi_acceptable_pause_secs", -1), ("phi_acceptable_pause_secs", True),
])
def test_bad_phi_settings_name_their_field(field, value):
    with pytest.raises(ValueError, match=field) as caught:
        LifecycleConfig(**{field: value})
    assert caught.value.field == field  # type: ignore[attr-defined]


def test_fleet_mode_runs_the_phi_detector(redis_server, namespace):
    from lifecycle.redis import RedisRegistry

    registry = RedisRegistry.from_url(redis_server.url, namespace=namespace)
    with LifecycleManager(registry, LifecycleConfig(detector="phi"), autostart=False) as manager:
        manager.run_pending()
        sid = manager.start_service(ExtensionService("phi", "1"))
        manager.handle_heartbeat(sid)
        assert 0.0 < manager.phi(sid) < 8.0  # heard just now: some suspicion, far below the threshold
        assert manager.phi("unknown") == 0.0
    registry.clear()


def test_a_false_suspicion_is_learned(frozen_lifecycle, make_lifecycle_manager, record):
    manager = make_lifecycle_manager(PHI)
    sid = manager.start_service(ExtensionService("stalls", "1"))
    events = record(manager)
    beat_every(frozen_lifecycle, manager, sid, 1.0, 20)
    before = manager._engine._detector.limit(manager._engine._entries[sid])
    frozen_lifecycle.advance(4.0)  # a stall: suspected, then the beat proves it alive
    assert len(events.of(HeartbeatTimeout)) == 1
    manager.handle_heartbeat(sid)
    assert manager.get_status(sid) is ServiceStatus.RUNNING
    history = manager._engine._entries[sid].history
    assert history is not None and history.intervals[-1] == pytest.approx(4.0)
    assert manager._engine._detector.limit(manager._engine._entries[sid]) > before
