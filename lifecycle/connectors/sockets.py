"""`TcpConnector` and `UnixConnector`: a stream socket to the service, speaking the line protocol.

`connect` opens the socket within `transport.timeout_secs` in the caller's thread; from then on
the I/O thread reads it. EOF or a socket error is reported to the manager at once.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import TYPE_CHECKING

from .._text import mask_address
from ..model import ExtensionService
from ._base import LineConnector
from ._channel import Channel

if TYPE_CHECKING:
    from ..manager import LifecycleManager

__all__ = ["SocketChannel", "TcpConnector", "UnixConnector"]

_READ_SIZE = 65536


class TcpConnector(LineConnector):
    """Keeps a TCP service connected: `transport.address` (host) and `transport.port`."""

    transport = "connection"

    def _open(self, service: ExtensionService, manager: LifecycleManager) -> Channel:
        transport = service.transport
        if not transport.address:
            raise ValueError(f"service {service.name!r}: TransportConfig.address (the host) is required for TCP")
        if transport.port is None:
            raise ValueError(f"service {service.name!r}: TransportConfig.port is required for TCP")
        sock = socket.create_connection((transport.address, transport.port), timeout=transport.timeout_secs)
        peer = mask_address(f"{transport.address}:{transport.port}")
        return SocketChannel(manager, service, self._current, sock, peer)


class UnixConnector(LineConnector):
    """Keeps a UNIX-socket service connected: the socket's path is `transport.address`."""

    transport = "connection"

    def _open(self, service: ExtensionService, manager: LifecycleManager) -> Channel:
        path = service.transport.address
        if not path:
            raise ValueError(f"service {service.name!r}: TransportConfig.address (the socket path) is required "
                             f"for UNIX")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(service.transport.timeout_secs)
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        return SocketChannel(manager, service, self._current, sock, mask_address(path))


class SocketChannel(Channel):
    """One connected stream socket, non-blocking once handed to the I/O thread."""

    kind = "socket"

    def __init__(self, manager: LifecycleManager, service: ExtensionService, current: object,
                 sock: socket.socket, peer: str) -> None:
        super().__init__(manager, service, current)
        self.sock = sock
        self.detail = f", {peer}"
        self._error: OSError | None = None
        sock.setblocking(False)
        self._fd = sock.fileno()

    def start(self) -> None:
        if not self.closed:
            self.watch(self._fd, "socket")
            self.ready.set()

    def _read(self, fd: int) -> bytes | None:
        try:
            return self.sock.recv(_READ_SIZE)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
            return None  # nothing yet (for TLS: a record is not complete yet)
        except OSError as exc:
            self._error = exc
            return b""

    def _on_eof(self, fd: int, stream: str) -> None:
        if self._error is not None:
            self.end_by_itself(f"connection error: {self._error}")
        else:
            self.end_by_itself("connection closed by the peer")

    def _close_fds(self) -> None:
        with self.cond:  # so a writer never sends on a closed (and maybe reused) descriptor
            self.sock.close()

    def _write(self, data: bytes) -> None:
        with self.cond:
            if self.closed:
                raise ConnectionError(f"the connection of {self.label()} is closed")
            try:
                sent = self.sock.send(data)
            except BlockingIOError:
                sent = 0
        if sent != len(data):
            raise ConnectionError(f"the connection of {self.label()} cannot take more data")

    def begin_terminate(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def terminate(self, grace: float) -> None:
        self.begin_terminate()

    def forget_after_fork(self) -> None:
        # Closing our copy sends nothing: the parent's descriptor keeps the connection open.
        self.sock.close()
        self.closed = True
