"""Fleet mode on a real server: heartbeat cost against a bare EVALSHA, 100,000 services, lag, failover.

    python -m benchmarks.fleet                      # every part, on redis-server (else valkey-server)
    python -m benchmarks.fleet latency failover     # some parts
    python -m benchmarks.fleet --binary valkey --quick

Parts (each prints a Markdown table):

- ``latency``: per-call p50/p99 and calls/s of a bare redis-py ``EVALSHA`` of ``return 1`` (the
  floor), `RedisRegistry.beat` and `LifecycleManager.handle_heartbeat` (fleet mode), from one
  thread and from 8 threads, and of a pipelined batch of 100 (`RedisRegistry.beat_many` against
  100 bare EVALSHAs in one pipeline). Rounds alternate the three, so drift hits all alike.
- ``scale``: 100,000 RUNNING services: server memory per service (INFO memory before and after),
  then three member processes with 30 s timeouts and the default 5 s lease while this process
  heartbeats every service every 15 s in pipelined batches; the leader's CPU time over a window.
- ``lag``: detection lag across a fleet of three processes: the heartbeat_timeout receiver's
  wall clock (in the leader) minus (the service's last beat + timeout), 1 s timeouts.
- ``failover``: SIGKILL the leader of three members 20 times (lease TTL 1 s): time until
  another member holds the lease, seen from here.
- ``expiry``: what a timeout costs: 20,000 RUNNING services, 10,000 of them silent past a 1 s
  timeout, swept by hand as a leader does (scripts of 500, each timing its due services out and
  beginning their cycles); the scripts' time (INFO commandstats), the server's CPU (INFO cpu) and
  this process's round trips, each per timed-out service, over three rounds.
- ``inmemory``: the in-memory heartbeat case (`benchmarks.cases heartbeat 1000`) of this tree
  against commit 92aa561 (before fleet mode) in a temporary worktree, alternating runs.

Members are `tests/fleet_member.py` processes; the server is started here on a free port.
Nothing is asserted: numbers are printed for docs/fleet.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager
from lifecycle import _redis_scripts as scripts
from lifecycle.redis import RedisRegistry

from ._util import quantile, quiet_logging, throughput

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import redis_server as servers  # noqa: E402  (the test suite's server helper: one way to run a server)

MEMBER = ROOT / "tests" / "fleet_member.py"


def _registry(url: str, namespace: str, **kw: Any) -> RedisRegistry:
    registry = RedisRegistry.from_url(url, namespace=namespace, **kw)
    registry.clear()
    return registry


def _register_running(registry: RedisRegistry, names: list[str], timeout: float, threads: int = 8) -> None:
    """Register and activate (RUNNING, deadline armed) every service, the manager's path without a connect."""

    def work(k: int) -> None:
        for name in names[k::threads]:
            sid, _ = registry.join(ExtensionService(name, "1", id=name))
            registry.activate(sid, timeout)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def _table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{c:.3g}" if isinstance(c, float) else str(c) for c in row) + " |")
    sys.stdout.flush()


# -- latency ---------------------------------------------------------------------------------------

