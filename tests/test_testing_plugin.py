"""The pytest plugin `lifecycle.testing`: what a user's test file gets in a fresh pytest run, with no conftest.

Each case writes a small test file with `pytester` and runs pytest on it in this process
(`runpytest`: the plugin comes from its pytest11 entry point, as it would for any user).
"""

from __future__ import annotations

import freezegun
import pytest

from lifecycle import ExtensionService, LifecycleManager, ServiceStatus
from lifecycle.events import HeartbeatTimeout, StatusChanged
from lifecycle.testing import EventRecorder, FrozenLifecycle

HEADER = """
import threading

import pytest

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceStatus
from lifecycle.dispatch import SIGNALS
from lifecycle.events import HeartbeatTimeout, LifecycleEvent, Reconnecting, StatusChanged
"""


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=HEADER + source)
    return pytester.runpytest(*args)


def test_the_fixtures_come_from_the_entry_point_with_no_conftest(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
def test_all_at_once(lifecycle_config, make_lifecycle_manager, lifecycle_manager, frozen_lifecycle, lifecycle_events):
    pass
""")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["plugins:*lifecycle-*"])
    listing = pytester.runpytest("--fixtures")
    listing.stdout.fnmatch_lines([
        "*fixtures defined from lifecycle.testing*",
        "lifecycle_config -- *", "    The config*",
        "frozen_lifecycle -- *", "    Freeze time*",
        "make_lifecycle_manager -- *", "    `make(config=None, **kwargs)`*",
        "lifecycle_manager -- *", "    One manager*",
        "lifecycle_events -- *", "    An `EventRecorder`*",
    ])


def test_lifecycle_manager_is_in_manual_mode_and_shut_down_after_the_test(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
KEPT = []

def test_manual_mode(lifecycle_manager, lifecycle_config):
    assert isinstance(lifecycle_manager, LifecycleManager)
    assert lifecycle_manager.config is lifecycle_config == LifecycleConfig()
    before = set(threading.enumerate())
    sid = lifecycle_manager.start_service(ExtensionService("a", "1"))
    assert set(threading.enumerate()) == before, "manual mode starts no watchdog thread"
    assert lifecycle_manager.get_status(sid) is ServiceStatus.RUNNING
    assert lifecycle_manager.armed_timers() > 0
    KEPT.append(lifecycle_manager)

def test_shut_down_afterwards():
    assert KEPT[0].closed and KEPT[0].count() == 0 and KEPT[0].armed_timers() == 0

def test_factory_seeds_every_manager_the_same(frozen_lifecycle, make_lifecycle_manager, lifecycle_events):
    delays = []
    for _ in range(2):
        manager = make_lifecycle_manager(LifecycleConfig(jitter=0.5))
        lifecycle_events.clear()
        lifecycle_events.record(manager)
        manager.handle_error(manager.start_service(ExtensionService("a", "1")), "boom")
        [reconnecting] = lifecycle_events.of(Reconnecting)
        delays.append(reconnecting.delay)
    assert delays[0] == delays[1] != 1.0, "the same seed gives the same jitter"
""")
    result.assert_outcomes(passed=3)


def test_frozen_lifecycle_drives_a_heartbeat_timeout_that_the_recorder_captures(pytester: pytest.Pytester) -> None:
    # `started` runs before the freeze is asked for: the factory must start the freeze first anyway,
    # or the deadline would be read from the real clock and fire at the first advance.
    result = run(pytester, """
@pytest.fixture
def started(lifecycle_manager):
    return lifecycle_manager.start_service(ExtensionService("a", "1"))

def test_timeout(started, lifecycle_manager, lifecycle_events, frozen_lifecycle):
    sid = started
    assert frozen_lifecycle.advance(89.5) == 0  # default config: 90 s without a heartbeat
    assert lifecycle_manager.get_status(sid) is ServiceStatus.RUNNING
    assert frozen_lifecycle.advance(0.5) >= 1  # no managers named: every one the factory built
    assert lifecycle_manager.get_status(sid) is ServiceStatus.RECONNECTING
    assert all(isinstance(e, LifecycleEvent) for e in lifecycle_events.events)
    assert "heartbeat_timeout" in lifecycle_events.names()
    [timeout] = lifecycle_events.of(HeartbeatTimeout)
    assert timeout.service_id == sid
    changes = [(e.old_status, e.new_status) for e in lifecycle_events.of(StatusChanged)]
    assert (ServiceStatus.RUNNING, ServiceStatus.RECONNECTING) in changes
    assert lifecycle_events.for_service(sid) == lifecycle_events.events
    assert lifecycle_events.kwargs[0]["event"] is lifecycle_events.events[0]

def test_the_freezer_is_there_for_tick_and_move_to(frozen_lifecycle, lifecycle_manager):
    import time
    start = time.monotonic()
    frozen_lifecycle.freezer.tick(5)
    assert time.monotonic() == start + 5
    frozen_lifecycle.freezer.move_to("2026-01-02 00:00:00")
    assert frozen_lifecycle.managers == [lifecycle_manager]
""")
    result.assert_outcomes(passed=2)


