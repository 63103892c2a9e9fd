"""WebSocketConnector against a real websockets server on loopback, and without the extra."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest
from transport_support import FAST, WAIT

from lifecycle import (
    ConnectionFailed,
    ExtensionService,
    LifecycleManager,
    ServiceStatus,
    TransportConfig,
    TransportType,
)
from lifecycle.connectors import TransportConnector, WebSocketConnector
from lifecycle.events import Error, Heartbeat, HeartbeatTimeout, Reconnected

sync_server = pytest.importorskip("websockets.sync.server", reason="the websocket extra is not installed")


class WsServer:
    """A websockets server: heartbeats every 50 ms (unless `beat` is false), `pong` for `ping`."""

    def __init__(self, *, beat: bool = True) -> None:
        self.beat = beat
        self.drop = threading.Event()
        self.received: list[str] = []
        self.accepted = threading.Semaphore(0)
        self.server = sync_server.serve(self._handle, "127.0.0.1", 0)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-ws-server", daemon=True)
        self.thread.start()

    def service(self, name: str, *, url: bool = True) -> ExtensionService:
        address = f"ws://127.0.0.1:{self.port}/ext" if url else "127.0.0.1"
        return ExtensionService(name, "1", transport=TransportConfig(
            transport_type=TransportType.WEBSOCKET, address=address, port=None if url else self.port,
            timeout_secs=2.0))

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(WAIT)

    def _handle(self, ws) -> None:
        self.accepted.release()
        while not self.drop.is_set():
            try:
                if self.beat:
                    ws.send("heartbeat")
                message = ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            except Exception:
                return
            self.received.append(message)
            if message == "ping":
                ws.send("pong")
        self.drop.clear()
        ws.close()


@pytest.fixture
def ws_server() -> Iterator[WsServer]:
    server = WsServer()
    yield server
    server.close()


def test_websocket_heartbeats_a_drop_and_the_reconnect(ws_server, record):
    manager = LifecycleManager(config=FAST, connector=TransportConnector())
    events = record(manager)
    try:
        sid = manager.start_service(ws_server.service("ws"))
        assert events.wait_for(lambda es: sum(isinstance(e, Heartbeat) for e in es) >= 10, timeout=WAIT)
        assert ws_server.accepted.acquire(timeout=WAIT)
        ws_server.drop.set()
        assert events.wait_for(lambda es: any(isinstance(e, Reconnected) for e in es), timeout=WAIT)
        assert len(events.of(Error)) == 1 and events.of(HeartbeatTimeout) == []
        assert ws_server.accepted.acquire(timeout=WAIT)  # a second connection
        assert manager.get_status(sid) is ServiceStatus.RUNNING
    finally:
        manager.shutdown()


def test_websocket_ping_pong_with_a_host_and_port_address(record):
    server = WsServer(beat=False)
    manager = LifecycleManager(config=FAST, connector=WebSocketConnector(ping=True))
    events = record(manager)
    try:
        manager.start_service(server.service("ws", url=False))
        assert events.wait_for(lambda es: sum(isinstance(e, Heartbeat) for e in es) >= 10, timeout=WAIT * 2)
        assert events.of(HeartbeatTimeout) == [] and "ping" in server.received
    finally:
        manager.shutdown()
        server.close()


def test_without_the_extra_connecting_names_it(monkeypatch, record):
    monkeypatch.setitem(sys.modules, "websockets.client", None)  # import fails as if not installed
    manager = LifecycleManager(config=FAST, connector=TransportConnector())
    try:
        service = ExtensionService("ws", "1", transport=TransportConfig(
            transport_type=TransportType.WEBSOCKET, address="ws://127.0.0.1:9/"))
        with pytest.raises(ConnectionFailed, match=r"service-lifecycle\[websocket\]"):
            manager.start_service(service)
        assert manager.count() == 0
    finally:
        manager.shutdown()
