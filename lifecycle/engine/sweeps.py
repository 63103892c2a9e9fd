"""The leader's sweeps of a partition: a backlog drained in one tick, a burst's timeouts sent before anything else.

A sweep script hands out at most `SWEEP_LIMIT` due services (it holds the server while it runs);
a larger backlog is swept again at once, in the same tick, while the tick's lease is fresh. The
timeouts of a batch and their status changes are sent first, then the batch is logged, then
what follows each timeout (its reconnect plan, flapping or giving up), as the in-memory engine
does: the last timeout of a burst waits for no one's follow-up or log line. While a backlog is
drained, each batch is sent on a thread of its own (`Batches`) as the tick sweeps the next one,
so the receivers of one batch run while the server times out the next.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..events import HeartbeatTimeout, LifecycleEvent, StatusChanged
from ..fleet import Detail, Plan, Sweep
from ..model import ServiceId
from .lease import Ticker
from .policy import ReconnectPolicy

__all__ = ["SWEEP_LIMIT", "Batches", "drain", "log_timeouts", "plans", "send_batch", "timeouts_first"]

log = logging.getLogger("lifecycle")

SWEEP_LIMIT = 500  # due items per sweep script: the server runs nothing else meanwhile
_BATCHES = 40  # sweeps in one tick at most (20,000 due services); more wait for the next tick
_EACH = 10  # a sweep that timed out more logs one line for all of them, not one line each
_UNKNOWN = Detail("?", True)
_IDLE = 5.0  # seconds without a batch after which the sending thread ends


class Batches:
    """A backlog's batches of events, sent in order on one daemon thread while the tick sweeps the next batch.

    Only while a tick drains a backlog (`Ticker.draining`); any other batch is sent at once, on the
    caller's thread, after those queued. The tick waits until every queued batch went out before it
    runs a claimed attempt and before it ends (`flush`), so a service's events stay in order and
    nothing emitted later overtakes them. Without threads (manual mode) every batch is sent at once.
    The thread starts at the first backlog and ends after `_IDLE` s without one. `_cond` guards the queue.
    """

    def __init__(self, threaded: bool) -> None:
        self._threaded = threaded
        self._cond = threading.Condition(threading.Lock())
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._pending = 0  # queued or being sent
        self._thread: threading.Thread | None = None

    def send(self, job: Callable[[], None], *, queue: bool) -> None:
        """Queue `job` (a batch's sending) for the thread, or, unless `queue`, run it here once the queue is empty."""
        if not (queue and self._threaded):
            self.flush()
            job()
            return
        with self._cond:
            self._jobs.append(job)
            self._pending += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lifecycle-fleet-batches", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every queued batch went out (at once on the sending thread itself: a receiver may sweep)."""
        with self._cond:
            if threading.current_thread() is not self._thread:
                self._cond.wait_for(lambda: self._pending == 0)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._jobs, _IDLE):
                    self._thread = None
                    return
                job = self._jobs.popleft()
            try:
                job()
            except Exception:  # the dispatcher isolates receivers: this is a bug, and the next batch still goes
                log.exception("lifecycle: sending a batch of timeouts failed")
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def after_fork_in_child(self) -> None:
        """Fresh state: the parent's queued batches are its own to send, and its thread is not here."""
        self._cond = threading.Condition(threading.Lock())
        self._jobs = collections.deque()
        self._pending = 0
        self._thread = None


def drain(ticker: Ticker, within: float, claim: Callable[[Ticker], Sweep | None],
          expire: Callable[[Sweep, Ticker], object], attempt: Callable[[ServiceId, int], None],
          batches: Batches) -> float:
    """Sweep `ticker`'s partition until no full batch is left (or the tick's time is up); seconds until the next tick.

    The lease was renewed when the tick began: sweeps go on for at most a renewal interval shared
    by the partitions' ticks (which run one after another on one thread), so every partition's
    lease is renewed, and swept, in time; a full last batch asks for a tick at once. Meanwhile
    `ticker.draining` holds the process's reading of the event log (its sweeps act on what is due)
    and has each batch sent on `batches`' thread.
    """
    began = time.monotonic()
    budget = ticker.renew_every / max(1, ticker.registry.partitions)
    try:
        for _ in range(_BATCHES):
            sweep = claim(ticker)
            if sweep is None:
                return within
            if sweep.rebased:
                log.warning("lifecycle: nobody watched the fleet's deadlines for a while (outage, restart or "
                            "failover); %d service(s) get a fresh full timeout", sweep.rebased)
            full = len(sweep.due) >= SWEEP_LIMIT or len(sweep.attempts) >= SWEEP_LIMIT
            ticker.draining = full
            expire(sweep, ticker)
            if sweep.attempts:
                batches.flush()  # an attempt's events come after its timeout's
            for sid, k in sweep.attempts:
                attempt(sid, k)
            if not full:
                return within if sweep.next_in is None else min(within, sweep.next_in)
            if time.monotonic() - began >= budget or not ticker.leader:
                break
        return 0.0
    finally:
        ticker.draining = False
        batches.flush()


def plans(sweep: Sweep, policy: ReconnectPolicy, rng: random.Random) -> list[tuple[str, Plan]]:
    """What follows each due service's timeout: a reconnect plan (its transport's limit, if any) or ERROR."""
    out: list[tuple[str, Plan]] = []
    details = sweep.details
    own: dict[int | None, ReconnectPolicy] = {None: policy}  # one policy per transport limit met in the batch
    for sid in sweep.due:
        detail = details.get(sid, _UNKNOWN)
        if not detail.auto_reconnect:
            out.append((sid, Plan("error")))
            continue
        limit = detail.max_attempts
        if limit is not None and limit not in own:
            own[limit] = replace(policy, max_attempts=limit)
        out.append((sid, own[limit].begin(rng)))
    return out


def timeouts_first(events: Sequence[LifecycleEvent]) -> tuple[list[ServiceId], list[LifecycleEvent],
                                                                 list[LifecycleEvent]]:
    """The ids timed out; each one's timeout and the status change after it; the rest (each service's order kept)."""
    expired: list[ServiceId] = []
    first: list[LifecycleEvent] = []
    rest: list[LifecycleEvent] = []
    waiting: set[str] = set()  # timed out, its status change not seen yet
    for event in events:
        if isinstance(event, HeartbeatTimeout):
            expired.append(event.service_id)
            waiting.add(event.service_id)
            first.append(event)
        elif isinstance(event, StatusChanged) and event.service_id in waiting:
            waiting.discard(event.service_id)
            first.append(event)
        else:
            rest.append(event)
    return expired, first, rest


def send_batch(emit: Callable[[list[LifecycleEvent]], None], expired: list[ServiceId], first: list[LifecycleEvent],
               rest: list[LifecycleEvent], details: dict[ServiceId, Detail]) -> None:
    """A batch's timeouts and their status changes, then its log line(s), then what follows each timeout."""
    emit(first)
    log_timeouts(expired, details)
    emit(rest)


def log_timeouts(expired: Sequence[ServiceId], details: dict[ServiceId, Detail]) -> None:
    """One warning per timeout; a larger batch one warning naming every service in it (a line each costs 10 µs)."""
    if len(expired) <= _EACH:
        for sid in expired:
            name = details.get(sid, _UNKNOWN).name
            log.warning("lifecycle: service %r (%s) missed its heartbeat deadline", name, sid)
        return
    if log.isEnabledFor(logging.WARNING):
        names = ", ".join(f"{details.get(sid, _UNKNOWN).name!r} ({sid})" for sid in expired)
        log.warning("lifecycle: %d services missed their heartbeat deadline: %s", len(expired), names)
