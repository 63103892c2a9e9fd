"""The fleet engine: many processes supervise one namespace of a shared registry as one.

Any process records heartbeats and errors and starts or joins services; the leader (see
`lease.Ticker`) times deadlines out and runs reconnect attempts, which it claims in the
registry. Every change is one atomic registry operation that also produces its events, so the
process whose call made a change emits them, exactly once in the fleet. The decisions (what
follows a failure, how a connect is run and bounded) are the same objects the in-memory engine
uses.

Locking: `lock` guards this process's own records (services started or adopted here, attempts
in flight); no lock is held while a connector runs or events are emitted.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import random
import threading

from ..config import LifecycleConfig
from ..connector import Hooks
from ..errors import InvalidState, LifecycleError, RegistryUnavailable
from ..events import LifecycleEvent, Reconnected, Reconnecting, Started, StatusChanged
from ..fleet import SharedRegistry, StoreSettings, Sweep
from ..model import ExtensionService, ServiceId, ServiceStatus
from ..registry import OwnerStore, Released
from ..subscription import Subscription
from ..timers import Timer
from ..watchdog import Watchdog
from .announce import Announcements
from .base import Sink, check_id, error_text, label, not_managed, refused
from .declare import Declarations
from .fleetlog import follow_log
from .guard import Guard
from .lease import Leases, Ticker
from .owner import Owners, Spawner, process_bound
from .pinger import Pinger
from .placement import elsewhere, leave, member_host, place
from .policy import ReconnectPolicy, service_timing
from .runner import Executor, Outcome, connect_first, within
from .sweeps import SWEEP_LIMIT, drain, send_batch, timeouts_first

__all__ = ["FleetEngine"]

log = logging.getLogger("lifecycle")

_IN_FLEET = "registered in the fleet"
RUNNING = ServiceStatus.RUNNING


class _Local:
    """A service this process started or reconnected: it holds the connection, so it pings it."""

    __slots__ = ("id", "service", "hooks", "ping", "ping_busy", "ping_interval", "connect_timeout")

    def __init__(self, service: ExtensionService, hooks: Hooks | None, interval: float) -> None:
        self.id = service.id
        self.service = copy.deepcopy(service)  # to register it again if the registry loses it
        self.hooks = hooks
        self.ping: Timer | None = None
        self.ping_busy = False
        self.ping_interval = interval
        self.connect_timeout = service.transport.timeout_secs

    def label(self) -> str:
        return label(self.service.name, self.id)


class FleetEngine:
    """Supervises a namespace of a `SharedRegistry` together with the fleet's other processes."""

    def __init__(self, registry: SharedRegistry, config: LifecycleConfig, hooks: Hooks | None,
                 watchdog: Watchdog, executor: Executor, sink: Sink, rng: random.Random,
                 host: str | None = None) -> None:
        self.host = member_host(host)  # where this member's children run: placement and leftover children
        # The store decides restart intensity and the detector's limit in the same atomic step as
        # each change, so it is told once what they are.
        registry.configure(StoreSettings(float(config.heartbeat_timeout_secs), config.max_restarts,
                                         float(config.restart_window_secs), config.phi))
        self.lock = threading.RLock()
        self._registry = registry
        self._config = config
        self._hooks = hooks
        self._watchdog = watchdog
        self._executor = executor
        self._sink = sink
        self._rng = rng
        self._timeout = float(config.heartbeat_timeout_secs)
        self._policy = ReconnectPolicy.of(config)
        self._locals: dict[str, _Local] = {}
        self._guard = Guard(watchdog)
        self._declarations = Declarations(watchdog, executor, self.start, registry)
        self._pinger = Pinger(watchdog, self._guard, executor, sink, self._ping_target, self._record_ping)
        self._inflight: dict[str, Outcome] = {}
        self._announce = Announcements(self._attempt)  # a caller's events go out before its attempt runs
        self._closed = False
        # After a data loss: id -> (name, registered again by us), kept across a restore a failed tick cut short.
        self._restoring: dict[str, tuple[str, bool]] = {}
        self.ticker = Leases(registry, watchdog, self._timeout, self._lead, self._restore_local)  # one per partition
        # Process-bound services (STDIO children) are owned by one member each, asserted every tick.
        self._owners = None if not isinstance(registry, OwnerStore) else Owners(
            registry, executor, lambda: self.ticker.owner, self.ticker.ttl, self.ticker.renew_every,
            Spawner(registry.get, self._spawn, self.error), self.host, watchdog)
        if self._owners is not None:
            self.ticker.each = self._owners.tick
        self.ticker.start()
        if executor.threaded:  # manual mode has no thread at all: run_pending is its only clock
            # Nobody else wakes the leader when another process sets a deadline or an attempt: the log tells it.
            # What was set before it follows the log, or while it was behind (a burst, skipped), is caught by
            # a sweep as soon as it does; a process-bound service released meanwhile, by the owners' next tick.
            follow_log(registry, self._nudge, lambda: not self._closed, on_ready=lambda: self.ticker.poke(0.0),
                       hold=lambda: self.ticker.draining,  # a backlog's sweeps find what the log would say
                       busy=lambda: self.ticker.bursts, skip_behind=True)

    shared = True

    @property
    def leader(self) -> bool:
        return self.ticker.leader

    # -- queries --------------------------------------------------------------------------------

    def status(self, id: str) -> ServiceStatus | None:
        live = None if self._closed or not isinstance(id, str) else self._registry.silence(id)
        return None if live is None else live[0]

    def healthy(self, id: str) -> bool:
        timing = None if self._closed or not isinstance(id, str) else self._registry.timing(id)
        return timing is not None and timing.healthy

    def attempts(self, id: str) -> int:
        service = None if self._closed or not isinstance(id, str) else self._registry.get(id)
        return 0 if service is None else service.retry_count

    def restarts(self, id: str) -> int:
        return 0 if self._closed else self._registry.restarts(id)

    def phi(self, id: str) -> float:
        return 0.0 if self._closed else self._registry.phi(id)

    def count(self) -> int:
        return 0 if self._closed else self._registry.count()

    def follow(self, subscription: Subscription) -> None:
        def deliver(events: list[LifecycleEvent]) -> None:
            for event in (e for e in events if not isinstance(e, Released)):  # the members' business alone
                subscription._put(event)

        # The start is read here, so that nothing emitted after subscribe() returns is missed.
        follow_log(self._registry, deliver, lambda: subscription.active, start=self._registry.last_event_id())

    # -- starting and stopping ----------------------------------------------------------------

    def start(self, service: ExtensionService, hooks: Hooks | None) -> ServiceId:
        """Register (or join) in the fleet, connect, RUNNING; joining calls no connector."""
        timeout, _ = service_timing(self._config, service.name, service.transport)  # refuses one under its interval
        service = place(service, self.host)
        self.ticker.prime(service.id)  # even for one left to another host: this process must notice a loss
        if elsewhere(service, self.host):
            return leave(self._registry, service, self.host)
        owners = self._owners if hooks is not None and process_bound(hooks, service) else None
        sid, joined = self._registry.join(service)
        if joined or (owners is not None and hooks is not None and not owners.take(service, hooks)):
            log.info("lifecycle: service %r joined as %s, already registered in the fleet", service.name, sid)
            if owners is not None and hooks is not None:  # a candidate: it spawns the child if it comes to own it
                owners.add(self._registry.get(sid) or service, hooks, spawned=False)
            return sid
        if hooks is not None:
            connect_first(hooks, self._registry.get(sid) or service, label(service.name, sid), lambda: self._undo(sid))
        events = self._registry.activate(sid, self._timeout)
        if not events:
            raise InvalidState(f"service {label(service.name, sid)} was stopped while it was starting")
        self._hold(service, hooks)
        if owners is not None and hooks is not None:
            owners.add(service, hooks, spawned=True)
        self._sink.emit(events)  # before the leader can act on it: events of a service stay in order
        self.ticker.poke(timeout)
        return sid

    def declare(self, service: ExtensionService, hooks: Hooks | None) -> ServiceId:
        placed = place(service, self.host)
        if not elsewhere(placed, self.host):
            return self._declarations.declare(placed, hooks)  # it primes the lease through `start`
        # Pinned elsewhere: not kept, never registered from here; yet this process must notice a loss.
        with contextlib.suppress(LifecycleError):  # unreachable now: the first tick learns the marker
            self.ticker.prime(placed.id)
        return leave(self._registry, placed, self.host)

    def _undo(self, sid: str) -> None:
        """Undo a registration whose start failed."""
        with contextlib.suppress(LifecycleError):
            self._registry.unregister(sid)

    def _hold(self, service: ExtensionService, hooks: Hooks | None) -> None:
        """This process holds the service (and its connection, if any): it pings it, and restores it after a loss."""
        with self.lock:
            if self._closed or service.id in self._locals:
                return
            interval = service_timing(self._config, service.name, service.transport)[1]
            local = self._locals[service.id] = _Local(service, hooks, interval)
            if hooks is not None and hooks.ping is not None:
                local.ping = self._pinger.arm(local)

    def stop(self, id: str, deadline: float | None) -> None:
        check_id(id)
        self._declarations.forget(id)  # stopped on purpose: this process does not bring it back
        prior, events = self._registry.begin_stop(id)
        if prior is None:
            raise not_managed(id, _IN_FLEET)
        if prior is ServiceStatus.STOPPING or prior is ServiceStatus.STOPPED:
            return  # another call (maybe in another process) is stopping it
        self._sink.emit(events)
        with self.lock:
            local = self._locals.pop(id, None)
            if local is not None and local.ping is not None:
                local.ping.cancel()
        try:
            service = self._registry.get(id)
            hooks = self._hooks_for(id) if local is None else local.hooks
            if service is not None and hooks is not None:
                self._executor.disconnect(hooks, service, within(service.transport.timeout_secs, deadline),
                                          label(service.name, id))
            if self._owners is not None:
                self._owners.forget(id)  # its child (if here) was ended just now; elsewhere its owner ends it
        finally:
            try:
                events = self._registry.finish_stop(id)
            except LifecycleError:
                events = []
            log.info("lifecycle: service %s stopped", id)
            self._sink.emit(events)

    def stop_all(self, deadline: float | None) -> None:
        for service in self._registry.list_all():
            try:
                self.stop(service.id, deadline)
            except LifecycleError as exc:
                log.warning("lifecycle: stopping service %s failed (%s); stopping the others", service.id, exc)
            except Exception:
                log.exception("lifecycle: stopping service %s failed; stopping the others", service.id)

    def close(self, deadline: float) -> None:
        """Leave the fleet's services registered (they outlive any one process) and hand the lease on."""
        with self.lock:
            self._closed = True
            for local in self._locals.values():
                if local.ping is not None:
                    local.ping.cancel()
            self._locals.clear()
        if self._owners is not None:
            # A graceful hand-over: each child ends first, then its ownership is free for another member.
            self._owners.close()
        self.ticker.close()

    # -- reports from services ----------------------------------------------------------------

    def beat(self, id: str) -> ServiceId:
        check_id(id)
        if self._owners is not None:
            self._owners.check_live(id, "heartbeat")  # after a pause, this child's beats must not revive it
        prior, events = self._registry.beat(id, self._timeout)
        if prior is None:
            raise not_managed(id, _IN_FLEET)
        if prior is ServiceStatus.STOPPING or prior is ServiceStatus.STOPPED:
            raise refused(repr(id), "heartbeat", prior)
        if events:
            log.info("lifecycle: service %s is back (heartbeat)", id)
            self._sink.emit(events)
        return ServiceId(id)

    def error(self, id: str, text: str) -> None:
        check_id(id)
        if self._owners is not None:
            self._owners.check_live(id, "error report")  # a woken paused owner's child's end is no news
        service = self._registry.get(id)
        if service is None:
            raise not_managed(id, _IN_FLEET)
        plan = self._policy.of_service(self._config, service.transport).begin(self._rng)
        with self._announce.announcing(id):
            prior, events = self._registry.report_error(id, text, None if plan.mode == "error" else plan)
            if prior is None:
                raise not_managed(id, _IN_FLEET)
            if prior in (ServiceStatus.STOPPING, ServiceStatus.STOPPED, ServiceStatus.STARTING):
                raise refused(repr(id), "error report", prior)
            log.warning("lifecycle: service %r (%s) reported an error: %s", service.name, id, text)
            self._sink.emit(events)
        if plan.mode == "retry" and prior is not ServiceStatus.RECONNECTING:
            self.ticker.poke(plan.delay, id)  # in the leader, attempt 1 runs when due
            if self._owners is not None and id in self._owners:
                self._soon(plan.delay)  # the owner runs the attempts of its child

    def restart(self, id: str) -> None:
        check_id(id)
        service = self._registry.get(id)
        if service is None:
            raise not_managed(id, _IN_FLEET)
        # With a connector attempt 1 is due at once; without one it waits the usual first delay for a heartbeat.
        policy = self._policy.of_service(self._config, service.transport)
        plan = policy.plan(1, self._rng, at_once=self._hooks_for(id) is not None)
        with self._announce.announcing(id):
            prior, events = self._registry.restart(id, plan)
            if prior is None:
                raise not_managed(id, _IN_FLEET)
            if prior in (ServiceStatus.STOPPING, ServiceStatus.STOPPED, ServiceStatus.STARTING):
                raise refused(repr(id), "restart", prior)
            log.info("lifecycle: service %s is restarted on request", label(service.name, id))
            self._sink.emit(events)
        if plan.mode == "retry":
            self.ticker.poke(plan.delay, id)

    def sweep_now(self) -> list[ServiceId]:
        """The leader expires what is due now; others do nothing."""
        sweeps = [(ticker, self._claim(ticker)) for ticker in self.ticker.tickers if ticker.claims]
        return [sid for ticker, sweep in sweeps if sweep is not None for sid in self._send(sweep, ticker)]

    # -- the leader's actions -------------------------------------------------------------------

    def _lead(self, ticker: Ticker, within: float) -> float:
        """Sweeps of `ticker`'s partition: time out what is due, run the claimed attempts; seconds until the next."""
        return drain(ticker, within, self._claim, self._send, self._attempt)

    def _nudge(self, events: list[LifecycleEvent]) -> None:
        """Events of the fleet: one that set a deadline or an attempt brings the leader's next sweep forward."""
        soon = [event.delay for event in events if isinstance(event, Reconnecting)]
        if any(isinstance(event, (Started, Reconnected)) or (isinstance(event, StatusChanged)
               and event.new_status is RUNNING) for event in events):
            soon.append(0.0)  # a new deadline: the sweep says when it falls
        if soon:
            self.ticker.poke(min(soon))
        if self._owners is not None:  # given up elsewhere: a candidate takes over; stopped: the owner ends it
            self._owners.nudge(events)

    def _claim(self, ticker: Ticker) -> Sweep | None:
        """The partition's sweep, which times its due services out; after a failure we saw, with no grace at all."""
        sweep = self._registry.sweep(ticker.owner, self._timeout, 0.0 if ticker.rebase else ticker.ttl,
                                     SWEEP_LIMIT, tick=ticker.renew_every, onset=self._policy.onset(self._rng),
                                     **ticker.which)
        if sweep is None:
            ticker.set_leader(False)
        else:
            ticker.rebase = False
        return sweep

    def _send(self, sweep: Sweep, ticker: Ticker) -> list[ServiceId]:
        """Send the events of the services the sweep timed out (with our onset, in its own atomic step); their ids."""
        if not sweep.due:
            return []
        # the timeouts first: a burst's receivers wait for no follow-up
        expired, first, rest = timeouts_first(sweep.events)
        send_batch(self._sink.emit, expired, first, rest, sweep.details)
        delays = [event.delay for event in rest if isinstance(event, Reconnecting)]
        if delays:
            ticker.poke(min(delays))
        return expired

    def _attempt(self, sid: str, attempt: int) -> None:
        """Run claimed attempt `attempt` of `sid` through the executor, bounded by its timeout."""
        if self._announce.hold(sid, attempt):
            return  # a caller still sends the events that made it due: it runs the attempt next
        service = self._registry.get(sid)
        if service is None:
            return
        outcome = Outcome()
        with self.lock:
            self._inflight[sid] = outcome
        hooks = self._hooks_for(sid)
        if process_bound(hooks, service):
            return  # only its owner may spawn it: the store claims the attempt for the owner (`Owners`)
        if hooks is None:
            # Without a connector only a heartbeat revives a service, and none came in time.
            self._report(sid, attempt, outcome, service, RuntimeError("no heartbeat before the attempt was due"))
            return
        if not self.ticker.of(sid).leader:
            return  # our lease may have run out: the claim lapses and whoever leads runs it
        self._executor.connect(outcome, hooks, service, service.transport.timeout_secs,
                               lambda error: self._report(sid, attempt, outcome, service, error),
                               lambda: self._running(sid))

    def _spawn(self, current: ExtensionService, hooks: Hooks, attempt: int) -> None:
        """As the owner: run claimed `attempt` of a process-bound service (its child's spawn)."""
        sid, outcome = current.id, Outcome()
        with self.lock:
            self._inflight[sid] = outcome
        self._executor.connect(outcome, hooks, current, current.transport.timeout_secs,
                               lambda error: self._report(sid, attempt, outcome, current, error),
                               lambda: self._running(sid))

    def _soon(self, delay: float) -> None:
        """Assert ownership (and run due attempts) in `delay` s, off the watchdog thread."""
        owners = self._owners
        if owners is not None and not self._closed:
            self._watchdog.call_later(max(0.0, delay), lambda: self._executor.run(owners.tick))

    def _hooks_for(self, sid: str) -> Hooks | None:
        """The connector for a service: the one it was started with here, else the manager's."""
        local = self._locals.get(sid)
        return self._hooks if local is None or local.hooks is None else local.hooks

    def _running(self, sid: str) -> bool:
        try:
            live = self._registry.silence(sid)
        except LifecycleError:
            return False
        return live is not None and live[0] is RUNNING

    def _report(self, sid: str, attempt: int, outcome: Outcome, service: ExtensionService,
                error: BaseException | None) -> bool:
        """Record an attempt's outcome; False if it was not applied (stale, fenced or lost)."""
        with self.lock:
            if self._inflight.get(sid) is not outcome:
                return False
            del self._inflight[sid]
        policy = self._policy.of_service(self._config, service.transport)
        if error is not None:
            log.warning("lifecycle: reconnect attempt %d/%d of %r (%s) failed: %s", attempt,
                        policy.max_attempts, service.name, sid, error_text(error))
        plan = policy.plan(attempt + 1, self._rng)
        try:
            events = self._registry.attempt_done(sid, self.ticker.owner, attempt, error is None, plan,
                                                 timeout=self._timeout)
        except Exception as exc:
            log.warning("lifecycle: the outcome of attempt %d of %s is lost (%s); it is run again once its claim "
                        "lapses", attempt, sid, exc)
            return False
        if events is None:
            self.ticker.of(sid).set_leader(False)
            return False
        hooks = self._hooks_for(sid)
        if events and error is None and self._owners is not None and sid in self._owners:
            self._owners.record(sid)  # the owner's new child, recorded with its ownership
        if events and error is None and hooks is not None:
            # Our connector made the connection: we hold it now, so we ping it (the process that
            # started the service may be gone).
            self._hold(service, hooks)
        self._sink.emit(events)
        if events and error is not None and plan.mode == "retry":
            self.ticker.poke(plan.delay, sid)
        return bool(events)

    def _restore_local(self) -> None:
        """The server lost its data (emptied or replaced): register again what this process holds or declared.

        Logged once per loss in every process that sees it, whoever registered a service first
        (a new process's declaration, or another survivor): an operator must learn of the loss.
        """
        with self.lock:
            services = {local.id: local.service for local in self._locals.values()}
        for service in self._declarations.services():
            services.setdefault(service.id, service)
        done = self._restoring  # a restore that raised is run again by the next tick: keep what it did
        todo = [service for service in services.values() if service.id not in done]
        for chunk in (todo[k:k + 1000] for k in range(0, len(todo), 1000)):  # a round trip per 1000
            answers = self._registry.restore_many(chunk, self._timeout)
            done.update((s.id, (s.name, ok)) for s, ok in zip(chunk, answers, strict=True))
        self._restoring = {}
        ours = [repr(name) for name, restored in done.values() if restored]
        theirs = [repr(name) for name, restored in done.values() if not restored]
        log.warning("lifecycle: the registry lost its data; %d service(s) of this process registered again%s%s",
                    len(ours), f": {', '.join(ours)}" if ours else "",
                    f"; already registered again by another process: {', '.join(theirs)}" if theirs else "")

    # -- pings of the services this process holds ---------------------------------------------

    def _ping_target(self, local: _Local) -> ExtensionService | None:
        with self.lock:
            if self._locals.get(local.id) is not local:
                return None
            # Another process may bring a service back (a heartbeat, the leader's reconnect): keep looking.
            local.ping = self._pinger.arm(local)
            if local.ping_busy:
                return None
            if self._owners is not None and local.id in self._owners and not self._owners.held(local.id):
                return None  # only the owner pings a process-bound service
        try:
            service = self._registry.get(local.id)
        except LifecycleError:
            return None  # an outage or a refusal: the tick logs it once; the next ping is armed
        if service is None:  # gone (stopped elsewhere, or lost with the data: restored by the tick)
            with self.lock:
                if local.ping is not None:
                    local.ping.cancel()
                    local.ping = None
            return None
        if service.status is not RUNNING:
            return None
        local.ping_busy = True
        return service

    def _record_ping(self, local: _Local) -> list[LifecycleEvent] | None:
        local.ping_busy = False
        try:
            return self._registry.beat(local.id, self._timeout)[1]
        except RegistryUnavailable:
            return None  # an outage: the tick logs it once, not every ping
        except LifecycleError as exc:  # a refusal, or the service gone
            log.warning("lifecycle: recording the ping of %s failed: %s", local.label(), exc)
            return None

    def after_fork_in_child(self) -> None:
        self.lock = threading.RLock()
        self._guard.after_fork_in_child()
        self._declarations.after_fork_in_child()
        self._inflight.clear()
        self._announce.after_fork_in_child()
        if self._owners is not None:
            self._owners.after_fork_in_child()
        for local in self._locals.values():
            local.ping_busy = False
        self.ticker.after_fork_in_child()

