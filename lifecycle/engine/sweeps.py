"""The leader's sweeps of a partition: a backlog drained in one tick, a burst's timeouts sent before anything else.

A sweep script hands out at most `SWEEP_LIMIT` due services (it holds the server while it runs);
a larger backlog is swept again at once, in the same tick, while the tick's lease is fresh. The
timeouts of a batch and their status changes are sent first, then the batch is logged, then
what follows each timeout (its reconnect plan, flapping or giving up), as the in-memory engine
does: the last timeout of a burst waits for no one's follow-up or log line. Receivers run on the
tick's thread, the thread that caused the events, as everywhere else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from ..events import HeartbeatTimeout, LifecycleEvent, StatusChanged
from ..fleet import Detail, Sweep
from ..model import ServiceId
from .lease import Ticker

__all__ = ["SWEEP_LIMIT", "drain", "log_timeouts", "send_batch", "timeouts_first"]

log = logging.getLogger("lifecycle")

SWEEP_LIMIT = 500  # due items per sweep script: the server runs nothing else meanwhile
_BATCHES = 40  # sweeps in one tick at most (20,000 due services); more wait for the next tick
_EACH = 10  # a sweep that timed out more logs one line for all of them, not one line each
_UNKNOWN = Detail("?", True)


def drain(ticker: Ticker, within: float, claim: Callable[[Ticker], Sweep | None],
          send: Callable[[Sweep, Ticker], object], attempt: Callable[[ServiceId, int], None]) -> float:
    """Sweep `ticker`'s partition until no full batch is left (or the tick's time is up); seconds until the next tick.

    Each sweep (`claim`) times its due services out; `send` sends their events, then each claimed
    attempt runs (`attempt`).

    The lease was renewed when the tick began: sweeps go on for at most a renewal interval shared
    by the partitions' ticks (which run one after another on one thread), so every partition's
    lease is renewed, and swept, in time; a full last batch asks for a tick at once. Meanwhile
    `ticker.draining` holds the process's reading of the event log (its sweeps act on what is due),
    and `ticker.bursts` counts the sweeps that timed services out, after which it waits a little
    more (`follow_log`'s `busy`).
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
            send(sweep, ticker)
            ticker.bursts += bool(sweep.due)
            for sid, k in sweep.attempts:
                attempt(sid, k)
            if not full:
                return within if sweep.next_in is None else min(within, sweep.next_in)
            if time.monotonic() - began >= budget or not ticker.leader:
                break
        return 0.0
    finally:
        ticker.draining = False


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
