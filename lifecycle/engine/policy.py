"""The reconnect decision and restart intensity: small immutable policies, each asked one question.

Both engines ask the same objects, so a fleet and a single process decide alike.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from ..backoff import ExponentialBackoff
from ..config import LifecycleConfig
from ..errors import FieldValueError
from ..fleet import Onset, Plan
from ..model import TransportConfig

__all__ = ["ReconnectPolicy", "RestartIntensity", "service_timing"]


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """What follows a failure, as urllib3's `Retry` answers it: `plan(attempt)` is the one question."""

    backoff: ExponentialBackoff
    auto_reconnect: bool
    max_attempts: int

    @classmethod
    def of(cls, config: LifecycleConfig, transport: TransportConfig | None = None) -> ReconnectPolicy:
        """The policy for one service: the config's, with its transport's overrides."""
        if transport is None:
            return cls(config.backoff, config.auto_reconnect, config.max_reconnect_attempts)
        limit = transport.max_reconnect_attempts
        return cls(config.backoff, config.auto_reconnect and transport.auto_reconnect,
                   config.max_reconnect_attempts if limit is None else limit)

    def of_service(self, config: LifecycleConfig, transport: TransportConfig) -> ReconnectPolicy:
        """This (the config's) policy, or the one `transport` overrides it with (`of`): most services share it."""
        if transport.auto_reconnect and transport.max_reconnect_attempts is None:
            return self
        return ReconnectPolicy.of(config, transport)

    def onset(self, rng: random.Random) -> Onset:
        """`begin` for a registry that times services out and plans attempt 1 itself (`SharedRegistry.sweep`)."""
        low, high = self.backoff.window(0)
        return Onset(self.auto_reconnect, self.max_attempts, low, high, rng.getrandbits(31))

    def begin(self, rng: random.Random) -> Plan:
        """When a service leaves RUNNING (timeout, error): a reconnect cycle with attempt 1, or stay in ERROR."""
        return self.plan(1, rng) if self.auto_reconnect else Plan("error")

    def plan(self, attempt: int, rng: random.Random, *, at_once: bool = False) -> Plan:
        """Within a reconnect cycle, before attempt `attempt` (1-based): retry it after a backoff delay, or give up."""
        if attempt > self.max_attempts:
            return Plan("giveup", attempt, 0.0, self.max_attempts)
        delay = 0.0 if at_once else self.backoff.delay(attempt - 1, rng)
        return Plan("retry", attempt, delay, self.max_attempts)


@dataclass(frozen=True, slots=True)
class RestartIntensity:
    """Erlang's restart intensity: more than `max_restarts` reconnect cycles within `window` s is flapping.

    `max_restarts=None` is no limit. The times live with each service (a deque here, a list in a
    shared store); this object only decides.
    """

    max_restarts: int | None
    window: float

    @classmethod
    def of(cls, config: LifecycleConfig) -> RestartIntensity:
        return cls(config.max_restarts, float(config.restart_window_secs))

    def times(self) -> deque[float] | None:
        """A fresh record of restart times for one service; None when there is no limit to keep it for."""
        return None if self.max_restarts is None else deque(maxlen=self.max_restarts + 1)

    def count(self, times: deque[float] | None, now: float) -> int:
        """Restarts within the window now (pruning older ones)."""
        if times is None:
            return 0
        cutoff = now - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        return len(times)

    def flaps(self, times: deque[float] | None, now: float) -> int | None:
        """If one more restart now would exceed the limit: the restarts it would make; else None."""
        if self.max_restarts is None or times is None:
            return None
        count = self.count(times, now)
        return count + 1 if count >= self.max_restarts else None


def service_timing(config: LifecycleConfig, name: str, transport: TransportConfig) -> tuple[float, float]:
    """(heartbeat timeout, ping interval) of one service: its transport's overrides, else the config's."""
    timeout, interval = transport.heartbeat_timeout_secs, transport.ping_interval_secs
    limit = float(config.heartbeat_timeout_secs if timeout is None else timeout)
    every = float(config.heartbeat_interval_secs if interval is None else interval)
    if limit < every:
        field = "heartbeat_timeout_secs" if timeout is not None else "ping_interval_secs"
        raise FieldValueError(f"TransportConfig.{field}", "order",
                              f"gives service {name!r} a heartbeat timeout ({limit:g} s) shorter "
                              f"than its ping interval ({every:g} s)")
    return limit, every
