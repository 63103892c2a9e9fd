"""One frozen event class per signal; what subscriptions deliver and receivers get as ``event``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from .model import ServiceId, ServiceStatus

__all__ = [
    "Error",
    "Heartbeat",
    "HeartbeatTimeout",
    "LifecycleEvent",
    "ReconnectFailed",
    "Reconnected",
    "Reconnecting",
    "ServiceFlapping",
    "Started",
    "StatusChanged",
    "Stopped",
]


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """Something that happened to a service; `at` is the `time.monotonic()` reading."""

    signal_name: ClassVar[str] = ""
    service_id: ServiceId
    at: float

    def signal_kwargs(self) -> dict[str, object]:
        """The keyword arguments the matching signal is sent with (without ``event``)."""
        # Spelled out per class: this runs for every event that has a receiver.
        return {"service_id": self.service_id}

    def _call(self, receiver: Callable[..., object], sender: object) -> object:
        """Call a receiver with this event's signal arguments (no kwargs dict on the hot path)."""
        return receiver(sender, event=self, service_id=self.service_id)


@dataclass(frozen=True, slots=True)
class Started(LifecycleEvent):
    signal_name: ClassVar[str] = "service_started"


@dataclass(frozen=True, slots=True)
class Stopped(LifecycleEvent):
    signal_name: ClassVar[str] = "service_stopped"


@dataclass(frozen=True, slots=True)
class StatusChanged(LifecycleEvent):
    signal_name: ClassVar[str] = "status_changed"
    old_status: ServiceStatus
    new_status: ServiceStatus

    def _call(self, receiver: Callable[..., object], sender: object) -> object:
        return receiver(sender, event=self, **self.signal_kwargs())

    def signal_kwargs(self) -> dict[str, object]:
        return {"service_id": self.service_id, "old_status": self.old_status, "new_status": self.new_status}


@dataclass(frozen=True, slots=True)
class Heartbeat(LifecycleEvent):
    signal_name: ClassVar[str] = "heartbeat_received"


@dataclass(frozen=True, slots=True)
class HeartbeatTimeout(LifecycleEvent):
    signal_name: ClassVar[str] = "heartbeat_timeout"


@dataclass(frozen=True, slots=True)
class Reconnecting(LifecycleEvent):
    signal_name: ClassVar[str] = "reconnecting"
    attempt: int
    max_attempts: int
    delay: float

    def _call(self, receiver: Callable[..., object], sender: object) -> object:
        return receiver(sender, event=self, **self.signal_kwargs())

    def signal_kwargs(self) -> dict[str, object]:
        return {"service_id": self.service_id, "attempt": self.attempt, "max_attempts": self.max_attempts,
                "delay": self.delay}


@dataclass(frozen=True, slots=True)
class Reconnected(LifecycleEvent):
    signal_name: ClassVar[str] = "reconnected"


@dataclass(frozen=True, slots=True)
class ReconnectFailed(LifecycleEvent):
    signal_name: ClassVar[str] = "reconnect_failed"
    attempts: int

    def _call(self, receiver: Callable[..., object], sender: object) -> object:
        return receiver(sender, event=self, **self.signal_kwargs())

    def signal_kwargs(self) -> dict[str, object]:
        return {"service_id": self.service_id, "attempts": self.attempts}


@dataclass(frozen=True, slots=True)
class Error(LifecycleEvent):
    signal_name: ClassVar[str] = "service_error"
    error: str

    def _call(self, receiver: Callable[..., object], sender: object) -> object:
        return receiver(sender, event=self, **self.signal_kwargs())

    def signal_kwargs(self) -> dict[str, object]:
        return {"service_id": self.service_id, "error": self.error}


@dataclass(frozen=True, slots=True)
class ServiceFlapping(LifecycleEvent):
    """The service needed `restarts` restarts within `window` seconds, more than `max_restarts`: it stays ERROR."""

    signal_name: ClassVar[str] = "service_flapping"
    restarts: int
    window: float

    def _call(self, receiver: Callable[..., object], sender: object) -> object:
        return receiver(sender, event=self, **self.signal_kwargs())

    def signal_kwargs(self) -> dict[str, object]:
        return {"service_id": self.service_id, "restarts": self.restarts, "window": self.window}
