"""`WebSocketConnector`: placeholder until the websocket extra is wired (see below)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConnectionFailed
from ..model import ExtensionService
from ._base import LineConnector
from ._channel import Channel

if TYPE_CHECKING:
    from ..manager import LifecycleManager

__all__ = ["WebSocketConnector"]


class WebSocketConnector(LineConnector):
    """Keeps a WEBSOCKET service connected (needs the ``service-lifecycle[websocket]`` extra)."""

    transport = "connection"

    def _open(self, service: ExtensionService, manager: LifecycleManager) -> Channel:
        raise ConnectionFailed(
            f"service {service.name!r} uses the WEBSOCKET transport, which needs the optional extra: "
            f"pip install 'service-lifecycle[websocket]'"
        )