def part_latency(url: str, quick: bool) -> dict[str, Any]:
    n, calls, rounds = 1000, (500 if quick else 2000), (3 if quick else 7)
    registry = _registry(url, "bench-latency")
    ids = [f"svc-{i:04d}" for i in range(n)]
    _register_running(registry, ids, 600.0)
    config = LifecycleConfig(heartbeat_timeout_secs=600.0)
    manager = LifecycleManager(RedisRegistry.from_url(url, namespace="bench-latency"), config)
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5.0)
    sha = client.script_load("return 1")

    def floor(i: int) -> object:
        return client.evalsha(sha, 0)

    declared = [registry.keys[key] for key in scripts.keys_for("HEARTBEAT")]
    keys_and_args = [*declared, "10000", "600000000", "0", "svc-0000"]

    def floor_keys(i: int) -> object:
        return client.evalsha(sha, len(declared), *keys_and_args)

    def beat(i: int) -> object:
        return registry.beat(ids[i % n], 600.0)

    def handle(i: int) -> object:
        return manager.handle_heartbeat(ids[i % n])

    ops: dict[str, Callable[[int], object]] = {
        "bare EVALSHA (floor)": floor, f"the floor with beat's {len(declared)} keys and 4 args": floor_keys,
        "RedisRegistry.beat": beat, "manager.handle_heartbeat": handle,
    }
    samples: dict[str, list[float]] = {name: [] for name in ops}
    for op in ops.values():  # warm up: connections, script cache
        for i in range(200):
            op(i)
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for name, op in ops.items():
            out = samples[name]
            for i in range(calls):
                t0 = clock()
                op(i)
                out.append((clock() - t0) / 1000.0)
    seconds = 1.0 if quick else 2.0
    eight = {name: throughput(op, list(range(n)), threads=8, seconds=seconds) for name, op in ops.items()}

    # Pipelined batches of 100: the registry's beat_many against 100 bare EVALSHAs in one pipeline.
    def floor_batch(k: int) -> object:
        with client.pipeline(transaction=False) as pipe:
            for _ in range(100):
                pipe.evalsha(sha, 0)
            return pipe.execute()

    def beat_batch(k: int) -> object:
        start = (k * 100) % n
        return registry.beat_many(ids[start:start + 100], 600.0)

    batch_ops = {"100 bare EVALSHAs, pipelined": floor_batch, "RedisRegistry.beat_many(100)": beat_batch}
    batch_samples: dict[str, list[float]] = {name: [] for name in batch_ops}
    for _ in range(rounds):
        for name, op in batch_ops.items():
            for k in range(calls // 20):
                t0 = clock()
                op(k)
                batch_samples[name].append((clock() - t0) / 1000.0)
    manager.shutdown()
    registry.clear()

    floor_p50 = quantile(samples["bare EVALSHA (floor)"], 0.5)
    rows = []
    for name, values in samples.items():
        p50 = quantile(values, 0.5)
        per_round = [quantile(values[r * calls:(r + 1) * calls], 0.5) for r in range(rounds)]
        rows.append([name, p50, quantile(values, 0.99), p50 / floor_p50, f"{min(per_round):.0f}-{max(per_round):.0f}",
                     f"{1e6 / statistics.fmean(values):,.0f}", f"{eight[name]:,.0f}"])
    _table("Heartbeat latency and throughput (µs; one call at a time unless said)",
           ["call", "p50 µs", "p99 µs", "p50 / floor", "p50 range over rounds", "calls/s 1 thread",
            "calls/s 8 threads"], rows)
    batch_rows = []
    for name, values in batch_samples.items():
        p50 = quantile(values, 0.5)
        batch_rows.append([name, p50, quantile(values, 0.99), f"{100e6 / statistics.fmean(values):,.0f}"])
    _table("Pipelined batch of 100 (µs per batch)", ["batch", "p50 µs", "p99 µs", "beats/s"], batch_rows)
    return {"rows": rows, "batch_rows": batch_rows, "rounds": rounds, "calls": calls}


# -- member processes ------------------------------------------------------------------------------

class Members:
    """Member processes (`tests/fleet_member.py`) on one namespace; their JSON lines are collected."""

    def __init__(self, url: str, namespace: str, *args: str, member: Path = MEMBER,
                 env: dict[str, str] | None = None) -> None:
        self.url, self.namespace, self.args = url, namespace, list(args)
        self.member, self.env = member, env  # another checkout's member (benchmarks.burst compares trees)
        self.mode_file = Path(tempfile.mkdtemp()) / "mode"
        self.mode_file.write_text("ok")
        self.procs: dict[int, subprocess.Popen[str]] = {}
        self.records: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    def spawn(self) -> int:
        proc = subprocess.Popen(
            [sys.executable, str(self.member), "--url", self.url, "--namespace", self.namespace,
             "--mode-file", str(self.mode_file), *self.args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
            env=self.env)
        self.procs[proc.pid] = proc
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()
        self.wait(lambda: any(r["kind"] == "ready" and r["pid"] == proc.pid for r in self.records))
        return proc.pid

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record["kind"] in ("event", "ready"):
                with self.cond:
                    self.records.append(record)
                    self.cond.notify_all()

    def wait(self, check: Callable[[], bool], timeout: float = 60.0) -> None:
        with self.cond:
            if not self.cond.wait_for(check, timeout):
                raise RuntimeError("members did not get there in time")

    def kill(self, pid: int) -> None:
        self.procs.pop(pid).kill()

    def close(self) -> None:
        for proc in self.procs.values():
            try:
                assert proc.stdin is not None
                proc.stdin.write("quit\n")
                proc.stdin.flush()
            except OSError:
                pass
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextmanager
def members(url: str, namespace: str, n: int, *args: str, member: Path = MEMBER,
            env: dict[str, str] | None = None) -> Iterator[Members]:
    fleet = Members(url, namespace, *args, member=member, env=env)
    try:
        for _ in range(n):
            fleet.spawn()
        yield fleet
    finally:
        fleet.close()


def _leader(registry: RedisRegistry) -> tuple[str, int] | None:
    token = registry.leader()
    return None if token is None else (token, int(token.split(":")[-2]))


def _wait_leader(registry: RedisRegistry, timeout: float = 30.0) -> tuple[str, int]:
    end = time.monotonic() + timeout
    pause = threading.Event()
    while time.monotonic() < end:
        found = _leader(registry)
        if found is not None:
            return found
        pause.wait(0.005)  # the lease is a key on the server: polling is the only way to see it
    raise RuntimeError("no leader")


def _cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- 100,000 services: memory, leader idle CPU -----------------------------------------------------

def part_scale(url: str, quick: bool, server_pid: int) -> dict[str, Any]:
    n = 10_000 if quick else 100_000
    window = 10.0 if quick else 45.0
    namespace = "bench-scale"
    registry = _registry(url, namespace)
    client = registry.client
    names = [f"svc-{i:06d}" for i in range(n)]
    before = int(client.info("memory")["used_memory"])
    t0 = time.perf_counter()
    _register_running(registry, names, 30.0)
    took = time.perf_counter() - t0
    after = int(client.info("memory")["used_memory"])
    log_bytes = int(client.memory_usage(registry.keys["events"]) or 0)
    # Replies kept for 60 s so that a re-sent script runs once, one key each: transient, not per
    # service. Counted with SCAN; their size estimated from a sample.
    op_keys = list(client.scan_iter(match=f"lifecycle:{{{namespace}}}:op:*", count=10_000))
    sample = op_keys[:200]
    mean = sum(int(client.memory_usage(k) or 0) for k in sample) / max(1, len(sample))
    ops_bytes = int(mean * len(op_keys))
    per = (after - before) / n
    per_steady = (after - before - log_bytes - ops_bytes) / n

    stop = threading.Event()
    passes: list[float] = []

    def beater() -> None:  # every service every 15 s, as 30 s timeouts want
        while True:
            t = time.perf_counter()
            for k in range(0, n, 100):
                registry.beat_many(names[k:k + 100], 30.0)
            passes.append(time.perf_counter() - t)
            if stop.wait(max(0.0, 15.0 - (time.perf_counter() - t))):
                return

    thread = threading.Thread(target=beater, daemon=True)
    thread.start()
    try:
        with members(url, namespace, 3, "--ttl", "5", "--timeout", "30", "--attempts", "0") as fleet:
            _, leader = _wait_leader(registry)
            threading.Event().wait(6.0)  # past the new leader's first sweep (which rebases every deadline)
            pids = list(fleet.procs)
            cpu0 = {pid: _cpu(pid) for pid in pids}
            server0 = _cpu(server_pid)
            wall0 = time.monotonic()
            threading.Event().wait(window)
            wall = time.monotonic() - wall0
            cpu = {pid: (_cpu(pid) - cpu0[pid]) / wall * 100 for pid in pids}
            server_cpu = (_cpu(server_pid) - server0) / wall * 100
            timeouts = sum(1 for r in fleet.records if r.get("event") == "heartbeat_timeout")
            still_leader = _leader(registry)
    finally:
        stop.set()
        thread.join()
    registry.clear()
    followers = [v for pid, v in cpu.items() if pid != leader]
    rows = [
        ["services", f"{n:,}"],
        ["register + activate, 8 threads", f"{took:.1f} s ({n / took:,.0f}/s)"],
        ["server memory per service, steady (INFO used_memory delta / N, without the two below)",
         f"{per_steady:.0f} B"],
        ["the same, everything included right after registering", f"{per:.0f} B"],
        ["event log (stream, MAXLEN ~10,000)", f"{log_bytes / 1024:.0f} KiB"],
        ["operation ids of the last 60 s (2 per service here)", f"{ops_bytes / 1024:.0f} KiB"],
        [f"leader CPU over {wall:.0f} s (30 s timeouts, 5 s lease)", f"{cpu[leader]:.2f} % of a core"],
        ["followers' CPU", ", ".join(f"{v:.2f} %" for v in followers)],
        ["server CPU (incl. the beats below)", f"{server_cpu:.1f} % of a core"],
        ["heartbeat pass over every service (beat_many, batches of 100)",
         f"{statistics.median(passes):.2f} s median of {len(passes)}"],
        ["false timeouts in the window", str(timeouts)],
        ["leader unchanged", str(still_leader is not None and still_leader[1] == leader)],
    ]
    _table(f"{n:,} services", ["what", "value"], rows)
    return {"n": n, "per_service_bytes": per_steady, "per_service_bytes_all": per,
            "leader_cpu_pct": cpu[leader], "followers_cpu_pct": followers,
            "server_cpu_pct": server_cpu, "timeouts": timeouts}


# -- detection lag ---------------------------------------------------------------------------------

def part_lag(url: str, quick: bool) -> dict[str, Any]:
    """Two ways in: a burst (services started as fast as one thread can) and paced over 2 s."""
    n, rounds, timeout = (300, 1, 1.0) if quick else (1000, 3, 1.0)
    namespace = "bench-lag"
    registry = _registry(url, namespace)
    rows, out = [], {}
    with members(url, namespace, 3, "--ttl", "5", "--timeout", str(timeout), "--attempts", "0") as fleet:
        _wait_leader(registry)
        threading.Event().wait(1.0)  # a few lease ticks: the first sweep's rebase is behind us
        for mode, spread in (("burst", 0.0), ("paced over 2 s", 2.0)):
            lags: list[float] = []
            rates: list[float] = []
            for r in range(rounds):
                last: dict[str, float] = {}
                t0 = time.time()
                for i in range(n):
                    if spread:
                        ahead = t0 + spread * i / n - time.time()
                        if ahead > 0:
                            threading.Event().wait(ahead)
                    name = f"{mode[0]}{r}-{i:05d}"
                    sid, _ = registry.join(ExtensionService(name, "1", id=name))
                    registry.activate(sid, timeout)  # the start counts as the last heartbeat
                    last[sid] = time.time()
                rates.append(n / (time.time() - t0))
                fleet.wait(lambda ids=last: sum(1 for x in fleet.records  # type: ignore[misc]
                                                if x.get("event") == "heartbeat_timeout" and x["id"] in ids) >= n,
                           timeout=60.0)
                with fleet.cond:
                    seen = {x["id"]: x for x in fleet.records
                            if x.get("event") == "heartbeat_timeout" and x["id"] in last}
                lags += [(x["t"] - (last[sid] + timeout)) * 1000 for sid, x in seen.items()]
            rows.append([mode, f"{statistics.median(rates):,.0f}/s", f"{len(lags):,}", quantile(lags, 0.5),
                         quantile(lags, 0.99), max(lags)])
            out[mode] = {"p50_ms": quantile(lags, 0.5), "p99_ms": quantile(lags, 0.99), "n": len(lags)}
        timeouts = [x for x in fleet.records if x.get("event") == "heartbeat_timeout"]
        emitters = {x["pid"] for x in timeouts}
        duplicates = len(timeouts) - len({x["id"] for x in timeouts})
    registry.clear()
    _table(f"Detection lag, {rounds} round(s) of {n} services per row, 1 s timeout, 3 processes (ms); "
           f"{len(emitters)} emitting process(es), {duplicates} duplicate timeouts",
           ["deadlines", "services started", "timeouts", "p50 ms", "p99 ms", "max ms"], rows)
    return out


# -- failover --------------------------------------------------------------------------------------

def part_failover(url: str, quick: bool) -> dict[str, Any]:
    kills, ttl = (5 if quick else 20), 1.0
    namespace = "bench-failover"
    registry = _registry(url, namespace)
    took: list[float] = []
    pause = threading.Event()
    with members(url, namespace, 3, "--ttl", str(ttl)) as fleet:
        for _ in range(kills):
            token, pid = _wait_leader(registry)
            threading.Event().wait(0.2)  # the kill lands anywhere in the renewal cycle
            t0 = time.monotonic()
            fleet.kill(pid)
            while True:
                found = _leader(registry)
                if found is not None and found[0] != token:
                    break
                pause.wait(0.002)
            took.append(time.monotonic() - t0)
            fleet.spawn()
    registry.clear()
    rows = [[kills, ttl, statistics.median(took), quantile(took, 0.9), max(took), min(took), ttl + ttl / 3]]
    _table("Leader failover after SIGKILL (s)", ["kills", "lease TTL", "median", "p90", "max", "min",
                                                "bound: TTL + one check"], rows)
    return {"median_s": statistics.median(took), "max_s": max(took), "took": took}


# -- the in-memory heartbeat against the tree before fleet mode ------------------------------------

# Commits whose in-memory heartbeat is compared with this tree's: before fleet mode, fleet mode's
# landing, the last commit before metrics() counted each beat, metrics() itself.
TREES = (("92aa561", "before fleet mode"), ("085bd07", "fleet mode lands"), ("5d361c9", "just before metrics()"),
         ("dd781e2", "metrics() counts beats"))


def part_expiry(url: str, quick: bool) -> dict[str, Any]:
    from lifecycle.engine.policy import ReconnectPolicy
    from lifecycle.engine.sweeps import SWEEP_LIMIT

    n, silent = (4_000, 2_000) if quick else (20_000, 10_000)
    policy = ReconnectPolicy.of(LifecycleConfig(max_reconnect_attempts=0))  # each timeout gives up: 3 events
    rng = random.Random(1)
    admin = redis.Redis.from_url(url, decode_responses=True)
    rows: list[list[Any]] = []
    per: dict[str, list[float]] = {"script": [], "server": [], "client": []}
    for r in range(3):
        reg = RedisRegistry.from_url(url, namespace=f"bench-expiry-{r}", lease_ttl_secs=30.0)
        services = [ExtensionService(f"s{i}", "1") for i in range(n)]
        for k in range(0, n, 5_000):
            reg.restore_many(services[k:k + 5_000], 1.0 if k < silent else 600.0)
        ids = [service.id for service in services]
        assert reg.lease("me", 30.0).leader
        reg.sweep("me", 1.0, 30.0, SWEEP_LIMIT, onset=policy.onset(rng))  # the first sweep: no outage after it
        while admin.exists(reg.keys["rebase"]):
            reg.sweep("me", 1.0, 30.0, SWEEP_LIMIT, onset=policy.onset(rng))
        for k in range(0, n, 5_000):  # every deadline from now: the silent ones 1 s, the rest 600 s
            reg.beat_many(ids[k:k + 5_000], 1.0 if k < silent else 600.0)
        threading.Event().wait(1.2)
        stats0, cpu0 = admin.info("commandstats"), admin.info("cpu")
        took, done = 0.0, 0
        while True:
            t0 = time.perf_counter()
            sweep = reg.sweep("me", 1.0, 30.0, SWEEP_LIMIT, onset=policy.onset(rng))
            took += time.perf_counter() - t0
            if sweep is None or not sweep.due:
                break
            done += len(sweep.due)
        stats1, cpu1 = admin.info("commandstats"), admin.info("cpu")
        script = stats1["cmdstat_evalsha"]["usec"] - stats0["cmdstat_evalsha"]["usec"]
        server = sum(float(cpu1[k]) - float(cpu0[k]) for k in ("used_cpu_user", "used_cpu_sys"))
        per["script"].append(script / done)
        per["server"].append(server * 1e6 / done)
        per["client"].append(took * 1e6 / done)
        rows.append([f"round {r + 1}: {done:,} timed out", f"{script / done:.1f}", f"{server * 1e6 / done:.1f}",
                     f"{took * 1e6 / done:.1f}"])
        reg.clear()
        reg.client.close()
    rows.append(["median", *(f"{statistics.median(v):.1f}" for v in per.values())])
    _table(f"What a timeout costs: {silent:,} of {n:,} services due together, swept as a leader does "
           "(µs per timed-out service)", ["round", "scripts' time", "server CPU", "this process's round trips"], rows)
    return per


def part_inmemory(quick: bool) -> dict[str, Any]:
    repeats = 3 if quick else 9
    tmp = Path(tempfile.mkdtemp())
    trees: list[tuple[str, Path]] = []
    results: dict[str, list[float]] = {}
    try:
        for commit, what in TREES:
            path = tmp / commit
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit], check=True,
                           capture_output=True)
            trees.append((f"{commit} ({what})", path))
        trees.append(("this tree", ROOT))
        for _ in range(repeats):  # round-robin, so drift of the machine hits every tree alike
            for label, tree in trees:
                out = subprocess.run([sys.executable, "-m", "benchmarks.cases", "heartbeat", "1000"], cwd=tree,
                                     capture_output=True, text=True, check=True,
                                     env={**os.environ, "PYTHONPATH": str(tree)}).stdout
                results.setdefault(label, []).append(json.loads(out.strip().splitlines()[-1])["none_p50_us"])
    finally:
        for _, tree in trees[:-1]:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False,
                           capture_output=True)
    base_med = statistics.median(results[trees[0][0]])
    rows = [[label, statistics.median(v), min(v), max(v), statistics.median(v) / base_med]
            for label, v in results.items()]
    _table(f"In-memory handle_heartbeat, 1,000 services, {repeats} round-robin runs per tree "
           "(µs per call: each run's p50 of batch means)", ["tree", "median µs", "min", "max", "ratio to 92aa561"],
           rows)
    return results


