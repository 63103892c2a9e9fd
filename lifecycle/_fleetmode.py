"""How a `LifecycleManager` behaves on a `SharedRegistry`: the lease, the leader's sweep, attempts.

Every process of the fleet runs one recurring timer on its watchdog, the tick. The tick takes or
renews the leader lease; in the leader it then sweeps: the registry says which deadlines passed
and which reconnect attempts are due (claiming them), and how long until the next; the tick is
armed for then (or for the next lease renewal, whichever is sooner). So detection stays
deadline-driven with one timer per process, whatever the number of services.

Every change goes through one atomic registry operation that also produces its events, so the
process whose call made a change is the one that emits them, exactly once in the fleet.

Threads and locks: ticks run on the watchdog thread (or in `run_pending`); connects run on the
manager's pool; no lock is held while either calls user code or dispatches events. The little
state kept here (leader flag, attempts in flight) is guarded by `_lock`.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any

from .backoff import ExponentialBackoff
from .config import LifecycleConfig
from .connector import Hooks
from .errors import RegistryUnavailable
from .events import HeartbeatTimeout, LifecycleEvent
from .fleet import Plan, SharedRegistry, Sweep
from .model import ExtensionService, ServiceStatus
from .pool import WorkerPool
from .subscription import Subscription
from .watchdog import Timer, Watchdog

log = logging.getLogger("lifecycle")

_SWEEP_LIMIT = 500  # due items handled per sweep; a larger backlog is drained by immediate re-ticks
_OUTAGE_RETRY_MIN = 0.05
_Dispatch = Callable[[Iterable[LifecycleEvent]], None]


def _owner_token() -> str:
    """Unique per process and manager (renewed after fork); host and pid make logs readable."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class FleetMode:
    """The fleet half of a manager: lease, sweep and reconnect attempts on a shared registry."""

    def __init__(
        self,
        registry: SharedRegistry,
        config: LifecycleConfig,
        backoff: ExponentialBackoff,
        plan_rng: Callable[[int], float],
        watchdog: Watchdog,
        pool: WorkerPool | None,
        dispatch: _Dispatch,
        hooks_for: Callable[[str], Hooks | None],
        local_services: Callable[[], list[ExtensionService]],
        adopt: Callable[[ExtensionService], None],
    ) -> None:
        self.registry = registry
        self.config = config
        self.timeout = float(config.heartbeat_timeout_secs)
        self.ttl = float(getattr(registry, "lease_ttl_secs", 5.0))
        self.renew_every = self.ttl / 3
        self._backoff = backoff
        self._delay = plan_rng
        self._watchdog = watchdog
        self._pool = pool
        self._dispatch = dispatch
        self._hooks_for = hooks_for
        self._local_services = local_services
        self._adopt = adopt
        self._lock = threading.Lock()
        self.owner = _owner_token()
        self.leader = False
        self._lease_until = 0.0
        self._generation: str | None = None
        self._tick_timer: Timer | None = None
        self._ticking = False
        self._wake = math.inf  # a tick must come by then (monotonic): what pokes asked for during a tick
        self._outage_since: float | None = None
        self._outage_delay = _OUTAGE_RETRY_MIN
        self._rebase = False  # our next sweep gives every service a fresh full timeout
        self._inflight: dict[str, int] = {}
        self._closed = False

    # -- plans ------------------------------------------------------------------------------

    def plan(self, attempt: int, auto_reconnect: bool) -> Plan:
        """What follows a failure before attempt `attempt`: retry it after a backoff delay, give up, or ERROR."""
        if not auto_reconnect:
            return Plan("error")
        limit = self.config.max_reconnect_attempts
        if attempt > limit:
            return Plan("giveup", attempt, 0.0, limit)
        return Plan("retry", attempt, self._delay(attempt - 1), limit)

    def poke_plan(self, plan: Plan) -> None:
        """A plan just applied schedules an attempt: run it when its backoff is due, not at the next renewal."""
        if plan.mode == "retry":
            self.poke(plan.delay)

    def auto_reconnect(self, service: ExtensionService) -> bool:
        """Auto-reconnect applies when both the config and the service's transport allow it."""
        return self.config.auto_reconnect and service.transport.auto_reconnect

    # -- the tick ---------------------------------------------------------------------------

    def start(self) -> None:
        """Arm the first tick now."""
        self._arm(0.0)

    def poke(self, delay: float) -> None:
        """Make sure a tick comes within `delay` seconds (a deadline or an attempt this process just set).

        A poke during a tick (an attempt finished on the pool, a plan applied by the sweep) is
        kept in `_wake` and honoured when the tick arms the next one.
        """
        if not self.leader:
            return
        when = time.monotonic() + max(0.0, delay)
        with self._lock:
            self._wake = min(self._wake, when)
            timer = self._tick_timer
            if self._ticking or timer is None or timer.when <= when:
                return
            old = self._arm_locked(delay)
        if old is not None:
            old.cancel()

    def _arm(self, delay: float) -> None:
        with self._lock:
            old = self._arm_locked(delay)
        if old is not None:
            old.cancel()

    def _arm_locked(self, delay: float) -> Timer | None:
        """Arm the next tick in `delay` s; returns the timer it replaces, to cancel outside the lock."""
        if self._closed:
            return None
        old, self._tick_timer = self._tick_timer, self._watchdog.call_later(max(0.0, delay), self.tick)
        return old

    def tick(self) -> None:
        """Renew or take the lease; as leader, act on what is due; arm the next tick."""
        if self._closed:
            return
        with self._lock:
            self._ticking, self._wake = True, math.inf
        try:
            delay = self._tick()
        except RegistryUnavailable as exc:
            delay = self._on_outage(exc)
        with self._lock:
            self._ticking = False
            old = self._arm_locked(min(delay, self._wake - time.monotonic()))
        if old is not None:
            old.cancel()

    def _tick(self) -> float:
        asked = time.monotonic()
        lease = self.registry.lease(self.owner, self.ttl)
        self._on_reachable()
        if self._generation is not None and lease.generation != self._generation:
            self._restore_local()
        self._generation = lease.generation
        self._set_leader(lease.leader, asked)
        if not self.leader:
            return self.renew_every
        # Another process may have set a deadline since our last sweep (a start, a revival): none
        # is sooner than one timeout from now, so sleeping at most that long never oversleeps it.
        return self._sweep(min(self.renew_every, self.timeout))

    def _claim(self) -> Sweep | None:
        """The registry's sweep; after an outage we saw, with no grace at all (every deadline starts again)."""
        sweep = self.registry.sweep(self.owner, self.timeout, 0.0 if self._rebase else self.ttl, _SWEEP_LIMIT)
        if sweep is None:
            self._set_leader(False, 0.0)
        else:
            self._rebase = False
        return sweep

    def _sweep(self, within: float) -> float:
        sweep = self._claim()
        if sweep is None:
            return within
        if sweep.rebased:
            log.warning("lifecycle: nobody watched the fleet's deadlines for a while (outage, restart or "
                        "failover); %d service(s) get a fresh full timeout", sweep.rebased)
        self._expire(sweep)
        for sid, attempt in sweep.attempts:
            self._attempt(sid, attempt)
        if len(sweep.due) >= _SWEEP_LIMIT or len(sweep.attempts) >= _SWEEP_LIMIT:
            return 0.0
        if sweep.next_in is not None:
            within = min(within, sweep.next_in)
        return within

    def sweep_now(self) -> list[str]:
        """`health_check` in fleet mode: the leader expires what is due now; others do nothing."""
        if not self.leader:
            return []
        sweep = self._claim()
        if sweep is None:
            return []
        return self._expire(sweep)

    def _set_leader(self, leader: bool, asked: float) -> None:
        if leader:
            # Our lease is valid at most ttl from when we asked: past that we start nothing.
            self._lease_until = asked + self.ttl
        if leader != self.leader:
            self.leader = leader
            log.info("lifecycle: this process %s for the fleet (%s)",
                     "now acts" if leader else "no longer acts", self.owner)

    def _on_outage(self, exc: RegistryUnavailable) -> float:
        self._set_leader(False, 0.0)
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            self._outage_delay = _OUTAGE_RETRY_MIN
            log.error("lifecycle: %s; the watchdog keeps trying (logged once per outage)", exc)
        else:
            self._outage_delay = min(self._outage_delay * 2, self.renew_every)
        return self._outage_delay

    def _on_reachable(self) -> None:
        if self._outage_since is not None:
            log.warning("lifecycle: the registry is reachable again after %.1f s",
                        time.monotonic() - self._outage_since)
            self._outage_since = None
            # Heartbeats were refused while the registry was down, however short the outage, and the
            # server's deadlines kept running: silence that overlaps an outage counts for nothing.
            self._rebase = True

    def _restore_local(self) -> None:
        """The server lost its data (emptied or replaced): register this process's services again."""
        restored = 0
        for service in self._local_services():
            if self.registry.restore(service, self.timeout):
                restored += 1
        if restored:
            log.warning("lifecycle: the registry lost its data; %d service(s) of this process registered again",
                        restored)

    # -- the leader's actions --------------------------------------------------------------

    def _expire(self, sweep: Sweep) -> list[str]:
        """Time out the sweep's due services in one atomic step; return the ids it timed out."""
        if not sweep.due:
            return []
        plans: list[tuple[str, Plan]] = [
            (sid, self.plan(1, self.config.auto_reconnect and sweep.details.get(sid, ("", True))[1]))
            for sid in sweep.due
        ]
        events = self.registry.expire_many(self.owner, self.timeout, plans)
        if events is None:
            self._set_leader(False, 0.0)
            return []
        expired = [e.service_id for e in events if isinstance(e, HeartbeatTimeout)]
        for sid in expired:
            log.warning("lifecycle: service %r (%s) missed its heartbeat deadline", sweep.details.get(sid, ("?",))[0],
                        sid)
        delays = [plan.delay for sid, plan in plans if plan.mode == "retry" and sid in expired]
        if delays:
            self.poke(min(delays))
        self._dispatch(events)
        return list(expired)

    def _attempt(self, sid: str, attempt: int) -> None:
        """Run claimed attempt `attempt` of `sid`: `connect` off the watchdog thread, bounded by its timeout."""
        service = self.registry.get(sid)
        if service is None:
            return
        hooks = self._hooks_for(sid)
        if hooks is None:
            # Without a connector only a heartbeat revives a service, and none came in time.
            self._attempt_done(sid, attempt, None, service, "no heartbeat before the attempt was due")
            return
        if time.monotonic() >= self._lease_until:
            return  # our lease may have run out: the next leader voids the claim and runs it
        with self._lock:
            self._inflight[sid] = attempt
        if self._pool is None:
            try:
                hooks.connect(service)
            except Exception as exc:
                self._attempt_done(sid, attempt, exc, service)
            else:
                if not self._attempt_done(sid, attempt, None, service, ok=True):
                    self._close_late(sid, service, hooks)
            return
        future: Future[Any] = self._pool.submit(hooks.connect, service)
        timer = self._watchdog.call_later(service.transport.timeout_secs, self._attempt_timed_out, sid, attempt,
                                          service)
        future.add_done_callback(lambda f: self._connect_returned(f, sid, attempt, service, timer, hooks))

    def _connect_returned(self, future: Future[Any], sid: str, attempt: int, service: ExtensionService,
                          timer: Timer, hooks: Hooks) -> None:
        timer.cancel()
        error = future.exception()
        if not self._take_inflight(sid, attempt):
            if error is None and hooks.disconnect is not None:  # too late: close what it opened
                try:
                    hooks.disconnect(service)
                except Exception as exc:
                    log.warning("lifecycle: disconnect of late connection %s failed: %s", sid, exc)
            return
        if error is None:
            if not self._report(sid, attempt, True, service):
                self._close_late(sid, service, hooks)
        else:
            self._report(sid, attempt, False, service, f"{type(error).__name__}: {error}")

    def _close_late(self, sid: str, service: ExtensionService, hooks: Hooks) -> None:
        """A connect whose outcome was not applied (the service stopped, or we were fenced): close what it opened.

        Kept, as in the in-memory manager, if the service is RUNNING again (a heartbeat revived it meanwhile).
        """
        if hooks.disconnect is None:
            return
        try:
            live = self.registry.silence(sid)
        except RegistryUnavailable:
            live = None
        if live is not None and live[0] is ServiceStatus.RUNNING:
            return
        try:
            hooks.disconnect(service)
        except Exception as exc:
            log.warning("lifecycle: disconnect of late connection %s failed: %s", sid, exc)

    def _attempt_timed_out(self, sid: str, attempt: int, service: ExtensionService) -> None:
        if self._take_inflight(sid, attempt):
            self._report(sid, attempt, False, service, f"still running after {service.transport.timeout_secs:g} s")

    def _take_inflight(self, sid: str, attempt: int) -> bool:
        with self._lock:
            if self._inflight.get(sid) != attempt:
                return False
            del self._inflight[sid]
            return True

    def _attempt_done(self, sid: str, attempt: int, error: BaseException | None, service: ExtensionService,
                      why: str = "", *, ok: bool = False) -> bool:
        with self._lock:
            self._inflight.pop(sid, None)
        return self._report(sid, attempt, ok, service, why or (f"{type(error).__name__}: {error}" if error else ""))

    def _report(self, sid: str, attempt: int, ok: bool, service: ExtensionService, why: str = "") -> bool:
        """Record an attempt's outcome; False if it was not applied (stale, fenced or lost)."""
        if not ok:
            log.warning("lifecycle: reconnect attempt %d/%d of %r (%s) failed: %s", attempt,
                        self.config.max_reconnect_attempts, service.name, sid, why)
        plan = self.plan(attempt + 1, self.auto_reconnect(service))
        try:
            events = self.registry.attempt_done(sid, self.owner, attempt, ok, plan, timeout=self.timeout)
        except RegistryUnavailable as exc:
            log.warning("lifecycle: the outcome of attempt %d of %s is lost (%s); the next leader retries it",
                        attempt, sid, exc)
            return False
        if events is None:
            self._set_leader(False, 0.0)
            return False
        if events and not ok:
            self.poke_plan(plan)
        if events and ok:
            # Our connector made the connection: we hold it now, so we ping it (the process that
            # started the service may be gone).
            self._adopt(service)
        self._dispatch(events)
        return bool(events)

    # -- ending --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop ticking and give the lease up, so another process takes over at once."""
        with self._lock:
            self._closed = True
            timer, self._tick_timer = self._tick_timer, None
        if timer is not None:
            timer.cancel()
        if self.leader:
            self.leader = False
            try:
                self.registry.release(self.owner)
            except RegistryUnavailable as exc:
                log.warning("lifecycle: could not release the fleet lease (%s); it expires on its own", exc)

    def after_fork_in_child(self) -> None:
        """A forked child is a new member of the fleet: its own owner token, not the leader."""
        self._lock = threading.Lock()
        self.owner = _owner_token()
        self.leader = False
        self._inflight.clear()
        self._ticking, self._wake = False, math.inf  # a tick the parent was running does not run here


def follow_log(registry: SharedRegistry, subscription: Subscription, *, poll: float = 0.5) -> threading.Thread:
    """Start a daemon thread copying the fleet event log into `subscription` until it stops being active.

    It starts at the log's end (events from the call on) and blocks on the server at most `poll`
    seconds at a time, so it notices a closed subscription that soon. An outage is logged once;
    reading resumes from the last entry seen, so nothing the log still holds is missed.
    """

    start = registry.last_event_id()  # here, so that nothing emitted after subscribe() returns is missed

    def run() -> None:
        after = start
        down = False
        pause = threading.Event()
        while subscription.active:
            try:
                rows = registry.read_events(after, block=poll)
            except Exception as exc:
                # Whatever went wrong (an outage, a reply it cannot read), the reader must not die
                # silently and leave the subscription empty for good.
                if not down:
                    log.error("lifecycle: fleet event log: %s; retrying", exc, exc_info=not isinstance(
                        exc, RegistryUnavailable))
                    down = True
                pause.wait(poll)
                continue
            down = False
            for entry_id, event in rows:
                after = entry_id
                subscription._put(event)

    thread = threading.Thread(target=run, name="lifecycle-fleet-log", daemon=True)
    thread.start()
    return thread
