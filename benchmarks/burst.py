"""Fleet mode: a burst of due heartbeat deadlines, timed out by one leader process.

    python -m benchmarks.burst                                  # 50,000 services, bursts of 10,000, 3 runs
    python -m benchmarks.burst --services 50000 --burst 10000 --runs 5 --profile /tmp/prof
    python -m benchmarks.burst --trees /path/to/other/worktree,. --runs 6   # interleaved runs of two trees

One real redis-server; N services registered RUNNING with `--timeout` s timeouts while this
process relays their heartbeats with `beat_many` (10,000 per call, every timeout / 3); one member
process (`tests/fleet_member.py`) leads the namespace. In each run a burst of services (a
disjoint slice of them each run) gets one last beat together and goes silent. Reported per run:

- each timeout's lag: the leader's receiver wall clock minus (the last beat's call + timeout);
- the leader's CPU time per timeout (its CPU from half a second before the deadline until the last
  timeout is heard, less its idle rate measured just before);
- the server's script time per timed-out service (`SLOWLOG` of every call in that window,
  grouped by script), and how many `SWEEP` and `EXPIRE_MANY` calls there were;
- with `--profile DIR`, a py-spy profile of the leader over the window (own and inclusive
  samples of the top functions).

`--trees` runs the leader from other checkouts (their `lifecycle` and `tests/fleet_member.py`),
round-robin, so that drift of the machine hits each alike; this process's relay always uses this
tree. The member prints one JSON line per event and per log record (the test fleet's
receivers): that cost is part of the leader's, as a real receiver's would be.
Nothing is asserted: numbers are printed for docs/fleet.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from lifecycle.redis import RedisRegistry

from ._util import quantile, quiet_logging
from .fleet import _cpu, _register_running, _table, members, server_binary, servers

NAMESPACE = "bench-burst"


class Relay(threading.Thread):
    """Beats every service but those in `skip` once per `every` s with `beat_many`; `lock` is held during a pass."""

    def __init__(self, registry: RedisRegistry, ids: list[str], timeout: float) -> None:
        super().__init__(daemon=True)
        self.registry, self.ids, self.timeout = registry, ids, timeout
        self.skip: set[str] = set()
        self.lock = threading.Lock()
        self.passes: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            with self.lock:
                ids = [sid for sid in self.ids if sid not in self.skip]
                for k in range(0, len(ids), 10_000):
                    self.registry.beat_many(ids[k:k + 10_000], self.timeout)
            self.passes.append(time.monotonic() - t0)
            self.stop.wait(max(0.0, self.timeout / 3 - (time.monotonic() - t0)))


def _shas(tree: Path) -> dict[str, str]:
    """sha1 -> script name, for the scripts of `tree`'s lifecycle (what SLOWLOG's EVALSHA lines name)."""
    code = ("import hashlib, json; from lifecycle import _redis_scripts as s; "
            "from lifecycle._redis_client import SCRIPTS; "
            "print(json.dumps({hashlib.sha1(s.source(n).encode()).hexdigest(): n for n in SCRIPTS}))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(tree)},
                         capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


def _slowlog(client: redis.Redis, shas: dict[str, str]) -> dict[str, list[int]]:
    """The calls logged since the reset, grouped by script name: their durations (µs)."""
    out: dict[str, list[int]] = collections.defaultdict(list)
    for entry in client.slowlog_get(1_000_000):
        command = entry["command"]
        words = (command.decode(errors="replace") if isinstance(command, bytes) else str(command)).split()
        name = shas.get(words[1], words[1][:8]) if len(words) > 1 and words[0].upper() == "EVALSHA" else words[0]
        out[name].append(int(entry["duration"]))
    return out


def _profile(raw: Path, limit: int = 25) -> list[list[Any]]:
    """Top functions of a py-spy raw (collapsed) profile: own and inclusive share of the busy samples."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [f.rsplit(":", 1)[0] + ")" if ":" in f else f for f in stack.split(";")[1:]]  # by function
        if not frames:
            continue
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            incl[frame] += n
    rows = [[name, f"{100 * n / total:.1f} %", f"{100 * incl[name] / total:.1f} %"]
            for name, n in own.most_common(limit)]
    rows += [["(inclusive) " + name, "", f"{100 * n / total:.1f} %"] for name, n in incl.most_common(limit)
             if name not in dict(own.most_common(limit))][:limit]
    return [[f"busy samples: {total}", "", ""], *rows]


