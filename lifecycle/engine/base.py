"""What the manager asks of an engine, and the one hand-in through which an engine reports back."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

from .._text import mask_credentials, quote, shorten
from ..connector import Hooks
from ..errors import InvalidState, LifecycleError, ServiceNotFound
from ..events import LifecycleEvent
from ..model import ExtensionService, ServiceId, ServiceStatus
from ..subscription import Subscription

__all__ = ["Engine", "Sink", "check_id", "error_text", "label", "not_managed", "refused"]


class Sink(Protocol):
    """Where an engine's events and measurements go (the manager): events are sent with no lock held."""

    def emit(self, events: Iterable[LifecycleEvent]) -> None: ...
    def observe_lags(self, seconds: list[float]) -> None: ...  # how late each deadline of a batch ran
    def count_beat(self) -> None: ...
    def heard(self) -> bool: ...  # does anyone listen for per-beat events (signal receivers, subscriptions)?


class Engine(Protocol):
    """One supervision engine: each verb of `LifecycleManager`, after the manager checked its arguments."""

    lock: threading.RLock  # the manager's one lock
    shared: bool  # does the registry belong to a fleet (fleet mode)?

    @property
    def leader(self) -> bool: ...
    def start(self, service: ExtensionService, hooks: Hooks | None) -> ServiceId: ...
    def declare(self, service: ExtensionService, hooks: Hooks | None) -> ServiceId: ...
    def stop(self, id: str, deadline: float | None) -> None: ...
    def stop_all(self, deadline: float | None) -> None: ...
    def beat(self, id: str) -> ServiceId: ...  # the id as the engine holds it (no new object per beat)
    def error(self, id: str, text: str) -> None: ...
    def restart(self, id: str) -> None: ...
    def sweep_now(self) -> list[ServiceId]: ...
    def status(self, id: str) -> ServiceStatus | None: ...
    def healthy(self, id: str) -> bool: ...
    def attempts(self, id: str) -> int: ...
    def restarts(self, id: str) -> int: ...
    def phi(self, id: str) -> float: ...
    def count(self) -> int: ...
    def follow(self, subscription: Subscription) -> None: ...
    def close(self, deadline: float) -> None: ...
    def after_fork_in_child(self) -> None: ...


def error_text(error: object) -> str:
    """How a service's or a connector's error reads in events and logs: credentials masked (it may name a URL)."""
    if isinstance(error, str):
        return mask_credentials(error)
    if isinstance(error, BaseException):
        return mask_credentials(f"{type(error).__name__}: {error}") if str(error) else type(error).__name__
    raise TypeError(f"error must be a str or an exception, not {type(error).__name__}")


def check_id(id: object) -> None:
    if not isinstance(id, str):
        raise TypeError(f"id must be a str, not {type(id).__name__}")


def label(name: str, id: str) -> str:
    """A service as logs and errors name it: its name and its shortened id."""
    return f"{quote(name)} ({shorten(id)})"


def not_managed(id: object, where: str = "managed by this manager") -> ServiceNotFound:
    check_id(id)
    return ServiceNotFound(f"service {quote(id)} is not {where}")


def refused(who: str, what: str, status: ServiceStatus | None) -> LifecycleError:
    """The error for a report (heartbeat, error, restart) a service cannot take in `status`."""
    if status is ServiceStatus.STARTING:
        return InvalidState(f"service {who} is still starting; its connect has not returned")
    return InvalidState(f"service {who} is stopping; its {what} is refused")
