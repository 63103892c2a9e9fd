"""Shared by the transport tests: child services, a real loopback line server, and /proc checks."""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lifecycle import ExtensionService, LifecycleConfig, TransportConfig, TransportType
from lifecycle.connectors._loop import LOOP

CHILD = str(Path(__file__).parent / "extensions" / "child.py")
WAIT = 10.0  # generous: several Python children start on a shared two-core machine

FAST = LifecycleConfig(
    heartbeat_interval_secs=0.1,
    heartbeat_timeout_secs=0.5,
    max_reconnect_attempts=3,
    reconnect_delay_ms=100,
    max_reconnect_delay_ms=400,
    reconnect_backoff_multiplier=2.0,
    jitter=0.0,
)
"""Sub-second deadlines and retries; no jitter, so the reconnect delays are exact."""


def child_service(name: str, mode: str, *args: str, timeout: float = 5.0, **transport: object) -> ExtensionService:
    """A STDIO service running tests/extensions/child.py in `mode`."""
    config = TransportConfig(command=sys.executable, args=[CHILD, mode, *args], timeout_secs=timeout,
                             **transport)  # type: ignore[arg-type]
    return ExtensionService(name, "1", transport=config)


def shell_service(name: str, script: str, timeout: float = 5.0) -> ExtensionService:
    """A STDIO service run by /bin/sh: cheap enough to start hundreds."""
    return ExtensionService(name, "1", transport=TransportConfig(command="/bin/sh", args=["-c", script],
                                                                 timeout_secs=timeout))


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "condition") -> None:
    """Poll a condition that no event announces (a pid vanishing from /proc), bounded."""
    end = time.monotonic() + timeout
    pause = 0.001
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


# -- /proc -------------------------------------------------------------------------------------------


def proc_state(pid: int) -> str | None:
    """The process's state letter (R, S, Z, ...) or None if no such process exists."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _stat_fields(pid: str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def group_members(pgid: int) -> list[int]:
    """Pids in process group `pgid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(entry)
            if fields is not None and int(fields[2]) == pgid:
                found.append(int(entry))
    return found


def io_fds() -> list[str]:
    """This process's pipe, socket and pidfd descriptors (what a transport could leak).

    Garbage is collected first: an unreachable Popen or socket of an earlier test closes its
    descriptors only when the collector gets to it, which would otherwise happen at a random
    moment between two counts.
    """
    gc.collect()
    kinds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, closed meanwhile
        if target.startswith(("pipe:", "socket:", "anon_inode:[pidfd]", "anon_inode:[eventpoll]")):
            kinds.append(target)
    return sorted(kinds)


def loop_idle() -> None:
    """Wait until the transports' I/O thread has ended (it ends once nothing is watched)."""
    thread = LOOP.thread
    if thread is not None:
        thread.join(WAIT)
        assert not thread.is_alive(), "the I/O thread is still watching something"


# -- a real loopback server --------------------------------------------------------------------------


class LineServer:
    """A TCP or UNIX stream server on loopback speaking the line protocol, one thread per connection.

    `beat`: send `heartbeat` every so many seconds (None: never). `answer_pings`: reply `pong`.
    `lines` receives every line a client sends; `connections` counts accepted connections.
    """

    def __init__(self, *, unix_path: str | None = None, beat: float | None = 0.05, answer_pings: bool = True) -> None:
        if unix_path is None:
            self.sock = socket.create_server(("127.0.0.1", 0))
            self.port = self.sock.getsockname()[1]
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.sock.listen()
            self.port = 0
        self.path = unix_path
        self.beat = beat
        self.answer_pings = answer_pings
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.accepted = threading.Semaphore(0)
        self.connections = 0
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, name="test-line-server", daemon=True)]
        self._threads[0].start()

    def service(self, name: str, *, timeout: float = 2.0) -> ExtensionService:
        """A service pointing at this server."""
        if self.path is None:
            transport = TransportConfig(transport_type=TransportType.TCP, address="127.0.0.1", port=self.port,
                                        timeout_secs=timeout)
        else:
            transport = TransportConfig(transport_type=TransportType.UNIX, address=self.path, timeout_secs=timeout)
        return ExtensionService(name, "1", transport=transport)

    def wait_accepted(self, count: int = 1) -> None:
        """Wait until `count` more connections were accepted."""
        for _ in range(count):
            assert self.accepted.acquire(timeout=WAIT), "no connection accepted in time"

    def drop_all(self) -> None:
        """Close every client connection from the server side."""
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()

    def send_all(self, data: bytes) -> None:
        """Send `data` to every connected client."""
        with self._lock:
            for client in self._clients:
                client.sendall(data)

    def close(self) -> None:
        """Stop accepting, drop every client, join the threads."""
        self._stop.set()
        self.sock.close()
        self.drop_all()
        for thread in self._threads:
            thread.join(WAIT)

    def _accept(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self._clients.append(client)
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(client,), name="test-line-client", daemon=True)
            self._threads.append(thread)
            thread.start()
            self.accepted.release()

    def _serve(self, client: socket.socket) -> None:
        try:
            client.settimeout(self.beat if self.beat is not None else 0.05)
        except OSError:
            return  # dropped (closed) before this thread got going
        pending = b""
        while not self._stop.is_set():
            try:
                if self.beat is not None:
                    client.sendall(b"heartbeat\n")
                data = client.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self.lines.put(line)
                if line == b"ping" and self.answer_pings:
                    try:
                        client.sendall(b"pong\n")
                    except OSError:
                        return
