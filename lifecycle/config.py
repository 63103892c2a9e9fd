"""`LifecycleConfig`: every timing and attempt limit the manager uses, validated once."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from . import _validate
from .backoff import ExponentialBackoff
from .errors import FieldValueError
from .phi import PhiSettings

__all__ = ["DETECTORS", "LifecycleConfig"]

DETECTORS = ("fixed", "phi")
"""The failure detectors `LifecycleConfig.detector` may name."""

@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    """Manager settings. Frozen: derive variants with `dataclasses.replace`.

    Every bad value raises `ValueError` (a `FieldValueError`: `.field` names the field, `.code`
    the problem), wrong types included. Durations are capped at one year (docs/limits.md).
    """

    heartbeat_interval_secs: float = 30.0
    heartbeat_timeout_secs: float = 90.0
    max_reconnect_attempts: int = 5
    reconnect_delay_ms: float = 1000
    max_reconnect_delay_ms: float = 30000
    reconnect_backoff_multiplier: float = 2.0
    auto_reconnect: bool = True
    jitter: float = 0.1
    #: Restart intensity: a service needing more than this many restarts (reconnect cycles) within
    #: `restart_window_secs` is left in ERROR and `service_flapping` is emitted. None: no limit.
    max_restarts: int | None = None
    restart_window_secs: float = 60.0
    #: "fixed": a service is timed out `heartbeat_timeout_secs` after its last heartbeat. "phi": the
    #: phi accrual detector times it out once phi reaches `phi_threshold` (never later than
    #: `heartbeat_timeout_secs`); the other phi_* fields are Akka's, with Akka's defaults.
    detector: str = "fixed"
    phi_threshold: float = 8.0
    phi_max_sample_size: int = 1000
    phi_min_std_deviation_secs: float = 0.1
    phi_acceptable_pause_secs: float = 3.0

    def __post_init__(self) -> None:
        # The package's validators, told to raise ValueError for wrong types too (API section 6).
        strict = FieldValueError
        _validate.duration(self.heartbeat_interval_secs, "heartbeat_interval_secs", wrong_type=strict)
        _validate.duration(self.heartbeat_timeout_secs, "heartbeat_timeout_secs", wrong_type=strict)
        _validate.integer(self.max_reconnect_attempts, "max_reconnect_attempts", minimum=0, wrong_type=strict)
        _validate.duration(self.reconnect_delay_ms, "reconnect_delay_ms", positive=False, unit=0.001,
                           wrong_type=strict)
        _validate.duration(self.max_reconnect_delay_ms, "max_reconnect_delay_ms", positive=False, unit=0.001,
                           wrong_type=strict)
        _validate.number(self.reconnect_backoff_multiplier, "reconnect_backoff_multiplier", minimum=1,
                         wrong_type=strict)
        _validate.flag(self.auto_reconnect, "auto_reconnect", wrong_type=strict)
        _validate.number(self.jitter, "jitter", minimum=0, maximum=1, wrong_type=strict)
        if self.heartbeat_timeout_secs < self.heartbeat_interval_secs:
            raise FieldValueError(
                "heartbeat_timeout_secs",
                "order",
                f"({self.heartbeat_timeout_secs!r}) must be >= "
                f"heartbeat_interval_secs ({self.heartbeat_interval_secs!r})",
            )
        if self.max_reconnect_delay_ms < self.reconnect_delay_ms:
            raise FieldValueError(
                "max_reconnect_delay_ms",
                "order",
                f"({self.max_reconnect_delay_ms!r}) must be >= "
                f"reconnect_delay_ms ({self.reconnect_delay_ms!r})",
            )
        if self.max_restarts is not None:
            _validate.integer(self.max_restarts, "max_restarts", minimum=0, wrong_type=strict)
        _validate.duration(self.restart_window_secs, "restart_window_secs", wrong_type=strict)
        if self.detector not in DETECTORS:
            kind = type(self.detector).__name__
            raise FieldValueError("detector", "choice" if isinstance(self.detector, str) else "type",
                                  f"must be one of {', '.join(map(repr, DETECTORS))}, "
                                  f"got {_validate.quote(self.detector) if isinstance(self.detector, str) else kind}")
        _validate.number(self.phi_threshold, "phi_threshold", minimum=0.5, maximum=100, wrong_type=strict)
        _validate.integer(self.phi_max_sample_size, "phi_max_sample_size", minimum=2, wrong_type=strict)
        _validate.duration(self.phi_min_std_deviation_secs, "phi_min_std_deviation_secs", wrong_type=strict)
        _validate.duration(self.phi_acceptable_pause_secs, "phi_acceptable_pause_secs", positive=False,
                           wrong_type=strict)

    @property
    def backoff(self) -> ExponentialBackoff:
        """The reconnect delay policy these settings describe (delays in seconds)."""
        return ExponentialBackoff(
            initial=self.reconnect_delay_ms / 1000.0,
            maximum=self.max_reconnect_delay_ms / 1000.0,
            multiplier=float(self.reconnect_backoff_multiplier),
            jitter=float(self.jitter),
        )

    @property
    def phi(self) -> PhiSettings | None:
        """The phi detector's settings (its first interval estimate is `heartbeat_interval_secs`), or None."""
        if self.detector != "phi":
            return None
        return PhiSettings(
            threshold=float(self.phi_threshold),
            max_sample_size=self.phi_max_sample_size,
            min_std_deviation=float(self.phi_min_std_deviation_secs),
            acceptable_pause=float(self.phi_acceptable_pause_secs),
            first_interval=float(self.heartbeat_interval_secs),
        )

    def as_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (for logs and status pages)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
