"""`LifecycleManager`: the public face of supervision; the engine (`lifecycle.engine`) does the work.

The manager checks arguments, owns the subscriptions, metrics and fork safety, and hands each
verb to its engine, chosen once from the registry. Events come back through one hand-in
(`_Sink`) and are dispatched with no lock held, so receivers and connectors never run under it.

Threads: with ``autostart=True`` one daemon watchdog thread runs deadlines and retries, and a
small idle-shrinking pool runs connector calls so a hanging `connect` delays nobody else.
With ``autostart=False`` there is no thread at all: `run_pending()` runs due timers and the
connector inline, which is how tests drive time with freezegun.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import weakref
from collections.abc import Iterable
from types import TracebackType

from . import _validate, signals
from ._forksafe import hold_across_fork
from .config import LifecycleConfig
from .connector import Hooks, bind_connector, resolve_connector
from .dispatch import Dispatcher
from .engine import Engine, build_engine
from .engine.base import error_text
from .engine.runner import Executor, InlineExecutor, PoolExecutor
from .errors import ManagerClosed
from .events import Heartbeat, LifecycleEvent
from .metrics import Metrics, MetricsRecorder
from .model import ExtensionService, ServiceId, ServiceStatus, check_host
from .pool import WorkerPool
from .registry import Registry, RegistryService
from .subscription import Subscription
from .watchdog import Watchdog

__all__ = ["LifecycleManager"]

_POOL_SIZE = 8

_heartbeat_received = signals.heartbeat_received
log = logging.getLogger("lifecycle")


class _Sink:
    """The engine's one way back into the manager: events to dispatch and measurements to record."""

    __slots__ = ("_manager",)

    def __init__(self, manager: LifecycleManager) -> None:
        self._manager = manager

    def emit(self, events: Iterable[LifecycleEvent]) -> None:
        self._manager._dispatch(events)

    def observe_lags(self, seconds: list[float]) -> None:
        self._manager._metrics.observe_lags(seconds)

    def count_beat(self) -> None:
        next(self._manager._beats)

    def heard(self) -> bool:
        return bool(_heartbeat_received.receivers or self._manager._subscriptions)


