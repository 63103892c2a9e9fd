"""A new owner ends the child an earlier owner recorded on its host before it spawns, and only that one.

The earlier owner is a token whose ownership ran out (as a paused or dead member's does); what it
recorded ('host,owner pid,owner start,child pid,child start') names real processes. The new
owner's child is a shell that notes whether the leftover is still alive as it starts, then runs
tests/extensions/child.py.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis_server as servers
from transport_support import CHILD, WAIT, proc_state, wait_until

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, TransportConfig
from lifecycle.connectors import SubprocessConnector
from lifecycle.engine.leftover import start_time
from lifecycle.fleet import SharedRegistry
from lifecycle.shared_memory import SharedMemoryRegistry

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="checks processes through /proc")

TTL = 1.0
EARLIER_TTL = 0.2  # the earlier owner's ownership: run out before the new member asks
CONFIG = LifecycleConfig(heartbeat_interval_secs=0.2, heartbeat_timeout_secs=3.0, reconnect_delay_ms=50,
                         max_reconnect_delay_ms=100, max_reconnect_attempts=3, jitter=0.0)
HOST = "alpha"


def _alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z")


@pytest.fixture
def leftover() -> Iterator[int]:
    """A live process that is no child of the test (as a dead owner's child is adopted by init); its pid."""
    shell = subprocess.run(["sh", "-c", "sleep 120 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True,
                           check=True, timeout=WAIT)
    pid = int(shell.stdout)
    yield pid
    if _alive(pid):
        subprocess.run(["kill", "-9", str(pid)], check=False)


def _service(leftover: int, notes: Path) -> ExtensionService:
    """A STDIO service whose child first notes 'overlap' if the leftover is still alive, then heartbeats."""
    check = (f"s=$(cut -d' ' -f3 /proc/{leftover}/stat 2>/dev/null); "
             f"if [ -n \"$s\" ] && [ \"$s\" != Z ]; then echo overlap >> {shlex.quote(str(notes))}; "
             f"else echo clear >> {shlex.quote(str(notes))}; fi; "
             f"exec {shlex.quote(sys.executable)} {shlex.quote(CHILD)} steady 0.1")
    service = ExtensionService("kept", "1", transport=TransportConfig(command="/bin/sh", args=["-c", check],
                                                                      timeout_secs=5.0))
    service.id = "kept"  # type: ignore[assignment]
    return service


def _left_by_an_earlier_owner(store: SharedRegistry, service: ExtensionService, child: str) -> None:
    """The service RUNNING in the store, owned by a member that recorded `child` and then went silent."""
    sid, _ = store.join(service)
    store.activate(sid, CONFIG.heartbeat_timeout_secs)
    answer = store.own(sid, "earlier-member", EARLIER_TTL, TTL / 3, child)
    assert answer.code == "owner"
    wait_until(lambda: store.owner_of(sid) is None, what="the earlier ownership to run out")


def _new_owner(new_registry: Callable[[], SharedRegistry], leftover: int, notes: Path,
               recorded: str) -> tuple[LifecycleManager, SubprocessConnector]:
    store = new_registry()
    service = _service(leftover, notes)
    _left_by_an_earlier_owner(store, service, recorded)
    connector = SubprocessConnector()
    manager = LifecycleManager(new_registry(), CONFIG, connector=connector, host=HOST)
    manager.declare(service)  # joins: a candidate, granted the ownership at its next tick
    wait_until(lambda: (pid := connector.pid("kept")) is not None and _alive(pid), what="the new owner's child")
    wait_until(lambda: notes.exists() and notes.read_text().strip() != "", what="the child's note")
    return manager, connector


@pytest.fixture(params=["memory", "server"])
def new_registry(request: pytest.FixtureRequest, namespace: str) -> Iterator[Callable[[], SharedRegistry]]:
    if request.param == "memory":
        shared = SharedMemoryRegistry(lease_ttl_secs=TTL)
        yield shared.handle
        shared.handle().clear()
        return
    pytest.importorskip("redis", reason="needs the redis extra")
    from lifecycle.redis import RedisRegistry

    if not servers.binaries():
        pytest.skip("no redis-server or valkey-server here")
    server = request.getfixturevalue("redis_servers")(sorted(servers.binaries())[0])  # one binary: this tests owners
    yield lambda: RedisRegistry.from_url(server.url, namespace=namespace, lease_ttl_secs=TTL)
    RedisRegistry.from_url(server.url, namespace=namespace).clear()


def test_the_recorded_child_of_an_earlier_owner_on_this_host_is_ended_before_the_new_one_spawns(
        new_registry, leftover, tmp_path, caplog):
    started = start_time(leftover)
    assert started is not None
    caplog.set_level("WARNING", logger="lifecycle")
    manager, _ = _new_owner(new_registry, leftover, tmp_path / "notes", f"{HOST},,,{leftover},{started}")
    try:
        assert not _alive(leftover)
        assert (tmp_path / "notes").read_text().split() == ["clear"]  # gone before the new child started
        assert any(f"ended process {leftover}" in r.getMessage() for r in caplog.records)
    finally:
        manager.shutdown()


@pytest.mark.parametrize("which", ["reused pid", "other host"])
def test_a_recorded_child_that_is_not_the_same_process_or_not_on_this_host_is_left_alone(
        new_registry, leftover, tmp_path, caplog, which):
    started = start_time(leftover)
    assert started is not None
    # A reused pid: the process with that pid started at another time, so it is not the child recorded.
    recorded = f"{HOST},,,{leftover},{int(started) + 1}" if which == "reused pid" else f"beta,,,{leftover},{started}"
    caplog.set_level("WARNING", logger="lifecycle")
    manager, connector = _new_owner(new_registry, leftover, tmp_path / "notes", recorded)
    try:
        assert _alive(leftover)
        child = connector.pid("kept")
        assert child is not None and child != leftover

        def named() -> bool:  # how a later owner would find it, unrecorded (read again while the shell execs)
            with open(f"/proc/{child}/environ", "rb") as f:
                return b"LIFECYCLE_SERVICE_ID=kept" in f.read().split(b"\0")

        wait_until(named, what="the child's environment to name its service")
        assert not any("ended process" in r.getMessage() for r in caplog.records)
    finally:
        manager.shutdown()


def test_an_owner_that_paused_while_spawning_has_its_child_for_the_service_found_and_ended(new_registry, tmp_path):
    """The earlier owner recorded itself ('host,pid,start,,') and paused before it recorded the child it
    spawned: its children whose environment names the service are ended, no other."""
    parent = subprocess.Popen(
        ["sh", "-c", "env LIFECYCLE_SERVICE_ID=kept sleep 120 & echo $!; env LIFECYCLE_SERVICE_ID=other sleep 120 & "
                     "echo $!; sleep 120 & echo $!; wait"], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    ours, other, plain = children = [int(parent.stdout.readline()) for _ in range(3)]
    try:
        recorded = f"{HOST},{parent.pid},{start_time(parent.pid)},,"
        manager, _ = _new_owner(new_registry, ours, tmp_path / "notes", recorded)
        try:
            assert not _alive(ours) and _alive(other) and _alive(plain)
            assert (tmp_path / "notes").read_text().split() == ["clear"]  # ended before the new child started
            assert _alive(parent.pid)  # the earlier owner itself is not ours to end
        finally:
            manager.shutdown()
    finally:
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait()
