"""Many threads at once: no exception, no deadlock, consistent state afterwards, no leaked thread.

Sixteen threads hammer one manager (start, stop, heartbeat, error, status, health, subscribe)
for a bounded time while its watchdog runs sub-second deadlines and retries on real threads.
Every wait is bounded (joins and condition waits with generous timeouts) and nothing sleeps
hoping another thread got somewhere, so a loaded 2-core machine makes these slower, not flaky.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from typing import Any

import pytest

import lifecycle
from lifecycle import (
    ConnectionFailed,
    ExtensionService,
    InvalidState,
    LifecycleConfig,
    LifecycleManager,
    ManagerClosed,
    RegistryService,
    ServiceAlreadyExists,
    ServiceNotFound,
    ServiceStatus,
    TransportConfig,
)

pytestmark = pytest.mark.threaded

THREADS = 16
DURATION = 1.5  # seconds of hammering
WAIT = 10.0  # generous bound for anything that should take well under a second

FAST = LifecycleConfig(
    heartbeat_interval_secs=0.05,
    heartbeat_timeout_secs=0.2,
    reconnect_delay_ms=10,
    max_reconnect_delay_ms=50,
    max_reconnect_attempts=3,
)

NAMES = [f"svc-{i}" for i in range(24)]

# What the spec allows a manager to do (API.md section 6); any other status_changed is a bug.
LEGAL = {
    (ServiceStatus.STARTING, ServiceStatus.RUNNING),
    (ServiceStatus.STARTING, ServiceStatus.STOPPING),
    (ServiceStatus.RUNNING, ServiceStatus.RECONNECTING),
    (ServiceStatus.RUNNING, ServiceStatus.ERROR),
    (ServiceStatus.RUNNING, ServiceStatus.STOPPING),
    (ServiceStatus.ERROR, ServiceStatus.RECONNECTING),
    (ServiceStatus.ERROR, ServiceStatus.RUNNING),
    (ServiceStatus.ERROR, ServiceStatus.STOPPING),
    (ServiceStatus.RECONNECTING, ServiceStatus.RUNNING),
    (ServiceStatus.RECONNECTING, ServiceStatus.ERROR),
    (ServiceStatus.RECONNECTING, ServiceStatus.STOPPING),
    (ServiceStatus.STOPPING, ServiceStatus.STOPPED),
}

# Errors the contract allows these calls to raise when threads race each other.
RACE_ERRORS: tuple[type[BaseException], ...] = (ServiceNotFound, ServiceAlreadyExists, InvalidState, ConnectionFailed)


class Weird(BaseException):
    """Neither Exception nor KeyboardInterrupt/SystemExit."""


class ChaosConnector:
    """Connects, fails or raises a BaseException at random; `quiet()` makes every call fail."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.failing = threading.Event()

    def roll(self) -> float:
        with self.lock:
            return self.rng.random()

    def connect(self, service: ExtensionService) -> None:
        if self.failing.is_set():
            raise ConnectionError("quiet now")
        r = self.roll()
        if r < 0.15:
            raise ConnectionError("refused")
        if r < 0.2:
            raise Weird("odd failure")

    def disconnect(self, service: ExtensionService) -> None:
        if self.roll() < 0.1:
            raise OSError("disconnect failed")

    def ping(self, service: ExtensionService) -> None:
        if self.failing.is_set() or self.roll() < 0.3:
            raise TimeoutError("no pong")


