"""`WebSocketConnector`: the line protocol over WebSocket messages, with the `websockets` Sans-I/O client.

The optional extra ``service-lifecycle[websocket]`` installs `websockets`. Its Sans-I/O layer
(`websockets.client.ClientProtocol`) parses frames and answers control frames while the socket
stays ours, so a WebSocket costs no thread of its own: the shared I/O thread reads it like any
other socket. The opening handshake runs in `connect`, bounded by `timeout_secs`.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import urllib.parse
from typing import TYPE_CHECKING, Any

from .._text import MASK, mask_credentials, quote
from ..errors import ConnectionFailed
from ..model import ExtensionService
from ._base import LineConnector
from ._channel import Channel
from ._loop import real_now
from .sockets import SocketChannel

if TYPE_CHECKING:
    from ..manager import LifecycleManager

__all__ = ["WebSocketConnector"]

_READ_SIZE = 65536
EXTRA = "pip install 'service-lifecycle[websocket]'"


def _client() -> tuple[Any, Any]:
    try:
        from websockets.client import ClientProtocol
        from websockets.uri import parse_uri
    except ImportError:
        return None, None
    return ClientProtocol, parse_uri


class WebSocketConnector(LineConnector):
    """Keeps a WEBSOCKET service connected: `transport.address` is a ``ws://``/``wss://`` URL, or a host with `port`.

    Each text or binary message carries one or more protocol lines. Without the
    ``service-lifecycle[websocket]`` extra, `connect` raises `ConnectionFailed` saying so.
    """

    transport = "connection"

    def _open(self, service: ExtensionService, manager: LifecycleManager) -> Channel:
        protocol_class, parse_uri = _client()
        if protocol_class is None:
            raise ConnectionFailed(
                f"service {service.name!r} uses the WEBSOCKET transport, which needs the optional extra: {EXTRA}"
            )
        url = _url(service)
        problem = _url_problem(url)
        if problem:
            raise ValueError(f"service {service.name!r}: the WEBSOCKET address {quote(mask_credentials(url))} "
                             f"{problem}")
        try:
            return self._connect(service, manager, protocol_class, parse_uri(url))
        except Exception as exc:
            masked = _masked(exc, url)
            if masked is exc:
                raise
        # Raised outside the handler, so the original (which holds the password) is not its context either.
        raise masked

    def _connect(self, service: ExtensionService, manager: LifecycleManager, protocol_class: Any,
                 uri: Any) -> Channel:
        timeout = service.transport.timeout_secs
        deadline = real_now() + timeout
        sock = socket.create_connection((uri.host, uri.port), timeout=timeout)
        try:
            if uri.secure:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=uri.host)
            protocol = protocol_class(uri)
            early = _handshake(sock, protocol, deadline)
        except BaseException:
            sock.close()
            raise
        channel = WebSocketChannel(manager, service, self._current, sock, _peer(uri.host, uri.port), protocol)
        channel.pending = early
        return channel


def _url(service: ExtensionService) -> str:
    transport = service.transport
    address = transport.address
    if not address:
        raise ValueError(f"service {service.name!r}: TransportConfig.address (a ws:// URL or a host) is required "
                         f"for WEBSOCKET")
    if "://" in address:
        return address
    if transport.port is None:
        raise ValueError(f"service {service.name!r}: TransportConfig.port is required when address is a host")
    return f"ws://{address}:{transport.port}/"


def _url_problem(url: str) -> str:
    """What is wrong with a ws:// URL ("" if nothing), in words that repeat no part of it but the scheme."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in ("ws", "wss"):
        return "must be a ws:// or wss:// URL (or a host with TransportConfig.port)"
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in rest[len(authority):]:
        return "has an '@' after the host: a password holding '/', '?' or '#' must be percent-encoded"
    try:
        parts = urllib.parse.urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "has an invalid host or port (a port is a number from 1 to 65535; IPv6 goes in brackets)"
    if not host:
        return "names no host"
    if port == 0:
        return "has port 0 (a port is a number from 1 to 65535)"
    return ""


