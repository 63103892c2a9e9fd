"""The in-memory engine: one process supervises its own services, a timer per deadline, attempt and ping.

Locking: one `RLock` (the manager's) guards the entries and every decision that reads then
writes the registry. Events are collected while it is held and handed to the sink after it is
released, so receivers and connectors never run under it. The common heartbeat (a RUNNING
service, fixed detector) takes no lock at all: the registry records it atomically, and a
deadline's expiry is a compare-and-set there, so a beat racing a deadline either lands first or
finds the service RECONNECTING and revives it under the lock.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time

from ..config import LifecycleConfig
from ..connector import Hooks
from ..errors import InvalidState, ManagerClosed, ServiceNotFound
from ..events import (
    Error,
    LifecycleEvent,
    Reconnected,
    Started,
    Stopped,
)
from ..model import ExtensionService, ServiceId, ServiceStatus
from ..registry import Store
from ..subscription import Subscription
from ..timers import Timer
from ..watchdog import Watchdog
from .base import Sink, error_text, not_managed, refused
from .cycle import Cycles
from .declare import Declarations
from .detector import detector_for
from .entry import Entry
from .expiry import GONE, Due, Expiry
from .guard import Guard
from .pinger import Pinger
from .policy import ReconnectPolicy, RestartIntensity, service_timing
from .runner import Executor, Outcome, connect_first, within
from .states import ERROR, RECONNECTING, RUNNING, STARTING, STOPPED, STOPPING, StatusBook

__all__ = ["LocalEngine"]

log = logging.getLogger("lifecycle")

#: Timed-out services per follow-up (`_follow_up`): about 0.2 ms of work, what a timeout due meanwhile may wait.
_FOLLOW_UP_PIECE = 8


class LocalEngine:
    """Supervises the services of this process in a registry of this process."""

    def __init__(self, registry: Store, config: LifecycleConfig, watchdog: Watchdog, executor: Executor,
                 sink: Sink, rng: random.Random) -> None:
        self.lock = threading.RLock()
        self._registry = registry
        self._config = config
        self._watchdog = watchdog
        self._executor = executor
        self._sink = sink
        self._rng = rng
        self._detector = detector_for(config)
        self._tracks = self._detector.tracks_beats  # read on every heartbeat
        self._policy = ReconnectPolicy.of(config)
        self._intensity = RestartIntensity.of(config)
        self._entries: dict[str, Entry] = {}
        self._stopping: set[str] = set()  # ids between STOPPING and unregistered
        self._closed = False
        self._book = StatusBook(registry)
        self._expiry = Expiry(registry, self._intensity, sink)
        self._silence_many = getattr(registry, "silence_many", None)
        self._guard = Guard(watchdog)
        # Timer actions, guarded once here (a batched timer groups by the callable it was given).
        self._deadlines_due = self._guard.wrap(self._on_deadlines)
        self._follow_ups = self._guard.wrap(self._follow_up)
        self._cycles = Cycles(self._book, self._intensity, watchdog, rng, self._guard.wrap(self._on_attempt_due))
        self._declarations = Declarations(watchdog, executor, self.start)
        self._pinger = Pinger(watchdog, self._guard, executor, sink, self._ping_target, self._record_ping)

    leader = True
    shared = False

    # -- queries ----------------------------------------------------------------------------

    def _entry(self, id: str) -> Entry | None:
        return self._entries.get(id) if isinstance(id, str) else None

    def status(self, id: str) -> ServiceStatus | None:
        with self.lock:
            live = None if self._entry(id) is None else self._registry.silence(id)
        return None if live is None else live[0]

    def healthy(self, id: str) -> bool:
        with self.lock:
            entry = self._entry(id)
            live = None if entry is None else self._registry.silence(id)
        if entry is None or live is None:
            return False
        return live[0] is RUNNING and live[1] is not None and live[1] < entry.timeout

    def attempts(self, id: str) -> int:
        entry = self._entry(id)
        return 0 if entry is None else entry.attempt

    def restarts(self, id: str) -> int:
        with self.lock:
            entry = self._entry(id)
            return 0 if entry is None else self._intensity.count(entry.restarts, time.monotonic())

    def phi(self, id: str) -> float:
        with self.lock:
            entry = self._entry(id)
            return 0.0 if entry is None else self._detector.phi(entry, time.monotonic())

    def count(self) -> int:
        return len(self._entries)

    def follow(self, subscription: Subscription) -> None:
        raise ValueError("fleet=True needs a shared registry (fleet mode), e.g. lifecycle.redis.RedisRegistry")

    # -- starting and stopping ----------------------------------------------------------------

    def start(self, service: ExtensionService, hooks: Hooks | None) -> ServiceId:
        timeout, interval = service_timing(self._config, service.name, service.transport)
        entry = Entry(service, hooks, self._policy.of_service(self._config, service.transport), timeout, interval,
                      self._intensity.times())
        with self.lock:
            if self._closed:
                raise ManagerClosed("the manager is shut down")
            self._registry.register(service)
            try:
                if service.status is not STARTING:
                    self._registry.update_status(entry.id, STARTING)
            except BaseException:
                self._registry.unregister(entry.id)
                raise
            self._entries[entry.id] = entry
        if hooks is not None:
            connect_first(hooks, self._snapshot(entry), entry.label(), lambda: self._forget(entry))
        out: list[LifecycleEvent] = []
        with self.lock:
            if not self._current(entry):
                raise InvalidState(f"service {entry.label()} was stopped while it was starting")
            self._registry.heartbeat(entry.id)
            out.append(Started(entry.id, time.monotonic()))
            self._book.move(entry, RUNNING, out)
            self._on_running(entry, time.monotonic())
        self._sink.emit(out)
        return entry.id

    def declare(self, service: ExtensionService, hooks: Hooks | None) -> ServiceId:
        return self._declarations.declare(service, hooks)

    def _forget(self, entry: Entry) -> None:
        """Undo a registration whose start failed: no entry, no registration, no timer."""
        with self.lock, contextlib.suppress(ServiceNotFound):
            self._entries.pop(entry.id, None)  # ids are unique in the registry: it can only be this entry
            entry.cancel_timers()
            self._registry.unregister(entry.id)

    def stop(self, id: str, deadline: float | None) -> None:
        out: list[LifecycleEvent] = []
        with self.lock:
            entry = self._entry(id)
            if entry is None:
                raise not_managed(id)
            if entry.id in self._stopping:
                return
            self._declarations.forget(entry.id)
            self._stopping.add(entry.id)
            entry.cancel_timers()
            self._book.move(entry, STOPPING, out)
            snapshot = self._registry.get(entry.id)
        self._sink.emit(out)
        out = []
        try:
            if snapshot is not None and entry.hooks is not None:
                self._executor.disconnect(entry.hooks, snapshot, within(entry.connect_timeout, deadline),
                                          entry.label())
        finally:
            with self.lock:
                if self._book.of(entry) is not None:
                    self._book.move(entry, STOPPED, out)
                    self._registry.unregister(entry.id)
                self._entries.pop(entry.id, None)
                self._stopping.discard(entry.id)
                out.append(Stopped(entry.id, time.monotonic()))
        log.info("lifecycle: service %s stopped", entry.label())
        self._sink.emit(out)

    def stop_all(self, deadline: float | None) -> None:
        for id in list(self._entries):
            try:
                self.stop(id, deadline)
            except ServiceNotFound:
                pass  # stopped concurrently
            except Exception:
                log.exception("lifecycle: stopping service %s failed; stopping the others", id)

    def close(self, deadline: float) -> None:
        """Stop every service; the manager stops the watchdog and the executor afterwards."""
        with self.lock:
            self._closed = True  # a start that has not registered yet never will
        self.stop_all(deadline)
        with self.lock:
            for entry in self._entries.values():
                entry.cancel_timers()
            self._entries.clear()

    # -- reports from services ----------------------------------------------------------------

    def beat(self, id: str) -> ServiceId:
        try:
            entry = self._entries.get(id)
        except TypeError:  # unhashable: cheaper to catch than an isinstance on every beat
            entry = None
        # The stopping set is almost always empty; checking it avoids touching the entry.
        if entry is None or (self._stopping and id in self._stopping):
            raise not_managed(id) if entry is None else refused(entry.label(), "heartbeat", None)
        status = self._registry.heartbeat(id)
        if status is not RUNNING and status is not STARTING:
            self._beat_slow(entry)
        elif self._tracks:  # the entry is not touched otherwise
            self._tracked_beat(entry)
        # The caller's id equals entry.id; reading that would touch the entry (a cache miss at 10k services).
        return id  # type: ignore[return-value]

    def _tracked_beat(self, entry: Entry) -> None:
        """Tell the detector; pull the deadline in if its new estimate says so."""
        with self.lock:
            if not self._current(entry):
                return
            now = time.monotonic()
            self._detector.beat(entry, now)
            deadline = entry.deadline
            if deadline is not None:
                # Later deadlines are re-armed lazily when the armed one fires; an earlier one cannot wait.
                when = now + self._detector.limit(entry)
                if when < deadline.when:
                    deadline.cancel()
                    entry.deadline = self._watchdog.call_at_batched(when, self._deadlines_due, entry)

    def _beat_slow(self, entry: Entry) -> None:
        """A beat for a service that is not RUNNING: refuse it if stopping, else revive the service."""
        revived: list[LifecycleEvent] = []
        with self.lock:
            if self._entries.get(entry.id) is not entry:
                raise not_managed(entry.id)  # stopped meanwhile: not managed any more
            status = self._book.of(entry)
            if entry.id in self._stopping or status is STOPPING or status is STOPPED:
                raise refused(entry.label(), "heartbeat", None)
            if status is RECONNECTING or status is ERROR:
                revived = self._revive(entry)
        self._sink.emit(revived)

    def error(self, id: str, text: str) -> None:
        out: list[LifecycleEvent] = []
        with self.lock:
            entry = self._entry(id)
            if entry is None or id in self._stopping:
                raise not_managed(id) if entry is None else refused(entry.label(), "error report", None)
            status = self._book.of(entry)
            if status is STARTING:
                raise refused(entry.label(), "error report", status)
            now = time.monotonic()
            out.append(Error(entry.id, now, text))
            if status is not RECONNECTING:
                self._book.move(entry, ERROR, out)
                if entry.auto_reconnect and not entry.flapping:
                    self._cycles.begin(entry, now, out, self._intensity.flaps(entry.restarts, now), ERROR)
        log.warning("lifecycle: service %s reported an error: %s", entry.label(), text)
        self._sink.emit(out)

    def restart(self, id: str) -> None:
        out: list[LifecycleEvent] = []
        with self.lock:
            entry = self._entry(id)
            if entry is None or id in self._stopping:
                raise not_managed(id) if entry is None else refused(entry.label(), "restart", None)
            if self._book.of(entry) is STARTING:
                raise refused(entry.label(), "restart", STARTING)
            if entry.restarts is not None:
                entry.restarts.clear()
            entry.flapping = False
            entry.drop_attempt()
            self._book.move(entry, RECONNECTING, out)
            self._book.count_attempt(entry, 0)
            self._cycles.schedule(entry, out, at_once=entry.hooks is not None)
        log.info("lifecycle: service %s is restarted on request", entry.label())
        self._sink.emit(out)

    def sweep_now(self) -> list[ServiceId]:
        out: list[LifecycleEvent] = []
        expired: list[Entry] = []
        with self.lock:
            for entry in list(self._entries.values()):
                if entry.id in self._stopping:
                    continue
                live = self._registry.silence(entry.id)
                if live is None or live[0] is not RUNNING:
                    continue
                lag = None if live[1] is None else live[1] - entry.timeout
                done = None if lag is not None and lag < 0 else self._expiry.expire(entry, out, lag, entry.timeout)
                if done is not None:
                    expired.append(done)
        self._sink.emit(out)
        self._follow_up(expired)
        return [entry.id for entry in expired]

    # -- state changes (the lock held) --------------------------------------------------------

    def _on_running(self, entry: Entry, last_heartbeat: float) -> None:
        """Arm the deadline (if none is armed) and restart pings after the service became RUNNING."""
        self._book.count_attempt(entry, 0)
        entry.flapping = False
        entry.drop_attempt()
        self._detector.running(entry, last_heartbeat)
        when = last_heartbeat + self._detector.limit(entry)
        if entry.deadline is None or when < entry.deadline.when:
            # An armed deadline that is later would fire too late; an earlier one re-arms itself when it fires.
            if entry.deadline is not None:
                entry.deadline.cancel()
            entry.deadline = self._watchdog.call_at_batched(when, self._deadlines_due, entry)
        if entry.hooks is not None and entry.hooks.ping is not None:
            if entry.ping is not None:
                entry.ping.cancel()
            entry.ping = self._pinger.arm(entry)

    def _revive(self, entry: Entry, how: str = "heartbeat") -> list[LifecycleEvent]:
        """A heartbeat, ping or reconnect for a RECONNECTING or ERROR service: RUNNING again."""
        out: list[LifecycleEvent] = []
        now = time.monotonic()
        if how == "heartbeat":
            # The service was only silent, maybe falsely suspected: the detector learns the interval.
            self._detector.beat(entry, now)
        self._book.move(entry, RUNNING, out)
        self._on_running(entry, now)
        out.append(Reconnected(entry.id, time.monotonic()))
        log.info("lifecycle: service %s is back (%s)", entry.label(), how)
        return out

    def _follow_up(self, expired: list[Entry]) -> None:
        """After timeouts were sent: log them, then begin each one's reconnect cycle (or flapping, or ERROR).

        Split from the timeout so that the last of a burst of timeouts is not sent only after every
        earlier one's reconnect bookkeeping. A service revived, restarted or stopped in between is left alone.
        """
        for entry in expired:
            log.warning("lifecycle: service %s missed its heartbeat deadline", entry.label())
        out: list[LifecycleEvent] = []
        with self.lock:
            for entry in expired:
                target = entry.expired_to
                if target is None:
                    continue
                if (entry.auto_reconnect and self._current(entry) and entry.retry is None and entry.inflight is None
                        and self._book.of(entry) is target):
                    self._cycles.begin(entry, entry.expired_at, out, entry.expired_flaps, target)
        self._sink.emit(out)

    # -- timer actions (on the watchdog, or in run_pending) -----------------------------------

    def _on_deadlines(self, entries: list[Entry]) -> None:
        """The deadlines of one watchdog slot: one lock, one registry read, events sent after both.

        Most deadlines find a newer heartbeat and are re-armed for it; the silent services are timed out.
        """
        out: list[LifecycleEvent] = []
        rearm: list[tuple[float, Timer]] = []
        expired: list[Entry] = []
        with self.lock:
            # An entry whose deadline is live was given a new one after this fired: that one counts.
            entries = [entry for entry in entries if self._current(entry) and entry.deadline is not None
                       and entry.deadline.cancelled]
            if not entries:
                return
            ids = [entry.id for entry in entries]
            many = self._silence_many
            lives = many(ids) if many is not None else [self._registry.silence(id) for id in ids]
            now = time.monotonic()
            due: list[Due] = []
            for entry, live in zip(entries, lives, strict=True):
                fired, entry.deadline = entry.deadline, None
                assert fired is not None
                if live is None or live[0] is not RUNNING:
                    continue  # re-armed when the service becomes RUNNING again
                silent, limit = live[1], self._detector.limit(entry)
                if silent is not None and silent < limit:
                    # The registry's clock says how long is left; our clock says when that is.
                    entry.deadline = fired
                    rearm.append((now + limit - silent, fired))
                else:
                    due.append((entry, fired, None if silent is None else silent - limit, limit))
            results = self._expiry.expire_all(due, out) if due else []
            for (entry, fired, _, limit), done in zip(due, results, strict=True):
                if done is None:
                    # A heartbeat landed between the check and the expiry: follow its deadline.
                    entry.deadline = fired
                    rearm.append((time.monotonic() + limit, fired))
                elif done is not GONE:
                    expired.append(done)
            self._watchdog.rearm(rearm)  # the fired timers themselves: a burst allocates nothing
        self._sink.emit(out)
        # After every deadline due now, a few at a time: a timeout coming due during the follow-ups
        # of a burst (a warning logged, a cycle begun for each) waits for one piece of them at most.
        for k in range(0, len(expired), _FOLLOW_UP_PIECE):
            self._watchdog.after_due(self._follow_ups, expired[k:k + _FOLLOW_UP_PIECE])

    def _on_attempt_due(self, entry: Entry, attempt: int) -> None:
        out: list[LifecycleEvent] = []
        outcome = Outcome()
        with self.lock:
            if not self._current(entry) or entry.attempt != attempt or self._book.of(entry) is not RECONNECTING:
                return
            entry.retry = None
            hooks = entry.hooks
            if hooks is None:
                # Without a connector only a heartbeat revives the service, and none came in time.
                log.info("lifecycle: no heartbeat from %s before attempt %d was due", entry.label(), attempt)
                self._cycles.schedule(entry, out)
            else:
                entry.inflight = outcome
                snapshot = self._snapshot(entry)
        self._sink.emit(out)
        if hooks is not None:
            self._executor.connect(outcome, hooks, snapshot, entry.connect_timeout,
                                   self._guard.report(self._attempt_done, entry, outcome),
                                   lambda: self._book.of(entry) is RUNNING)

    def _attempt_done(self, entry: Entry, outcome: Outcome, error: BaseException | None) -> bool:
        """An attempt's outcome; False if it no longer counts (the service stopped, revived or restarted)."""
        out: list[LifecycleEvent] = []
        with self.lock:
            if not self._current(entry) or entry.inflight is not outcome:
                return False
            entry.drop_attempt()
            if error is None:
                self._registry.heartbeat(entry.id)  # a reconnect counts as a heartbeat
                out = self._revive(entry, "reconnected")
            else:
                log.warning("lifecycle: reconnect attempt %d/%d of %s failed: %s", entry.attempt,
                            entry.policy.max_attempts, entry.label(), error_text(error))
                self._cycles.schedule(entry, out)
        self._sink.emit(out)
        return True

    def _ping_target(self, entry: Entry) -> ExtensionService | None:
        with self.lock:
            if not self._current(entry) or entry.hooks is None or entry.hooks.ping is None:
                return None
            if self._book.of(entry) is not RUNNING:
                entry.ping = None  # armed again when the service becomes RUNNING again
                return None
            entry.ping = self._pinger.arm(entry)
            if entry.ping_busy:
                log.debug("lifecycle: ping of %s still running; this one is skipped", entry.label())
                return None
            entry.ping_busy = True
            return self._snapshot(entry)

    def _record_ping(self, entry: Entry) -> list[LifecycleEvent] | None:
        with self.lock:
            entry.ping_busy = False
            if not self._current(entry):
                return None
            status = self._registry.heartbeat(entry.id)
            if status is RECONNECTING or status is ERROR:
                return self._revive(entry)
            if status is RUNNING and self._detector.tracks_beats:
                self._detector.beat(entry, time.monotonic())
            return []

    # -- helpers -------------------------------------------------------------------------------

    def _current(self, entry: Entry) -> bool:
        return self._entries.get(entry.id) is entry and entry.id not in self._stopping

    def _snapshot(self, entry: Entry) -> ExtensionService:
        service = self._registry.get(entry.id)
        if service is None:
            raise ServiceNotFound(f"service {entry.label()} vanished from the registry")
        return service

    def after_fork_in_child(self) -> None:
        self.lock = threading.RLock()
        self._guard.after_fork_in_child()
        self._declarations.after_fork_in_child()
        for entry in self._entries.values():
            entry.ping_busy = False