class Watcher:
    """Receiver: counts events, checks every status change is legal and that no service is started
    or stopped twice, wakes waiters."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.count = 0
        self.illegal: list[tuple[Any, Any]] = []
        self.once: Counter[tuple[str, str]] = Counter()

    def __call__(self, sender: object, **kwargs: Any) -> None:
        event = kwargs["event"]
        with self.cond:
            self.count += 1
            if event.signal_name == "status_changed" and (event.old_status, event.new_status) not in LEGAL:
                self.illegal.append((event.old_status, event.new_status))
            if event.signal_name in ("service_started", "service_stopped"):
                self.once[event.signal_name, event.service_id] += 1
            self.cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def twice(self) -> list[tuple[str, str]]:
        with self.cond:
            return [key for key, n in self.once.items() if n > 1]


@pytest.fixture
def busy_switching():
    """Switch threads every 10 us instead of 5 ms: far more interleavings for the same run time."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def stacks() -> str:
    frames = sys._current_frames()
    return "\n".join(
        f"--- {t.name}\n" + "".join(traceback.format_stack(frames[t.ident]))
        for t in threading.enumerate() if t.ident in frames
    )


def join_all(threads: list[threading.Thread], timeout: float = WAIT) -> None:
    end = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still running (deadlock?): {alive}\n{stacks()}"


def wait_for_threads_to_exit(before: set[threading.Thread]) -> None:
    """Threads started since `before` must all end (joined with a bound, not slept on)."""
    new = [t for t in threading.enumerate() if t not in before]
    join_all(new)


