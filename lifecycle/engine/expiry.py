"""Timing services out: the compare-and-set in the registry and the two events, for one or a slot's batch.

A timeout's verdict (the status it went to, flaps, when) is left on the entry (`expired_*`) for the follow-up.

Only the timeout itself: the engine decides what follows it (a reconnect cycle, flapping, ERROR)
once every due timer has run. The caller holds the engine's lock; events go into `out`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from ..events import HeartbeatTimeout, LifecycleEvent, StatusChanged
from ..model import ServiceStatus
from ..registry import Store
from ..timers import Timer
from .base import Sink
from .entry import Entry
from .policy import RestartIntensity
from .states import ERROR, RECONNECTING, RUNNING

__all__ = ["GONE", "Due", "Expiry"]

log = logging.getLogger("lifecycle")

# A silent service whose deadline fired: the entry, its fired timer, how late (None: unknown), its limit.
Due = tuple[Entry, Timer, "float | None", float]
# What a deadline that raised gives: dropped (logged), neither re-armed nor expired. Compared by identity.
GONE: Entry = Entry.__new__(Entry)

_Many = Callable[[Sequence[tuple[str, float, ServiceStatus]]], list[bool]]


class Expiry:
    """Times services out in a registry; batches a slot's timeouts where the registry offers `expire_many`."""

    def __init__(self, registry: Store, intensity: RestartIntensity, sink: Sink) -> None:
        self._registry = registry
        self._many: _Many | None = getattr(registry, "expire_many", None)
        self._intensity = intensity
        self._sink = sink

    def expire(self, entry: Entry, out: list[LifecycleEvent], lag: float | None, limit: float) -> Entry | None:
        """Time the service out if it is still RUNNING and silent for `limit`: the entry, its `expired_*` set.

        None if a heartbeat got there first.

        `lag` is how late this runs (None: unknown), for the detection-lag histogram.
        """
        now = time.monotonic()
        target, flaps = self._verdict(entry, now)
        if self._registry.expire(entry.id, limit, target) is None:
            return None
        if lag is not None:
            self._sink.observe_lags([lag])
        return self._timed_out(entry, target, flaps, now, out)

    def expire_all(self, due: list[Due], out: list[LifecycleEvent]) -> list[Entry | None]:
        """`expire` of each silent service of a slot, in one registry call where it can; `GONE` where one raised."""
        many = self._many
        if many is None or len(due) == 1:
            return [self._expire_one(entry, out, lag, limit) for entry, _, lag, limit in due]
        now = time.monotonic()
        verdicts = [self._verdict(entry, now) for entry, _, _, _ in due]
        try:
            won = many([(entry.id, limit, target)
                        for (entry, _, _, limit), (target, _) in zip(due, verdicts, strict=True)])
        except Exception:
            log.exception("lifecycle: expiring %d services at once raised; trying one by one", len(due))
            return [self._expire_one(entry, out, lag, limit) for entry, _, lag, limit in due]
        lags = [lag for (_, _, lag, _), ok in zip(due, won, strict=True) if ok and lag is not None]
        if lags:
            self._sink.observe_lags(lags)
        timed_out = self._timed_out
        return [timed_out(entry, target, flaps, now, out) if ok else None
                for (entry, _, _, _), (target, flaps), ok in zip(due, verdicts, won, strict=True)]

    def _expire_one(self, entry: Entry, out: list[LifecycleEvent], lag: float | None, limit: float) -> Entry | None:
        try:
            return self.expire(entry, out, lag, limit)
        except Exception:
            log.exception("lifecycle: the deadline of %s raised; the watchdog goes on", entry.label())
            return GONE

    def _verdict(self, entry: Entry, now: float) -> tuple[ServiceStatus, int | None]:
        """Where a timeout takes the service (RECONNECTING, or ERROR), and its restarts if over the intensity."""
        flaps = self._intensity.flaps(entry.restarts, now) if entry.auto_reconnect else None
        reconnect = entry.auto_reconnect and entry.policy.max_attempts > 0 and flaps is None
        return (RECONNECTING if reconnect else ERROR), flaps

    @staticmethod
    def _timed_out(entry: Entry, target: ServiceStatus, flaps: int | None, now: float,
                   out: list[LifecycleEvent]) -> Entry:
        out.append(HeartbeatTimeout(entry.id, now))
        out.append(StatusChanged(entry.id, now, RUNNING, target))
        entry.expired_to, entry.expired_flaps, entry.expired_at = target, flaps, now
        return entry
