"""Connectors for the model's transports: keep real extension processes and sockets alive.

    manager = LifecycleManager(connector=TransportConnector())

Every connector speaks the same line protocol with the extension (see `docs/transports.md`),
and one I/O thread per process serves all of them, whatever the number of services.
"""

from __future__ import annotations

from ._base import LineConnector
from .process import SubprocessConnector
from .sockets import TcpConnector, UnixConnector
from .transport import TransportConnector
from .websocket import WebSocketConnector

__all__ = [
    "LineConnector",
    "SubprocessConnector",
    "TcpConnector",
    "TransportConnector",
    "UnixConnector",
    "WebSocketConnector",
]
