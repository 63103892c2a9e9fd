"""Fleet mode on a local Redis Cluster (3 masters, 3 replicas): heartbeat cost, and one namespace of a million.

    python -m benchmarks.cluster                        # both parts, 1,000,000 services
    python -m benchmarks.cluster latency
    python -m benchmarks.cluster million --services 100000 --partitions 6
    python -m benchmarks.cluster --quick                # a smoke run (20,000 services, short windows)

Parts (each prints a Markdown table):

- ``latency``: as `benchmarks.fleet latency`, through a `RedisCluster` client: per-call p50 of a
  bare ``EVALSHA`` of ``return 1`` with one key in the namespace's slot (the floor: the same node,
  the same client, no lifecycle code) against `RedisRegistry.beat`, and a pipelined batch of 100
  bare EVALSHAs against `beat_many(100)`. Rounds alternate them, so drift hits all alike.
- ``million``: one namespace in `partitions` parts spread over the masters; N services registered
  and RUNNING with 60 s timeouts while this process relays their heartbeats with `beat_many`; three
  member processes (`tests/fleet_member.py`) lead the partitions. Reported: the time to register
  (a sample one at a time, as starts do, the rest with `restore_many`, as a gateway would),
  server memory per service per master (`INFO memory` delta over the services that master holds),
  each member's CPU with nothing due, a burst of 10,000 deadlines due together (each timeout's lag
  after its deadline, seen by the members' receivers) and how many each member timed out, false
  timeouts (any other service timed out), and the time until another member leads a partition
  whose leader was SIGKILLed.

The cluster is `tests/redis_cluster.py`'s, from `redis-server` (else the Valkey wheel's server).
Nothing is asserted: numbers are printed for docs/fleet.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from lifecycle import ExtensionService
from lifecycle.redis import RedisRegistry

from ._util import quantile, quiet_logging
from .fleet import ROOT, _cpu, _table, members, server_binary

sys.path.insert(0, str(ROOT / "tests"))
import redis_cluster

TIMEOUT = 60.0  # the scale target's heartbeat timeout
BURST = 10_000


def part_latency(url: str, quick: bool) -> dict[str, Any]:
    calls, rounds = (500, 3) if quick else (2000, 7)
    registry = RedisRegistry.from_url(url, namespace="bench-latency", cluster=True)
    registry.clear()
    ids = [registry.join(ExtensionService(f"svc-{i:04d}", "1"))[0] for i in range(1000)]
    for sid in ids:
        registry.activate(sid, 600.0)
    client = RedisCluster.from_url(url)
    sha = client.script_load("return 1")
    key = registry.keys["status"]  # the namespace's slot: the floor goes to the node the beats go to

    def floor(i: int) -> object:
        return client.evalsha(sha, 1, key)

    # A beat writes, and a write is replicated: on a small host the replicas share the cores with
    # the client and the masters, a cost `return 1` never pays. This floor writes one field.
    write_sha = client.script_load("return redis.call('HSET', KEYS[1], 'bench', ARGV[1])")
    write_key = registry.keys["upd"]

    def floor_write(i: int) -> object:
        return client.evalsha(write_sha, 1, write_key, str(i))

    def beat(i: int) -> object:
        return registry.beat(ids[i % len(ids)], 600.0)

    def floor_batch(k: int) -> object:
        with client.pipeline(transaction=False) as pipe:
            for _ in range(100):
                pipe.evalsha(sha, 1, key)
            return pipe.execute()

    def beat_batch(k: int) -> object:
        start = (k * 100) % len(ids)
        return registry.beat_many(ids[start:start + 100], 600.0)

    ops = {"bare EVALSHA, one key (floor)": (floor, calls),
           "bare EVALSHA writing one field, one key": (floor_write, calls), "RedisRegistry.beat": (beat, calls),
           "100 bare EVALSHAs, pipelined": (floor_batch, calls // 20),
           "RedisRegistry.beat_many(100)": (beat_batch, calls // 20)}
    samples: dict[str, list[float]] = {name: [] for name in ops}
    for op, _ in ops.values():
        for i in range(50):
            op(i)
    clock = time.perf_counter_ns
    per_round: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(rounds):
        for name, (op, n) in ops.items():
            out: list[float] = []
            for i in range(n):
                t0 = clock()
                op(i)
                out.append((clock() - t0) / 1000.0)
            samples[name] += out
            per_round[name].append(quantile(out, 0.5))
    registry.clear()
    client.close()
    rows, p50 = [], {name: quantile(values, 0.5) for name, values in samples.items()}
    for name, values in samples.items():
        floor_name = "bare EVALSHA, one key (floor)" if "100" not in name else "100 bare EVALSHAs, pipelined"
        ratios = [a / b for a, b in zip(per_round[name], per_round[floor_name], strict=True)]
        rows.append([name, p50[name], quantile(values, 0.99), p50[name] / p50[floor_name],
                     f"{min(ratios):.2f}-{max(ratios):.2f}"])
    _table(f"Heartbeat cost through a RedisCluster client (µs; {rounds} alternating rounds)",
           ["call", "p50 µs", "p99 µs", "p50 / floor", "per-round ratio range"], rows)
    return {"p50_us": p50, "rounds": rounds}


def _register(registry: RedisRegistry, n: int, threads: int = 8) -> list[str]:
    """N services RUNNING with 60 s timeouts, one at a time from `threads` threads (a start's path, no connect)."""
    ids: list[list[str]] = [[] for _ in range(threads)]

    def work(k: int) -> None:
        for i in range(k, n, threads):
            sid, _ = registry.join(ExtensionService(f"svc-{i:07d}", "1"))
            registry.activate(sid, TIMEOUT)
            ids[k].append(sid)

    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return [sid for chunk in ids for sid in chunk]


def _register_many(registry: RedisRegistry, first: int, n: int, per_call: int = 10_000) -> list[str]:
    """Services `first`..`n` - 1 RUNNING with 60 s timeouts, `restore_many` of `per_call` at a time (a gateway)."""
    ids: list[str] = []
    for k in range(first, n, per_call):
        services = [ExtensionService(f"svc-{i:07d}", "1") for i in range(k, min(n, k + per_call))]
        registry.restore_many(services, TIMEOUT)  # type: ignore[attr-defined]
        ids += [service.id for service in services]
    return ids


class Beater(threading.Thread):
    """Relays every service's heartbeat once per `every` seconds with `beat_many`, as a gateway would."""

    def __init__(self, registry: RedisRegistry, ids: list[str], every: float) -> None:
        super().__init__(daemon=True)
        self.registry, self.ids, self.every = registry, ids, every
        self.skip: set[str] = set()
        self.passes: list[float] = []
        self.spans: list[tuple[float, float]] = []  # each pass's (start, end) on the wall clock
        self.began: float | None = None  # the pass under way's start
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            wall = self.began = time.time()
            ids = [sid for sid in self.ids if sid not in self.skip] if self.skip else self.ids
            for k in range(0, len(ids), 10_000):
                self.registry.beat_many(ids[k:k + 10_000], TIMEOUT)
            self.passes.append(time.monotonic() - t0)
            self.spans.append((wall, time.time()))
            self.began = None
            self.stop.wait(max(0.0, self.every - (time.monotonic() - t0)))


def _masters(client: RedisCluster) -> dict[str, redis.Redis]:
    return {f"{node.host}:{node.port}": node.redis_connection for node in client.get_primaries()}


def _server_cpu(client: RedisCluster) -> dict[str, float]:
    """Each node's CPU seconds so far (user + system, from INFO), masters and replicas: "primary|replica host:port"."""
    out = {}
    for address, node in client.cluster_nodes().items():
        host, port = address.split("@")[0].rsplit(":", 1)
        kind = "primary" if "master" in node["flags"] else "replica"
        with redis.Redis(host=host, port=int(port)) as conn:
            info = conn.info("cpu")
        out[f"{kind} {host}:{port}"] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return out


def _commands(client: RedisCluster) -> dict[str, tuple[int, int]]:
    """The masters' command counts and CPU microseconds so far, summed by command (INFO commandstats)."""
    out: dict[str, tuple[int, int]] = {}
    for conn in _masters(client).values():
        for name, stat in conn.info("commandstats").items():
            calls, usec = out.get(name, (0, 0))
            out[name] = (calls + int(stat["calls"]), usec + int(stat["usec"]))
    return out


def _used(masters: dict[str, redis.Redis]) -> dict[str, int]:
    return {name: int(conn.info("memory")["used_memory"]) for name, conn in masters.items()}


def _phase(beater: Beater, in_pass: bool) -> None:
    """Wait until a relay pass is well under way (`in_pass`), or half its gap after one ended.

    Passes begin every `beater.every` s (60 s = three of them), so the burst falls due at the same
    point of a later pass or gap; their lengths vary by a second or two, hence the margins.
    """
    pause = threading.Event()
    end = time.monotonic() + 4 * beater.every
    was = beater.began is not None
    while time.monotonic() < end:
        now = beater.began is not None
        if now != was and now == in_pass:
            took = statistics.median(beater.passes) if beater.passes else beater.every / 2
            pause.wait(1.0 if in_pass else max(0.0, beater.every - took) / 2)
            return
        was = now
        pause.wait(0.01)  # the relay's thread says nothing: polling its state is the only way
    raise RuntimeError("the relay's passes never changed")


def _burst(registry: RedisRegistry, fleet: Any, beater: Beater, burst: list[str], label: str, in_pass: bool,
           out: dict[str, Any], pids: list[int]) -> list[list[Any]]:
    """BURST services beaten once then left silent at one phase of the relay; their timeouts' lags, as rows."""
    rows: list[list[Any]] = []
    key = "pass" if in_pass else "gap"
    beater.skip |= set(burst)
    _phase(beater, in_pass)
    with fleet.cond:
        seen = len(fleet.records)
    last: dict[str, float] = {}
    for k in range(0, len(burst), 1000):
        t = time.time()  # before the call: a lag is never understated
        registry.beat_many(burst[k:k + 1000], TIMEOUT)
        last.update(dict.fromkeys(burst[k:k + 1000], t))

    def mine() -> list[dict[str, Any]]:
        return [x for x in fleet.records[seen:] if x.get("event") == "heartbeat_timeout"]

    due0 = min(last.values()) + TIMEOUT
    print(f"# the burst {label} falls due at {due0:.3f} (epoch s)", file=sys.stderr, flush=True)  # for a profiler
    threading.Event().wait(max(0.0, due0 - 0.2 - time.time()))
    cpu0 = {pid: _cpu(pid) for pid in pids}
    client: RedisCluster = registry.client  # type: ignore[assignment]
    servers0 = _server_cpu(client)
    commands0 = _commands(client)
    try:
        fleet.wait(lambda: len(mine()) >= len(burst), timeout=TIMEOUT + 60.0)
    except RuntimeError:
        with fleet.cond:
            said = [x for x in fleet.records[seen:] if x.get("kind") == "log" and x.get("level") != "INFO"]
        print(f"{len(mine())} of {len(burst)} timeouts; the members' warnings:", *said[-20:], sep="\n", file=sys.stderr)
        raise
    cpu = {pid: _cpu(pid) - cpu0[pid] for pid in pids}
    servers = {name: cpu_s - servers0.get(name, cpu_s) for name, cpu_s in _server_cpu(client).items()}
    spent = {name: (calls - commands0.get(name, (0, 0))[0], usec - commands0.get(name, (0, 0))[1])
             for name, (calls, usec) in _commands(client).items()}
    threading.Event().wait(2.0)  # a false or repeated timeout would show by now
    with fleet.cond:
        timeouts = mine()
    lags = [(x["t"] - (last[x["id"]] + TIMEOUT)) * 1000 for x in timeouts if x["id"] in last]
    if not lags:  # nothing to measure: say what the members said last, then stop
        with fleet.cond:
            for record in fleet.records[-30:]:
                print(record, file=sys.stderr)
        raise RuntimeError(f"no timeout of the burst was seen ({len(timeouts)} timeouts in all)")
    false = sum(1 for x in timeouts if x["id"] not in last)
    repeated = len(timeouts) - len({x["id"] for x in timeouts})
    rows.append([f"burst of {len(burst):,} due together {label}: lag p50 / p99 / max",
                 f"{quantile(lags, 0.5):.0f} / {quantile(lags, 0.99):.0f} / {max(lags):.0f} ms"])
    made = [(x["made"] - (last[x["id"]] + TIMEOUT)) * 1000 for x in timeouts if x["id"] in last]
    rows.append(["  the same when each leader made the event (before its receivers and its pipe)",
                 f"{quantile(made, 0.5):.0f} / {quantile(made, 0.99):.0f} / {max(made):.0f} ms"])
    end = max(x["made"] for x in timeouts if x["id"] in last)
    spans = list(beater.spans) + ([] if beater.began is None else [(beater.began, time.time())])
    busy = sum(max(0.0, min(b, end) - max(a, due0)) for a, b in spans)
    rows.append(["  the relay passing meanwhile (of the window from the first deadline to the last timeout)",
                 f"{busy:.1f} s of {end - due0:.1f} s"])
    rows.append(["  false / repeated timeouts", f"{false} / {repeated}"])
    by = {pid: sum(1 for x in timeouts if x["pid"] == pid) for pid in pids}
    rows.append(["  timeouts by member (each times out its partitions' services)",
                 ", ".join(f"{count:,}" for count in by.values())])
    rows.append(["  each member's CPU from just before the first deadline to its last timeout, per timeout",
                 ", ".join(f"{cpu[pid]:.2f} s ({cpu[pid] / max(1, by[pid]) * 1e6:.0f} µs)" for pid in pids)])
    kinds = {kind: sorted(v for name, v in servers.items() if name.startswith(kind)) for kind in ("primary", "replica")}
    rows.append(["  the servers' CPU over the same window: masters, replicas",
                 "; ".join(", ".join(f"{v:.2f} s" for v in values) for values in kinds.values())])
    top = sorted(((usec, calls, name.removeprefix("cmdstat_")) for name, (calls, usec) in spent.items() if calls),
                 reverse=True)[:8]
    rows.append(["  the masters' busiest commands over the same window: calls, CPU (INFO commandstats)",
                 "; ".join(f"{name} {calls:,} {usec / 1e6:.2f} s" for usec, calls, name in top)])
    out[key] = {"p99_ms": quantile(lags, 0.99), "max_ms": max(lags), "made_p99_ms": quantile(made, 0.99),
                "relay_s": busy, "window_s": end - due0, "false": false, "repeated": repeated, "by": list(by.values()),
                "cpu_s": list(cpu.values()),
                "servers_cpu_s": servers, "commands": {name: [calls, usec] for usec, calls, name in top}}
    return rows


def part_million(url: str, quick: bool, n: int, partitions: int) -> dict[str, Any]:
    window = 10.0 if quick else 30.0
    namespace = "bench-million"
    registry = RedisRegistry.from_url(url, namespace=namespace, partitions=partitions, cluster=True,
                                      lease_ttl_secs=5.0, socket_timeout=10.0)
    registry.clear()
    client: RedisCluster = registry.client  # type: ignore[assignment]
    masters = _masters(client)
    before = _used(masters)
    one = min(n, max(1_000, n // 50))  # a sample registered one at a time, for that path's rate
    t0 = time.monotonic()
    ids = _register(registry, one)
    t1 = time.monotonic()
    ids += _register_many(registry, one, n)
    took, by_one, by_many = time.monotonic() - t0, t1 - t0, time.monotonic() - t1
    after = _used(masters)
    held = dict.fromkeys(masters, 0)  # services per master, from each partition's slot owner
    parts = registry._parts  # type: ignore[attr-defined]  # a benchmark may look inside
    counts = [0] * partitions
    for sid in ids:
        counts[registry.partition_of(sid)] += 1  # type: ignore[attr-defined]
    for p, part in enumerate(parts):
        node = client.get_node_from_key(part.keys["status"])
        held[f"{node.host}:{node.port}"] += counts[p]
    beater = Beater(registry, ids, TIMEOUT / 3)
    beater.start()
    rows: list[list[Any]] = [["services, partitions, masters", f"{n:,}, {partitions}, {len(masters)}"],
                             ["registering all, RUNNING", f"{took:.0f} s"],
                             [f"  the first {one:,} one at a time (join + activate, 8 threads)",
                              f"{by_one:.1f} s ({one / by_one:,.0f}/s)"],
                             ["  the rest with restore_many, 10,000 per call",
                              f"{by_many:.1f} s ({(n - one) / max(by_many, 1e-9):,.0f}/s)"]]
    for name in masters:
        per = (after[name] - before[name]) / max(1, held[name])
        rows.append([f"master {name}: services, memory per service right after registering",
                     f"{held[name]:,}, {per:.0f} B"])
    out: dict[str, Any] = {"n": n, "register_s": took, "one_per_s": one / by_one,
                           "many_per_s": (n - one) / max(by_many, 1e-9), "per_service_bytes": {
        name: (after[name] - before[name]) / max(1, held[name]) for name in masters}}
    try:
        with members(url, namespace, 3, "--ttl", "5", "--timeout", str(TIMEOUT), "--attempts", "0",
                     "--partitions", str(partitions), "--report", "heartbeat_timeout") as fleet:
            deadline = time.monotonic() + 60.0
            while any(holder is None for holder in registry.leaders()):  # type: ignore[attr-defined]
                if time.monotonic() > deadline:
                    raise RuntimeError("not every partition got a leader")
                threading.Event().wait(0.05)  # the leases are keys on the server: polling is the only way
            threading.Event().wait(8.0)  # past each leader's first sweep (which gives every deadline a fresh timeout)
            pids = list(fleet.procs)
            cpu0 = {pid: _cpu(pid) for pid in pids}
            wall0 = time.monotonic()
            threading.Event().wait(window)
            wall = time.monotonic() - wall0
            cpu = {pid: (_cpu(pid) - cpu0[pid]) / wall * 100 for pid in pids}
            leaders = registry.leaders()  # type: ignore[attr-defined]
            lead = {pid: sum(1 for h in leaders if h and int(h.split(":")[-2]) == pid) for pid in pids}
            rows.append([f"members' CPU over {window:.0f} s, nothing due (partitions led)",
                         ", ".join(f"{cpu[pid]:.2f} % ({lead[pid]})" for pid in pids)])
            out["member_cpu_pct"] = list(cpu.values())

            # Twice: the relay (a million beats every 20 s) and the members share two cores, so a
            # burst's deadlines are set to fall due just after a relay pass ends, then just after one begins.
            for offset, (label, in_pass) in enumerate([("between relay passes", False), ("during a relay pass", True)]):
                burst = ids[offset::max(1, n // BURST)][:BURST]
                rows += _burst(registry, fleet, beater, burst, label, in_pass, out, pids)

            token = registry.leaders()[0]  # type: ignore[attr-defined]
            victim = int(token.split(":")[-2])
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            fleet.procs.pop(victim)
            while True:
                holder = registry.leaders()[0]  # type: ignore[attr-defined]
                if holder is not None and holder != token:
                    break
                threading.Event().wait(0.01)
            failover = time.monotonic() - killed
            rows.append(["partition 0's leader SIGKILLed: another member leads it after",
                         f"{failover:.2f} s (bound: lease 5 s + two ticks 3.33 s = 8.33 s)"])
            out["failover_s"] = failover
        # Over a minute after the last registration: the replies kept for re-sent scripts (one `op:`
        # key per state change, 60 s) are gone; what is left is what a service costs for good.
        steady = _used(masters)
        for name in masters:
            per = (steady[name] - before[name]) / max(1, held[name])
            rows.append([f"master {name}: memory per service, steady (the op: keys expired)", f"{per:.0f} B"])
        out["steady_bytes"] = {name: (steady[name] - before[name]) / max(1, held[name]) for name in masters}
    finally:
        beater.stop.set()
        beater.join()
    rows.append(["heartbeat pass over every service (beat_many, 10,000 per call)",
                 f"{statistics.median(beater.passes):.1f} s median of {len(beater.passes)}"])
    # No clear() at the end: one CLEAR script over 167,000 services per partition holds a master past
    # the cluster's node timeout (it failed over, and the run ended in CLUSTERDOWN); the cluster goes.
    _table(f"One namespace of {n:,} services on a {len(masters)}-master cluster", ["what", "value"], rows)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["latency", "million"])
    parser.add_argument("--binary", choices=["redis", "valkey"], help="server binary (default: redis if found)")
    parser.add_argument("--quick", action="store_true", help="20,000 services and short windows (a smoke run)")
    parser.add_argument("--services", type=int, help="services in the million part (default 1,000,000)")
    parser.add_argument("--partitions", type=int, default=6)
    args = parser.parse_args(argv)
    quiet_logging()
    binary = server_binary(args.binary)  # exits, saying so, if neither server is here
    cluster = redis_cluster.Cluster(binary, Path(tempfile.mkdtemp())).start()
    try:
        url = cluster.url(cluster.nodes[0])
        version = cluster.nodes[0].version()
        print(f"# Cluster benchmarks: {version}, 3 masters + 3 replicas, Python {sys.version.split()[0]}, "
              f"{os.cpu_count()} CPUs")
        for part in args.parts:
            if part == "latency":
                part_latency(url, args.quick)
            elif part == "million":
                n = args.services or (20_000 if args.quick else 1_000_000)
                part_million(url, args.quick, n, args.partitions)
            else:
                parser.error(f"unknown part {part!r}")
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