def test_overriding_lifecycle_config_in_a_conftest_changes_the_timeout(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
import pytest
from lifecycle import LifecycleConfig

@pytest.fixture
def lifecycle_config():
    return LifecycleConfig(heartbeat_interval_secs=1, heartbeat_timeout_secs=2)
""")
    result = run(pytester, """
def test_short_timeout(frozen_lifecycle, lifecycle_manager, lifecycle_events):
    assert lifecycle_manager.config.heartbeat_timeout_secs == 2
    sid = lifecycle_manager.start_service(ExtensionService("a", "1"))
    frozen_lifecycle.advance(1.5)
    assert lifecycle_events.of(HeartbeatTimeout) == []
    frozen_lifecycle.advance(0.5)
    assert [e.service_id for e in lifecycle_events.of(HeartbeatTimeout)] == [sid]
""")
    result.assert_outcomes(passed=1)


def test_the_recorder_hears_only_its_managers_and_disconnects_at_teardown(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
KEPT = []

def test_record(make_lifecycle_manager, lifecycle_events):
    heard, other, unheard = make_lifecycle_manager(), make_lifecycle_manager(), make_lifecycle_manager()
    assert lifecycle_events.record(heard).record(other) is lifecycle_events
    a = heard.start_service(ExtensionService("a", "1"))
    b = other.start_service(ExtensionService("b", "1"))
    unheard.start_service(ExtensionService("c", "1"))
    assert {e.service_id for e in lifecycle_events.events} == {a, b}
    lifecycle_events.clear()
    assert lifecycle_events.events == [] and lifecycle_events.kwargs == []
    KEPT.append(lifecycle_events)

def test_gone_afterwards():
    from lifecycle.dispatch import ScopedReceiver
    nobody = object()  # every-sender receivers, through blinker's public API
    assert all(KEPT[0] is not getattr(r, "receiver", r) for signal in SIGNALS.values()
               for r in signal.receivers_for(nobody) if isinstance(r, ScopedReceiver))
""")
    result.assert_outcomes(passed=2)


def test_p_no_lifecycle_disables_the_plugin(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
def test_without_fixtures():
    pass

def test_with_the_fixture(lifecycle_manager):
    pass
""", "-p", "no:lifecycle")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*fixture 'lifecycle_manager' not found*"])


def test_wait_for_follows_a_real_thread_manager(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
FAST = LifecycleConfig(heartbeat_interval_secs=0.05, heartbeat_timeout_secs=0.2, max_reconnect_attempts=0)

def test_real_threads(make_lifecycle_manager, lifecycle_events):
    manager = make_lifecycle_manager(FAST, autostart=True)
    lifecycle_events.record(manager)
    sid = manager.start_service(ExtensionService("a", "1"))
    assert lifecycle_events.wait_for(lambda events: any(isinstance(e, HeartbeatTimeout) for e in events), 5.0)
    assert lifecycle_events.of(HeartbeatTimeout)[0].service_id == sid
    assert lifecycle_events.wait_for(lambda events: False, timeout=0.01) is False
""")
    result.assert_outcomes(passed=1)


def test_a_missing_freezegun_is_a_clear_error(pytester: pytest.Pytester) -> None:
    result = run(pytester, """
import sys

@pytest.fixture
def no_freezegun(monkeypatch):
    monkeypatch.setitem(sys.modules, "freezegun", None)

def test_frozen(no_freezegun, frozen_lifecycle):
    pass
""")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs freezegun: pip install 'service-lifecycle?testing?'*"])


def test_frozen_lifecycle_works_standalone_around_a_users_freezer() -> None:
    recorder = EventRecorder()
    with freezegun.freeze_time("2026-01-01 00:00:00") as freezer:
        manager = LifecycleManager(autostart=False)
        try:
            recorder.record(manager)
            clock = FrozenLifecycle(freezer)
            sid = manager.start_service(ExtensionService("a", "1"))
            assert clock.advance(90) == 0, "no managers given or known: nothing runs"
            assert manager.get_status(sid) is ServiceStatus.RUNNING
            assert clock.advance(0, manager) >= 1
            assert manager.get_status(sid) is ServiceStatus.RECONNECTING
            assert [e.service_id for e in recorder.of(HeartbeatTimeout)] == [sid]
            assert recorder.of(StatusChanged)[-1].new_status is ServiceStatus.RECONNECTING
        finally:
            recorder.close()
            manager.shutdown()


def test_in_a_fresh_interpreter_loading_the_plugin_imports_no_freezegun(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user="""
import sys

def test_lazy(lifecycle_manager, lifecycle_events):
    assert "freezegun" not in sys.modules

def test_imported_when_used(frozen_lifecycle):
    assert "freezegun" in sys.modules
""")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
