"""Model-based test: random operation sequences against a manager in manual mode, checked step by step.

A hypothesis `RuleBasedStateMachine` drives one `LifecycleManager(autostart=False)` under freezegun
with random starts (connectors that succeed, fail, or raise a `BaseException` subclass), stops,
heartbeats, error reports, pings, health checks, small and large time advances and a shutdown.
After every step it compares the library with a small independent model written from the
contract (shared/spec/API.md, section 4):

* each service's status, attempt counter, last heartbeat and health;
* the exact events emitted since the previous step, in order, with their key fields
  (and the same events, in the same order, through a `Subscription`);
* the number of armed timers (deadline, retry, ping): no leak, exactly what the model expects;
* `get_status(id) == registry.get(id).status`, and `count()` agreeing with the registry;
* how often the connector's connect / disconnect / ping were called.

The model schedules timers the way the contract describes the watchdog: one deadline per RUNNING
service re-armed lazily when it fires (a heartbeat only records the time: O(1), no re-sort), one
retry timer while RECONNECTING, one ping timer while RUNNING when the connector pings. Timers run
in due-time order, ties in the order they were armed (`sched`'s FIFO). Reconnect delays are read
from the emitted `reconnecting` events and checked against the backoff bounds. Besides fixed time
steps, one rule jumps to just before / at / just after the next deadline or armed timer, where
early, late and off-by-one firing would show.

Profiles: "ci" (default) and "nightly" (``HYPOTHESIS_PROFILE=nightly pytest tests/test_model_based.py``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import freezegun
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import lifecycle
from lifecycle import (
    ConnectionFailed,
    ExtensionService,
    LifecycleConfig,
    LifecycleManager,
    ManagerClosed,
    ServiceAlreadyExists,
    ServiceId,
    ServiceNotFound,
    ServiceStatus,
    TransportConfig,
)
from lifecycle.engine import local as engine_local
from lifecycle.events import LifecycleEvent, Reconnecting
from lifecycle.testing import EventRecorder

STARTING = ServiceStatus.STARTING
RUNNING = ServiceStatus.RUNNING
STOPPING = ServiceStatus.STOPPING
STOPPED = ServiceStatus.STOPPED
ERROR = ServiceStatus.ERROR
RECONNECTING = ServiceStatus.RECONNECTING

FOLLOW_UP_PIECE = engine_local._FOLLOW_UP_PIECE  # timed-out services per follow-up: the model queues them alike

# -- hypothesis profiles ---------------------------------------------------------------------------

settings.register_profile(
    "ci",
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "nightly",
    max_examples=2500,
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "nightly"):  # someone else's profile name: fall back to ours
    PROFILE = "ci"

# -- configurations the machine picks from ---------------------------------------------------

BASE = LifecycleConfig(
    heartbeat_interval_secs=10.0,
    heartbeat_timeout_secs=30.0,
    max_reconnect_attempts=3,
    reconnect_delay_ms=1000,
    max_reconnect_delay_ms=4000,
    reconnect_backoff_multiplier=2.0,
    auto_reconnect=True,
    jitter=0.0,
)
CONFIGS = {
    "plain": BASE,
    "jitter": dataclasses.replace(BASE, jitter=0.5),
    "no-attempts": dataclasses.replace(BASE, max_reconnect_attempts=0),
    "no-auto-reconnect": dataclasses.replace(BASE, auto_reconnect=False),
    "zero-delay": dataclasses.replace(BASE, reconnect_delay_ms=0, max_reconnect_delay_ms=0),
    "long-backoff": dataclasses.replace(BASE, max_reconnect_attempts=6, max_reconnect_delay_ms=20000,
                                        reconnect_backoff_multiplier=3.0, jitter=0.2),
}

NAMES = ("a", "b", "c")
KINDS = ("none", "callable", "object", "ping")  # connector: none, plain callable, +disconnect, +ping
# Multiples of 0.5 s keep every frozen monotonic reading exact in binary floating point.
SMALL_STEPS = (0.5, 1.0, 2.0, 5.0, 9.5, 10.0)
LARGE_STEPS = (29.5, 30.0, 30.5, 60.0, 300.0, 3600.0)


class Boom(BaseException):
    """A BaseException that is neither KeyboardInterrupt nor SystemExit (think trio.Cancelled)."""


class Switchboard:
    """What the connectors will do next; the model reads the same switches."""

    def __init__(self) -> None:
        self.connect_mode = "ok"  # ok | fail | base | slow | hang
        self.ping_mode = "ok"  # ok | fail | base | slow | hang
        self.frozen: Any = None  # the freezer's clock: a slow call moves frozen time on
        self.slow_calls = 0  # in the current step
        self.connects = 0
        self.disconnects = 0
        self.pings = 0

    @staticmethod
    def delay(mode: str) -> float:
        """Seconds a call takes: "slow" 5 s; "hang" 45 s, longer than the heartbeat timeout (in
        manual mode connect and ping run inline and unbounded, so they succeed late)."""
        return {"slow": 5.0, "hang": 45.0}.get(mode, 0.0)

    def outcome(self, mode: str) -> None:
        if self.delay(mode):
            self.slow_calls += 1
            if self.slow_calls > 100:
                # Only SystemExit/KeyboardInterrupt get through the manager's connector isolation;
                # without this a livelocked run_pending() would hang the test run instead of failing.
                raise SystemExit("livelock: over 100 slow connector calls in one step")
            self.frozen.tick(self.delay(mode))
        if mode == "fail":
            raise ConnectionError("connector says no")
        if mode == "base":
            raise Boom("connector raised a BaseException")

    def connect(self, service: ExtensionService) -> None:
        self.connects += 1
        self.outcome(self.connect_mode)

    def disconnect(self, service: ExtensionService) -> None:
        self.disconnects += 1

    def ping(self, service: ExtensionService) -> None:
        self.pings += 1
        self.outcome(self.ping_mode)


def make_connector(kind: str, board: Switchboard) -> object:
    if kind == "none":
        return None
    if kind == "callable":
        return lambda service: board.connect(service)

    class Plain:
        def connect(self, service: ExtensionService) -> None:
            board.connect(service)

        def disconnect(self, service: ExtensionService) -> None:
            board.disconnect(service)

    class Pinging(Plain):
        def ping(self, service: ExtensionService) -> None:
            board.ping(service)

    return Plain() if kind == "object" else Pinging()


# -- the model -------------------------------------------------------------------------------------


@dataclass
class MTimer:
    when: float
    seq: int
    kind: str  # deadline | retry | ping
    sid: str
    attempt: int = 0
    cancelled: bool = False


@dataclass
class MService:
    sid: ServiceId
    name: str
    kind: str
    auto: bool
    status: ServiceStatus = STARTING
    last: float | None = None
    attempt: int = 0
    deadline: MTimer | None = None
    retry: MTimer | None = None
    ping: MTimer | None = None


class Model:
    """The contract, executed: statuses, timers, attempts and the events each step must emit."""

    def __init__(self, config: LifecycleConfig, board: Switchboard) -> None:
        self.cfg = config
        self.timeout = float(config.heartbeat_timeout_secs)
        self.interval = float(config.heartbeat_interval_secs)
        self.limit = config.max_reconnect_attempts
        self.board = board
        self.services: dict[str, MService] = {}
        self.timers: list[MTimer] = []
        # Timed out, reconnect cycle not begun yet: a deadline batch's services in pieces, as the engine queues them.
        self.follow_ups: list[list[tuple[MService, ServiceStatus]]] = []
        self.seq = 0
        self.events: list[tuple[Any, ...]] = []
        self.closed = False
        self.connects = 0
        self.disconnects = 0
        self.pings = 0
        self.delays: Iterator[float] = iter(())
        self.t = 0.0  # the model's monotonic clock; a slow or hanging connector moves it on

    # helpers
    def arm(self, when: float, kind: str, sid: str, attempt: int = 0) -> MTimer:
        self.seq += 1
        timer = MTimer(when, self.seq, kind, sid, attempt)
        self.timers.append(timer)
        return timer

    def armed(self) -> int:
        return sum(1 for t in self.timers if not t.cancelled)

    def emit(self, name: str, sid: str, *fields: Any) -> None:
        self.events.append((name, sid, self.t, *fields))

    def change(self, s: MService, new: ServiceStatus) -> None:
        if s.status is not new:  # status_changed for every real change, never for old == new
            self.emit("status_changed", s.sid, s.status, new)
            s.status = new

    def nominal_delay(self, attempt: int) -> float:
        initial = self.cfg.reconnect_delay_ms / 1000.0
        cap = self.cfg.max_reconnect_delay_ms / 1000.0
        return min(cap, initial * float(self.cfg.reconnect_backoff_multiplier) ** attempt)

    def next_delay(self, attempt: int) -> float:
        """The delay the library emitted for this retry, checked against the contract's bounds."""
        nominal = self.nominal_delay(attempt)
        cap = self.cfg.max_reconnect_delay_ms / 1000.0
        low, high = nominal * (1 - self.cfg.jitter), min(nominal * (1 + self.cfg.jitter), cap)
        delay = next(self.delays, None)
        assert delay is not None, "the model expected a reconnecting event the library did not emit"
        assert low - 1e-9 <= delay <= high + 1e-9, f"delay {delay} outside [{low}, {high}] for attempt {attempt}"
        assert 0 <= delay <= cap
        return delay

    # what happens to one service
    def on_running(self, s: MService) -> None:
        s.attempt = 0
        if s.retry is not None:
            s.retry.cancelled = True
            s.retry = None
        if s.deadline is None:  # a stale deadline still armed re-arms itself lazily when it fires
            s.deadline = self.arm(self.t + self.timeout, "deadline", s.sid)
        if s.kind == "ping":
            if s.ping is not None:
                s.ping.cancelled = True
            s.ping = self.arm(self.t + self.interval, "ping", s.sid)

    def give_up(self, s: MService) -> None:
        if s.retry is not None:
            s.retry.cancelled = True
            s.retry = None
        self.change(s, ERROR)
        self.emit("reconnect_failed", s.sid, s.attempt)

    def schedule_attempt(self, s: MService) -> None:
        if s.attempt >= self.limit:
            self.give_up(s)
            return
        s.attempt += 1
        delay = self.next_delay(s.attempt - 1)
        s.retry = self.arm(self.t + delay, "retry", s.sid, s.attempt)
        self.emit("reconnecting", s.sid, s.attempt, self.limit, delay)

    def begin_reconnect(self, s: MService) -> None:
        s.attempt = 0
        if self.limit == 0:
            self.give_up(s)
            return
        self.change(s, RECONNECTING)
        self.schedule_attempt(s)

    # operations: each returns the exception type the library must raise, or None
    def connect(self) -> bool:
        """The connector's connect, as the model sees it: True on success; slow ones move the clock."""
        self.connects += 1
        mode = self.board.connect_mode
        self.t += self.board.delay(mode)
        return mode in ("ok", "slow", "hang")

    def start(self, sid: ServiceId, name: str, kind: str, auto: bool, now: float) -> type[BaseException] | None:
        self.t = now
        if self.closed:
            return ManagerClosed
        if any(s.name == name for s in self.services.values()):
            return ServiceAlreadyExists
        if kind != "none" and not self.connect():  # in the caller's thread, unbounded
            return ConnectionFailed
        s = MService(sid, name, kind, self.cfg.auto_reconnect and auto)
        self.services[sid] = s
        s.last = self.t  # the start counts as a heartbeat, when connect returned
        self.emit("service_started", sid)
        self.change(s, RUNNING)
        self.on_running(s)
        return None

    def lookup(self, sid: str) -> MService | type[BaseException]:
        if self.closed:
            return ManagerClosed
        s = self.services.get(sid)
        return ServiceNotFound if s is None else s

    def stop(self, sid: str) -> type[BaseException] | None:
        s = self.lookup(sid)
        if not isinstance(s, MService):
            return s
        for timer in (s.deadline, s.retry, s.ping):
            if timer is not None:
                timer.cancelled = True
        s.deadline = s.retry = s.ping = None
        self.change(s, STOPPING)
        if s.kind in ("object", "ping"):
            self.disconnects += 1
        self.change(s, STOPPED)
        self.emit("service_stopped", sid)
        del self.services[sid]
        return None

    def heartbeat(self, sid: str, now: float) -> type[BaseException] | None:
        self.t = now
        s = self.lookup(sid)
        if not isinstance(s, MService):
            return s
        s.last = now
        if s.status in (RECONNECTING, ERROR):
            self.change(s, RUNNING)
            self.on_running(s)
            self.emit("reconnected", sid)
        self.emit("heartbeat_received", sid)
        return None

    def error(self, sid: str, text: str, now: float) -> type[BaseException] | None:
        self.t = now
        s = self.lookup(sid)
        if not isinstance(s, MService):
            return s
        self.emit("service_error", sid, text)
        if s.status is not RECONNECTING:  # on RECONNECTING: status and schedule untouched
            self.change(s, ERROR)
            if s.auto:
                self.begin_reconnect(s)
        return None

    def health_check(self, now: float) -> list[str] | type[BaseException]:
        self.t = now
        if self.closed:
            return ManagerClosed
        stale = [s for s in self.services.values()
                 if s.status is RUNNING and s.last is not None and now - s.last >= self.timeout]
        for s in stale:  # every timeout first, then what follows each, as for a batch of deadlines
            self.emit("heartbeat_timeout", s.sid)
            self.change(s, RECONNECTING if s.auto and self.limit > 0 else ERROR)
        for s in stale:
            if s.auto:
                self.begin_reconnect(s)
        return [s.sid for s in stale]

    def shutdown(self) -> None:
        if self.closed:
            return
        for sid in list(self.services):
            self.stop(sid)
        self.closed = True
        for timer in self.timers:
            timer.cancelled = True

    def run_pending(self, now: float) -> int:
        """Run the timers due at the moment the call began, in order. A slow connector or ping
        called inline moves the clock on (each action sees the moved clock), but what falls due
        only because of that waits for the next call: otherwise a ping slower than its own
        interval would keep run_pending() busy forever."""
        self.t = now
        if self.closed:
            return 0
        ran = 0
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= now]
            if not due and self.follow_ups:
                self.run_follow_ups()  # what follows a timeout waits until no timer is due
                continue
            if not due:
                break
            timer = min(due, key=lambda t: (t.when, t.seq))
            if timer.kind == "deadline":
                batch = self.deadline_batch(timer, due)
                for fired in batch:
                    fired.cancelled = True
                ran += len(batch)
                self.fire_deadlines(batch)
                continue
            timer.cancelled = True  # a fired timer is no longer armed
            ran += 1
            self.fire(timer)
        self.timers = [t for t in self.timers if not t.cancelled]
        return ran

    @staticmethod
    def deadline_batch(first: MTimer, due: list[MTimer]) -> list[MTimer]:
        """The deadlines the watchdog runs as one batch with `first`: those due in its millisecond slot
        that follow it in time order, up to the first timer of another kind."""
        slot = math.floor(first.when * 1000)
        ordered = sorted(due, key=lambda t: (t.when, t.seq))
        batch = []
        for timer in ordered[ordered.index(first):]:
            if timer.kind != "deadline" or math.floor(timer.when * 1000) != slot:
                break
            batch.append(timer)
        return batch

    def fire_deadlines(self, batch: list[MTimer]) -> None:
        """A batch of deadlines: every timeout (and its status change) first, then what follows each."""
        timed: list[tuple[MService, ServiceStatus]] = []
        for timer in batch:
            s = self.services[timer.sid]
            s.deadline = None
            if s.status is not RUNNING:
                continue  # re-armed when the service is RUNNING again
            assert s.last is not None
            due = s.last + self.timeout
            if due > self.t:
                s.deadline = self.arm(due, "deadline", s.sid)
                continue
            self.emit("heartbeat_timeout", s.sid)
            target = RECONNECTING if s.auto and self.limit > 0 else ERROR
            self.change(s, target)
            timed.append((s, target))
        self.follow_ups.extend(timed[k:k + FOLLOW_UP_PIECE] for k in range(0, len(timed), FOLLOW_UP_PIECE))

    def run_follow_ups(self) -> None:
        """One piece of the timed-out services' reconnect cycles, once every due timer has run (re-checked first).

        One piece, then the timers again, as the engine does: an attempt a piece made due at once
        (a zero reconnect delay) runs before the next piece begins its cycles.
        """
        pending = self.follow_ups.pop(0)
        for s, target in pending:
            if s.auto and self.services.get(s.sid) is s and s.status is target:
                self.begin_reconnect(s)

    def fire(self, timer: MTimer) -> None:
        s = self.services[timer.sid]  # timers of stopped services are cancelled
        if timer.kind == "retry":
            assert s.status is RECONNECTING and s.attempt == timer.attempt, "model: a stale retry stayed armed"
            s.retry = None
            if s.kind == "none":
                self.schedule_attempt(s)  # no heartbeat arrived before the attempt was due
                return
            if self.connect():  # manual mode: connect runs inline inside run_pending, unbounded
                s.last = self.t  # a reconnect counts as a heartbeat (without heartbeat_received)
                self.change(s, RUNNING)
                self.on_running(s)
                self.emit("reconnected", s.sid)
            else:
                self.schedule_attempt(s)
        else:  # ping
            if s.status is not RUNNING:
                s.ping = None
                return
            s.ping = self.arm(self.t + self.interval, "ping", s.sid)
            self.pings += 1
            mode = self.board.ping_mode
            self.t += self.board.delay(mode)
            if mode in ("ok", "slow", "hang"):
                s.last = self.t
                self.emit("heartbeat_received", s.sid)
            # a failing ping is only logged: the deadline decides


