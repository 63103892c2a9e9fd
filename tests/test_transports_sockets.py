"""TcpConnector, UnixConnector and TransportConnector against real loopback servers."""

from __future__ import annotations

import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from transport_support import FAST, WAIT, LineServer, child_service, io_fds, loop_idle

from lifecycle import (
    ConnectionFailed,
    ExtensionService,
    LifecycleManager,
    ServiceStatus,
    TransportConfig,
    TransportType,
)
from lifecycle.connectors import TcpConnector, TransportConnector, UnixConnector
from lifecycle.events import Error, Heartbeat, HeartbeatTimeout, Reconnected, Reconnecting
from lifecycle.testing import EventRecorder


@pytest.fixture
def server() -> Iterator[LineServer]:
    srv = LineServer()
    yield srv
    srv.close()


@pytest.fixture
def unix_path() -> Iterator[str]:
    # A short directory: a UNIX socket path must fit in 108 bytes.
    with tempfile.TemporaryDirectory(prefix="lc-", dir="/tmp") as folder:
        yield str(Path(folder) / "ext.sock")


def manager_with(connector: object, record: Callable[[LifecycleManager], EventRecorder]
                 ) -> tuple[LifecycleManager, EventRecorder]:
    manager = LifecycleManager(config=FAST, connector=connector)
    return manager, record(manager)


def test_heartbeat_lines_from_a_tcp_peer_keep_the_service_running(server, record):
    manager, events = manager_with(TcpConnector(), record)
    try:
        sid = manager.start_service(server.service("tcp"))
        assert events.wait_for(lambda es: sum(isinstance(e, Heartbeat) for e in es) >= 20, timeout=WAIT)
        assert manager.get_status(sid) is ServiceStatus.RUNNING
        assert events.of(HeartbeatTimeout) == []
    finally:
        manager.shutdown()


def test_a_dropped_tcp_connection_is_an_error_and_is_reconnected(server, record):
    manager, events = manager_with(TcpConnector(), record)
    try:
        sid = manager.start_service(server.service("tcp"))
        server.wait_accepted()
        server.drop_all()
        assert events.wait_for(lambda es: any(isinstance(e, Reconnected) for e in es), timeout=WAIT)
        errors = events.of(Error)
        assert len(errors) == 1 and "closed by the peer" in errors[0].error
        assert [e.attempt for e in events.of(Reconnecting)] == [1]
        assert events.of(HeartbeatTimeout) == []  # reported at once, not found at the deadline
        server.wait_accepted()  # the reconnect opened a second connection
        assert server.connections == 2 and manager.get_status(sid) is ServiceStatus.RUNNING
    finally:
        manager.shutdown()


def test_ping_is_answered_by_pong_over_tcp_and_counts_as_a_heartbeat(record):
    server = LineServer(beat=None)  # answers pings, never sends a heartbeat of its own
    manager, events = manager_with(TcpConnector(ping=True), record)
    try:
        sid = manager.start_service(server.service("pinged"))
        # Pings every 0.1 s keep a 0.5 s deadline from ever firing: many timeouts' worth of beats.
        assert events.wait_for(lambda es: sum(isinstance(e, Heartbeat) for e in es) >= 20, timeout=WAIT * 2)
        assert events.of(HeartbeatTimeout) == []
        assert manager.get_status(sid) is ServiceStatus.RUNNING
        assert server.lines.get(timeout=WAIT) == b"ping"
    finally:
        manager.shutdown()
        server.close()


def test_a_peer_that_does_not_answer_pings_times_out(record):
    server = LineServer(beat=None, answer_pings=False)
    manager, events = manager_with(TcpConnector(ping=True), record)
    try:
        manager.start_service(server.service("deaf", timeout=0.2))
        assert events.wait_for(lambda es: any(isinstance(e, HeartbeatTimeout) for e in es), timeout=WAIT)
        assert events.of(Heartbeat) == []
    finally:
        manager.shutdown()
        server.close()


def test_the_host_answers_a_peers_ping_with_pong(server, record):
    manager, _events = manager_with(TcpConnector(), record)
    try:
        manager.start_service(server.service("asks"))
        server.wait_accepted()
        server.send_all(b"ping\n")
        assert server.lines.get(timeout=WAIT) == b"pong"
    finally:
        manager.shutdown()


def test_unix_socket_heartbeats_drop_and_reconnect(unix_path, record):
    server = LineServer(unix_path=unix_path)
    manager, events = manager_with(UnixConnector(), record)
    try:
        sid = manager.start_service(server.service("unix"))
        assert events.wait_for(lambda es: any(isinstance(e, Heartbeat) for e in es), timeout=WAIT)
        server.wait_accepted()
        server.drop_all()
        assert events.wait_for(lambda es: any(isinstance(e, Reconnected) for e in es), timeout=WAIT)
        assert manager.get_status(sid) is ServiceStatus.RUNNING
    finally:
        manager.shutdown()
        server.close()


def test_refused_connections_fail_the_start_and_reconnects_back_off(record):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    manager, _events = manager_with(TcpConnector(), record)
    try:
        service = ExtensionService("nobody", "1", transport=TransportConfig(
            transport_type=TransportType.TCP, address="127.0.0.1", port=port, timeout_secs=1.0))
        with pytest.raises(ConnectionFailed, match="nobody") as caught:
            manager.start_service(service)
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)
        assert manager.count() == 0
    finally:
        manager.shutdown()


@pytest.mark.parametrize(("transport", "field"), [
    (TransportConfig(transport_type=TransportType.TCP, port=1), "address"),
    (TransportConfig(transport_type=TransportType.TCP, address="127.0.0.1"), "port"),
    (TransportConfig(transport_type=TransportType.UNIX), "address"),
])
def test_missing_socket_settings_are_named(transport, field, record):
    manager = LifecycleManager(config=FAST, connector=TransportConnector())
    try:
        with pytest.raises(ConnectionFailed, match=rf"TransportConfig\.{field}"):
            manager.start_service(ExtensionService("incomplete", "1", transport=transport))
        assert manager.count() == 0
    finally:
        manager.shutdown()


def test_transport_connector_serves_a_mix_and_closes_everything(server, unix_path, record):
    unix_server = LineServer(unix_path=unix_path)
    loop_idle()
    fds_before = io_fds()
    threads_before = set(threading.enumerate())
    connector = TransportConnector()
    manager, events = manager_with(connector, record)
    try:
        ids = [
            manager.start_service(child_service("stdio", "steady")),
            manager.start_service(server.service("tcp")),
            manager.start_service(unix_server.service("unix")),
        ]
        assert events.wait_for(lambda es: {e.service_id for e in es if isinstance(e, Heartbeat)} == set(ids),
                               timeout=WAIT)
        assert connector.channels() == 3 and all(connector.owns(i) for i in ids)
        io_threads = [t for t in threading.enumerate() if t.name == "lifecycle-io"]
        assert len(io_threads) == 1  # one I/O thread for every transport
        manager.shutdown()
        assert connector.channels() == 0
        loop_idle()
        server.drop_all()
        unix_server.drop_all()
        assert io_fds() == fds_before
        assert [t for t in threading.enumerate() if t not in threads_before and t.name.startswith("lifecycle")] == []
    finally:
        manager.shutdown()
        unix_server.close()