class LifecycleManager:
    """Keeps extension services alive: deadlines, reconnects with backoff, events, clean shutdown.

    `host` names this member's host in a fleet (where its STDIO children run, for
    `TransportConfig.host` and `per_host`); default $LIFECYCLE_HOST, else the machine's hostname.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        config: LifecycleConfig | None = None,
        *,
        connector: object = None,
        autostart: bool = True,
        rng: random.Random | None = None,
        host: str | None = None,
    ) -> None:
        if config is None:
            config = LifecycleConfig()
        elif not isinstance(config, LifecycleConfig):
            raise TypeError(f"config must be a LifecycleConfig, not {type(config).__name__}")
        if registry is None:
            registry = RegistryService(heartbeat_timeout_secs=config.heartbeat_timeout_secs)
        elif not isinstance(registry, Registry):
            raise TypeError(f"registry must implement lifecycle.Registry, not {type(registry).__name__}")
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random, not {type(rng).__name__}")
        _validate.flag(autostart, "autostart")
        if host is not None:
            check_host(host, "host")
        self._hooks = resolve_connector(connector)
        self._config = config
        self._registry = registry
        self._rng = rng if rng is not None else random.Random()
        self._subscriptions: tuple[Subscription, ...] = ()
        self._fleet_subscriptions: tuple[Subscription, ...] = ()
        self._dispatcher = Dispatcher()
        self._metrics = MetricsRecorder()
        self._beats = self._metrics.beats
        self._closed = False
        self._watchdog = Watchdog(autostart=autostart)
        self._executor: Executor = (PoolExecutor(WorkerPool(_POOL_SIZE), self._watchdog) if autostart
                                    else InlineExecutor())
        engine: Engine | None = None
        try:
            engine = self._engine = build_engine(registry, config, self._hooks, self._watchdog, self._executor,
                                                 _Sink(self), self._rng, host)
            bind_connector(connector, self)
        except BaseException:
            # Nothing half-built stays behind: no thread, no timer, no lease.
            if engine is not None:
                engine.close(time.monotonic())
            self._watchdog.stop(0.0)
            self._executor.shutdown(0.0)
            raise
        self._beat = engine.beat  # bound once: the heartbeat is the hot path
        _managers.add(self)

    @property
    def _lock(self) -> threading.RLock:
        """The manager's one lock (the engine's): state and subscriptions are guarded by it."""
        return self._engine.lock

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
        return self._engine.leader

    @property
    def fleet(self) -> bool:
        """True when the registry is shared by a fleet of managers (fleet mode)."""
        return self._engine.shared

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<LifecycleManager {state} services={self._engine.count()}>"

    def __len__(self) -> int:
        return self.count()

    def count(self) -> int:
        """How many services this manager manages (in fleet mode: the namespace's services)."""
        return self._engine.count()

    def get_status(self, id: str) -> ServiceStatus | None:
        """The service's status as the registry holds it, or None if this manager does not manage it."""
        return self._engine.status(id)

    def is_healthy(self, id: str) -> bool:
        """True if the service is RUNNING and heartbeated within its heartbeat timeout."""
        return self._engine.healthy(id)

    def attempts(self, id: str) -> int:
        """Reconnect attempts made in the current reconnect cycle (0 when none; unknown id: 0)."""
        return self._engine.attempts(id)

    def restarts(self, id: str) -> int:
        """Restarts (reconnect cycles begun) within the restart window now; 0 without `max_restarts` or unknown id."""
        return self._engine.restarts(id)

    def phi(self, id: str) -> float:
        """The phi detector's suspicion level for the service now; 0.0 with the fixed detector or an unknown id."""
        return self._engine.phi(id)

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
        return self._config.backoff.delay(attempt, self._rng)

    # -- starting and stopping -------------------------------------------------------------

    def start_service(self, service: ExtensionService, *, connector: object = None) -> ServiceId:
        """Register `service`, connect it in this thread, and mark it RUNNING with a full deadline.

        If `connect` raises, the service is unregistered, nothing is emitted and
        `ConnectionFailed` is raised from the connector's error.
        """
        return self._engine.start(service, self._checked(service, connector))

    def declare(self, service: ExtensionService, *, connector: object = None) -> ServiceId:
        """Desired state: start `service`, or join it where the registry already has it; idempotent.

        Never raises because the registry is unreachable or the connect failed: it logs once and
        keeps trying with backoff in the background. A fleet registers declared services again
        after the registry lost its data; `stop_service` forgets the declaration. Give the service
        an explicit `id` so that every process declares the same one.
        """
        return self._engine.declare(service, self._checked(service, connector))

    def _checked(self, service: object, connector: object) -> Hooks | None:
        """The hooks for a service about to start; refuses a closed manager or a wrong type first."""
        self._check_open()
        if not isinstance(service, ExtensionService):
            raise TypeError(f"service must be an ExtensionService, not {type(service).__name__}")
        if connector is None:
            return self._hooks
        hooks = resolve_connector(connector)
        bind_connector(connector, self)
        return hooks

    def stop_service(self, id: str) -> None:
        """STOPPING, cancel its timers, `disconnect` (errors logged), STOPPED, unregister, `service_stopped`."""
        self._check_open()
        self._engine.stop(id, None)

    def stop_all(self) -> None:
        """Stop every service; one failing does not stop the others. Does nothing after shutdown.

        In fleet mode that is every service of the namespace, wherever it was started.
        """
        if self._closed:
            return
        self._engine.stop_all(None)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop every service, stop the watchdog and the worker pool; idempotent.

        `timeout` bounds the whole call: slow `disconnect` calls are abandoned (logged) once it
        runs out. Afterwards mutating calls raise `ManagerClosed` and queries see no service.
        In fleet mode the namespace's services stay registered (they outlive any one process).
        """
        timeout = _validate.duration(timeout, "timeout", positive=False)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._beat = _closed_beat
        deadline = time.monotonic() + timeout
        try:
            self._engine.close(deadline)
        finally:
            self._watchdog.stop(max(0.0, deadline - time.monotonic()))
            self._executor.shutdown(max(0.0, deadline - time.monotonic()))
            with self._lock:
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

        Every 32nd beat checks whether the watchdog is overdue and, if so, lets it have the GIL
        (see `Watchdog.yield_if_due`): busy beating threads would otherwise delay it by 5 ms.
        """
        sid = self._beat(id)  # after shutdown, `_closed_beat`: no closed check on the hot path
        if not next(self._beats) & 31:
            self._watchdog.yield_if_due()
        if _heartbeat_received.receivers or self._subscriptions:
            self._dispatcher.dispatch(self, (Heartbeat(sid, time.monotonic()),), self._subscriptions)

    def handle_error(self, id: str, error: str | BaseException) -> None:
        """Report an error: `service_error`, ERROR, then (with auto-reconnect) RECONNECTING and attempt 1.

        Returns at once; retries run on the watchdog. On a RECONNECTING service it only emits.
        """
        if self._closed:
            raise ManagerClosed("the manager is shut down")
        self._engine.error(id, error_text(error))

    def restart_service(self, id: str) -> None:
        """Reconnect the service now, with a fresh restart window: RECONNECTING and attempt 1 at once.

        Works from RUNNING, RECONNECTING (the attempts start over) and ERROR (a flapping service
        included). With a connector attempt 1 is due at once; without one it waits the usual
        first delay for a heartbeat.
        """
        self._check_open()
        self._engine.restart(id)

    def health_check(self) -> list[ServiceId]:
        """Time out every RUNNING service silent for the heartbeat timeout now; return their ids.

        In fleet mode only the leader acts (and returns what it timed out); elsewhere it returns [].
        """
        self._check_open()
        return self._engine.sweep_now()

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
        subscription = Subscription(maxsize, self._unsubscribe)
        if fleet:
            self._engine.follow(subscription)  # refused (ValueError) by an engine with no shared log
        with self._lock:
            if self._closed:
                subscription._end()
                raise ManagerClosed("the manager is shut down")
            if fleet:
                self._fleet_subscriptions = (*self._fleet_subscriptions, subscription)
            else:
                self._subscriptions = (*self._subscriptions, subscription)
        return subscription

    # -- internals -------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ManagerClosed("the manager is shut down")

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

    def _after_fork_in_child(self) -> None:
        """Fresh locks and threads in a forked child; timers are kept and the watchdog restarts lazily."""
        self._engine.after_fork_in_child()
        self._metrics.after_fork_in_child()
        for subscription in self._subscriptions:
            subscription._after_fork_in_child()
        self._executor.after_fork_in_child()
        self._watchdog.reset_after_fork()


_managers: weakref.WeakSet[LifecycleManager] = weakref.WeakSet()


def _reset_managers_in_child() -> None:
    for manager in list(_managers):
        try:
            manager._after_fork_in_child()
        except Exception:
            log.exception("lifecycle: resetting %r after fork failed", manager)


# Registered after the registry module's hook, so each manager's lock is taken before the
# registry locks: the order every code path uses.
hold_across_fork(lambda: [manager._lock for manager in list(_managers)], _reset_managers_in_child)


def _closed_beat(id: str) -> ServiceId:
    """`handle_heartbeat` after shutdown."""
    raise ManagerClosed("the manager is shut down")