def event_key(event: LifecycleEvent) -> tuple[Any, ...]:
    extra = tuple(v for k, v in event.signal_kwargs().items() if k != "service_id")
    return (event.signal_name, event.service_id, event.at, *extra)


# -- the state machine -----------------------------------------------------------------------------


# Machines whose teardown has not run yet. Hypothesis can abandon an example without calling
# teardown (e.g. when it gives up shrinking); the fixture below then stops the freeze and
# disconnects the recorder, so nothing leaks into later tests.
_LIVE: list[ManagerMachine] = []


@pytest.fixture(autouse=True)
def _cleanup_abandoned_machines() -> Iterator[None]:
    yield
    while _LIVE:
        _LIVE.pop().cleanup()


class ManagerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.freezer: Any = None
        self.manager: LifecycleManager | None = None
        self.connection: lifecycle.Connection | None = None
        self.gone: list[str] = []  # ids that were stopped or never got registered
        self.serial = 0  # deterministic ids keep hypothesis' replays identical

    @initialize(config_name=st.sampled_from(sorted(CONFIGS)), seed=st.integers(0, 2**16))
    def setup(self, config_name: str, seed: int) -> None:
        # hypothesis.internal keeps real time: its shrink deadlines and gc timing must not see the freeze.
        # (Only modules within 5 frames of a clock call are checked, so the library is unaffected.)
        self.freezer = freezegun.freeze_time("2026-01-01 00:00:00", ignore=["hypothesis.internal"])
        self.frozen = self.freezer.start()
        _LIVE.append(self)
        self.board = Switchboard()
        self.board.frozen = self.frozen
        self.config = CONFIGS[config_name]
        # Built inside the freeze: the frozen monotonic clock jumps when the freeze starts.
        self.manager = LifecycleManager(config=self.config, autostart=False, rng=random.Random(seed))
        self.model = Model(self.config, self.board)
        self.recorder = EventRecorder()
        self.connection = lifecycle.connect(self.recorder, sender=self.manager)
        self.subscription = self.manager.subscribe(maxsize=100_000)

    def teardown(self) -> None:
        try:
            if self.manager is not None:
                self.manager.shutdown()
                assert self.manager.armed_timers() == 0
                assert self.manager.count() == 0
                assert self.manager.registry.count() == 0
                assert self.manager.run_pending() == 0
        finally:
            self.cleanup()

    def cleanup(self) -> None:
        if self in _LIVE:
            _LIVE.remove(self)
        if self.connection is not None:
            self.connection.disconnect()
            self.connection = None
        if self.freezer is not None:
            self.freezer.stop()
            self.freezer = None

    # helpers
    @property
    def m(self) -> LifecycleManager:
        assert self.manager is not None
        return self.manager

    def now(self) -> float:
        return time.monotonic()

    def call(self, expected: type[BaseException] | None, fn: Any, *args: Any) -> Any:
        """Run the library call; it must raise exactly `expected` (or nothing when None)."""
        try:
            result = fn(*args)
        except BaseException as exc:
            assert expected is not None, f"{fn.__name__}{args} raised {exc!r}, the model expected success"
            assert isinstance(exc, expected), f"{fn.__name__}{args} raised {exc!r}, expected {expected.__name__}"
            if expected is ConnectionFailed:
                assert isinstance(exc.__cause__, (ConnectionError, Boom)), "ConnectionFailed must chain the cause"
            return None
        assert expected is None, f"{fn.__name__}{args} returned {result!r}, expected {expected.__name__}"
        return result

    def feed_delays(self, done: int) -> None:
        """Give the model the reconnect delays the library emitted during this step."""
        fresh = self.recorder.events[done:]
        self.model.delays = iter([e.delay for e in fresh if isinstance(e, Reconnecting)])

    def pick_id(self, data: st.DataObject) -> str:
        candidates = list(self.model.services) + self.gone[-3:] + ["no-such-service"]
        return data.draw(st.sampled_from(candidates), label="service id")

    # rules
    @rule(name=st.sampled_from(NAMES), kind=st.sampled_from(KINDS), auto=st.booleans())
    def start(self, name: str, kind: str, auto: bool) -> None:
        self.serial += 1
        service = ExtensionService(name, "1.0", transport=TransportConfig(auto_reconnect=auto),
                                   id=ServiceId(f"svc-{self.serial}"))
        done = len(self.recorder.events)
        connector = make_connector(kind, self.board)
        outcome: Any = None
        began = self.now()  # a slow connector moves the clock during the call
        try:
            outcome = self.m.start_service(service, connector=connector)
        except BaseException as exc:
            outcome = exc
        self.feed_delays(done)
        expected = self.model.start(service.id, name, kind, auto, began)
        if expected is None:
            assert outcome == service.id, f"start_service returned {outcome!r}"
        else:
            assert isinstance(outcome, expected), f"start_service raised {outcome!r}, expected {expected.__name__}"
            if expected is ConnectionFailed:
                assert isinstance(outcome.__cause__, (ConnectionError, Boom))
            self.gone.append(service.id)

    @rule(data=st.data())
    def stop(self, data: st.DataObject) -> None:
        sid = self.pick_id(data)
        self.model.t = self.now()
        expected = self.model.stop(sid)
        self.call(expected, self.m.stop_service, sid)
        if expected is None:
            self.gone.append(sid)

    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        sid = self.pick_id(data)
        done = len(self.recorder.events)
        expected_exc = self.model.lookup(sid)
        self.call(expected_exc if not isinstance(expected_exc, MService) else None, self.m.handle_heartbeat, sid)
        self.feed_delays(done)
        self.model.heartbeat(sid, self.now())

    @rule(data=st.data(), text=st.sampled_from(["boom", "", "disk full"]))
    def error(self, data: st.DataObject, text: str) -> None:
        sid = self.pick_id(data)
        done = len(self.recorder.events)
        expected_exc = self.model.lookup(sid)
        self.call(expected_exc if not isinstance(expected_exc, MService) else None, self.m.handle_error, sid, text)
        self.feed_delays(done)
        self.model.error(sid, text, self.now())

    @rule(dt=st.sampled_from(SMALL_STEPS + LARGE_STEPS))
    def advance_and_run(self, dt: float) -> None:
        self.frozen.tick(dt)
        self.run_pending()

    @rule(dt=st.sampled_from(SMALL_STEPS + LARGE_STEPS))
    def advance_only(self, dt: float) -> None:
        self.frozen.tick(dt)

    @rule(what=st.sampled_from(["deadline", "timer"]), offset=st.sampled_from([-0.5, 0.0, 0.5]),
          run=st.booleans())
    def advance_to_boundary(self, what: str, offset: float, run: bool) -> None:
        """Jump to just before, at, or just after the next deadline (last heartbeat + timeout) or the
        next armed timer: where off-by-one and early/late firing bugs live."""
        now, model = self.now(), self.model
        if what == "deadline":
            times = [s.last + model.timeout for s in model.services.values()
                     if s.status is RUNNING and s.last is not None]
        else:
            times = [t.when for t in model.timers if not t.cancelled]
        future = [t + offset for t in times if t + offset > now]
        if not future:
            return
        self.frozen.tick(min(future) - now)
        if run:
            self.run_pending()

    @rule()
    def run_pending(self) -> None:
        done = len(self.recorder.events)
        began = self.now()  # a connector or ping called inline may move the clock during the call
        ran = self.m.run_pending()
        self.feed_delays(done)
        assert ran == self.model.run_pending(began), "run_pending ran a different number of timers"
        assert self.model.t == self.now(), "the model's clock drifted from the frozen one"

    @rule()
    def health_check(self) -> None:
        done = len(self.recorder.events)
        try:
            result: Any = self.m.health_check()
        except ManagerClosed as exc:
            result = exc
        self.feed_delays(done)
        expected = self.model.health_check(self.now())
        if isinstance(expected, list):
            assert result == expected
        else:
            assert isinstance(result, expected)

    @rule(mode=st.sampled_from(["ok", "fail", "base", "slow", "hang"]))
    def set_connect_mode(self, mode: str) -> None:
        self.board.connect_mode = mode

    @rule(mode=st.sampled_from(["ok", "fail", "base", "slow", "hang"]))
    def set_ping_mode(self, mode: str) -> None:
        self.board.ping_mode = mode

    @precondition(lambda self: not self.model.closed)
    @rule(roll=st.integers(0, 4))
    def shutdown(self, roll: int) -> None:
        if roll:  # keep shutdowns rare enough that most runs stay interesting
            return
        self.m.shutdown()
        self.model.t = self.now()
        self.model.shutdown()
        self.m.shutdown()  # idempotent

    # the checks, after every step
    @invariant()
    def events_match(self) -> None:
        if self.manager is None:
            return
        now = self.now()
        actual = [event_key(e) for e in self.recorder.events]
        assert actual == self.model.events, "events differ from the model"
        for event, kwargs in zip(self.recorder.events, self.recorder.kwargs, strict=True):
            assert event.at <= now, "events carry the monotonic time they happened at"
            assert {k: v for k, v in kwargs.items() if k != "event"} == event.signal_kwargs()
        pulled = []
        while True:
            try:
                pulled.append(self.subscription.get_nowait())
            except Exception:
                break
        assert pulled == self.recorder.events, "the subscription saw other events than the receivers"
        self.recorder.events.clear()
        self.recorder.kwargs.clear()
        self.model.events.clear()
        self.board.slow_calls = 0

    @invariant()
    def state_matches(self) -> None:
        if self.manager is None:
            return
        m, model, now = self.m, self.model, self.now()
        registry = m.registry
        for sid, s in model.services.items():
            snapshot = registry.get(sid)
            assert snapshot is not None, f"{s.name} missing from the registry"
            assert snapshot.status is s.status, f"{s.name}: registry {snapshot.status}, model {s.status}"
            assert m.get_status(sid) is snapshot.status, "get_status must equal registry.get(id).status"
            assert snapshot.last_heartbeat == s.last, f"{s.name}: last heartbeat differs"
            assert m.attempts(sid) == s.attempt, f"{s.name}: attempts {m.attempts(sid)}, model {s.attempt}"
            healthy = s.status is RUNNING and s.last is not None and now - s.last < model.timeout
            assert m.is_healthy(sid) is healthy
        for sid in [*self.gone, "no-such-service"]:
            if sid in model.services:
                continue
            assert m.get_status(sid) is None
            assert registry.get(sid) is None and sid not in registry
            assert m.attempts(sid) == 0
            assert m.is_healthy(sid) is False
        assert m.count() == len(m) == registry.count() == len(registry) == len(model.services)
        assert {s.id for s in registry.list_all()} == set(model.services)
        assert m.armed_timers() == model.armed(), f"armed timers {m.armed_timers()}, model {model.armed()}"
        assert m.closed is model.closed
        assert (self.board.connects, self.board.disconnects, self.board.pings) == (
            model.connects, model.disconnects, model.pings), "connector calls differ from the model"


ManagerMachine.TestCase.settings = settings.get_profile(PROFILE)
TestManagerMachine = ManagerMachine.TestCase


@pytest.mark.skipif(PROFILE != "ci", reason="checks the ci profile only")
def test_ci_profile_is_in_use() -> None:
    assert TestManagerMachine.settings.max_examples == 300
    assert TestManagerMachine.settings.stateful_step_count == 50
