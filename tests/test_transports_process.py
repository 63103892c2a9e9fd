"""SubprocessConnector with real child processes: heartbeats, crashes, hangs, stopping, fork, exit.

Real threads and sub-second deadlines (tests/transport_support.FAST); every wait is on an event
recorder, a thread join, or a bounded check of /proc.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from transport_support import (
    FAST,
    WAIT,
    child_service,
    group_members,
    io_fds,
    loop_idle,
    proc_state,
    shell_service,
    wait_until,
)

from lifecycle import (
    ConnectionFailed,
    ExtensionService,
    LifecycleConfig,
    LifecycleManager,
    ServiceStatus,
    TransportConfig,
)
from lifecycle.connectors import SubprocessConnector, TransportConnector
from lifecycle.events import (
    Error,
    Heartbeat,
    HeartbeatTimeout,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    Stopped,
)
from lifecycle.testing import EventRecorder

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks children through /proc")


@pytest.fixture
def supervised(record: Callable[[LifecycleManager], EventRecorder]) -> Iterator[
        tuple[LifecycleManager, SubprocessConnector, EventRecorder]]:
    """A real-thread manager with a SubprocessConnector and an event recorder; shut down after."""
    connector = SubprocessConnector()
    manager = LifecycleManager(config=FAST, connector=connector)
    yield manager, connector, record(manager)
    manager.shutdown()


def gone(pid: int) -> bool:
    """Neither running nor a zombie: reaped."""
    return proc_state(pid) is None


def test_a_steady_child_stays_running_through_many_timeouts(supervised):
    manager, _connector, events = supervised
    sid = manager.start_service(child_service("steady", "steady", "0.05"))
    span = 8 * FAST.heartbeat_timeout_secs

    def beats_span(es: list) -> bool:
        beats = [e for e in es if isinstance(e, Heartbeat)]
        return len(beats) > 1 and beats[-1].at - beats[0].at >= span

    # Eight heartbeat timeouts' worth of time, measured on the beats themselves.
    assert events.wait_for(beats_span, timeout=span + 30)
    assert events.of(HeartbeatTimeout) == [] and events.of(Error) == []
    assert manager.get_status(sid) is ServiceStatus.RUNNING and manager.is_healthy(sid)


def test_a_crashing_child_is_reported_at_once_and_respawned(supervised):
    manager, connector, events = supervised
    sid = manager.start_service(child_service("crashy", "crash", "0.3"))
    first = connector.pid(sid)
    assert events.wait_for(lambda es: len([e for e in es if isinstance(e, Reconnected)]) >= 3, timeout=30)
    errors = events.of(Error)
    assert errors and all("exited with code 3" in e.error for e in errors)
    assert str(first) in errors[0].error
    # No heartbeat timeout: the exit itself was reported, long before the 0.5 s deadline.
    assert events.of(HeartbeatTimeout) == []
    # Each respawn succeeded, so every reconnect cycle starts again at attempt 1.
    assert {e.attempt for e in events.of(Reconnecting)} == {1}
    assert [e.delay for e in events.of(Reconnecting)][:3] == [0.1, 0.1, 0.1]
    wait_until(lambda: gone(first), what=f"the first child {first} to be reaped")


def test_a_child_failing_at_startup_backs_off_with_attempt_numbers_then_gives_up(supervised, tmp_path):
    manager, connector, events = supervised
    # Heartbeats for 0.3 s and exits; every respawn then exits before its first heartbeat.
    sid = manager.start_service(child_service("relapse", "relapse", str(tmp_path / "runs")))
    assert events.wait_for(lambda es: any(isinstance(e, ReconnectFailed) for e in es), timeout=30)
    reconnecting = events.of(Reconnecting)
    assert [(e.attempt, e.max_attempts) for e in reconnecting] == [(1, 3), (2, 3), (3, 3)]
    assert [e.delay for e in reconnecting] == [0.1, 0.2, 0.4]  # FAST: 100 ms doubling, no jitter
    # Each attempt ran no earlier than its backoff delay after the previous failure.
    gaps = [b.at - a.at for a, b in itertools.pairwise(reconnecting)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2
    assert events.of(ReconnectFailed)[0].attempts == 3
    assert manager.get_status(sid) is ServiceStatus.ERROR
    assert (tmp_path / "runs").read_text() == "4"  # the first run and three attempts
    assert connector.pid(sid) is None


def test_a_hanging_child_times_out_is_killed_and_respawned(supervised):
    manager, connector, events = supervised
    sid = manager.start_service(child_service("hangs", "hang", "0.3"))
    first = connector.pid(sid)
    assert first is not None
    assert events.wait_for(lambda es: any(isinstance(e, Reconnected) for e in es), timeout=30)
    assert len(events.of(HeartbeatTimeout)) >= 1
    wait_until(lambda: gone(first), what=f"the hung child {first} to be killed and reaped")
    second = connector.pid(sid)
    assert second is not None and second != first


def test_stop_service_leaves_no_child_zombie_or_descriptor(supervised):
    manager, connector, events = supervised
    loop_idle()
    fds_before = io_fds()
    sid = manager.start_service(child_service("family", "family"))
    pid = connector.pid(sid)
    assert pid is not None
    wait_until(lambda: len(group_members(pid)) == 2, what="the child to start its grandchild")
    members = group_members(pid)
    manager.stop_service(sid)
    assert events.of(Stopped) and events.of(Error) == []  # a requested stop is not an error
    assert all(gone(p) for p in members if p == pid)  # the child is reaped when stop_service returns
    wait_until(lambda: all(proc_state(p) in (None, "Z") for p in members), what="the grandchild to end")
    loop_idle()
    assert io_fds() == fds_before


def test_a_child_ignoring_sigterm_is_killed_after_the_timeout(record):
    connector = SubprocessConnector()
    manager = LifecycleManager(config=FAST, connector=connector)
    try:
        sid = manager.start_service(child_service("stubborn", "stubborn", timeout=0.5))
        pid = connector.pid(sid)
        assert pid is not None
        manager.stop_service(sid)
        assert gone(pid)
    finally:
        manager.shutdown()


def test_shutdown_leaves_no_child_zombie_or_descriptor(record):
    loop_idle()
    fds_before = io_fds()
    threads_before = set(threading.enumerate())
    connector = TransportConnector()
    manager = LifecycleManager(config=FAST, connector=connector)
    sids = [manager.start_service(child_service(f"c{i}", "steady", "0.1")) for i in range(3)]
    pids = [connector.connector_for(manager.registry.get(s)).pid(s) for s in sids]  # type: ignore[arg-type]
    assert all(pids)
    manager.shutdown()
    assert all(gone(p) for p in pids)  # neither running nor zombies: reaped
    loop_idle()
    assert io_fds() == fds_before
    wait_until(lambda: not [t for t in threading.enumerate() if t not in threads_before and t.is_alive()],
               what="every new thread to end")


def test_other_lines_and_stderr_go_to_the_lifecycle_logger_tagged_with_the_service(supervised, caplog):
    manager, _connector, events = supervised
    caplog.set_level(logging.INFO, logger="lifecycle")
    sid = manager.start_service(child_service("chatty", "chatty"))

    def logged(stream: str, text: str) -> bool:
        return any(getattr(r, "stream", None) == stream and text in r.getMessage() and
                   getattr(r, "service_id", None) == sid for r in caplog.records)

    # Heartbeats keep arriving, so the recorder wakes up to look at the log again.
    assert events.wait_for(lambda es: logged("stdout", "hello") and logged("stderr", "oops"), timeout=WAIT)
    levels = {r.stream: r.levelno for r in caplog.records if getattr(r, "service_id", None) == sid}
    assert levels == {"stdout": logging.INFO, "stderr": logging.WARNING}


def test_ping_goes_through_stdin_when_enabled(record):
    connector = SubprocessConnector(ping=True)
    manager = LifecycleManager(config=FAST, connector=connector)
    try:
        # A child that writes one heartbeat, then answers pings only: pings keep it alive.
        sid = manager.start_service(child_service("pinged", "steady", "3600"))
        service = manager.registry.get(sid)
        assert service is not None
        assert connector.ping is not None
        connector.ping(service)
        assert SubprocessConnector().ping is None  # without ping=True there is no ping hook at all
    finally:
        manager.shutdown()


def test_bad_transport_settings_fail_the_start_and_leave_nothing(record):
    loop_idle()
    fds_before = io_fds()
    threads_before = set(threading.enumerate())
    manager = LifecycleManager(config=FAST, connector=SubprocessConnector())
    try:
        with pytest.raises(ConnectionFailed, match=r"TransportConfig\.command"):
            manager.start_service(ExtensionService("nocommand", "1"))
        with pytest.raises(ConnectionFailed, match="No such file"):
            manager.start_service(ExtensionService("missing", "1", transport=TransportConfig(command="/nonexistent")))
        with pytest.raises(ConnectionFailed, match="exited with code 3"):
            manager.start_service(shell_service("dies", "exit 3"))
        with pytest.raises(ConnectionFailed, match="no heartbeat line"):
            manager.start_service(shell_service("mute", "exec sleep 60", timeout=0.3))
        assert manager.count() == 0 and manager.registry.count() == 0
    finally:
        manager.shutdown()
    loop_idle()
    assert io_fds() == fds_before  # failed spawns and killed silent children left no pipe or pidfd
    wait_until(lambda: not [t for t in threading.enumerate() if t not in threads_before and t.is_alive()],
               what="every new thread to end")


def test_the_io_loop_runs_no_callback_of_an_fd_an_earlier_callback_of_the_same_round_unregistered():
    """One ready fd's callback may end another channel whose fd was ready in the same round (unregistered,
    closed, its number maybe taken at once by a new pipe that is still blocking): that fd's stale callback
    must not run. It did, read the new pipe and held the I/O thread for 30 s ("the I/O thread did not spawn
    the child within 30 s", about one run in three of the test above on a loaded machine)."""
    from lifecycle.connectors._loop import IOLoop

    loop = IOLoop("lifecycle-io-test")
    (a_r, a_w), (b_r, b_w) = os.pipe(), os.pipe()
    os.write(a_w, b"x")
    os.write(b_w, b"x")  # both readable before the loop first waits: one round reports both
    called: list[str] = []
    first, round_over = threading.Event(), threading.Event()

    def ending_both(name: str) -> Callable[[], None]:
        def callback() -> None:
            called.append(name)
            loop.unregister(a_r)  # whichever runs first ends both channels
            loop.unregister(b_r)
            first.set()
        return callback

    def register_both() -> None:
        loop.register(a_r, ending_both("a"))
        loop.register(b_r, ending_both("b"))

    try:
        loop.call_soon(register_both)
        assert first.wait(WAIT), "no callback ran"
        loop.call_soon(round_over.set)  # queued work runs after the round that is under way
        assert round_over.wait(WAIT)
        assert len(called) == 1, f"the stale callback ran too: {called}"
    finally:
        for fd in (a_r, a_w, b_r, b_w):
            os.close(fd)


def test_an_unbound_connector_refuses_to_connect():
    with pytest.raises(ConnectionFailed, match="not bound to a manager"):
        SubprocessConnector().connect(child_service("alone", "steady"))


def test_start_service_with_a_connector_binds_it(record):
    connector = SubprocessConnector()
    manager = LifecycleManager(config=FAST)
    events = record(manager)
    try:
        sid = manager.start_service(child_service("bound", "steady"), connector=connector)
        assert events.wait_for(lambda es: any(isinstance(e, Heartbeat) for e in es), timeout=WAIT)
        assert connector.owns(sid)
    finally:
        manager.shutdown()


def test_two_hundred_children_keep_the_thread_count(record):
    connector = SubprocessConnector()
    manager = LifecycleManager(config=LifecycleConfig(heartbeat_interval_secs=30, heartbeat_timeout_secs=90),
                               connector=connector)
    try:
        manager.start_service(shell_service("first", "echo heartbeat; exec sleep 600"))
        threads = set(threading.enumerate())
        for i in range(199):
            manager.start_service(shell_service(f"child-{i}", "echo heartbeat; exec sleep 600"))
        assert manager.count() == 200 and connector.channels() == 200
        # No thread started for any of them (threads of earlier tests in this worker may end meanwhile).
        assert set(threading.enumerate()) - threads == set()
    finally:
        manager.shutdown(timeout=60)
    assert connector.channels() == 0


def test_a_forked_process_does_not_own_its_parents_children(supervised):
    manager, connector, events = supervised
    sid = manager.start_service(child_service("parental", "steady", "0.05"))
    pid = connector.pid(sid)
    service = manager.registry.get(sid)
    assert pid is not None and service is not None
    read, write = os.pipe()
    forked = os.fork()
    if forked == 0:  # the forked process: report what it sees through the pipe, then leave at once
        code = 0
        try:
            assert not connector.owns(sid) and connector.channels() == 0 and connector.pid(sid) is None
            try:
                connector.connect(service)
                code = 2
            except ConnectionFailed as exc:
                code = 0 if str(os.getppid()) in str(exc) else 3
            connector.disconnect(service)  # nothing of the parent's is touched
        except BaseException:
            code = 4
        os.write(write, bytes([code]))
        os._exit(0)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as pipe:
            answer = pipe.read(1)
    finally:
        os.waitpid(forked, 0)
    assert answer == b"\0"
    # The parent still owns its child, which still beats.
    assert proc_state(pid) not in (None, "Z") and connector.owns(sid)
    events.clear()
    assert events.wait_for(lambda es: any(isinstance(e, Heartbeat) for e in es), timeout=WAIT)
    assert manager.get_status(sid) is ServiceStatus.RUNNING


def test_children_are_ended_at_interpreter_exit(tmp_path: Path):
    script = tmp_path / "host.py"
    script.write_text(
        "import sys\n"
        "from lifecycle import LifecycleManager\n"
        "from lifecycle.connectors import SubprocessConnector\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from transport_support import child_service\n"
        "c = SubprocessConnector()\n"
        "m = LifecycleManager(connector=c)\n"
        "sid = m.start_service(child_service('left', 'stubborn'))\n"
        "print(c.pid(sid), flush=True)\n"  # then exit without shutdown()
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[0])
    wait_until(lambda: proc_state(pid) in (None, "Z"), what=f"the left-over child {pid} to be ended")


def test_only_the_spawning_connector_restarts_a_child(supervised):
    manager, connector, _events = supervised
    sid = manager.start_service(child_service("spawned-here", "steady"))
    service = manager.registry.get(sid)
    assert service is not None
    elsewhere = SubprocessConnector()  # stands for another process's connector (a fleet's leader)
    elsewhere.bind(manager)
    with pytest.raises(ConnectionFailed, match="not started by this process"):
        elsewhere.connect(service)
    assert elsewhere.channels() == 0 and not elsewhere.owns(sid)
    assert connector.owns(sid) and connector.pid(sid) is not None


def test_children_work_with_the_pytest_plugins_frozen_time(frozen_lifecycle, make_lifecycle_manager, record):
    # The manager's clock is frozen and driven by advance(); the child lives in real time.
    connector = SubprocessConnector()
    manager = make_lifecycle_manager(config=FAST, connector=connector)
    events = record(manager)
    sid = manager.start_service(child_service("frozen", "crash", "1.5"))
    first = connector.pid(sid)
    assert events.wait_for(lambda es: any(isinstance(e, Heartbeat) for e in es), timeout=WAIT)
    events.clear()
    frozen_lifecycle.advance(FAST.heartbeat_timeout_secs / 2)
    assert events.wait_for(lambda es: any(isinstance(e, Heartbeat) for e in es), timeout=WAIT)
    frozen_lifecycle.advance(FAST.heartbeat_timeout_secs / 2 + 0.01)  # a deadline, unless that beat moved it
    assert events.of(HeartbeatTimeout) == []
    # The child exits (real time): reported at once; the retry waits for frozen time to reach it.
    assert events.wait_for(lambda es: any(isinstance(e, Reconnecting) for e in es), timeout=WAIT)
    assert manager.get_status(sid) is ServiceStatus.RECONNECTING
    frozen_lifecycle.advance(FAST.reconnect_delay_ms / 1000)  # the attempt runs inline: a new child
    assert manager.get_status(sid) is ServiceStatus.RUNNING
    assert connector.pid(sid) not in (None, first)


def test_a_child_crashing_again_and_again_is_stopped_by_the_restart_limit(record):
    from lifecycle.events import ServiceFlapping

    connector = SubprocessConnector()
    config = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=0.5, reconnect_delay_ms=50,
                             max_reconnect_delay_ms=100, jitter=0.0, max_restarts=2, restart_window_secs=60.0)
    manager = LifecycleManager(config=config, connector=connector)
    events = record(manager)
    try:
        sid = manager.start_service(child_service("flappy", "crash", "0.2"))
        assert events.wait_for(lambda es: any(isinstance(e, ServiceFlapping) for e in es), timeout=WAIT * 2)
        assert len(events.of(Error)) == 3 and len(events.of(Reconnected)) == 2  # two restarts, the third refused
        assert manager.get_status(sid) is ServiceStatus.ERROR
        assert connector.pid(sid) is None  # the last child exited and was reaped; none was spawned after it
    finally:
        manager.shutdown()
