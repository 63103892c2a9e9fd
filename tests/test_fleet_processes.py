"""Fleet mode across real processes: three managers on one namespace, killed, paused, and a server restart.

Each member is `tests/fleet_member.py` in its own interpreter: a manager on a `RedisRegistry`
with a one-second heartbeat timeout and lease, taking commands on stdin and printing every
event it dispatches, every connect and every log record as a JSON line. Counting those lines
across the members is counting the fleet's events: each must be emitted by exactly one process.
Every wait is for a line (a Condition with a deadline); the only fixed waits are the spans of
traffic or outage a scenario is about.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis")

import redis_server as servers

from lifecycle.redis import RedisRegistry

pytestmark = [
    pytest.mark.threaded,
    pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="the scenarios stop and kill processes with signals"),
]

MEMBER = Path(__file__).resolve().parent / "fleet_member.py"
TTL = 1.0  # lease: a dead leader's fleet has a new actor within TTL + one check (TTL / 3)
TIMEOUT = 1.0  # heartbeat timeout
ATTEMPTS = 3
DEADLINE = 30.0  # generous bound on any wait for something that takes about a second
# Scheduling slack on top of the TTL + one check bound: two cores shared by several test runs.
SLACK = 1.0

Record = dict[str, Any]


class Member:
    """One member process; its lines land in the fleet's shared record list."""

    def __init__(self, fleet: Fleet, args: list[str]) -> None:
        self.fleet = fleet
        self.proc = subprocess.Popen(
            [sys.executable, str(MEMBER), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        self.pid = self.proc.pid
        self.beat_lines = 0  # beat lines sent to it, by any beater: it answers each with a `beaten` line
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"kind": "raw", "pid": self.pid, "text": line.rstrip("\n"), "t": time.time()}
            self.fleet.add(record)

    def send(self, line: str) -> None:
        """Write a command; a killed or stopped member's pipe may be gone, which the scenario expects."""
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def quit(self) -> None:
        self.send("quit")

    def reap(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped member cannot read "quit"
            self.quit()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()


class Fleet:
    """Members on one namespace, their records, and the test's own view of the registry."""

    def __init__(self, url: str, namespace: str, workdir: Path, *, connect_timeout: float = 30.0) -> None:
        self.url = url
        self.namespace = namespace
        self.mode_file = workdir / "connect-mode"
        self.mode("ok")
        self.args = ["--url", url, "--namespace", namespace, "--mode-file", str(self.mode_file), "--ttl", str(TTL),
                     "--timeout", str(TIMEOUT), "--attempts", str(ATTEMPTS), "--connect-timeout", str(connect_timeout)]
        self.members: list[Member] = []
        self.records: list[Record] = []
        self.cond = threading.Condition()
        self.registry = RedisRegistry.from_url(url, namespace=namespace, socket_timeout=2.0)

    def mode(self, mode: str) -> None:
        """What the members' connects do from now on: ok, fail, or block."""
        tmp = self.mode_file.with_suffix(".tmp")
        tmp.write_text(mode)
        tmp.replace(self.mode_file)

    def add(self, record: Record) -> None:
        with self.cond:
            self.records.append(record)
            self.cond.notify_all()

    def spawn(self, n: int) -> list[Member]:
        new = [Member(self, self.args) for _ in range(n)]
        self.members += new
        pids = {m.pid for m in new}
        self.wait_for(lambda: pids <= {r["pid"] for r in self.select(kind="ready")}, "members ready")
        return new

    def select(self, since: float = 0.0, **match: Any) -> list[Record]:
        with self.cond:
            return [r for r in self.records if r["t"] >= since and all(r.get(k) == v for k, v in match.items())]

    def events(self, name: str, since: float = 0.0) -> list[Record]:
        return self.select(since, kind="event", event=name)

    def wait_for(self, check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
        result = None

        def done() -> bool:
            nonlocal result
            result = check()
            return bool(result)

        with self.cond:
            if not self.cond.wait_for(done, timeout):
                tail = "\n".join(json.dumps(r) for r in self.records[-60:])
                pytest.fail(f"waited {timeout:g} s in vain for {what}; last records:\n{tail}")
        return result

    def story(self) -> str:
        """The members' records but the starts' and the beats' own, one a line: what a failed check shows."""
        quiet = {"call_ok", "started", "beaten"}
        return "\n".join(json.dumps(r) for r in self.select() if r["kind"] not in quiet
                         and r.get("event") != "service_started")

    def member(self, pid: int) -> Member:
        return next(m for m in self.members if m.pid == pid)

    def leader_pid(self) -> int | None:
        token = self.registry.leader()  # host:pid:random
        return None if token is None else int(token.split(":")[-2])

    def start(self, member: Member, *ids: str) -> None:
        member.send("start " + " ".join(ids))
        self.wait_for(lambda: {r["id"] for r in self.select(kind="started", pid=member.pid)} >= set(ids),
                      f"{len(ids)} service(s) started in {member.pid}")

    def started(self) -> set[str]:
        return {r["id"] for r in self.select(kind="started")}

    def start_beaten(self, member: Member, ids: list[str]) -> None:
        """Start `ids` in `member`, each beaten through the other members from the moment it is started.

        A service's first deadline runs from its start, and `member` starts them one by one: on a
        loaded machine fifty starts take longer than a timeout, so beats that began only after the
        last start would come too late for the first ones.
        """
        with Beater([m for m in self.members if m is not member], ids, started=self.started):
            self.start(member, *ids)

    def close(self) -> None:
        for member in self.members:
            member.reap()
        self.registry.client.close()


class Beater:
    """Heartbeats every service not silenced, each round through a member picked at random among the idle ones.

    A member takes one line at a time, and a line of beats sent to a member still busy with the
    last one would wait behind it: on a loaded machine, where a member takes longer for a line
    than a round lasts, that queue grows without bound and its beats land later and later,
    until they miss their deadlines — a test of this machine's speed, not of the fleet's
    deadlines. So a member gets a new line only once it said it finished the last (`beaten`).
    """

    def __init__(self, members: list[Member], ids: list[str], period: float = 0.2, *,
                 started: Callable[[], set[str]] | None = None) -> None:
        self.members = list(members)
        self.ids = ids
        self.started = started  # which of `ids` exist yet (beating one not started yet would fail)
        self.period = period
        self.silent: set[str] = set()
        self.rng = random.Random(9)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _idle(self) -> list[int]:
        """The members that finished every line sent to them."""
        fleet = self.members[0].fleet
        return [i for i, m in enumerate(self.members) if len(fleet.select(kind="beaten", pid=m.pid)) >= m.beat_lines]

    def _run(self) -> None:
        while True:
            groups: dict[int, list[str]] = {}
            started = set(self.ids) if self.started is None else self.started()
            idle = self._idle()
            for sid in self.ids:
                if idle and sid not in self.silent and sid in started:
                    groups.setdefault(self.rng.choice(idle), []).append(sid)
            for index, ids in groups.items():
                self.members[index].beat_lines += 1
                self.members[index].send("beat " + " ".join(ids))
            if self.stopped.wait(self.period):
                return

    def __enter__(self) -> Beater:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(10)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(url: str, namespace: str, **kw: Any) -> Fleet:
        made.append(Fleet(url, namespace, tmp_path, **kw))
        return made[-1]

    yield make
    for f in made:
        f.close()


def test_fifty_services_beaten_through_random_processes_never_time_out_and_a_silent_one_times_out_once(
        redis_server, namespace, fleet, request):
    servers.only_on_first_binary(request, "ten seconds of traffic test processes, not the server")
    f = fleet(redis_server.url, namespace)
    members = f.spawn(3)
    ids = [f"svc-{i:02d}" for i in range(50)]
    # Every member runs the same start code, as every worker runs the app factory: one registers, two join.
    for member in members:
        f.start_beaten(member, ids)
    f.mode("fail")  # a reconnect attempt fails, so the silent service goes through every attempt
    assert len(f.events("service_started")) == 50
    assert f.registry.count() == 50

    with Beater(members, ids) as beater:
        threading.Event().wait(10.0)  # ten seconds of traffic: the span the scenario is about
        assert f.events("heartbeat_timeout") == []
        assert f.select(kind="call_failed") == []
        beater.silent.add("svc-07")
        f.wait_for(lambda: f.events("reconnect_failed"), "the silent service to be given up on")
        # One more full timeout of traffic: nobody else times out, nobody repeats the silent one.
        threading.Event().wait(TIMEOUT)

    timeouts = f.events("heartbeat_timeout")
    assert [r["id"] for r in timeouts] == ["svc-07"]
    attempts = [r["attempt"] for r in f.events("reconnecting")]
    assert attempts == list(range(1, ATTEMPTS + 1))
    assert {r["id"] for r in f.events("reconnecting")} == {"svc-07"}
    assert [(r["id"], r["attempts"]) for r in f.events("reconnect_failed")] == [("svc-07", ATTEMPTS)]
    assert [r["id"] for r in f.events("reconnected")] == []
    # One actor: the timeout and every attempt came from one process, the one holding the lease.
    actors = {r["pid"] for r in timeouts + f.events("reconnecting") + f.events("reconnect_failed")}
    assert actors == {f.leader_pid()}
    # The fleet event log says the same: one timeout in the whole namespace.
    logged = [e.signal_name for _, e in f.registry.read_events("0", count=10_000)]
    assert logged.count("heartbeat_timeout") == 1
    assert logged.count("reconnecting") == ATTEMPTS


def _silence_until_the_leader_connects(f: Fleet) -> int:
    """Start one service, let it go silent with connects blocking; return the pid running attempt 1."""
    f.start(f.members[0], "svc")
    f.mode("block")
    start = f.select(kind="started")[0]["t"]
    timeout = f.wait_for(lambda: f.events("heartbeat_timeout"), "the silent service to time out")[0]
    leader = timeout["pid"]
    f.wait_for(lambda: f.select(start, kind="connect", phase="begin", pid=leader), "the leader's reconnect attempt")
    assert f.leader_pid() == leader
    return int(leader)


def test_a_leader_killed_during_a_reconnect_is_replaced_and_the_attempt_finished_within_the_lease(
        redis_server, namespace, fleet):
    f = fleet(redis_server.url, namespace)
    f.spawn(3)
    leader = _silence_until_the_leader_connects(f)
    killed = time.time()
    f.member(leader).signal(signal.SIGKILL)
    f.mode("ok")  # the next connect (the new leader's) succeeds
    resumed = f.wait_for(lambda: f.select(killed, kind="connect", phase="begin"), "another member's attempt")[0]
    reconnected = f.wait_for(lambda: f.events("reconnected"), "the service to be reconnected")[0]
    with Beater([m for m in f.members if m.pid != leader], ["svc"]):  # alive from now on
        assert resumed["pid"] != leader and reconnected["pid"] == resumed["pid"]
        # The lease runs out at most TTL after the kill, and another member checks every TTL / 3.
        took = resumed["t"] - killed
        assert took < TTL + TTL / 3 + SLACK, f"the attempt resumed {took:.2f} s after the kill"
        # One sequence: the claim was handed on, not started again.
        assert [r["attempt"] for r in f.events("reconnecting")] == [1]
        assert len(f.events("heartbeat_timeout")) == 1
        assert len(f.events("reconnected")) == 1
        assert f.events("reconnect_failed") == []
        assert f.leader_pid() == resumed["pid"]

        assert f.registry.silence("svc")[0].value == "running"

def test_a_leader_paused_past_its_lease_is_fenced_when_it_wakes(redis_server, namespace, fleet):
    f = fleet(redis_server.url, namespace)
    f.spawn(3)
    leader = _silence_until_the_leader_connects(f)
    paused = f.member(leader)
    stopped = time.time()
    paused.signal(signal.SIGSTOP)
    try:
        took_over = f.wait_for(lambda: [r for r in f.select(stopped, kind="connect", phase="begin")
                                        if r["pid"] != leader], "another member to take the attempt over")[0]
        f.mode("ok")
        f.wait_for(lambda: f.events("reconnected"), "the new leader to reconnect the service")
        # The paused leader's own connect will now fail: unfenced, that would start attempt 2.
        f.mode("fail")
    finally:
        woke = time.time()  # taken first: the member may print before this thread runs again
        paused.signal(signal.SIGCONT)
    with Beater([m for m in f.members if m.pid != leader], ["svc"]):  # alive from now on
        f.wait_for(lambda: f.select(woke, kind="log", pid=leader, level="WARNING"), "the woken leader's attempt")
        f.wait_for(lambda: [r for r in f.select(woke, kind="log", pid=leader) if "no longer acts" in r["msg"]],
                   "the woken leader to learn it lost the lease")
        paused.quit()
        # Shutdown drains its pool and watchdog: once it says bye, whatever it was going to do is done.
        f.wait_for(lambda: f.select(woke, kind="bye", pid=leader), "the woken leader to shut down")
        assert f.registry.silence("svc")[0].value == "running"
    assert f.select(woke, kind="event", pid=leader) == []
    assert [r["attempt"] for r in f.events("reconnecting")] == [1]
    assert len(f.events("heartbeat_timeout")) == 1
    assert [r["pid"] for r in f.events("reconnected")] == [took_over["pid"]]


@pytest.mark.parametrize("outage", [0.0, 1.5 * TTL], ids=["restart-at-once", "down-past-the-lease"])
def test_a_server_restart_mid_run_loses_no_registration_and_times_nothing_out(fresh_redis_server, namespace, fleet,
                                                                             outage):
    f = fleet(fresh_redis_server.url, namespace)
    members = f.spawn(3)
    ids = [f"svc-{i:02d}" for i in range(50)]
    f.start_beaten(members[0], ids)
    with Beater(members, ids):
        threading.Event().wait(2 * TIMEOUT)
        down = time.time()
        fresh_redis_server.stop()
        if outage:
            f.wait_for(lambda: f.select(down, kind="call_failed"), "a member to see the outage")
            # Longer than the lease: the leader is lost too, and beats fail for more than a timeout.
            threading.Event().wait(outage)
        fresh_redis_server.start()
        failed = {r["pid"] for r in f.select(down, kind="call_failed")}
        f.wait_for(lambda: failed <= {r["pid"] for r in f.select(down, kind="call_ok")}, "beats to land again")
        threading.Event().wait(3 * TIMEOUT)  # three full timeouts of traffic after the outage
    assert f.events("heartbeat_timeout") == [], f.story()
    assert [r for r in f.events("status_changed") if r["new_status"] != "running"] == []
    assert sorted(s.id for s in f.registry.list_all()) == ids
    assert {f.registry.silence(sid)[0].value for sid in ids} == {"running"}
    assert f.leader_pid() in {m.pid for m in members}