def _masked(error: Exception, url: str) -> Exception:
    """`error` itself, or, when its text or any chained error's text holds the URL's credentials, a
    `ConnectionError` of the same text with them masked and no chain (which would repeat them)."""
    userinfo = urllib.parse.urlsplit(url).netloc.rpartition("@")[0]
    if not userinfo:
        return error
    secrets = {userinfo, urllib.parse.unquote(userinfo)}
    for part in userinfo.split(":", 1)[1:]:
        secrets.update({part, urllib.parse.unquote(part)})
    secrets.discard("")
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if not any(secret in str(link) or secret in repr(link) for link in chain for secret in secrets):
        return error
    text = mask_credentials(str(error))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return ConnectionError(f"{type(error).__name__}: {text}" if text else type(error).__name__)


def _peer(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _handshake(sock: socket.socket, protocol: Any, deadline: float) -> list[Any]:
    """Run the opening handshake on the blocking socket; return frames that came with the response."""
    protocol.send_request(protocol.connect())
    for data in protocol.data_to_send():
        sock.sendall(data)
    while True:
        left = deadline - real_now()
        if left <= 0:
            raise TimeoutError("the WebSocket handshake did not finish in time")
        sock.settimeout(left)
        data = sock.recv(_READ_SIZE)
        if data:
            protocol.receive_data(data)
        else:
            protocol.receive_eof()
        events = protocol.events_received()
        if protocol.handshake_exc is not None:
            raise protocol.handshake_exc
        if events:
            return list(events[1:])  # the first is the handshake response
        if not data:
            raise ConnectionError("the server closed the connection during the WebSocket handshake")


class WebSocketChannel(SocketChannel):
    """A socket whose bytes go through the WebSocket protocol; messages are split into lines."""

    kind = "websocket"

    def __init__(self, manager: LifecycleManager, service: ExtensionService, current: object,
                 sock: socket.socket, peer: str, protocol: Any) -> None:
        super().__init__(manager, service, current, sock, peer)
        self.protocol = protocol
        self.pending: list[Any] = []

    def start(self) -> None:
        super().start()
        early, self.pending = self.pending, []
        self._deliver(early)

    def _on_readable(self, fd: int, stream: str) -> None:
        data = self._read(fd)
        if data is None:
            return
        with self.cond:  # the protocol object is shared with pings sent from other threads
            if data:
                self.protocol.receive_data(data)
            else:
                self.protocol.receive_eof()
            events = self.protocol.events_received()
            self._flush_protocol()
            closed = not data or self.protocol.close_expected() or self.protocol.state.name == "CLOSED"
        self._deliver(events)
        if closed:
            self._on_eof(fd, stream)

    def _read(self, fd: int) -> bytes | None:
        data = super()._read(fd)
        if data and isinstance(self.sock, ssl.SSLSocket):
            with contextlib.suppress(ssl.SSLWantReadError):
                while self.sock.pending():  # already decrypted: select() would not report it
                    data += self.sock.recv(self.sock.pending())
        return data

    def _deliver(self, events: list[Any]) -> None:
        for event in events:
            opcode = getattr(getattr(event, "opcode", None), "name", "")
            if opcode in ("TEXT", "BINARY"):
                for line in bytes(event.data).split(b"\n"):
                    self._line(line, "websocket")

    def _flush_protocol(self) -> None:
        """Under `cond`: send what the protocol has queued (pongs, close frames, our messages)."""
        for data in self.protocol.data_to_send():
            if data and not self.closed:
                with contextlib.suppress(OSError):
                    self.sock.sendall(data)

    def _write(self, data: bytes) -> None:
        with self.cond:
            if self.closed:
                raise ConnectionError(f"the connection of {self.label()} is closed")
            self.protocol.send_text(data.rstrip(b"\n"))
            for chunk in self.protocol.data_to_send():
                if chunk:
                    self.sock.sendall(chunk)

    def begin_terminate(self) -> None:
        with self.cond, contextlib.suppress(Exception):
            self.protocol.send_close()
            self._flush_protocol()
        super().begin_terminate()
