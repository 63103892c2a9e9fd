"""No password in any message: connector addresses with credentials are masked in errors, logs and events.

Real sockets and a real websockets server (with HTTP Basic authentication) on loopback.
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from transport_support import FAST, WAIT

from lifecycle import (
    ConnectionFailed,
    ExtensionService,
    LifecycleManager,
    ServiceStatus,
    TransportConfig,
    TransportType,
    signals,
)
from lifecycle._text import mask_address, mask_credentials
from lifecycle.connectors import TcpConnector, TransportConnector, WebSocketConnector
from lifecycle.events import Error, Heartbeat, ReconnectFailed

sync_server = pytest.importorskip("websockets.sync.server", reason="the websocket extra is not installed")

SECRET = "s3cr3t-Pw9"
PIECES = (SECRET, SECRET[:5], SECRET[5:])  # a password cut by an unencoded "/" must not leak in halves either


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chain(error: BaseException) -> list[BaseException]:
    """The error and every error chained to it (cause and context), each once."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        item = todo.pop()
        if item is not None and all(item is not seen for seen in found):
            found.append(item)
            todo += [item.__cause__, item.__context__]
    return found


def record_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Each record as a handler writes it (message and traceback), through the standard formatter."""
    formatter = logging.Formatter()
    return [formatter.format(record) for record in caplog.records]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for piece in PIECES:
            assert piece not in text, text


def assert_clean(error: BaseException, caplog: pytest.LogCaptureFixture, events: Any = None) -> None:
    links = chain(error)
    assert_no_secret(*(str(link) for link in links), *(repr(link) for link in links), *record_texts(caplog))
    if events is not None:
        assert_no_secret(*(repr(event) for event in events.events))


@pytest.fixture
def lifecycle_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="lifecycle")
    return caplog


@pytest.fixture
def manager_for() -> Iterator[Callable[[object], LifecycleManager]]:
    managers: list[LifecycleManager] = []

    def make(connector: object) -> LifecycleManager:
        managers.append(LifecycleManager(config=FAST, connector=connector))
        return managers[-1]

    yield make
    for manager in managers:
        manager.shutdown()


def websocket(address: str, port: int | None = None, timeout: float = 2.0) -> ExtensionService:
    return ExtensionService("ws", "1", transport=TransportConfig(
        transport_type=TransportType.WEBSOCKET, address=address, port=port, timeout_secs=timeout))


# -- the helper -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("ws://user:pw@127.0.0.1:9/x", "ws://user:***@127.0.0.1:9/x"),
        ("redis://:pw@redis:6379/0", "redis://:***@redis:6379/0"),
        ("wss://user:p@ss@host/", "wss://user:***@host/"),  # an "@" in the password
        ("ws://user:pa/ss@host/", "ws://user:***@host/"),  # an unencoded "/" in the password
        ("ws://token@host/", "ws://***@host/"),  # a user name alone may be a token
        ("failed: 'ws://u:pw@h/' and 'redis://:pw@r/1'", "failed: 'ws://u:***@h/' and 'redis://:***@r/1'"),
        ("ws://host:80/path", "ws://host:80/path"),
        ("http://host/a@b", "http://host/a@b"),
        ("mail user@example.com", "mail user@example.com"),
    ],
)
def test_mask_credentials(text: str, masked: str) -> None:
    assert mask_credentials(text) == masked


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("user:pw@127.0.0.1:9", "user:***@127.0.0.1:9"),
        ("token@127.0.0.1:9", "***@127.0.0.1:9"),
        ("127.0.0.1:9", "127.0.0.1:9"),
        ("/run/ext@1.sock", "/run/ext@1.sock"),  # a path keeps its text
        ("ws://user:pw@h/", "ws://user:***@h/"),
    ],
)
def test_mask_address(address: str, masked: str) -> None:
    assert mask_address(address) == masked


# -- WebSocketConnector (alone and through TransportConnector) that cannot connect ------------------

CONNECTORS = {"websocket": WebSocketConnector, "transport": TransportConnector}


@pytest.mark.parametrize("make_connector", CONNECTORS.values(), ids=list(CONNECTORS))
@pytest.mark.parametrize(
    "address",
    [
        "ws://user:{secret}@127.0.0.1:{port}/ext",  # refused
        "ws://{secret}@127.0.0.1:{port}/ext",  # a token as the user name
        "ws://user:{secret}@127.0.0.1:99999/ext",  # port out of range
        "ws://user:{secret}@127.0.0.1:port/ext",
        "ws://user:{secret}@[::1/ext",
        "http://user:{secret}@127.0.0.1:{port}/ext",  # not a WebSocket URL
        "ws://user:{half}/{rest}@127.0.0.1:{port}/ext",  # an unencoded "/" in the password
        "ws://user:{secret}@no-such-host.invalid:{port}/",
    ],
)
def test_a_websocket_address_with_credentials_never_reaches_a_message(
        make_connector: Callable[[], object], address: str, manager_for: Callable[[object], LifecycleManager],
        lifecycle_log: pytest.LogCaptureFixture, record: Any) -> None:
    url = address.format(secret=SECRET, half=SECRET[:5], rest=SECRET[5:], port=closed_port())
    manager = manager_for(make_connector())
    events = record(manager)
    with pytest.raises(ConnectionFailed) as caught:
        manager.start_service(websocket(url))
    assert_clean(caught.value, lifecycle_log, events)
    assert manager.count() == 0


def test_a_host_address_with_credentials_and_a_port_is_masked_too(
        manager_for: Callable[[object], LifecycleManager], lifecycle_log: pytest.LogCaptureFixture) -> None:
    manager = manager_for(WebSocketConnector())
    with pytest.raises(ConnectionFailed) as caught:
        manager.start_service(websocket(f"user:{SECRET}@127.0.0.1", port=0))
    assert "user:***@127.0.0.1:0" in str(caught.value.__cause__)
    assert_clean(caught.value, lifecycle_log)


def test_a_tcp_address_with_credentials(
        manager_for: Callable[[object], LifecycleManager], lifecycle_log: pytest.LogCaptureFixture) -> None:
    manager = manager_for(TcpConnector())
    service = ExtensionService("line", "1", transport=TransportConfig(
        transport_type=TransportType.TCP, address=f"user:{SECRET}@127.0.0.1", port=closed_port(), timeout_secs=2.0))
    with pytest.raises(ConnectionFailed) as caught:
        manager.start_service(service)
    assert_clean(caught.value, lifecycle_log)


# -- a real server that wants the credentials ---------------------------------------------------------


class AuthServer:
    """A websockets server behind HTTP Basic authentication (user / SECRET) that sends heartbeats."""

    def __init__(self) -> None:
        self.server = sync_server.serve(self._handle, "127.0.0.1", 0,
                                        process_request=sync_server.basic_auth(credentials=("user", SECRET)))
        self.port = int(self.server.socket.getsockname()[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="test-ws-auth", daemon=True)
        self.thread.start()

    def url(self, password: str = SECRET) -> str:
        return f"ws://user:{password}@127.0.0.1:{self.port}/ext"

    def close(self) -> None:
        self.server.shutdown()
        self.thread.join(WAIT)

    def _handle(self, ws: Any) -> None:
        while True:
            try:
                ws.send("heartbeat")
                ws.recv(timeout=0.05)
            except TimeoutError:
                continue
            except Exception:
                return


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    server = AuthServer()
    yield server
    server.close()


def test_the_credentials_reach_the_server_and_no_log_line(
        auth_server: AuthServer, manager_for: Callable[[object], LifecycleManager],
        lifecycle_log: pytest.LogCaptureFixture, record: Any) -> None:
    manager = manager_for(TransportConnector())
    events = record(manager)
    sid = manager.start_service(websocket(auth_server.url()))
    assert events.wait_for(lambda es: sum(isinstance(e, Heartbeat) for e in es) >= 3, timeout=WAIT)
    assert manager.get_status(sid) is ServiceStatus.RUNNING
    manager.stop_service(sid)
    assert_no_secret(*record_texts(lifecycle_log), *(repr(event) for event in events.events))


def test_a_refused_password_is_not_repeated(
        auth_server: AuthServer, manager_for: Callable[[object], LifecycleManager],
        lifecycle_log: pytest.LogCaptureFixture) -> None:
    manager = manager_for(WebSocketConnector())
    wrong = f"wrong-{SECRET}"
    with pytest.raises(ConnectionFailed, match="401") as caught:
        manager.start_service(websocket(auth_server.url(wrong)))
    assert_clean(caught.value, lifecycle_log)
    assert all(wrong not in text for text in record_texts(lifecycle_log))


def test_failed_reconnects_log_no_password(
        manager_for: Callable[[object], LifecycleManager], lifecycle_log: pytest.LogCaptureFixture,
        record: Any) -> None:
    server = AuthServer()
    manager = manager_for(WebSocketConnector())
    events = record(manager)
    try:
        manager.start_service(websocket(server.url(), timeout=0.5))
        assert events.wait_for(lambda es: any(isinstance(e, Heartbeat) for e in es), timeout=WAIT)
    finally:
        server.close()  # the connection drops; every reconnect is refused until the attempts run out
    assert events.wait_for(lambda es: any(isinstance(e, ReconnectFailed) for e in es), timeout=WAIT * 2)
    assert_no_secret(*record_texts(lifecycle_log), *(repr(event) for event in events.events))


# -- any address: a connector of the user's, an error report, a receiver, an extension's output ------


class Lines(logging.Handler):
    """Collects the "lifecycle" logger's lines as a handler writes them; wakes a waiter at each one."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.cond:
            self.texts.append(self.format(record))
            self.cond.notify_all()

    def wait_for(self, text: str) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: any(text in line for line in self.texts), WAIT), self.texts


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("lifecycle")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def failing_connect(service: ExtensionService) -> None:
    raise ConnectionError(f"cannot reach ws://user:{SECRET}@127.0.0.1:9/ext (refused)")


