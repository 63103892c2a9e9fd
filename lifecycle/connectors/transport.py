"""`TransportConnector`: one connector for any mix of services, dispatching on the transport type."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..model import ExtensionService, TransportType
from ._base import LineConnector
from .process import SubprocessConnector
from .sockets import TcpConnector, UnixConnector
from .websocket import WebSocketConnector

if TYPE_CHECKING:
    from ..manager import LifecycleManager

__all__ = ["TransportConnector"]


class TransportConnector:
    """Connects each service with the connector for its `transport.transport_type`.

    STDIO: `SubprocessConnector`; TCP: `TcpConnector`; UNIX: `UnixConnector`; WEBSOCKET:
    `WebSocketConnector` (needs the ``service-lifecycle[websocket]`` extra). `ping` is passed to each.
    """

    def __init__(self, *, ping: bool = False) -> None:
        if not isinstance(ping, bool):
            raise TypeError(f"ping must be a bool, not {type(ping).__name__}")
        self._pinging = ping
        self._by_type: dict[TransportType, LineConnector] = {
            TransportType.STDIO: SubprocessConnector(ping=ping),
            TransportType.TCP: TcpConnector(ping=ping),
            TransportType.UNIX: UnixConnector(ping=ping),
            TransportType.WEBSOCKET: WebSocketConnector(ping=ping),
        }

    def __repr__(self) -> str:
        return f"<TransportConnector channels={self.channels()} ping={self._pinging}>"

    def connector_for(self, service: ExtensionService) -> LineConnector:
        """The connector that handles `service`'s transport."""
        return self._by_type[service.transport.transport_type]

    def bind(self, manager: LifecycleManager) -> None:
        """Called by `LifecycleManager` with itself; passed on to every transport's connector."""
        for connector in self._by_type.values():
            connector.bind(manager)

    def connect(self, service: ExtensionService) -> None:
        """Connect `service` with its transport's connector."""
        self.connector_for(service).connect(service)

    def disconnect(self, service: ExtensionService) -> None:
        """Disconnect `service` with its transport's connector."""
        self.connector_for(service).disconnect(service)

    @property
    def ping(self) -> Callable[[ExtensionService], None] | None:
        """The ping hook when built with ``ping=True``, else None."""
        return self._ping if self._pinging else None

    def _ping(self, service: ExtensionService) -> None:
        hook = self.connector_for(service).ping
        assert hook is not None
        hook(service)

    def owns(self, service_id: str) -> bool:
        """True if this process opened the service's connection."""
        return any(connector.owns(service_id) for connector in self._by_type.values())

    def channels(self) -> int:
        """How many services are connected in this process."""
        return sum(connector.channels() for connector in self._by_type.values())
