"""When a silent service is timed out: after a fixed timeout, or when phi reaches its threshold.

The in-memory engine asks its detector; a shared store computes the same limit in its scripts
from the settings the engine gives it (`StoreSettings`).
"""

from __future__ import annotations

from typing import Protocol

from ..config import LifecycleConfig
from ..phi import History, PhiSettings
from .entry import Entry

__all__ = ["Detector", "FixedDetector", "PhiDetector", "detector_for"]


class Detector(Protocol):
    tracks_beats: bool  # does every heartbeat need to reach `beat` (and so touch the entry)?

    def running(self, entry: Entry, now: float) -> None: ...
    def beat(self, entry: Entry, now: float) -> None: ...
    def limit(self, entry: Entry) -> float: ...
    def phi(self, entry: Entry, now: float) -> float: ...


class FixedDetector:
    """Timed out after the service's heartbeat timeout."""

    tracks_beats = False

    def running(self, entry: Entry, now: float) -> None:
        return None

    def beat(self, entry: Entry, now: float) -> None:
        return None

    def limit(self, entry: Entry) -> float:
        return entry.timeout

    def phi(self, entry: Entry, now: float) -> float:
        return 0.0


class PhiDetector:
    """The phi accrual detector (see `lifecycle.phi`), capped by the service's heartbeat timeout."""

    tracks_beats = True

    def __init__(self, settings: PhiSettings) -> None:
        self.settings = settings
        self.score = settings.score

    def running(self, entry: Entry, now: float) -> None:
        if entry.history is None:
            entry.history = History(self.settings, now)
        else:
            entry.history.last = now  # after a reconnect: the outage is no interval to learn

    def beat(self, entry: Entry, now: float) -> None:
        # Capped at the timeout, as Akka does: nothing alive is silent longer.
        if entry.history is not None:
            entry.history.beat(now, self.settings, entry.timeout)

    def limit(self, entry: Entry) -> float:
        history = entry.history
        if history is None:
            return entry.timeout
        return min(entry.timeout, history.limit(self.settings, self.score))

    def phi(self, entry: Entry, now: float) -> float:
        history = entry.history
        return 0.0 if history is None else history.phi(now, self.settings)


def detector_for(config: LifecycleConfig) -> Detector:
    """The detector `config.detector` names."""
    return FixedDetector() if config.phi is None else PhiDetector(config.phi)