def test_a_users_connector_naming_its_address_is_masked_in_the_error_the_events_and_the_logs(
        lines: Lines, record: Any) -> None:
    manager = LifecycleManager(config=FAST)
    events = record(manager)
    try:
        with pytest.raises(ConnectionFailed) as caught:
            manager.start_service(ExtensionService("mine", "1"), connector=failing_connect)
        assert "ws://user:***@127.0.0.1:9/ext" in str(caught.value)
        assert_no_secret(str(caught.value), repr(caught.value))  # its cause is the user's own exception
        sid = manager.start_service(ExtensionService("reporting", "1"))
        manager.handle_error(sid, f"lost ws://user:{SECRET}@127.0.0.1:9/ext")
        manager.declare(ExtensionService("declared", "1"), connector=failing_connect)  # logged, then retried
        lines.wait_for("declared service 'declared' is not registered yet")
    finally:
        manager.shutdown()
    (error,) = [e for e in events.events if isinstance(e, Error)]
    assert error.error == "lost ws://user:***@127.0.0.1:9/ext"
    assert len([line for line in lines.texts if "ws://user:***@127.0.0.1:9/ext" in line]) >= 2  # reported, declared
    assert_no_secret(*lines.texts, *(repr(event) for event in events.events))


def test_a_traceback_the_library_logs_is_masked(lines: Lines) -> None:
    """A receiver that raises is logged with its traceback, whose last line repeats its message."""

    def receiver(sender: object, **kwargs: object) -> None:
        raise RuntimeError(f"could not post to https://bot:{SECRET}@hooks.example/alert")

    manager = LifecycleManager(config=FAST)
    try:
        with signals.service_started.connected_to(receiver, sender=manager):
            manager.start_service(ExtensionService("watched", "1"))
    finally:
        manager.shutdown()
    assert any("RuntimeError: could not post to https://bot:***@hooks.example/alert" in line for line in lines.texts)
    assert_no_secret(*lines.texts)


