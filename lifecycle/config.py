"""`LifecycleConfig`: every timing and attempt limit the manager uses, validated once."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from .backoff import ExponentialBackoff

__all__ = ["LifecycleConfig"]

_FLOATS = (
    "heartbeat_interval_secs",
    "heartbeat_timeout_secs",
    "reconnect_delay_ms",
    "max_reconnect_delay_ms",
    "reconnect_backoff_multiplier",
    "jitter",
)


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    """Manager settings. Frozen: derive variants with `dataclasses.replace`.

    Every bad value raises `ValueError` naming the field, wrong types included.
    """

    heartbeat_interval_secs: float = 30.0
    heartbeat_timeout_secs: float = 90.0
    max_reconnect_attempts: int = 5
    reconnect_delay_ms: float = 1000
    max_reconnect_delay_ms: float = 30000
    reconnect_backoff_multiplier: float = 2.0
    auto_reconnect: bool = True
    jitter: float = 0.1

    def __post_init__(self) -> None:
        for name in _FLOATS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be an int or float, not {type(value).__name__}")
            try:
                finite = math.isfinite(value)
            except OverflowError:  # an int too large for a float
                finite = False
            if not finite:
                raise ValueError(f"{name} must be finite, got {value!r}")
        attempts = self.max_reconnect_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise ValueError(f"max_reconnect_attempts must be an int, not {type(attempts).__name__}")
        if not isinstance(self.auto_reconnect, bool):
            raise ValueError(f"auto_reconnect must be a bool, not {type(self.auto_reconnect).__name__}")
        if self.heartbeat_interval_secs <= 0:
            raise ValueError(f"heartbeat_interval_secs must be > 0, got {self.heartbeat_interval_secs!r}")
        if self.heartbeat_timeout_secs <= 0:
            raise ValueError(f"heartbeat_timeout_secs must be > 0, got {self.heartbeat_timeout_secs!r}")
        if self.heartbeat_timeout_secs < self.heartbeat_interval_secs:
            raise ValueError(
                f"heartbeat_timeout_secs ({self.heartbeat_timeout_secs!r}) must be >= "
                f"heartbeat_interval_secs ({self.heartbeat_interval_secs!r})"
            )
        if attempts < 0:
            raise ValueError(f"max_reconnect_attempts must be >= 0, got {attempts!r}")
        if self.reconnect_delay_ms < 0:
            raise ValueError(f"reconnect_delay_ms must be >= 0, got {self.reconnect_delay_ms!r}")
        if self.max_reconnect_delay_ms < self.reconnect_delay_ms:
            raise ValueError(
                f"max_reconnect_delay_ms ({self.max_reconnect_delay_ms!r}) must be >= "
                f"reconnect_delay_ms ({self.reconnect_delay_ms!r})"
            )
        if self.reconnect_backoff_multiplier < 1:
            raise ValueError(
                f"reconnect_backoff_multiplier must be >= 1, got {self.reconnect_backoff_multiplier!r}"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter!r}")

    @property
    def backoff(self) -> ExponentialBackoff:
        """The reconnect delay policy these settings describe (delays in seconds)."""
        return ExponentialBackoff(
            initial=self.reconnect_delay_ms / 1000.0,
            maximum=self.max_reconnect_delay_ms / 1000.0,
            multiplier=float(self.reconnect_backoff_multiplier),
            jitter=float(self.jitter),
        )

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (for logs and status pages)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
