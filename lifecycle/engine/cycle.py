"""The in-memory reconnect cycle's steps on one entry: begin a cycle, schedule the next attempt, give up.

Pure state-machine steps: each changes the entry and the registry's status through the
`StatusBook` and adds the events it caused to `out`; the engine holds its lock around them and
sends the events afterwards.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from ..events import LifecycleEvent, ReconnectFailed, Reconnecting, ServiceFlapping
from ..model import ServiceStatus
from ..watchdog import Watchdog
from .entry import Entry
from .policy import RestartIntensity
from .states import ERROR, RECONNECTING, StatusBook

__all__ = ["Cycles"]

log = logging.getLogger("lifecycle")



class Cycles:
    """Begins reconnect cycles and schedules their attempts; `attempt_due(entry, attempt)` runs one when due."""

    def __init__(self, book: StatusBook, intensity: RestartIntensity, watchdog: Watchdog, rng: random.Random,
                 attempt_due: Callable[[Entry, int], object]) -> None:
        self._book = book
        self._intensity = intensity
        self._watchdog = watchdog
        self._rng = rng
        self._attempt_due = attempt_due

    def begin(self, entry: Entry, now: float, out: list[LifecycleEvent], flaps: int | None,
              status: ServiceStatus) -> None:
        """A reconnect cycle begins from `status`: counted against the restart intensity (`flaps`: over
        it, so flapping instead), then attempt 1."""
        if entry.restarts is not None:
            entry.restarts.append(now)
        if flaps is not None:
            entry.flapping = True
            window = self._intensity.window
            out.append(ServiceFlapping(entry.id, now, flaps, window))
            log.error("lifecycle: service %s needed %d restarts within %g s (max_restarts=%s); it stays ERROR "
                      "until a heartbeat or restart_service()", entry.label(), flaps, window,
                      self._intensity.max_restarts)
            return
        if entry.attempt:
            self._book.count_attempt(entry, 0)
        if entry.policy.max_attempts > 0 and status is not RECONNECTING:
            self._book.move(entry, RECONNECTING, out)
        self.schedule(entry, out)

    def schedule(self, entry: Entry, out: list[LifecycleEvent], *, at_once: bool = False) -> None:
        """The next attempt after its backoff delay (or now), or ERROR and `reconnect_failed` past the limit."""
        plan = entry.policy.plan(entry.attempt + 1, self._rng, at_once=at_once)
        if plan.mode != "retry":
            entry.drop_attempt()
            self._book.move(entry, ERROR, out)
            out.append(ReconnectFailed(entry.id, time.monotonic(), entry.attempt))
            log.error("lifecycle: service %s could not be reconnected after %d attempt(s)", entry.label(),
                      entry.attempt)
            return
        self._book.count_attempt(entry, plan.attempt)
        entry.retry = self._watchdog.call_later(plan.delay, self._attempt_due, entry, plan.attempt)
        out.append(Reconnecting(entry.id, time.monotonic(), plan.attempt, plan.max_attempts, plan.delay))