class Hammer:
    """Runs random operations from many threads and collects every unexpected exception."""

    def __init__(self, manager: LifecycleManager, connector: ChaosConnector, allowed: tuple[type[BaseException], ...]):
        self.m = manager
        self.connector = connector
        self.allowed = allowed
        self.stop = threading.Event()
        self.ids: dict[str, str] = {}
        self.ids_lock = threading.Lock()
        self.unexpected: list[str] = []
        self.ops = 0
        self.ops_cond = threading.Condition()

    def sid(self, rng: random.Random) -> str:
        with self.ids_lock:
            return self.ids.get(rng.choice(NAMES), "never-started")

    def one(self, rng: random.Random) -> None:
        m = self.m
        op = rng.choice(("start", "start", "stop", "beat", "beat", "beat", "beat", "error", "status",
                         "healthy", "health_check", "stats", "subscribe"))
        if op == "start":
            name = rng.choice(NAMES)
            transport = TransportConfig(timeout_secs=0.1, auto_reconnect=rng.random() < 0.8)
            service = ExtensionService(name, "1", transport=transport)
            sid = m.start_service(service, connector=rng.choice((None, self.connector)))
            with self.ids_lock:
                self.ids[name] = sid
        elif op == "stop":
            m.stop_service(self.sid(rng))
        elif op == "beat":
            m.handle_heartbeat(self.sid(rng))
        elif op == "error":
            m.handle_error(self.sid(rng), rng.choice(("boom", RuntimeError("bad"))))
        elif op == "status":
            sid = self.sid(rng)
            status = m.get_status(sid)
            assert status is None or isinstance(status, ServiceStatus)
        elif op == "healthy":
            assert m.is_healthy(self.sid(rng)) in (True, False)
        elif op == "health_check":
            assert isinstance(m.health_check(), list)
        elif op == "stats":
            assert m.count() >= 0 and m.registry.stats().total >= 0
        else:
            with m.subscribe(maxsize=4) as sub, contextlib.suppress(Exception):
                sub.get_nowait()

    def run(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            try:
                self.one(rng)
            except self.allowed:
                pass
            except BaseException:
                self.unexpected.append(traceback.format_exc())
            with self.ops_cond:
                self.ops += 1
                self.ops_cond.notify_all()

    def wait_for_ops(self, n: int, timeout: float = WAIT) -> bool:
        with self.ops_cond:
            return self.ops_cond.wait_for(lambda: self.ops >= n, timeout)

    def threads(self) -> list[threading.Thread]:
        return [threading.Thread(target=self.run, args=(k,), name=f"hammer-{k}", daemon=True) for k in range(THREADS)]


def test_sixteen_threads_hammering_leave_a_consistent_manager_and_no_thread_behind(caplog, busy_switching):
    before = set(threading.enumerate())
    m = LifecycleManager(config=FAST)
    connector = ChaosConnector(seed=7)
    watcher = Watcher()
    hammer = Hammer(m, connector, RACE_ERRORS)
    sub = m.subscribe(maxsize=64)
    pulled: list[Any] = []
    consumer = threading.Thread(target=lambda: pulled.extend(sub), name="consumer", daemon=True)
    with lifecycle.connect(watcher, sender=m):
        consumer.start()
        workers = hammer.threads()
        try:
            for t in workers:
                t.start()
            hammer.stop.wait(DURATION)  # the test's clock: hammer for DURATION seconds
        finally:
            hammer.stop.set()
            join_all(workers)

        assert hammer.unexpected == [], "\n".join(hammer.unexpected[:3])
        assert hammer.ops > 100, f"only {hammer.ops} operations ran"
        assert watcher.illegal == [], f"illegal status changes: {watcher.illegal[:5]}"
        assert watcher.twice() == [], "a service was started or stopped twice"

        # Quiesce: nothing heartbeats any more and every connect/ping fails, so every service must
        # settle in ERROR (timeout -> retries -> reconnect_failed, or straight to ERROR).
        connector.failing.set()
        settled = watcher.wait_for(lambda: all(s.status is ServiceStatus.ERROR for s in m.registry.list_all()))
        assert settled, f"services did not settle: {m.registry.stats()}"
        listed = m.registry.list_all()
        for service in listed:
            assert m.get_status(service.id) is service.status is m.registry.get(service.id).status
        assert m.count() == len(m) == m.registry.count() == len(listed)
        assert m.armed_timers() <= 2 * m.count()  # at most a stale deadline (and ping) per service

        began = time.monotonic()
        m.shutdown(timeout=5.0)
        assert time.monotonic() - began < 6.0
        consumer.join(WAIT)
        assert not consumer.is_alive(), "subscription iteration did not end after shutdown"
    assert m.armed_timers() == 0 and m.count() == 0 and m.registry.count() == 0
    # Every event reached the subscription or is counted as dropped: nothing vanishes silently.
    assert len(pulled) + sub.dropped == watcher.count
    wait_for_threads_to_exit(before)
    assert [r for r in caplog.records if "watchdog" in r.getMessage() or "timer action" in r.getMessage()] == []
    assert not any("unexpected transition" in r.getMessage() for r in caplog.records)


def test_shutdown_while_sixteen_threads_hammer_returns_in_time_and_leaves_nothing_behind(busy_switching):
    before = set(threading.enumerate())
    m = LifecycleManager(config=FAST)
    connector = ChaosConnector(seed=11)
    hammer = Hammer(m, connector, (*RACE_ERRORS, ManagerClosed))
    workers = hammer.threads()
    try:
        for t in workers:
            t.start()
        assert hammer.wait_for_ops(2000), "the hammer threads never got going"
        began = time.monotonic()
        m.shutdown(timeout=2.0)
        assert time.monotonic() - began < 4.0
        # The threads keep calling into the closed manager: they may only see ManagerClosed (or a
        # race error for a call that began before shutdown did).
        assert hammer.wait_for_ops(hammer.ops + 2000), "the hammer threads stalled after shutdown"
    finally:
        hammer.stop.set()
        join_all(workers)
    assert hammer.unexpected == [], "\n".join(hammer.unexpected[:3])
    assert m.closed
    assert m.count() == 0 and m.registry.count() == 0, m.registry.list_all()
    assert m.armed_timers() == 0
    assert m.run_pending() == 0
    wait_for_threads_to_exit(before)


def test_heartbeats_from_many_threads_never_cause_a_false_timeout():
    """16 threads heartbeat their own services every 20 ms against a 200 ms timeout.

    A heartbeat thread starved for over 200 ms on a loaded machine does get a (true) timeout; what
    must never happen is a timeout for a service whose last completed heartbeat is younger than
    the timeout. Each heartbeat's send time is recorded, so the check is exact, not statistical.
    """
    before = set(threading.enumerate())
    m = LifecycleManager(config=FAST)
    watcher = Watcher()
    stop = threading.Event()
    errors: list[str] = []
    sids = [m.start_service(ExtensionService(f"beat-{k}", "1")) for k in range(THREADS)]
    sent: dict[str, tuple[float, float]] = {}  # sid -> (before, after) of its last completed heartbeat
    previous: dict[str, tuple[float, float]] = {}
    false_timeouts: list[str] = []
    # A canary that never heartbeats proves the watchdog was firing deadlines meanwhile.
    canary = m.start_service(ExtensionService("canary", "1"))

    def on_timeout(sender: object, event: Any, **kw: Any) -> None:
        sid = event.service_id
        if sid == canary:
            return
        for beat in (sent.get(sid), previous.get(sid)):
            if beat is not None and beat[1] < event.at:  # the newest heartbeat completed before it
                if event.at - beat[0] < FAST.heartbeat_timeout_secs:
                    false_timeouts.append(f"{sid}: timed out {event.at - beat[0]:.3f} s after a heartbeat")
                break

    def beat(sid: str) -> None:
        try:
            while not stop.wait(0.02):
                t0 = time.monotonic()
                m.handle_heartbeat(sid)
                previous[sid], sent[sid] = sent.get(sid, (t0, t0)), (t0, time.monotonic())
        except BaseException:
            errors.append(traceback.format_exc())

    with lifecycle.connect(watcher, sender=m), lifecycle.connect(on_timeout, "heartbeat_timeout", sender=m):
        threads = [threading.Thread(target=beat, args=(sid,), name=f"beat-{i}", daemon=True)
                   for i, sid in enumerate(sids)]
        for t in threads:
            t.start()
        try:
            # The canary times out, retries 3 times and fails: well over 0.2 s of watchdog work.
            assert watcher.wait_for(lambda: m.get_status(canary) is ServiceStatus.ERROR)
        finally:
            stop.set()
            join_all(threads)
        assert errors == []
        assert false_timeouts == []
    m.shutdown()
    wait_for_threads_to_exit(before)


FORK_SCRIPT = r"""
import os, sys, threading
import lifecycle
from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceStatus

cfg = LifecycleConfig(heartbeat_interval_secs=0.05, heartbeat_timeout_secs=0.2,
                      reconnect_delay_ms=10, max_reconnect_delay_ms=50, max_reconnect_attempts=2)
m = LifecycleManager(config=cfg)
state = {"cond": threading.Condition()}

def wake(sender, **kw):
    with state["cond"]:
        state["cond"].notify_all()

keep = lifecycle.connect(wake, sender=m)
a = m.start_service(ExtensionService("a", "1"))  # the watchdog thread is running now

def settled(*ids):
    with state["cond"]:
        return state["cond"].wait_for(lambda: all(m.get_status(i) is ServiceStatus.ERROR for i in ids), 10)

pid = os.fork()
if pid == 0:
    state["cond"] = threading.Condition()  # the parent's may have been held by a thread at fork time
    b = m.start_service(ExtensionService("b", "1"))  # a new service in the child
    ok = settled(a, b)  # both time out, retry and give up: the child's watchdog runs
    m.shutdown(timeout=5)
    print("child", "ok" if ok else "stuck", flush=True)
    os._exit(0 if ok else 1)
ok = settled(a)
_, status = os.waitpid(pid, 0)
m.shutdown(timeout=5)
print("parent", "ok" if ok else "stuck", flush=True)
sys.exit(0 if ok and os.waitstatus_to_exitcode(status) == 0 else 1)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_manager_keeps_working_in_both_processes_after_a_fork():
    """gunicorn --preload: a manager whose watchdog runs before a fork works in the parent and the child."""
    proc = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert sorted(proc.stdout.split("\n")[:2]) == ["child ok", "parent ok"], proc.stdout
    assert "Traceback" not in proc.stderr and "Exception" not in proc.stderr, proc.stderr


FORK_WHILE_LOCKED_SCRIPT = r"""
import os, signal, sys, threading
import lifecycle
import lifecycle.receivers
from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager

m = LifecycleManager(config=LifecycleConfig(heartbeat_interval_secs=5, heartbeat_timeout_secs=10))
sid = m.start_service(ExtensionService("s", "1"))
sub = m.subscribe()
# Every lock a child needs, as some other thread of the parent might hold it at the moment of fork.
locks = {"manager": m._lock, "registry": m.registry._lock, "subscription": sub._cond,
         "receivers": lifecycle.receivers._lock}
name = sys.argv[1]
held = threading.Event()

def holder():
    with locks[name]:
        held.set()
        threading.Event().wait(0.3)  # a short critical section that the fork lands in

threading.Thread(target=holder, daemon=True).start()
held.wait()
pid = os.fork()
if pid == 0:
    signal.alarm(5)  # a child stuck on a lock inherited held dies instead of hanging the test
    m.handle_heartbeat(sid)
    m.start_service(ExtensionService("child", "1"))
    sub.get(timeout=1)
    with lifecycle.connect(lambda sender, **kw: None, sender=m):
        pass
    m.shutdown(timeout=5)
    os._exit(0)
_, status = os.waitpid(pid, 0)
m.handle_heartbeat(sid)  # the parent is unaffected
m.shutdown(timeout=5)
print("child exit code", os.waitstatus_to_exitcode(status), flush=True)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("lock", ["manager", "registry", "subscription", "receivers"])
def test_a_fork_while_another_thread_holds_a_lock_never_strands_the_child(lock):
    """The fork waits for the critical section to end (as logging does), and the child gets fresh locks."""
    proc = subprocess.run([sys.executable, "-c", FORK_WHILE_LOCKED_SCRIPT, lock], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert proc.stdout.strip() == "child exit code 0", (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr


MULTIPROCESSING_SCRIPT = r"""
import multiprocessing
from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager

cfg = LifecycleConfig(heartbeat_interval_secs=0.1, heartbeat_timeout_secs=0.3, max_reconnect_attempts=0)
manager = LifecycleManager(config=cfg)
events = manager.subscribe()  # made before the fork: the child reads its own copy, nothing can be missed
silent = manager.start_service(ExtensionService("silent", "1"))  # its deadline is armed in the parent

def child(results):
    # The manager came over by fork: no call is needed for its watchdog to run here.
    names = []
    while "heartbeat_timeout" not in names:
        names.append(events.get(timeout=10).signal_name)
    results.put(("child", "heartbeat_timeout" in names, str(manager.get_status(silent))))
    manager.shutdown(timeout=5)

if __name__ == "__main__":
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    process = context.Process(target=child, args=(results,))
    process.start()
    print(results.get(timeout=30), flush=True)
    process.join(30)
    print("exit", process.exitcode, flush=True)
    manager.shutdown(timeout=5)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_multiprocessing_child_forked_from_a_running_manager_detects_timeouts(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(MULTIPROCESSING_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["('child', True, 'error')", "exit 0"], (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr


class SlowLivenessRegistry(RegistryService):
    """A registry whose reads take a millisecond (think of a shared, remote one): it widens the
    window between the watchdog reading a service's last heartbeat and acting on it, which is
    where a heartbeat racing the deadline could get lost."""

    def silence(self, id: str) -> Any:
        result = super().silence(id)
        time.sleep(0.001)
        return result


@pytest.mark.parametrize("registry_class", [RegistryService, SlowLivenessRegistry])
def test_heartbeats_racing_their_deadlines_are_never_lost(busy_switching, registry_class):
    """Heartbeats paced around the timeout, so many land just as the deadline expires.

    Exact invariants, whatever the machine's load: a heartbeat that returned is recorded (the
    registry's last heartbeat is at least its start time); no timeout comes less than a timeout
    after the start of a heartbeat that had completed before it; and a service found not RUNNING
    right after its heartbeat returned must have timed out on a real silence (an event at least a
    full timeout after that heartbeat started), never on a decision taken before the heartbeat.
    """
    before = set(threading.enumerate())
    cfg = LifecycleConfig(heartbeat_interval_secs=0.02, heartbeat_timeout_secs=0.05, reconnect_delay_ms=5,
                          max_reconnect_delay_ms=20, max_reconnect_attempts=3)
    m = LifecycleManager(registry_class(heartbeat_timeout_secs=cfg.heartbeat_timeout_secs), cfg)
    timeout = cfg.heartbeat_timeout_secs
    stop = threading.Event()
    errors: list[str] = []
    lost: list[str] = []
    suspicious: list[tuple[str, float]] = []  # (sid, heartbeat start) found not RUNNING right after it
    timeouts: list[tuple[str, float]] = []
    beats = [0]
    history: dict[str, list[tuple[float, float]]] = {}  # sid -> every heartbeat's (start, return)

    def on_timeout(sender: object, event: Any, **kw: Any) -> None:
        timeouts.append((event.service_id, event.at))

    def beat(sid: str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.wait(rng.uniform(0.8 * timeout, 1.2 * timeout)):
                t0 = time.monotonic()
                m.handle_heartbeat(sid)
                history.setdefault(sid, []).append((t0, time.monotonic()))
                beats[0] += 1
                snapshot = m.registry.get(sid)
                if snapshot.last_heartbeat is None or snapshot.last_heartbeat < t0:
                    lost.append(f"{sid}: last heartbeat {snapshot.last_heartbeat} < {t0}")
                if snapshot.status is not ServiceStatus.RUNNING:
                    suspicious.append((sid, t0))
        except BaseException:
            errors.append(traceback.format_exc())

    sids = [m.start_service(ExtensionService(f"racer-{k}", "1")) for k in range(8)]
    with lifecycle.connect(on_timeout, "heartbeat_timeout", sender=m):
        threads = [threading.Thread(target=beat, args=(sid, k), name=f"racer-{k}", daemon=True)
                   for k, sid in enumerate(sids)]
        for t in threads:
            t.start()
        try:
            stop.wait(DURATION)
        finally:
            stop.set()
            join_all(threads)
        m.shutdown(timeout=5.0)  # every receiver call has finished once the watchdog is joined
    assert errors == [], errors[:2]
    assert lost == [], lost[:5]
    assert timeouts, "the pacing never hit a deadline: the test exercised nothing"
    assert beats[0] > 100
    false_timeouts = []
    for sid, at in timeouts:
        completed = [t0 for t0, t1 in history.get(sid, []) if t1 < at]
        if completed and at - max(completed) < timeout:
            false_timeouts.append(f"{sid}: timed out {at - max(completed):.4f} s after a completed heartbeat")
    assert false_timeouts == [], false_timeouts[:5]
    unexplained = [(sid, t0) for sid, t0 in suspicious
                   if not any(s == sid and at >= t0 + timeout - 1e-6 for s, at in timeouts)]
    assert unexplained == [], f"not RUNNING right after a heartbeat, with no real silence: {unexplained[:5]}"
    wait_for_threads_to_exit(before)


# -- the lock-free in-memory heartbeat ---------------------------------------------------------------


def _race(first: Any, second: Any, rounds: int, setup: Any) -> list[tuple[Any, Any, Any]]:
    """Run `first(state)` and `second(state)` from two threads released together, `rounds` times.

    Returns each round's (state, first's result or exception, second's). The two swap threads
    every round (the thread that passes the barrier last usually runs first), and under
    busy_switching they interleave at many different points across the rounds.
    """
    results: list[tuple[Any, Any, Any]] = []
    for round in range(rounds):
        state = setup()
        barrier = threading.Barrier(2, timeout=WAIT)
        out: list[Any] = [None, None]

        def run(k: int, call: Any, state: Any, barrier: threading.Barrier, out: list[Any]) -> None:
            barrier.wait()
            try:
                out[k] = call(state)
            except Exception as exc:
                out[k] = exc

        here, there = (0, 1) if round % 2 else (1, 0)
        calls = (first, second)
        other = threading.Thread(target=run, args=(there, calls[there], state, barrier, out), daemon=True)
        other.start()
        run(here, calls[here], state, barrier, out)
        other.join(WAIT)
        assert not other.is_alive(), stacks()
        results.append((state, out[0], out[1]))
    return results


def test_a_lock_free_heartbeat_racing_expire_is_never_lost(busy_switching):
    """Once expire has timed a service out, no racing beat may have reported RUNNING.

    The service was last heard from a second ago (timeout 0.5 s), so expire would time it out;
    beats run back to back meanwhile. Whichever order they take, the end is consistent: either
    expire saw a beat and changed nothing, or every beat reported the new status (so the manager
    revives the service). A heartbeat that reads the status before writing its time, or an
    expire that does not look again after setting the status, loses some of these rounds.
    """
    RUNNING, RECONNECTING = ServiceStatus.RUNNING, ServiceStatus.RECONNECTING

    def setup() -> tuple[RegistryService, str, float]:
        reg = RegistryService()
        began = time.monotonic()
        service = ExtensionService("racer", "1", status=RUNNING, last_heartbeat=began - 1.0)
        return reg, reg.register(service), began

    def beat(state: tuple[RegistryService, str, float]) -> list[ServiceStatus]:
        return [state[0].heartbeat(state[1]) for _ in range(20)]

    rounds = _race(beat, lambda s: s[0].expire(s[1], 0.5, RECONNECTING), 2000, setup)
    lost = []
    for (reg, sid, began), beats, expired in rounds:
        assert isinstance(beats, list) and not isinstance(expired, Exception), (beats, expired)
        final = reg.get(sid).status
        assert (expired is RUNNING) == (final is RECONNECTING), (expired, final)
        assert reg.get(sid).last_heartbeat >= began  # every beat is recorded
        if expired is RUNNING and RUNNING in beats:
            lost.append(beats)
    assert lost == [], f"{len(lost)} rounds: a beat reported RUNNING and the service was timed out anyway"
    # Both orders happened, or the test exercised nothing.
    assert any(expired is RUNNING for _, _, expired in rounds)
    assert any(expired is None for _, _, expired in rounds)


def test_a_lock_free_heartbeat_racing_unregister_never_brings_the_service_back(busy_switching):
    """After unregister returns, the id is gone for good, whatever a racing heartbeat did.

    Beats run back to back until one finds the service gone (ServiceNotFound), so some beat is
    always in flight when unregister runs; a beat that stored its time under the id would bring
    back a half-registered service.
    """

    def setup() -> tuple[RegistryService, str]:
        reg = RegistryService()
        return reg, reg.register(ExtensionService("racer", "1", status=ServiceStatus.RUNNING))

    def beat_until_gone(state: tuple[RegistryService, str]) -> int:
        reg, sid = state
        for beats in range(1_000_000):  # bounded: a beat that brought the id back would never stop
            try:
                status = reg.heartbeat(sid)
            except ServiceNotFound:
                return beats
            assert status is ServiceStatus.RUNNING, status
        return -1

    rounds = _race(beat_until_gone, lambda s: s[0].unregister(s[1]), 1000, setup)
    for (reg, sid), beats, gone in rounds:
        assert isinstance(beats, int) and beats >= 0, beats
        assert isinstance(gone, lifecycle.RegistrationInfo), gone
        assert sid not in reg and len(reg) == 0 and reg.get(sid) is None and reg.silence(sid) is None
        assert reg.stats().total == 0 and reg.list_all() == []
        reg.register(ExtensionService("racer", "1"))  # the name and id are free again
    assert sum(beats for _, beats, _ in rounds) > 0, "no beat ever ran before the unregister"


def test_health_check_racing_a_lock_free_heartbeat_never_loses_it(busy_switching):
    """The registry's own health_check undoes its mark for a service whose beat landed meanwhile."""
    RUNNING = ServiceStatus.RUNNING

    def setup() -> tuple[RegistryService, str]:
        reg = RegistryService(heartbeat_timeout_secs=0.5)
        service = ExtensionService("racer", "1", status=RUNNING, last_heartbeat=time.monotonic() - 1.0)
        return reg, reg.register(service)

    rounds = _race(lambda s: s[0].heartbeat(s[1]), lambda s: s[0].health_check(), 2000, setup)
    for (reg, sid), beat, stale in rounds:
        final = reg.get(sid).status
        assert not (beat is RUNNING and final is not RUNNING), (beat, stale, final)
        assert (stale == [sid]) == (final is ServiceStatus.RECONNECTING), (stale, final)
    assert any(stale == [] for _, _, stale in rounds) and any(stale for _, _, stale in rounds)


@pytest.mark.parametrize("expire_with", ["expire", "health_check"])
def test_a_beat_landing_between_the_expiry_check_and_its_write_is_seen(expire_with):
    """The narrowest interleaving, made certain: a whole heartbeat runs after expire decided the
    service is silent and just before it writes the new status (white-box: the beat is run from
    the registry's status write). Expire must look again, see the beat and change nothing."""
    reg = RegistryService(heartbeat_timeout_secs=0.5)
    sid = reg.register(ExtensionService("racer", "1", status=ServiceStatus.RUNNING,
                                        last_heartbeat=time.monotonic() - 1.0))
    write = reg._set_status
    beats: list[ServiceStatus] = []

    def beat_then_write(id: str, status: ServiceStatus) -> None:
        if not beats:
            beats.append(reg.heartbeat(sid))  # takes no lock, so it runs here, inside expire's
        write(id, status)

    reg._set_status = beat_then_write  # type: ignore[method-assign]
    if expire_with == "expire":
        assert reg.expire(sid, 0.5, ServiceStatus.RECONNECTING) is None
    else:
        assert reg.health_check() == []
    assert beats == [ServiceStatus.RUNNING]
    assert reg.get(sid).status is ServiceStatus.RUNNING


class _ExpireOnFirstLook(dict):  # type: ignore[type-arg]
    """The registry's status column that runs an expiry right after the first look at it (white-box)."""

    def arm(self, expire: Any) -> None:
        self.expire: Any = expire
        self.results: list[Any] = []

    def _after_look(self) -> None:
        expire, self.expire = self.expire, None
        if expire is not None:
            self.results.append(expire())

    def __bool__(self) -> bool:
        found = len(self) > 0
        self._after_look()
        return found

    def get(self, *args: Any) -> Any:
        found = super().get(*args)
        self._after_look()
        return found


def test_an_expiry_right_after_a_beat_looked_at_the_status_is_seen_by_the_beat():
    """The other narrow interleaving, made certain: expire runs completely between the beat's
    first look at the status and the rest of the beat. The beat must then report the new status
    (so the manager revives the service); a beat that reports what it saw before writing its
    time would say RUNNING about a service that was just timed out."""
    reg = RegistryService()
    sid = reg.register(ExtensionService("racer", "1", status=ServiceStatus.RUNNING,
                                        last_heartbeat=time.monotonic() - 1.0))
    column = _ExpireOnFirstLook()
    column.arm(lambda: reg.expire(sid, 0.5, ServiceStatus.RECONNECTING))
    reg._not_running = column
    status = reg.heartbeat(sid)
    assert column.results == [ServiceStatus.RUNNING]  # the expiry did time the service out
    assert reg.get(sid).status is ServiceStatus.RECONNECTING
    assert status is ServiceStatus.RECONNECTING
