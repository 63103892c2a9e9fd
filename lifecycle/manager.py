"""`LifecycleManager`: starts services, watches their heartbeat deadlines, reconnects, stops.

Locking: one `RLock` guards the manager's own state (timers and attempt counters per service)
and every decision that reads then writes the registry. Events are collected while it is held
and dispatched after it is released, so receivers and connectors never run under it.

Threads: with ``autostart=True`` one daemon watchdog thread runs deadlines and retries, and a
small idle-shrinking pool runs connector calls so a hanging `connect` delays nobody else.
With ``autostart=False`` there is no thread at all: `run_pending()` runs due timers and the
connector inline, which is how tests drive time with freezegun.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from types import TracebackType
from typing import Any

from . import _validate, signals
from ._fleetmode import FleetMode, follow_log
from ._forksafe import hold_across_fork
from ._text import quote, shorten
from .config import LifecycleConfig
from .connector import Hooks, bind_connector, resolve_connector
from .dispatch import Dispatcher
from .errors import (
    ConnectionFailed,
    FieldValueError,
    InvalidState,
    LifecycleError,
    ManagerClosed,
    NotInFleetMode,
    RegistryUnavailable,
    ServiceNotFound,
)
from .events import (
    Error,
    Heartbeat,
    HeartbeatTimeout,
    LifecycleEvent,
    Reconnected,
    ReconnectFailed,
    Reconnecting,
    ServiceFlapping,
    Started,
    StatusChanged,
    Stopped,
)
from .fleet import SharedRegistry
from .metrics import Metrics, MetricsRecorder
from .model import ExtensionService, ServiceId, ServiceStatus, TransportConfig
from .phi import History
from .pool import WorkerPool
from .registry import Registry, RegistryService
from .subscription import Subscription
from .watchdog import Timer, Watchdog

__all__ = ["LifecycleManager"]

log = logging.getLogger("lifecycle")

RUNNING = ServiceStatus.RUNNING
STARTING = ServiceStatus.STARTING
STOPPING = ServiceStatus.STOPPING
STOPPED = ServiceStatus.STOPPED
ERROR = ServiceStatus.ERROR
RECONNECTING = ServiceStatus.RECONNECTING

#: Every status change the manager makes; anything else is a bug or outside tampering.
TRANSITIONS: dict[ServiceStatus, frozenset[ServiceStatus]] = {
    STARTING: frozenset({RUNNING, STOPPING}),
    RUNNING: frozenset({RECONNECTING, ERROR, STOPPING}),
    ERROR: frozenset({RECONNECTING, RUNNING, STOPPING}),
    RECONNECTING: frozenset({RUNNING, ERROR, STOPPING}),
    STOPPING: frozenset({STOPPED}),
    STOPPED: frozenset(),
}

_POOL_SIZE = 8

_heartbeat_received = signals.heartbeat_received


class _Attempt:
    """One reconnect `connect` call in flight."""

    __slots__ = ("timed_out",)

    def __init__(self) -> None:
        self.timed_out = False


class _Entry:
    """What the manager keeps per service: its hooks, timers and the reconnect attempt counter.

    Status and last heartbeat live only in the registry.
    """

    __slots__ = (
        "id", "name", "hooks", "auto_reconnect", "connect_timeout",
        "attempt", "deadline", "retry", "ping", "ping_busy", "inflight", "spec", "restarts", "flapping", "history",
        "timeout", "ping_interval", "max_attempts",
    )

    def __init__(self, service: ExtensionService, hooks: Hooks | None, auto_reconnect: bool) -> None:
        self.id: ServiceId = service.id
        self.name = service.name
        self.hooks = hooks
        self.auto_reconnect = auto_reconnect
        self.connect_timeout = service.transport.timeout_secs
        self.attempt = 0
        self.deadline: Timer | None = None
        self.retry: Timer | None = None
        self.ping: Timer | None = None
        self.ping_busy = False
        # The connect attempt in flight; a result for any other attempt is stale.
        self.inflight: _Attempt | None = None
        # Fleet mode only: the service as started here, to register it again if the registry loses it.
        self.spec: ExtensionService | None = None
        # Restart intensity (only with max_restarts): when each restart within the window began.
        self.restarts: deque[float] | None = None
        self.flapping = False  # over the intensity: no reconnect until RUNNING again or restart_service
        self.history: History | None = None  # the phi detector's intervals (detector="phi" only)
        # This service's timing: its TransportConfig overrides, else the manager's config (set at start).
        self.timeout = 0.0
        self.ping_interval = 0.0
        self.max_attempts = 0

    def label(self) -> str:
        return f"{quote(self.name)} ({shorten(self.id)})"

    def cancel_timers(self) -> None:
        for timer in (self.deadline, self.retry, self.ping):
            if timer is not None:
                timer.cancel()
        self.deadline = self.retry = self.ping = None
        self.inflight = None


def _error_text(error: object) -> str:
    if isinstance(error, str):
        return error
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    raise TypeError(f"error must be a str or an exception, not {type(error).__name__}")


def _check_id(id: object) -> None:
    if not isinstance(id, str):
        raise TypeError(f"id must be a str, not {type(id).__name__}")


class LifecycleManager:
    """Keeps extension services alive: deadlines, reconnects with backoff, events, clean shutdown."""

    def __init__(
        self,
        registry: Registry | None = None,
        config: LifecycleConfig | None = None,
        *,
        connector: object = None,
        autostart: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if config is None:
            config = LifecycleConfig()
        elif not isinstance(config, LifecycleConfig):
            raise TypeError(f"config must be a LifecycleConfig, not {type(config).__name__}")
        if registry is None:
            registry = RegistryService(heartbeat_timeout_secs=config.heartbeat_timeout_secs)
        elif not isinstance(registry, Registry):
            raise TypeError(f"registry must implement lifecycle.Registry, not {type(registry).__name__}")
        if isinstance(registry, SharedRegistry):
            if config.max_restarts is not None:
                raise NotInFleetMode("max_restarts")
            if config.detector != "fixed":
                raise NotInFleetMode(f"detector={config.detector!r}")
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random, not {type(rng).__name__}")
        _validate.flag(autostart, "autostart")
        self._hooks = resolve_connector(connector)
        bind_connector(connector, self)
        self._config = config
        self._backoff = config.backoff
        self._timeout = float(config.heartbeat_timeout_secs)
        self._phi = config.phi
        # The in-memory registry keeps retry_count in step with attempts(id); others may not offer it.
        self._retry_setter: Callable[[str, int], None] | None = getattr(registry, "set_retry_count", None)
        self._phi_score = 0.0 if self._phi is None else self._phi.score
        self._registry = registry
        self._rng = rng if rng is not None else random.Random()
        self._autostart = autostart
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._stopping: set[str] = set()  # ids between STOPPING and unregistered
        self._subscriptions: tuple[Subscription, ...] = ()
        self._fleet_subscriptions: tuple[Subscription, ...] = ()
        self._dispatcher = Dispatcher()
        self._metrics = MetricsRecorder()
        self._beats = self._metrics.beats
        self._closed = False
        self._watchdog = Watchdog(autostart=autostart)
        self._pool = WorkerPool(_POOL_SIZE) if autostart else None
        # On a shared registry the fleet's deadlines and attempts are the leader's, not ours: see _fleetmode.
        self._fleet: FleetMode | None = None
        if isinstance(registry, SharedRegistry):
            self._fleet = FleetMode(
                registry, config, self._backoff, lambda attempt: self._backoff.delay(attempt, self._rng),
                self._watchdog, self._pool, self._dispatch, self._hooks_for, self._local_specs, self._fleet_adopt,
            )
        _register_fork_hook(self)
        if self._fleet is not None:
            self._fleet.start()

    # -- properties and queries ------------------------------------------------------------

    @property
    def registry(self) -> Registry:
        """The registry holding every managed service's status."""
        return self._registry

    @property
    def config(self) -> LifecycleConfig:
        """The settings this manager runs with."""
        return self._config

    @property
    def closed(self) -> bool:
        """True once `shutdown()` has begun."""
        return self._closed

    @property
    def is_leader(self) -> bool:
        """True in the process that acts on deadlines and reconnects (always, with the in-memory registry)."""
        return True if self._fleet is None else self._fleet.leader

    @property
    def fleet(self) -> bool:
        """True when the registry is shared by a fleet of managers (fleet mode)."""
        return self._fleet is not None

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<LifecycleManager {state} services={len(self._entries)}>"

    def __len__(self) -> int:
        return self.count()

    def count(self) -> int:
        """How many services this manager manages (in fleet mode: the namespace's services)."""
        if self._fleet is not None:
            return 0 if self._closed else self._registry.count()
        return len(self._entries)

    def get_status(self, id: str) -> ServiceStatus | None:
        """The service's status as the registry holds it, or None if this manager does not manage it."""
        if self._fleet is not None:
            live = None if self._closed or not isinstance(id, str) else self._registry.silence(id)
            return None if live is None else live[0]
        with self._lock:
            if not isinstance(id, str) or id not in self._entries:
                return None
            live = self._registry.silence(id)
        return None if live is None else live[0]

    def is_healthy(self, id: str) -> bool:
        """True if the service is RUNNING and heartbeated within its heartbeat timeout."""
        entry = None
        if self._fleet is not None:
            live = None if self._closed or not isinstance(id, str) else self._registry.silence(id)
        else:
            with self._lock:
                entry = self._entries.get(id) if isinstance(id, str) else None
                if entry is None:
                    return False
                live = self._registry.silence(id)
        if live is None:
            return False
        status, silent = live
        limit = self._timeout if entry is None else entry.timeout
        return status is RUNNING and silent is not None and silent < limit

    def attempts(self, id: str) -> int:
        """Reconnect attempts made in the current reconnect cycle (0 when none; unknown id: 0)."""
        if self._fleet is not None:
            service = None if self._closed or not isinstance(id, str) else self._registry.get(id)
            return 0 if service is None else service.retry_count
        with self._lock:
            entry = self._entries.get(id) if isinstance(id, str) else None
            return 0 if entry is None else entry.attempt

    def restarts(self, id: str) -> int:
        """Restarts (reconnect cycles begun) within the restart window now; 0 without `max_restarts` or unknown id."""
        if self._fleet is not None:
            return 0
        with self._lock:
            entry = self._entries.get(id) if isinstance(id, str) else None
            if entry is None or entry.restarts is None:
                return 0
            self._prune_restarts(entry.restarts, time.monotonic())
            return len(entry.restarts)

    def phi(self, id: str) -> float:
        """The phi detector's suspicion level for the service now; 0.0 with the fixed detector or an unknown id."""
        if self._phi is None or self._fleet is not None:
            return 0.0
        with self._lock:
            entry = self._entries.get(id) if isinstance(id, str) else None
            history = None if entry is None else entry.history
            return 0.0 if history is None else history.phi(time.monotonic(), self._phi)

    def armed_timers(self) -> int:
        """Timers entered and not cancelled (deadlines, retries, pings); O(n), for tests and diagnostics."""
        return self._watchdog.armed()

    def metrics(self) -> Metrics:
        """A frozen snapshot of counts per status, this process's totals and the detection-lag histogram.

        Costs O(services not RUNNING) with the in-memory registry (its counts), never a scan of
        every service. In fleet mode the counts per status are the shared registry's (the fleet's)
        and the totals are what this process emitted: a fleet's totals are the sum over its processes.
        """
        stats = self._registry.stats() if not self._closed else None
        services = {status.value: 0 for status in ServiceStatus}
        if stats is not None:
            services.update(starting=stats.starting, running=stats.running, stopping=stats.stopping,
                            stopped=stats.stopped, error=stats.errors, reconnecting=stats.reconnecting)
        with self._lock:  # a subscription's drops move from live to retired under it
            dropped = self._metrics.dropped_retired() + sum(
                s.dropped for s in self._subscriptions + self._fleet_subscriptions)
        return self._metrics.snapshot(services, dropped, self._watchdog.queued(), self._watchdog.lateness)

    def calculate_reconnect_delay(self, attempt: int) -> float:
        """Seconds to wait before retry `attempt` (0-based): exponential, capped, with proportional jitter."""
        return self._backoff.delay(attempt, self._rng)

    # -- starting and stopping -------------------------------------------------------------

    def start_service(self, service: ExtensionService, *, connector: object = None) -> ServiceId:
        """Register `service`, connect it in this thread, and mark it RUNNING with a full deadline.

        If `connect` raises, the service is unregistered, nothing is emitted and
        `ConnectionFailed` is raised from the connector's error.
        """
        self._check_open()
        if not isinstance(service, ExtensionService):
            raise TypeError(f"service must be an ExtensionService, not {type(service).__name__}")
        hooks = self._hooks if connector is None else resolve_connector(connector)
        if connector is not None:
            bind_connector(connector, self)
        auto = self._config.auto_reconnect and service.transport.auto_reconnect
        entry = _Entry(service, hooks, auto)
        self._resolve_timing(entry, service.transport)
        if self._fleet is not None:
            return self._fleet_start(service, entry)
        with self._lock:
            self._check_open()
            self._registry.register(service)
            try:
                if service.status is not STARTING:
                    self._registry.update_status(entry.id, STARTING)
            except BaseException:
                self._registry.unregister(entry.id)
                raise
            self._entries[entry.id] = entry
        if hooks is not None:
            try:
                hooks.connect(self._snapshot(entry))
            except BaseException as exc:
                self._forget(entry)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                raise ConnectionFailed(f"connecting service {entry.label()} failed: {_error_text(exc)}") from exc
        out: list[LifecycleEvent] = []
        with self._lock:
            if not self._current(entry):
                stopped_meanwhile = True
            else:
                stopped_meanwhile = False
                self._registry.heartbeat(entry.id)
                out.append(Started(entry.id, time.monotonic()))
                self._transition(entry, RUNNING, out)
                self._on_running(entry, time.monotonic())
        if stopped_meanwhile:
            raise InvalidState(f"service {entry.label()} was stopped while it was starting")
        self._dispatch(out)
        return entry.id

    def _resolve_timing(self, entry: _Entry, transport: TransportConfig) -> None:
        """The service's own timeout, ping interval and attempt limit where its transport sets them."""
        overrides = (transport.heartbeat_timeout_secs, transport.ping_interval_secs, transport.max_reconnect_attempts)
        if self._fleet is not None and any(value is not None for value in overrides):
            raise NotInFleetMode("per-service timing (TransportConfig.heartbeat_timeout_secs, ping_interval_secs, "
                                 "max_reconnect_attempts)")
        config = self._config
        timeout, interval, attempts = overrides
        entry.timeout = self._timeout if timeout is None else float(timeout)
        entry.ping_interval = float(config.heartbeat_interval_secs if interval is None else interval)
        entry.max_attempts = config.max_reconnect_attempts if attempts is None else attempts
        if entry.timeout < entry.ping_interval:
            field = "heartbeat_timeout_secs" if timeout is not None else "ping_interval_secs"
            raise FieldValueError(f"TransportConfig.{field}", "order",
                                  f"gives service {entry.name!r} a heartbeat timeout ({entry.timeout:g} s) shorter "
                                  f"than its ping interval ({entry.ping_interval:g} s)")

    def _set_attempt(self, entry: _Entry, attempt: int) -> None:
        """Count the reconnect attempt here and in the registry's `retry_count` (snapshots show it)."""
        entry.attempt = attempt
        if self._retry_setter is not None:
            self._retry_setter(entry.id, attempt)

    def stop_service(self, id: str) -> None:
        """STOPPING, cancel its timers, `disconnect` (errors logged), STOPPED, unregister, `service_stopped`."""
        self._check_open()
        if self._fleet is not None:
            self._fleet_stop(id, None)
            return
        self._stop(id, None)

    def stop_all(self) -> None:
        """Stop every service; one failing does not stop the others. Does nothing after shutdown.

        In fleet mode that is every service of the namespace, wherever it was started.
        """
        if self._closed:
            return
        self._stop_all(None)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every service, stop the watchdog and the worker pool; idempotent.

        `timeout` bounds the whole call: slow `disconnect` calls are abandoned (logged) once it
        runs out. Afterwards mutating calls raise `ManagerClosed` and queries see no service.
        """
        timeout = _validate.duration(timeout, "timeout", positive=False)
        with self._lock:
            if self._closed:
                return
            self._closed = True
        deadline = time.monotonic() + timeout
        try:
            if self._fleet is None:
                self._stop_all(deadline)
            else:
                # The fleet's services outlive any one of its processes: leave them registered and
                # hand the lease on at once.
                self._fleet.close()
        finally:
            self._watchdog.stop(max(0.0, deadline - time.monotonic()))
            if self._pool is not None:
                self._pool.shutdown(max(0.0, deadline - time.monotonic()))
            with self._lock:
                for entry in self._entries.values():
                    entry.cancel_timers()
                self._entries.clear()
                subscriptions = self._subscriptions + self._fleet_subscriptions
                self._subscriptions = self._fleet_subscriptions = ()
                self._metrics.retire_dropped(sum(s.dropped for s in subscriptions))
            for subscription in subscriptions:
                subscription._end()

    def __enter__(self) -> LifecycleManager:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    # -- reports from services ---------------------------------------------------------------

    def handle_heartbeat(self, id: str) -> None:
        """Record a heartbeat (O(1)); a RECONNECTING or ERROR service becomes RUNNING again.

        The common case (a RUNNING service) takes no manager lock: the registry records the
        beat atomically, and deadline expiry is a compare-and-set in the registry, so a beat
        racing a deadline either lands first (no timeout) or finds the service RECONNECTING
        and revives it under the lock. The in-memory registry takes no lock for it either.
        Every 32nd beat checks whether the watchdog is overdue and, if so, lets it have the GIL
        (see `Watchdog.yield_if_due`): busy beating threads would otherwise delay it by 5 ms.
        """
        if self._closed:
            raise ManagerClosed("the manager is shut down")
        if self._fleet is not None:
            self._fleet_heartbeat(id)
            return
        entry = self._entries.get(id) if isinstance(id, str) else None
        # The stopping set is almost always empty; checking it avoids touching the entry.
        if entry is None or (self._stopping and id in self._stopping):
            raise self._refusal(id, entry, "heartbeat")
        status = self._registry.heartbeat(id)
        if status is not RUNNING and status is not STARTING:
            self._heartbeat_slow(entry)
        elif self._phi is not None and entry.history is not None:  # the entry is not touched otherwise
            self._phi_beat(entry)
        if not next(self._beats) & 31:
            self._watchdog.yield_if_due()
        if _heartbeat_received.receivers or self._subscriptions:
            self._dispatcher.dispatch(self, (Heartbeat(entry.id, time.monotonic()),), self._subscriptions)

    def _phi_beat(self, entry: _Entry) -> None:
        """Record the interval for the phi detector; pull the deadline in if the new estimate says so."""
        with self._lock:
            history = entry.history
            if history is None or not self._current(entry):
                return
            assert self._phi is not None
            now = time.monotonic()
            history.beat(now, self._phi, entry.timeout)
            deadline = entry.deadline
            if deadline is not None:
                # Later deadlines are re-armed lazily when the armed one fires; an earlier one cannot wait.
                when = now + self._limit(entry)
                if when < deadline.when:
                    deadline.cancel()
                    entry.deadline = self._watchdog.call_at_batched(when, self._on_deadlines, entry)

    def _limit(self, entry: _Entry) -> float:
        """Seconds of silence after which the service is timed out: the fixed timeout, or phi's (capped by it)."""
        history = entry.history
        if history is None:
            return entry.timeout
        assert self._phi is not None
        return min(entry.timeout, history.limit(self._phi, self._phi_score))

    def _heartbeat_slow(self, entry: _Entry) -> None:
        """A beat for a service that is not RUNNING: refuse it if stopping, else revive the service."""
        revived: list[LifecycleEvent] = []
        with self._lock:
            if self._entries.get(entry.id) is not entry:
                raise self._refusal(entry.id, None, "heartbeat")  # stopped meanwhile: not managed any more
            status = self._status(entry)
            if entry.id in self._stopping or status is STOPPING or status is STOPPED:
                raise self._refusal(entry.id, entry, "heartbeat")
            if status is RECONNECTING or status is ERROR:
                revived = self._revive(entry)
        self._dispatch(revived)

    def handle_error(self, id: str, error: str | BaseException) -> None:
        """Report an error: `service_error`, ERROR, then (with auto-reconnect) RECONNECTING and attempt 1.

        Returns at once; retries run on the watchdog. On a RECONNECTING service it only emits.
        """
        if self._closed:
            raise ManagerClosed("the manager is shut down")
        text = _error_text(error)
        if self._fleet is not None:
            self._fleet_error(id, text)
            return
        out: list[LifecycleEvent] = []
        with self._lock:
            entry = self._entries.get(id) if isinstance(id, str) else None
            if entry is None or id in self._stopping:
                raise self._refusal(id, entry, "error report")
            status = self._status(entry)
            if status is STARTING:
                raise InvalidState(f"service {entry.label()} is still starting; its connect has not returned")
            now = time.monotonic()
            out.append(Error(entry.id, now, text))
            if status is not RECONNECTING:
                self._transition(entry, ERROR, out)
                if entry.auto_reconnect and not entry.flapping:
                    flaps = self._flaps(entry, now)
                    if flaps is not None:
                        self._flap(entry, flaps, now, out)
                    else:
                        self._count_restart(entry, now)
                        self._begin_reconnect(entry, out)
        log.warning("lifecycle: service %s reported an error: %s", entry.label(), text)
        self._dispatch(out)

    def restart_service(self, id: str) -> None:
        """Reconnect the service now, with a fresh restart window: RECONNECTING and attempt 1 at once.

        Works from RUNNING, RECONNECTING (the attempts start over) and ERROR (a flapping service
        included). With a connector attempt 1 is due at once; without one it waits the usual
        first delay for a heartbeat. Not in fleet mode (`NotInFleetMode`).
        """
        self._check_open()
        if self._fleet is not None:
            raise NotInFleetMode("restart_service")
        out: list[LifecycleEvent] = []
        with self._lock:
            entry = self._entries.get(id) if isinstance(id, str) else None
            if entry is None or id in self._stopping:
                raise self._refusal(id, entry, "restart")
            if self._status(entry) is STARTING:
                raise InvalidState(f"service {entry.label()} is still starting; its connect has not returned")
            if entry.restarts is not None:
                entry.restarts.clear()
            entry.flapping = False
            if entry.retry is not None:
                entry.retry.cancel()
                entry.retry = None
            entry.inflight = None
            self._transition(entry, RECONNECTING, out)
            self._set_attempt(entry, 0)
            self._schedule_attempt(entry, out, now=entry.hooks is not None)
        log.info("lifecycle: service %s is restarted on request", entry.label())
        self._dispatch(out)

    def health_check(self) -> list[ServiceId]:
        """Time out every RUNNING service silent for the heartbeat timeout now; return their ids.

        In fleet mode only the leader acts (and returns what it timed out); elsewhere it returns [].
        """
        self._check_open()
        if self._fleet is not None:
            return [ServiceId(sid) for sid in self._fleet.sweep_now()]
        out: list[LifecycleEvent] = []
        stale: list[ServiceId] = []
        with self._lock:
            for entry in list(self._entries.values()):
                if entry.id in self._stopping:
                    continue
                live = self._registry.silence(entry.id)
                if live is None or live[0] is not RUNNING:
                    continue
                lag = None if live[1] is None else live[1] - entry.timeout
                if (lag is None or lag >= 0) and self._expire(entry, out, lag, entry.timeout):
                    stale.append(entry.id)
        self._dispatch(out)
        return stale

    # -- time and events -------------------------------------------------------------------------

    def _start_watching(self) -> None:
        """Run the timers of a manager built held (`watchdog.born_held`, for the framework
        integrations: a process that loads the app but serves nothing, such as gunicorn's
        --preload master, hears no heartbeat); those already due run at once."""
        self._watchdog.release()

    def run_pending(self) -> int:
        """Run every timer due now in this thread (connects and pings inline); return how many ran."""
        if self._closed:
            return 0
        return self._watchdog.run_pending()

    def subscribe(self, maxsize: int = 256, *, fleet: bool = False) -> Subscription:
        """A queue of this manager's events; close it when done (or use it as a context manager).

        With ``fleet=True`` (fleet mode only) it is every event of the namespace, whichever
        process emitted it, in the order of the fleet's event log, from now on; a reader thread
        follows the log until the subscription is closed or the manager shut down.
        """
        self._check_open()
        _validate.flag(fleet, "fleet")
        if fleet and self._fleet is None:
            raise ValueError("fleet=True needs a shared registry (fleet mode), e.g. lifecycle.redis.RedisRegistry")
        subscription = Subscription(maxsize, self._unsubscribe)
        with self._lock:
            self._check_open()
            if fleet:
                self._fleet_subscriptions = (*self._fleet_subscriptions, subscription)
            else:
                self._subscriptions = (*self._subscriptions, subscription)
        if fleet:
            follow_log(self._shared, subscription)
        return subscription

    # -- internals: state changes (call with the lock held) ---------------------------------

    def _status(self, entry: _Entry) -> ServiceStatus | None:
        live = self._registry.silence(entry.id)
        return None if live is None else live[0]

    def _transition(self, entry: _Entry, new: ServiceStatus, out: list[LifecycleEvent]) -> None:
        old = self._registry.update_status(entry.id, new)
        if old is new:
            return
        if new not in TRANSITIONS[old]:
            log.warning("lifecycle: unexpected transition %s -> %s of %s (was the registry changed directly?)",
                        old.value, new.value, entry.label())
        out.append(StatusChanged(entry.id, time.monotonic(), old, new))

    def _on_running(self, entry: _Entry, last_heartbeat: float) -> None:
        """Arm the deadline (if none is armed) and restart pings after the service became RUNNING."""
        self._set_attempt(entry, 0)
        entry.flapping = False
        entry.inflight = None
        if entry.retry is not None:
            entry.retry.cancel()
            entry.retry = None
        if self._phi is not None:
            if entry.history is None:
                entry.history = History(self._phi, last_heartbeat)
            else:
                entry.history.last = last_heartbeat  # after a reconnect: the outage is no interval to learn
        when = last_heartbeat + self._limit(entry)
        if entry.deadline is None or when < entry.deadline.when:
            # An armed deadline that is later would fire too late; an earlier one re-arms itself when it fires.
            if entry.deadline is not None:
                entry.deadline.cancel()
            entry.deadline = self._watchdog.call_at_batched(when, self._on_deadlines, entry)
        if entry.hooks is not None and entry.hooks.ping is not None:
            if entry.ping is not None:
                entry.ping.cancel()
            entry.ping = self._watchdog.call_later(entry.ping_interval, self._on_ping_due, entry)

    def _revive(self, entry: _Entry, how: str = "heartbeat") -> list[LifecycleEvent]:
        """A heartbeat, ping or reconnect for a RECONNECTING or ERROR service: RUNNING again."""
        out: list[LifecycleEvent] = []
        now = time.monotonic()
        if how == "heartbeat" and entry.history is not None and self._phi is not None:
            # The service was only silent, maybe falsely suspected: learn the interval, as Akka
            # does, capped at the timeout (nothing alive is silent longer).
            entry.history.beat(now, self._phi, entry.timeout)
        self._transition(entry, RUNNING, out)
        self._on_running(entry, now)
        out.append(Reconnected(entry.id, time.monotonic()))
        log.info("lifecycle: service %s is back (%s)", entry.label(), how)
        return out

    def _expire(self, entry: _Entry, out: list[LifecycleEvent], lag: float | None, limit: float | None = None) -> bool:
        """Time the service out if it is still RUNNING and silent; False if a heartbeat got there first.

        `lag` is how long after the deadline this runs (None: unknown), for the detection-lag histogram;
        `limit` the silence that counts as a timeout (default: the service's fixed heartbeat timeout).
        """
        now = time.monotonic()
        flaps = self._flaps(entry, now) if entry.auto_reconnect else None
        reconnect = entry.auto_reconnect and entry.max_attempts > 0 and flaps is None
        target = RECONNECTING if reconnect else ERROR
        if self._registry.expire(entry.id, entry.timeout if limit is None else limit, target) is None:
            return False
        log.warning("lifecycle: service %s missed its heartbeat deadline", entry.label())
        if lag is not None:
            self._metrics.observe_lag(lag)
        out.append(HeartbeatTimeout(entry.id, now))
        out.append(StatusChanged(entry.id, now, RUNNING, target))
        self._set_attempt(entry, 0)
        if flaps is not None:
            self._flap(entry, flaps, now, out)
        elif entry.auto_reconnect:
            self._count_restart(entry, now)
            if reconnect:
                self._schedule_attempt(entry, out)
            else:
                self._give_up(entry, out)  # max_reconnect_attempts == 0
        return True

    def _prune_restarts(self, times: deque[float], now: float) -> None:
        cutoff = now - self._config.restart_window_secs
        while times and times[0] <= cutoff:
            times.popleft()

    def _flaps(self, entry: _Entry, now: float) -> int | None:
        """If one more restart now would exceed `max_restarts` in the window: the restarts it would make; else None."""
        limit = self._config.max_restarts
        if limit is None:
            return None
        if entry.restarts is None:
            entry.restarts = deque(maxlen=limit + 1)
        self._prune_restarts(entry.restarts, now)
        return len(entry.restarts) + 1 if len(entry.restarts) >= limit else None

    def _count_restart(self, entry: _Entry, now: float) -> None:
        if entry.restarts is not None:
            entry.restarts.append(now)

    def _flap(self, entry: _Entry, restarts: int, now: float, out: list[LifecycleEvent]) -> None:
        """Over the restart intensity: stay ERROR, no reconnect, `service_flapping`."""
        self._count_restart(entry, now)
        entry.flapping = True
        window = float(self._config.restart_window_secs)
        out.append(ServiceFlapping(entry.id, now, restarts, window))
        log.error("lifecycle: service %s needed %d restarts within %g s (max_restarts=%s); it stays ERROR until "
                  "a heartbeat or restart_service()", entry.label(), restarts, window, self._config.max_restarts)

    def _begin_reconnect(self, entry: _Entry, out: list[LifecycleEvent]) -> None:
        self._set_attempt(entry, 0)
        if entry.max_attempts == 0:
            self._give_up(entry, out)
            return
        self._transition(entry, RECONNECTING, out)
        self._schedule_attempt(entry, out)

    def _schedule_attempt(self, entry: _Entry, out: list[LifecycleEvent], *, now: bool = False) -> None:
        limit = entry.max_attempts
        if entry.attempt >= limit:
            self._give_up(entry, out)
            return
        self._set_attempt(entry, entry.attempt + 1)
        delay = 0.0 if now else self._backoff.delay(entry.attempt - 1, self._rng)
        entry.retry = self._watchdog.call_later(delay, self._on_attempt_due, entry, entry.attempt)
        out.append(Reconnecting(entry.id, time.monotonic(), entry.attempt, limit, delay))

    def _give_up(self, entry: _Entry, out: list[LifecycleEvent]) -> None:
        entry.retry = None
        entry.inflight = None
        self._transition(entry, ERROR, out)
        out.append(ReconnectFailed(entry.id, time.monotonic(), entry.attempt))
        log.error("lifecycle: service %s could not be reconnected after %d attempt(s)", entry.label(), entry.attempt)

    # -- internals: timer actions (run on the watchdog or in run_pending) ----------------

    def _on_deadlines(self, entries: list[_Entry]) -> None:
        """The deadlines of one watchdog slot: one lock, one registry read, events sent after both.

        Most deadlines find a newer heartbeat and are re-armed for it; the silent services are
        timed out. A registry without `silence_many` (the optional batched read) is asked per id.
        """
        out: list[LifecycleEvent] = []
        rearm: list[tuple[float, Timer]] = []
        with self._lock:
            # An entry whose deadline is live was given a new one after this fired: that one counts.
            entries = [entry for entry in entries if self._current(entry) and entry.deadline is not None
                       and entry.deadline.cancelled]
            if not entries:
                return
            ids = [entry.id for entry in entries]
            silence_many = getattr(self._registry, "silence_many", None)
            lives = silence_many(ids) if silence_many is not None else [self._registry.silence(id) for id in ids]
            now = time.monotonic()
            for entry, live in zip(entries, lives, strict=True):
                fired, entry.deadline = entry.deadline, None
                assert fired is not None
                if live is None or live[0] is not RUNNING:
                    continue  # re-armed when the service becomes RUNNING again
                silent = live[1]
                limit = self._limit(entry)
                if silent is not None and silent < limit:
                    # The registry's clock says how long is left; our clock says when that is.
                    entry.deadline = fired
                    rearm.append((now + limit - silent, fired))
                    continue
                try:
                    expired = self._expire(entry, out, None if silent is None else silent - limit, limit)
                except Exception:
                    # As a lone timer's would be: logged, and the rest of the slot still checked.
                    log.exception("lifecycle: the deadline of %s raised; the watchdog goes on", entry.label())
                    continue
                if not expired:
                    # A heartbeat landed between the check and the expiry: follow its deadline.
                    entry.deadline = fired
                    rearm.append((time.monotonic() + limit, fired))
            self._watchdog.rearm(rearm)  # the fired timers themselves: a burst allocates nothing
        self._dispatch(out)

    def _on_attempt_due(self, entry: _Entry, attempt: int) -> None:
        out: list[LifecycleEvent] = []
        token = _Attempt()
        run_inline = False
        with self._lock:
            if not self._current(entry) or entry.attempt != attempt or self._status(entry) is not RECONNECTING:
                return
            entry.retry = None
            hooks = entry.hooks
            if hooks is None:
                # Without a connector only a heartbeat revives the service, and none came in time.
                log.info("lifecycle: no heartbeat from %s before attempt %d was due", entry.label(), attempt)
                self._schedule_attempt(entry, out)
            else:
                entry.inflight = token
                snapshot = self._snapshot(entry)
                if self._pool is None:
                    run_inline = True
                else:
                    self._submit(hooks.connect, snapshot, lambda error: self._connect_done(entry, token, error,
                                                                                          snapshot))
                    entry.retry = self._watchdog.call_later(entry.connect_timeout, self._connect_timed_out,
                                                            entry, token)
        self._dispatch(out)
        if run_inline:
            assert hooks is not None
            try:
                error = _call(hooks.connect, snapshot)
            except BaseException as interrupt:  # KeyboardInterrupt/SystemExit: count the attempt, then let it go
                self._connect_done(entry, token, interrupt, snapshot)
                raise
            self._connect_done(entry, token, error, snapshot)

    def _connect_done(self, entry: _Entry, token: _Attempt, error: BaseException | None,
                      snapshot: ExtensionService) -> None:
        out: list[LifecycleEvent] = []
        with self._lock:
            wanted = self._current(entry) and entry.inflight is token
            # A late connection is closed if its attempt timed out or the service is gone; if a
            # heartbeat revived the service meanwhile, the connection is kept.
            unwanted = not wanted and (token.timed_out or not self._current(entry))
            if wanted:
                entry.inflight = None
                if entry.retry is not None:
                    entry.retry.cancel()
                    entry.retry = None
                if error is None:
                    self._registry.heartbeat(entry.id)  # a reconnect counts as a heartbeat
                    out = self._revive(entry, "reconnected")
                else:
                    log.warning("lifecycle: reconnect attempt %d/%d of %s failed: %s", entry.attempt,
                                entry.max_attempts, entry.label(), _error_text(error))
                    self._schedule_attempt(entry, out)
        if unwanted and error is None:
            self._disconnect_quietly(entry, snapshot)
        self._dispatch(out)

    def _connect_timed_out(self, entry: _Entry, token: _Attempt) -> None:
        out: list[LifecycleEvent] = []
        with self._lock:
            if not self._current(entry) or entry.inflight is not token:
                return
            entry.inflight = None
            entry.retry = None
            token.timed_out = True
            log.warning("lifecycle: reconnect attempt %d of %s still running after %.3g s; counted as failed",
                        entry.attempt, entry.label(), entry.connect_timeout)
            self._schedule_attempt(entry, out)
        self._dispatch(out)

    def _on_ping_due(self, entry: _Entry) -> None:
        with self._lock:
            if not self._current(entry) or entry.hooks is None or entry.hooks.ping is None:
                return
            interval = self._config.heartbeat_interval_secs
            try:
                status = self._status(entry)
            except RegistryUnavailable:
                # A shared registry is down (the fleet's tick logs that once): look again next interval.
                entry.ping = self._watchdog.call_later(interval, self._on_ping_due, entry)
                return
            if status is not RUNNING:
                entry.ping = None  # restarted when the service becomes RUNNING again
                if self._fleet is not None and status is not None:
                    # Another process may bring it back (a heartbeat, the leader's reconnect): keep looking.
                    entry.ping = self._watchdog.call_later(entry.ping_interval,
                                                           self._on_ping_due, entry)
                return
            entry.ping = self._watchdog.call_later(entry.ping_interval, self._on_ping_due, entry)
            if entry.ping_busy:
                log.debug("lifecycle: ping of %s still running; this one is skipped", entry.label())
                return
            ping = entry.hooks.ping
            try:
                snapshot = self._snapshot(entry)
            except RegistryUnavailable:
                return  # as above; the next ping is armed
            entry.ping_busy = True
            started = time.monotonic()
            if self._pool is not None:
                self._submit(ping, snapshot, lambda error: self._ping_done(entry, started, error))
                return
        self._ping_done(entry, started, _call(ping, snapshot))

    def _ping_done(self, entry: _Entry, started: float, error: BaseException | None) -> None:
        revived: list[LifecycleEvent] | None = None
        with self._lock:
            entry.ping_busy = False
            if not self._current(entry):
                return
            if error is None and self._pool is not None and time.monotonic() - started > entry.connect_timeout:
                error = TimeoutError(f"ping took longer than {entry.connect_timeout:g} s")
            if error is not None:
                log.warning("lifecycle: ping of %s failed: %s", entry.label(), _error_text(error))
                return
            next(self._beats)
            if self._fleet is not None:
                revived = None  # recorded below, outside the lock: a shared registry is a round trip
            else:
                status = self._registry.heartbeat(entry.id)
                if status is RECONNECTING or status is ERROR:
                    revived = self._revive(entry)
                elif status is RUNNING and entry.history is not None:
                    self._phi_beat(entry)
        if self._fleet is not None:
            revived = self._fleet_beat_events(entry.id)
        if revived:
            self._dispatch(revived)
        if _heartbeat_received.receivers or self._subscriptions:
            self._dispatch((Heartbeat(entry.id, time.monotonic()),))

    # -- internals: fleet mode (a shared registry; see _fleetmode for the leader's side) ---------

    @property
    def _shared(self) -> SharedRegistry:
        assert self._fleet is not None
        return self._fleet.registry

    def _hooks_for(self, id: str) -> Hooks | None:
        """The connector for a service: the one it was started with here, else the manager's."""
        entry = self._entries.get(id)
        return self._hooks if entry is None else entry.hooks

    def _local_specs(self) -> list[ExtensionService]:
        with self._lock:
            return [entry.spec for entry in self._entries.values() if entry.spec is not None]

    def _fleet_start(self, service: ExtensionService, entry: _Entry) -> ServiceId:
        """Register (or join) in the fleet, connect, RUNNING; joining calls no connector."""
        assert self._fleet is not None
        registry = self._shared
        sid, joined = registry.join(service)
        if joined:
            log.info("lifecycle: service %r joined as %s, already registered in the fleet", service.name, sid)
            return sid
        entry.spec = copy.deepcopy(service)
        with self._lock:
            self._entries[entry.id] = entry
        if entry.hooks is not None:
            try:
                entry.hooks.connect(self._snapshot(entry))
            except BaseException as exc:
                self._forget(entry)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                    raise
                raise ConnectionFailed(f"connecting service {entry.label()} failed: {_error_text(exc)}") from exc
        events = registry.activate(entry.id, self._timeout)
        if not events:
            with self._lock:
                self._entries.pop(entry.id, None)
            raise InvalidState(f"service {entry.label()} was stopped while it was starting")
        if entry.hooks is not None and entry.hooks.ping is not None:
            with self._lock:
                entry.ping = self._watchdog.call_later(entry.ping_interval, self._on_ping_due, entry)
        self._fleet.poke(self._timeout)
        self._dispatch(events)
        return entry.id

    def _fleet_adopt(self, service: ExtensionService) -> None:
        """The leader reconnected `service` with this manager's connector: this process pings it from now on."""
        hooks = self._hooks
        if hooks is None:
            return
        with self._lock:
            if self._closed or service.id in self._entries:
                return
            entry = _Entry(service, hooks, self._config.auto_reconnect and service.transport.auto_reconnect)
            entry.timeout = self._timeout  # fleet mode has no per-service timing
            entry.ping_interval = float(self._config.heartbeat_interval_secs)
            entry.max_attempts = self._config.max_reconnect_attempts
            entry.spec = copy.deepcopy(service)
            self._entries[entry.id] = entry
            if hooks.ping is not None:
                entry.ping = self._watchdog.call_later(entry.ping_interval, self._on_ping_due, entry)

    def _fleet_stop(self, id: str, deadline: float | None) -> None:
        _check_id(id)
        registry = self._shared
        prior, events = registry.begin_stop(id)
        if prior is None:
            raise ServiceNotFound(f"service {quote(id)} is not registered in the fleet")
        if prior is STOPPING or prior is STOPPED:
            return  # another call (maybe in another process) is stopping it
        self._dispatch(events)
        with self._lock:
            entry = self._entries.pop(id, None)
            if entry is not None:
                entry.cancel_timers()
        try:
            service = registry.get(id)
            if service is not None:
                hooks = self._hooks if entry is None else entry.hooks
                self._disconnect_bounded(entry or _Entry(service, hooks, False), service, deadline)
        finally:
            try:
                events = registry.finish_stop(id)
            except ServiceNotFound:
                events = []
            log.info("lifecycle: service %s stopped", id)
            self._dispatch(events)

    def _fleet_heartbeat(self, id: str) -> None:
        _check_id(id)
        prior, events = self._shared.beat(id, self._timeout)
        if prior is None:
            raise ServiceNotFound(f"service {quote(id)} is not registered in the fleet")
        if prior is STOPPING or prior is STOPPED:
            raise InvalidState(f"service {quote(id)} is stopping; its heartbeat is refused")
        next(self._beats)
        if events:
            log.info("lifecycle: service %s is back (heartbeat)", id)
            self._dispatch(events)
        if _heartbeat_received.receivers or self._subscriptions:
            self._dispatcher.dispatch(self, (Heartbeat(ServiceId(id), time.monotonic()),), self._subscriptions)

    def _fleet_beat_events(self, id: str) -> list[LifecycleEvent]:
        """A successful ping in fleet mode: record it; the events of a revival, if it revived the service."""
        try:
            return self._shared.beat(id, self._timeout)[1]
        except RegistryUnavailable:
            return []  # an outage: the fleet's tick logs it once, not every ping
        except LifecycleError as exc:
            log.warning("lifecycle: recording the ping of %s failed: %s", id, exc)
            return []

    def _fleet_error(self, id: str, text: str) -> None:
        assert self._fleet is not None
        _check_id(id)
        service = self._shared.get(id)
        if service is None:
            raise ServiceNotFound(f"service {quote(id)} is not registered in the fleet")
        entry = self._entries.get(id)
        auto = self._fleet.auto_reconnect(service) if entry is None else entry.auto_reconnect
        plan = self._fleet.plan(1, True) if auto else None
        prior, events = self._shared.report_error(id, text, plan)
        if prior is None:
            raise ServiceNotFound(f"service {quote(id)} is not registered in the fleet")
        if prior is STOPPING or prior is STOPPED:
            raise InvalidState(f"service {quote(id)} is stopping; its error report is refused")
        if prior is STARTING:
            raise InvalidState(f"service {quote(id)} is still starting; its connect has not returned")
        log.warning("lifecycle: service %r (%s) reported an error: %s", service.name, id, text)
        if plan is not None and prior is not RECONNECTING:
            self._fleet.poke_plan(plan)  # in the leader, attempt 1 runs when due
        self._dispatch(events)

    # -- internals: helpers ------------------------------------------------------------------------

    def _current(self, entry: _Entry) -> bool:
        return self._entries.get(entry.id) is entry and entry.id not in self._stopping

    def _check_open(self) -> None:
        if self._closed:
            raise ManagerClosed("the manager is shut down")

    def _refusal(self, id: object, entry: _Entry | None, what: str) -> LifecycleError:
        if entry is not None:
            return InvalidState(f"service {entry.label()} is stopping; its {what} is refused")
        _check_id(id)
        return ServiceNotFound(f"service {quote(id)} is not managed by this manager")

    def _snapshot(self, entry: _Entry) -> ExtensionService:
        service = self._registry.get(entry.id)
        if service is None:
            raise ServiceNotFound(f"service {entry.label()} vanished from the registry")
        return service

    def _dispatch(self, events: Iterable[LifecycleEvent]) -> None:
        if not isinstance(events, (list, tuple)):
            events = tuple(events)
        if events:
            self._metrics.count_events(events)
        self._dispatcher.dispatch(self, events, self._subscriptions)

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions or subscription in self._fleet_subscriptions:
                self._metrics.retire_dropped(subscription.dropped)
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)
            self._fleet_subscriptions = tuple(s for s in self._fleet_subscriptions if s is not subscription)

    def _submit(self, fn: Callable[[ExtensionService], Any], service: ExtensionService,
                done: Callable[[BaseException | None], None]) -> None:
        assert self._pool is not None
        future = self._pool.submit(fn, service)
        future.add_done_callback(lambda f: done(f.exception()))

    def _forget(self, entry: _Entry) -> None:
        """Undo a registration whose start failed: no entry, no registration, no timer."""
        with self._lock:
            if self._entries.get(entry.id) is entry:
                del self._entries[entry.id]
            entry.cancel_timers()
            if entry.id in self._registry:
                with contextlib.suppress(ServiceNotFound):
                    self._registry.unregister(entry.id)

    def _stop(self, id: str, deadline: float | None) -> None:
        out: list[LifecycleEvent] = []
        with self._lock:
            entry = self._entries.get(id) if isinstance(id, str) else None
            if entry is None:
                _check_id(id)
                raise ServiceNotFound(f"service {quote(id)} is not managed by this manager")
            if entry.id in self._stopping:
                return
            self._stopping.add(entry.id)
            entry.cancel_timers()
            self._transition(entry, STOPPING, out)
            snapshot = self._registry.get(entry.id)
        self._dispatch(out)
        out = []
        try:
            if snapshot is not None:
                self._disconnect_bounded(entry, snapshot, deadline)
        finally:
            with self._lock:
                if entry.id in self._registry:
                    self._transition(entry, STOPPED, out)
                    self._registry.unregister(entry.id)
                if self._entries.get(entry.id) is entry:
                    del self._entries[entry.id]
                self._stopping.discard(entry.id)
                out.append(Stopped(entry.id, time.monotonic()))
        log.info("lifecycle: service %s stopped", entry.label())
        self._dispatch(out)

    def _stop_all(self, deadline: float | None) -> None:
        fleet = self._fleet is not None
        ids: list[str] = [service.id for service in self._registry.list_all()] if fleet else list(self._entries)
        for id in ids:
            try:
                if self._fleet is not None:
                    self._fleet_stop(id, deadline)
                else:
                    self._stop(id, deadline)
            except ServiceNotFound:
                pass  # stopped concurrently
            except Exception:
                log.exception("lifecycle: stopping service %s failed; stopping the others", id)

    def _disconnect_bounded(self, entry: _Entry, service: ExtensionService, deadline: float | None) -> None:
        """Call `disconnect`, bounded by the transport timeout (and `deadline`) when threads are allowed."""
        hooks = entry.hooks
        if hooks is None or hooks.disconnect is None:
            return
        if self._pool is None or self._pool.closed:
            self._disconnect_quietly(entry, service)
            return
        limit = entry.connect_timeout
        if deadline is not None:
            limit = max(0.0, min(limit, deadline - time.monotonic()))
        future: Future[Any] = self._pool.submit(hooks.disconnect, service)
        try:
            future.result(timeout=limit)
        except FutureTimeout:
            log.warning("lifecycle: disconnect of %s still running after %.3g s; abandoned", entry.label(), limit)
        except Exception as exc:
            log.warning("lifecycle: disconnect of %s failed: %s", entry.label(), _error_text(exc))

    def _disconnect_quietly(self, entry: _Entry, service: ExtensionService) -> None:
        hooks = entry.hooks
        if hooks is None or hooks.disconnect is None:
            return
        error = _call(hooks.disconnect, service)
        if error is not None:
            log.warning("lifecycle: disconnect of %s failed: %s", entry.label(), _error_text(error))

    def _after_fork_in_child(self) -> None:
        """Fresh locks and threads in a forked child; timers are kept and the watchdog restarts lazily."""
        self._lock = threading.RLock()
        self._metrics.after_fork_in_child()
        for entry in self._entries.values():
            entry.ping_busy = False
        for subscription in self._subscriptions:
            subscription._after_fork_in_child()
        if self._fleet is not None:
            self._fleet.after_fork_in_child()
        if self._pool is not None:
            self._pool.reset_after_fork()
        self._watchdog.reset_after_fork()


def _call(fn: Callable[[ExtensionService], Any], service: ExtensionService) -> BaseException | None:
    """Run a connector hook inline; return its exception (KeyboardInterrupt and SystemExit propagate)."""
    try:
        fn(service)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        return exc
    return None


_managers: weakref.WeakSet[LifecycleManager] = weakref.WeakSet()


def _reset_managers_in_child() -> None:
    for manager in list(_managers):
        try:
            manager._after_fork_in_child()
        except Exception:
            log.exception("lifecycle: resetting %r after fork failed", manager)


def _register_fork_hook(manager: LifecycleManager) -> None:
    _managers.add(manager)


# Registered after the registry module's hook, so each manager's lock is taken before the
# registry locks: the order every code path uses.
hold_across_fork(lambda: [manager._lock for manager in list(_managers)], _reset_managers_in_child)
