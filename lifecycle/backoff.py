"""Reconnect delays: exponential growth, a cap, and proportional jitter from a real RNG."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from . import _validate

__all__ = ["ExponentialBackoff"]


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """An immutable policy: `delay(attempt, rng)` gives the seconds to wait before retry `attempt`.

    The nominal delay is ``min(maximum, initial * multiplier ** attempt)``; the power is never
    computed past the point where it reaches the cap, so huge attempts cannot overflow.
    Jitter is proportional and does not compound: the delay is drawn uniformly from
    ``[nominal * (1 - jitter), min(nominal * (1 + jitter), maximum)]``. Clipping the window
    (instead of clamping the draw) keeps delays at the cap dispersed below it rather than
    piling them onto the cap value. With ``initial=1, multiplier=2, maximum=30, jitter=0``
    the sequence is 1, 2, 4, 8, 16, 30, 30, ...
    """

    initial: float = 1.0
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        _validate.duration(self.initial, "initial", positive=False)
        _validate.duration(self.maximum, "maximum", positive=False)
        _validate.number(self.multiplier, "multiplier", minimum=1)
        _validate.number(self.jitter, "jitter", minimum=0)
        if self.jitter > 1:
            raise ValueError(f"jitter must be <= 1, got {self.jitter!r}")
        if self.maximum < self.initial:
            raise ValueError(f"maximum ({self.maximum!r}) must be >= initial ({self.initial!r})")

    def nominal(self, attempt: int) -> float:
        """The delay before retry `attempt` (0-based) without jitter."""
        _validate.integer(attempt, "attempt", minimum=0)
        if self.initial == 0 or self.multiplier == 1:
            return min(self.initial, self.maximum)
        # Past this exponent the product is at or above the cap, so stop before ** overflows.
        # Logs of each side, not of the ratio: maximum / initial overflows for tiny initial delays.
        saturating = math.ceil((math.log(self.maximum) - math.log(self.initial)) / math.log(self.multiplier))
        if attempt >= saturating:
            return self.maximum
        return min(self.maximum, self.initial * self.multiplier**attempt)

    def window(self, attempt: int) -> tuple[float, float]:
        """The (low, high) seconds the delay before retry `attempt` (0-based) is drawn from, uniformly."""
        nominal = self.nominal(attempt)
        if self.jitter == 0 or nominal == 0:
            return nominal, nominal
        return max(0.0, nominal * (1.0 - self.jitter)), min(nominal * (1.0 + self.jitter), self.maximum)

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The jittered delay before retry `attempt` (0-based), in [0, maximum]."""
        low, high = self.window(attempt)
        if low == high:
            return low
        return min(self.maximum, max(0.0, rng.uniform(low, high)))
