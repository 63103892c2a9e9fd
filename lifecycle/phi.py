"""The phi accrual failure detector (Hayashibara et al., 2004), as Akka implements it, made deadline-driven.

phi is the suspicion that a service is down, given how long it has been silent and the
distribution of its past heartbeat intervals: ``phi = -log10(P(silence this long | alive))``,
with the normal distribution approximated by Akka's logistic formula. Instead of sampling phi
on a timer, `History.limit` solves for the silence at which phi reaches the threshold, so the
manager arms one deadline there and re-arms it lazily, as with the fixed timeout.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["History", "PhiSettings", "phi_of"]

# Akka's approximation of the normal CDF: P(X > mean + y*std) ~ e / (1 + e), e = exp(-y (A + B y^2)).
_A = 1.5976
_B = 0.070566


def phi_of(elapsed: float, mean: float, std: float) -> float:
    """phi after `elapsed` seconds of silence, for intervals of this mean and standard deviation."""
    y = (elapsed - mean) / std
    exponent = -y * (_A + _B * y * y)
    if exponent > 700:  # e overflows; the probability is ~1: no suspicion
        return 0.0
    e = math.exp(exponent)
    if elapsed > mean:
        return -math.log10(e / (1.0 + e))
    return -math.log10(1.0 - 1.0 / (1.0 + e))


def _standard_score(threshold: float) -> float:
    """The y at which phi reaches `threshold`: the real root of B y^3 + A y + ln(p / (1 - p)) = 0."""
    p = 10.0 ** -threshold
    c = math.log(p / (1.0 - p)) / _B
    a = _A / _B
    # One real root (a > 0): Cardano's formula.
    root = math.sqrt(c * c / 4.0 + a**3 / 27.0)
    return math.copysign(abs(-c / 2 + root) ** (1 / 3), -c / 2 + root) + math.copysign(
        abs(-c / 2 - root) ** (1 / 3), -c / 2 - root
    )


@dataclass(frozen=True, slots=True)
class PhiSettings:
    """The detector's parameters, from `LifecycleConfig` (Akka's names and defaults)."""

    threshold: float
    max_sample_size: int
    min_std_deviation: float
    acceptable_pause: float
    first_interval: float

    @property
    def score(self) -> float:
        """The standard score at which phi reaches the threshold (computed once per manager)."""
        return _standard_score(self.threshold)


class History:
    """One service's recent heartbeat intervals, with running sums so mean and variance are O(1).

    Seeded as Akka seeds it: two intervals at ``first ± first/4``, so a fresh service has an
    estimate before its first real interval. Not thread-safe: the manager holds its lock.
    """

    __slots__ = ("intervals", "last", "total", "squares")

    def __init__(self, settings: PhiSettings, now: float) -> None:
        self.intervals: deque[float] = deque()
        self.total = 0.0
        self.squares = 0.0
        self.last = now
        first = settings.first_interval
        for interval in (first - first / 4, first + first / 4):
            self._add(interval, settings.max_sample_size)

    def _add(self, interval: float, limit: int) -> None:
        if len(self.intervals) >= limit:
            old = self.intervals.popleft()
            self.total -= old
            self.squares -= old * old
        self.intervals.append(interval)
        self.total += interval
        self.squares += interval * interval

    def beat(self, now: float, settings: PhiSettings, cap: float = math.inf) -> None:
        """A heartbeat at `now`: record the interval since the last one (at most `cap`)."""
        self._add(min(cap, max(0.0, now - self.last)), settings.max_sample_size)
        self.last = now

    def estimate(self, settings: PhiSettings) -> tuple[float, float]:
        """(mean + acceptable pause, standard deviation floored at the minimum)."""
        n = len(self.intervals)
        mean = self.total / n
        variance = max(0.0, self.squares / n - mean * mean)
        return mean + settings.acceptable_pause, max(math.sqrt(variance), settings.min_std_deviation)

    def phi(self, now: float, settings: PhiSettings) -> float:
        """The suspicion level at `now`."""
        mean, std = self.estimate(settings)
        return phi_of(max(0.0, now - self.last), mean, std)

    def limit(self, settings: PhiSettings, score: float) -> float:
        """Seconds after the last heartbeat at which phi reaches the threshold."""
        mean, std = self.estimate(settings)
        return max(0.0, mean + score * std)
