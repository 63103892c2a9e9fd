"""`Metrics`: a frozen snapshot of what one manager did, and the recorder that counts it cheaply.

Counting is split by cost. A heartbeat bumps one `itertools.count` (a single C call, atomic
under the GIL, no lock), because `handle_heartbeat` is the hot path. Everything else is
counted per event batch under a small leaf lock when the manager dispatches, so the totals are
exactly the events this process emitted. Reading a snapshot costs O(statuses + buckets), never
O(services).
"""

from __future__ import annotations

import bisect
import itertools
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .events import LifecycleEvent

__all__ = ["LAG_BUCKETS", "Histogram", "Metrics", "MetricsRecorder"]

LAG_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the detection-lag histogram's buckets; +Inf follows implicitly."""

# Signal name -> the Metrics field it is counted in.
_COUNTED = {
    "heartbeat_timeout": "heartbeat_timeouts",
    "reconnecting": "reconnect_attempts",
    "reconnected": "reconnects",
    "reconnect_failed": "reconnect_failures",
    "service_error": "errors",
    "service_flapping": "flapping",
}


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative buckets as Prometheus wants them: ``(upper bound, observations <= it)``, +Inf last."""

    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float


@dataclass(frozen=True, slots=True)
class Metrics:
    """What `LifecycleManager.metrics()` returns; every total counts what *this process* did.

    `services` counts services per status value ("running", ...) as the registry holds them (in
    fleet mode: the whole fleet's). `detection_lag` observes, for each deadline timeout, how late
    it fired after the deadline. `timers_queued` counts watchdog timer entries (a cancelled timer
    stays queued, as a no-op, until its time); `timer_lateness_secs` is how late the most recent
    timer ran (None before any).
    """

    services: Mapping[str, int]
    heartbeats: int
    heartbeat_timeouts: int
    reconnect_attempts: int
    reconnects: int
    reconnect_failures: int
    errors: int
    flapping: int
    events_dropped: int
    detection_lag: Histogram
    timers_queued: int
    timer_lateness_secs: float | None
    pid: int = field(default_factory=os.getpid)


class MetricsRecorder:
    """The running totals behind `Metrics`; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The hot path's counter: ``next(recorder.beats)`` once per heartbeat (cheaper than a method call).
        self.beats = itertools.count()
        self._totals = dict.fromkeys(_COUNTED.values(), 0)
        self._lag_counts = [0] * (len(LAG_BUCKETS) + 1)
        self._lag_sum = 0.0
        self._dropped_retired = 0

    def after_fork_in_child(self) -> None:
        """A parent thread may have held the lock at fork time."""
        self._lock = threading.Lock()

    def count_events(self, events: Iterable[LifecycleEvent]) -> None:
        """Add the events about to be dispatched to the totals (heartbeats are counted apart)."""
        with self._lock:
            totals = self._totals
            for event in events:
                key = _COUNTED.get(event.signal_name)
                if key is not None:
                    totals[key] += 1

    def observe_lags(self, lags: list[float]) -> None:
        """Deadline timeouts that fired these many seconds after their deadlines (clamped at 0); one lock."""
        counts, find = self._lag_counts, bisect.bisect_left
        with self._lock:
            for seconds in lags:
                seconds = max(0.0, seconds)
                counts[find(LAG_BUCKETS, seconds)] += 1
                self._lag_sum += seconds

    def retire_dropped(self, dropped: int) -> None:
        """Keep the drop count of a subscription that is closed, so the total never goes down.

        The manager calls it under its own lock, as it removes the subscription.
        """
        with self._lock:
            self._dropped_retired += dropped

    def dropped_retired(self) -> int:
        """Events dropped by subscriptions that are closed."""
        return self._dropped_retired

    def heartbeats(self) -> int:
        """Heartbeats counted so far."""
        # count's repr ("count(17)") is its only read that does not advance it.
        return int(repr(self.beats)[6:-1])

    def snapshot(self, services: Mapping[str, int], events_dropped: int, timers_queued: int,
                 timer_lateness_secs: float | None) -> Metrics:
        """A frozen `Metrics` from the totals and what the caller measured just now."""
        with self._lock:
            totals = dict(self._totals)
            counts = list(self._lag_counts)
            lag_sum = self._lag_sum
        cumulative = list(itertools.accumulate(counts))
        buckets = (*zip(LAG_BUCKETS, cumulative, strict=False), (float("inf"), cumulative[-1]))
        return Metrics(
            services=MappingProxyType(dict(services)),
            heartbeats=self.heartbeats(),
            events_dropped=events_dropped,
            detection_lag=Histogram(tuple(buckets), cumulative[-1], lag_sum),
            timers_queued=timers_queued,
            timer_lateness_secs=timer_lateness_secs,
            heartbeat_timeouts=totals["heartbeat_timeouts"],
            reconnect_attempts=totals["reconnect_attempts"],
            reconnects=totals["reconnects"],
            reconnect_failures=totals["reconnect_failures"],
            errors=totals["errors"],
            flapping=totals["flapping"],
        )