def test_a_line_an_extension_prints_with_an_address_is_logged_masked(
        lines: Lines, manager_for: Callable[[object], LifecycleManager]) -> None:
    script = (f"import sys, time; print('connecting to ws://user:{SECRET}@127.0.0.1:9/ext', file=sys.stderr, "
              "flush=True); print('heartbeat', flush=True); time.sleep(60)")
    manager = manager_for(TransportConnector())
    manager.start_service(ExtensionService("printer", "1", transport=TransportConfig(
        command=sys.executable, args=["-c", script], timeout_secs=WAIT)))
    lines.wait_for("connecting to ws://user:***@127.0.0.1:9/ext")
    assert_no_secret(*lines.texts)


@pytest.mark.parametrize(
    "make",
    [
        lambda url: TransportConfig(transport_type=url),  # an address put in the wrong field
        lambda url: TransportConfig(host=url),
        lambda url: ExtensionService("x", "1", transport=TransportConfig(address=url, port=70000)),
        lambda url: LifecycleManager(autostart=False).stop_service(url),  # an unknown id
    ],
    ids=["transport_type", "host", "port", "unknown-id"],
)
def test_a_value_an_error_repeats_has_its_credentials_masked(make: Callable[[str], object]) -> None:
    with pytest.raises((ValueError, TypeError, LookupError)) as caught:
        make(f"ws://user:{SECRET}@127.0.0.1:9/ext")
    assert_no_secret(str(caught.value), repr(caught.value))


def test_a_setting_an_error_repeats_has_its_credentials_masked() -> None:
    from flask import Flask

    from lifecycle.contrib import ConfigurationError
    from lifecycle.contrib.flask import Lifecycle

    app = Flask("masked")
    app.config.update(LIFECYCLE_AUTOSTART=False, LIFECYCLE_AUTH=f"https://bot:{SECRET}@auth.example/check",
                      LIFECYCLE_SERVICES=[{"name": "x", "version": "1", "transport": {
                          "transport_type": f"ws://user:{SECRET}@127.0.0.1:9/ext"}}])
    with pytest.raises(ConfigurationError) as caught:
        Lifecycle(app)
    assert len(caught.value.problems) == 2 and "***@" in str(caught.value)
    assert_no_secret(str(caught.value), repr(caught.value), *(message for _, message in caught.value.problems))