def _leader_pid(registry: RedisRegistry, timeout: float = 60.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        token = registry.leader()
        if token is not None:
            return int(token.split(":")[-2])
        threading.Event().wait(0.05)  # the lease is a key on the server: polling is the only way to see it
    raise RuntimeError("no leader")


def one_run(url: str, registry: RedisRegistry, relay: Relay, burst: list[str], tree: Path, args: argparse.Namespace,
            shas: dict[str, str], run: int) -> dict[str, Any]:
    """One leader process from `tree`; the burst goes silent; what it took to time every one of them out."""
    timeout = args.timeout
    env = {**os.environ, "PYTHONPATH": str(tree)}
    client = redis.Redis.from_url(url, decode_responses=False)
    with members(url, NAMESPACE, 1, "--ttl", "5", "--timeout", str(timeout), "--attempts", "0",
                 member=tree / "tests" / "fleet_member.py", env=env) as fleet:
        pid = _leader_pid(registry)
        threading.Event().wait(3.0)  # past the first sweeps (which give every deadline a fresh timeout)
        with relay.lock:  # no pass is under way: no beat of the burst comes after its last one
            relay.skip = set(burst)
            last: dict[str, float] = {}
            for k in range(0, len(burst), 1000):
                t = time.time()  # before the call: a lag is never understated
                registry.beat_many(burst[k:k + 1000], timeout)
                last.update(dict.fromkeys(burst[k:k + 1000], t))
        due = min(last.values()) + timeout
        idle0, idle_t0 = _cpu(pid), time.monotonic()
        threading.Event().wait(max(0.0, due - 0.5 - time.time()))
        idle_rate = (_cpu(pid) - idle0) / (time.monotonic() - idle_t0)
        client.config_set("slowlog-max-len", 1_000_000)
        # Only calls over 0.2 ms: the leader's batches and the relay's, not the commands inside scripts
        # (logged too, one entry each, which would slow the scripts themselves).
        client.config_set("slowlog-log-slower-than", 200)
        client.slowlog_reset()
        spy = None
        if args.profile:
            raw = Path(args.profile) / f"run{run}-{tree.name}.txt"
            spy = subprocess.Popen(["py-spy", "record", "-p", str(pid), "-r", "250", "-f", "raw", "--nonblocking",
                                    "-o", str(raw), "-d", "120"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0, t0 = _cpu(pid), time.monotonic()
        ids = set(burst)

        def heard() -> int:
            return sum(1 for x in fleet.records if x.get("event") == "heartbeat_timeout" and x["id"] in ids)

        fleet.wait(lambda: heard() >= len(burst), timeout=timeout + 120.0)
        cpu1, t1 = _cpu(pid), time.monotonic()
        client.config_set("slowlog-log-slower-than", 10_000)
        calls = _slowlog(client, shas)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        threading.Event().wait(1.0)  # a repeated or false timeout would show by now
        with fleet.cond:
            timeouts = [x for x in fleet.records if x.get("event") == "heartbeat_timeout"]
            lines = sum(1 for x in fleet.records if x.get("kind") == "log")
    relay.skip = set()
    registry.beat_many(burst, timeout)  # back to RUNNING (a revival), for the next runs
    client.close()
    lags = [(x["t"] - (last[x["id"]] + timeout)) * 1000 for x in timeouts if x["id"] in last]
    busy = (cpu1 - cpu0) - idle_rate * (t1 - t0)
    swept = calls.get("SWEEP", []) + calls.get("EXPIRE_MANY", [])
    return {"tree": str(tree), "p50_ms": quantile(lags, 0.5), "p99_ms": quantile(lags, 0.99), "max_ms": max(lags),
            "cpu_us_per_timeout": busy / len(burst) * 1e6, "idle_cpu_pct": idle_rate * 100,
            "server_us_per_timeout": sum(swept) / len(burst), "sweeps": len(calls.get("SWEEP", [])),
            "expire_many": len(calls.get("EXPIRE_MANY", [])),
            "false": sum(1 for x in timeouts if x["id"] not in last),
            "repeated": len(timeouts) - len({x["id"] for x in timeouts}), "log_lines": lines,
            "scripts": {name: (len(v), sum(v)) for name, v in calls.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", choices=["redis", "valkey"], help="server binary (default: redis if found)")
    parser.add_argument("--services", type=int, default=50_000)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--timeout", type=float, default=10.0, help="heartbeat timeout (s)")
    parser.add_argument("--runs", type=int, default=3, help="runs in all, round-robin over the trees")
    parser.add_argument("--trees", default=".", help="comma-separated checkouts whose leader runs (default: this)")
    parser.add_argument("--profile", help="a directory: py-spy profiles of the leader, one per run")
    parser.add_argument("--json", help="write every run's numbers to this file")
    args = parser.parse_args(argv)
    quiet_logging()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    shas = {sha: name for tree in trees for sha, name in _shas(tree).items()}
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    binary = server_binary(args.binary)
    server = servers.RedisServer(binary, Path(tempfile.mkdtemp()) / "server").start()
    results: list[dict[str, Any]] = []
    try:
        print(f"# Burst: {server.version()}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f}")
        registry = RedisRegistry.from_url(server.url, namespace=NAMESPACE, socket_timeout=10.0)
        registry.clear()
        ids = [f"svc-{i:06d}" for i in range(args.services)]
        t0 = time.monotonic()
        _register_running(registry, ids, args.timeout)
        print(f"registered {args.services:,} in {time.monotonic() - t0:.0f} s")
        relay = Relay(registry, ids, args.timeout)
        relay.start()
        step = max(1, args.services // args.burst)
        try:
            for run in range(args.runs):
                tree = trees[run % len(trees)]
                burst = ids[run % step::step][:args.burst]
                out = one_run(server.url, registry, relay, burst, tree, args, shas, run)
                out["load"] = os.getloadavg()[0]
                results.append(out)
                print(json.dumps({k: (round(v, 2) if isinstance(v, float) else v) for k, v in out.items()}))
                sys.stdout.flush()
        finally:
            relay.stop.set()
            relay.join()
        print(f"relay pass over {args.services:,}: median {statistics.median(relay.passes):.2f} s")
    finally:
        server.stop()
    rows = []
    for tree in trees:
        mine = [r for r in results if r["tree"] == str(tree)]
        if not mine:
            continue

        def med(key: str, runs: list[dict[str, Any]] = mine) -> float:
            return statistics.median(r[key] for r in runs)

        rows.append([tree.name, len(mine), f"{med('p50_ms'):.0f} / {med('p99_ms'):.0f} / {med('max_ms'):.0f}",
                     f"{med('cpu_us_per_timeout'):.0f}", f"{med('server_us_per_timeout'):.1f}",
                     f"{med('sweeps'):.0f} / {med('expire_many'):.0f}",
                     f"{sum(r['false'] for r in mine)} / {sum(r['repeated'] for r in mine)}"])
    _table(f"A burst of {args.burst:,} due together among {args.services:,} services, {args.timeout:g} s timeout, "
           "one leader process (medians over runs)",
           ["tree", "runs", "lag p50 / p99 / max ms", "leader CPU µs per timeout", "server µs per timeout",
            "SWEEP / EXPIRE_MANY calls", "false / repeated"], rows)
    if args.profile:
        for raw in sorted(Path(args.profile).glob("run*.txt")):
            _table(f"py-spy profile of the leader, {raw.name}", ["function", "own", "inclusive"], _profile(raw))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
