"""What a connector is, and how the manager turns whatever it was given into three hooks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .model import ExtensionService

__all__ = ["Connector", "Hooks", "bind_connector", "resolve_connector"]

Hook = Callable[[ExtensionService], Any]


@runtime_checkable
class Connector(Protocol):
    """Connects a service; raise on failure. `disconnect(service)` and `ping(service)` are optional.

    A connector that reports heartbeats and errors itself (e.g. `lifecycle.connectors`) may also
    have `bind(manager)`: each manager it is given to calls it once with itself.
    """

    def connect(self, service: ExtensionService) -> None: ...


@dataclass(frozen=True, slots=True)
class Hooks:
    """The callables found on a connector; `disconnect` and `ping` may be missing."""

    connect: Hook
    disconnect: Hook | None = None
    ping: Hook | None = None


def _method(obj: object, name: str) -> Hook | None:
    hook = getattr(obj, name, None)
    if hook is None:
        return None
    if not callable(hook):
        raise TypeError(f"connector.{name} must be callable, not {type(hook).__name__}")
    return hook  # type: ignore[no-any-return]


def resolve_connector(connector: object) -> Hooks | None:
    """Hooks for `connector`: an object with `connect`, or a plain callable used as `connect`."""
    if connector is None:
        return None
    connect = _method(connector, "connect")
    if connect is None:
        if not callable(connector):
            raise TypeError(
                f"connector must have a connect(service) method or be callable, not {type(connector).__name__}"
            )
        return Hooks(connect=connector)
    return Hooks(connect, _method(connector, "disconnect"), _method(connector, "ping"))


def bind_connector(connector: object, manager: object) -> None:
    """Hand `manager` to `connector.bind` if the connector has one (it reports back to the manager)."""
    bind = getattr(connector, "bind", None)
    if connector is not None and callable(bind):
        bind(manager)