def server_binary(choice: str | None) -> str:
    """The server binary to run: `choice` ("redis", "valkey") if found, else redis-server, else valkey-server."""
    found = servers.binaries()
    name = choice or ("redis" if "redis" in found else next(iter(found), None))
    if name is None or name not in found:
        raise SystemExit(f"no {name or 'redis'}-server here (nor valkey-server)")
    return found[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["latency", "scale", "lag", "failover", "expiry", "inmemory"])
    parser.add_argument("--binary", choices=["redis", "valkey"], help="server binary (default: redis if found)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and windows (a smoke run)")
    args = parser.parse_args(argv)
    quiet_logging()
    binary = server_binary(args.binary)  # exits, saying so, if neither server is here
    server = servers.RedisServer(binary, Path(tempfile.mkdtemp()) / "server").start()
    try:
        assert server.proc is not None
        print(f"# Fleet benchmarks: {server.version()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        results: dict[str, Any] = {}
        for part in args.parts:
            if part == "latency":
                results[part] = part_latency(server.url, args.quick)
            elif part == "scale":
                results[part] = part_scale(server.url, args.quick, server.proc.pid)
            elif part == "lag":
                results[part] = part_lag(server.url, args.quick)
            elif part == "failover":
                results[part] = part_failover(server.url, args.quick)
            elif part == "expiry":
                results[part] = part_expiry(server.url, args.quick)
            elif part == "inmemory":
                results[part] = part_inmemory(args.quick)
            else:
                parser.error(f"unknown part {part!r}")
    finally:
        server.stop()
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "fleet-latest.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
