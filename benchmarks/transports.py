"""What the transports cost: heartbeat lines through the I/O thread, respawn latency, idle CPU of children.

    python -m benchmarks.transports                  # 3 rounds, 1,000 idle children
    python -m benchmarks.transports --rounds 5 --children 1000 --idle-seconds 10
    python -m benchmarks.transports --quick          # 1 round, 200 children, short windows

Each measurement is taken next to a baseline in the same process and round, and the table gives
medians over the rounds plus the median of the per-round ratios to the baseline:

- **lines/s**: a child writes `heartbeat` lines flat out; the lines reach `handle_heartbeat`
  through the pipe, the I/O thread and the line parser. Baseline: the same number of
  `handle_heartbeat` calls made directly from one thread (the manager's own cost).
- **respawn**: a child that heartbeats once and exits 50 ms later, under a 0 ms reconnect
  delay; latency from the exit's `service_error` to `reconnected` (report, reap, spawn, the new
  child's first heartbeat). Baseline: `subprocess.Popen` of the same command plus reading its
  first line, with nothing of ours around it.
- **idle CPU**: N children (`sh -c 'echo heartbeat; exec sleep ...'`) connected and silent; the
  process's CPU time over a window, as a share of one core. Baseline: the same manager with N
  services and no connector, idle over the same window. Also: threads and descriptors.

Children need four descriptors each (three pipes and a pidfd): N is checked against
`ulimit -n` and lowered, with a note, if it would not fit.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, TransportConfig, signals
from lifecycle.connectors import SubprocessConnector
from lifecycle.events import Error, Reconnected

QUIET = LifecycleConfig(heartbeat_interval_secs=300, heartbeat_timeout_secs=900)
FD_PER_CHILD = 4


def _service(name: str, script: str, timeout: float = 10.0) -> ExtensionService:
    return ExtensionService(name, "1", transport=TransportConfig(command="/bin/sh", args=["-c", script],
                                                                 timeout_secs=timeout))


def _flood_script(lines: int) -> str:
    # One heartbeat, then `lines` more in big writes, then stay alive (an exit would be an error).
    return (f"{sys.executable} -c \"import sys,time; w=sys.stdout.buffer; w.write(b'heartbeat\\n'); w.flush(); "
            f"b=b'heartbeat\\n'*1000; [w.write(b) for _ in range({lines // 1000})]; w.flush(); time.sleep(600)\"")


def lines_per_second(lines: int) -> tuple[float, float]:
    """(through the I/O thread, direct handle_heartbeat calls), in heartbeats per second."""
    manager = LifecycleManager(config=QUIET, connector=SubprocessConnector())
    seen = 0
    done = threading.Event()
    first = [0.0]

    def count(sender: object, **kw: object) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            first[0] = time.perf_counter()
        elif seen == lines + 1:
            done.set()

    signals.heartbeat_received.connect(count, sender=manager, weak=False)
    try:
        manager.start_service(_service("flood", _flood_script(lines)))
        assert done.wait(120), f"only {seen} of {lines} lines arrived"
        piped = lines / (time.perf_counter() - first[0])
    finally:
        signals.heartbeat_received.disconnect(count, sender=manager)
        manager.shutdown()
    # Baseline: the same heartbeats (and the same counting receiver) without pipe or thread.
    manager = LifecycleManager(config=QUIET)
    seen, done = 0, threading.Event()
    signals.heartbeat_received.connect(count, sender=manager, weak=False)
    try:
        sid = manager.start_service(ExtensionService("direct", "1"))
        start = time.perf_counter()
        for _ in range(lines):
            manager.handle_heartbeat(sid)
        direct = lines / (time.perf_counter() - start)
    finally:
        signals.heartbeat_received.disconnect(count, sender=manager)
        manager.shutdown()
    return piped, direct


def respawn_ms(respawns: int) -> tuple[list[float], list[float]]:
    """(error -> reconnected latencies, bare Popen + first line latencies), in ms."""
    config = LifecycleConfig(heartbeat_interval_secs=300, heartbeat_timeout_secs=900, reconnect_delay_ms=0,
                             max_reconnect_delay_ms=0, max_reconnect_attempts=5, jitter=0.0)
    script = "echo heartbeat; sleep 0.05; exit 1"
    manager = LifecycleManager(config=config, connector=SubprocessConnector())
    latencies: list[float] = []
    with manager.subscribe(maxsize=100_000) as events:
        manager.start_service(_service("respawn", script))
        error_at = None
        while len(latencies) < respawns:
            event = events.get(timeout=30)
            if isinstance(event, Error):
                error_at = event.at
            elif isinstance(event, Reconnected) and error_at is not None:
                latencies.append((event.at - error_at) * 1000)
                error_at = None
    manager.shutdown()
    bare: list[float] = []
    for _ in range(respawns):
        start = time.monotonic()
        child = subprocess.Popen(["/bin/sh", "-c", script], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert child.stdout is not None
        child.stdout.readline()
        bare.append((time.monotonic() - start) * 1000)
        child.wait()
        child.stdout.close()
    return latencies, bare


def idle_cpu(children: int, seconds: float) -> dict[str, Any]:
    """CPU share of one core while `children` connected children are silent, and without a connector."""
    connector = SubprocessConnector()
    manager = LifecycleManager(config=QUIET, connector=connector)
    threads_before = threading.active_count()
    try:
        start = time.perf_counter()
        for i in range(children):
            manager.start_service(_service(f"idle-{i}", "echo heartbeat; exec sleep 3600"))
        spawn_ms = (time.perf_counter() - start) / children * 1000
        time.sleep(0.5)  # let the first heartbeats settle
        threads = threading.active_count() - threads_before
        fds = len(os.listdir("/proc/self/fd"))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        with_children = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
    finally:
        stop0 = time.perf_counter()
        manager.shutdown(timeout=120)
        stop_ms = (time.perf_counter() - stop0) / children * 1000
    manager = LifecycleManager(config=QUIET)
    try:
        for i in range(children):
            manager.start_service(ExtensionService(f"plain-{i}", "1"))
        time.sleep(0.5)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(seconds)
        without = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100
    finally:
        manager.shutdown()
    return {"cpu_pct": with_children, "base_cpu_pct": without, "threads_added": threads, "fds": fds,
            "spawn_ms": spawn_ms, "stop_ms": stop_ms}


def fit_children(wanted: int) -> tuple[int, str]:
    """`wanted`, or fewer if the descriptor limit cannot hold them; and a note saying so."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = (soft - len(os.listdir("/proc/self/fd")) - 64) // FD_PER_CHILD
    if wanted <= room:
        return wanted, f"ulimit -n {soft} (hard {hard}): room for {room} children"
    return max(1, room), f"ulimit -n {soft} allows only {room} children: measured {room}, not {wanted}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="transport costs (heartbeat lines, respawns, idle children)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--respawns", type=int, default=20)
    parser.add_argument("--children", type=int, default=1000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="1 round, 50k lines, 10 respawns, 200 children, 3 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.lines, args.respawns, args.children, args.idle_seconds = 1, 50_000, 10, 200, 3.0
    logging.getLogger("lifecycle").setLevel(logging.ERROR)
    children, note = fit_children(args.children)
    print(f"# transports on {os.cpu_count()} cores, Python {sys.version.split()[0]}; {note}", flush=True)
    piped, direct, resp, bare, idle = [], [], [], [], []
    for r in range(args.rounds):
        p, d = lines_per_second(args.lines)
        piped.append(p)
        direct.append(d)
        lat, base = respawn_ms(args.respawns)
        resp.append(statistics.median(lat))
        bare.append(statistics.median(base))
        idle.append(idle_cpu(children, args.idle_seconds))
        print(f"round {r + 1}: {p:,.0f} lines/s (direct {d:,.0f}/s); respawn {resp[-1]:.1f} ms (bare {bare[-1]:.1f}"
              f" ms); idle {idle[-1]['cpu_pct']:.4f} % CPU with {children} children (base"
              f" {idle[-1]['base_cpu_pct']:.4f} %)", flush=True)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    def spread(values: list[float]) -> str:
        return f"{min(values):,.3g}..{max(values):,.3g}"

    print()
    print("| measurement | median | rounds (min..max) | baseline (median) | ratio |")
    print("|---|---|---|---|---|")
    print(f"| heartbeat lines/s through the I/O thread | {med(piped):,.0f} | {spread(piped)} "
          f"| {med(direct):,.0f} direct calls/s | {med([p / d for p, d in zip(piped, direct, strict=True)]):.2f} |")
    print(f"| respawn latency, error -> reconnected (ms) | {med(resp):.1f} | {spread(resp)} "
          f"| {med(bare):.1f} bare Popen + first line | {med([r / b for r, b in zip(resp, bare, strict=True)]):.2f} |")
    cpu = [i["cpu_pct"] for i in idle]
    base_cpu = [i["base_cpu_pct"] for i in idle]
    print(f"| idle CPU, {children} children (% of one core) | {med(cpu):.4f} | {spread(cpu)} "
          f"| {med(base_cpu):.4f} without connector | {med(cpu) - med(base_cpu):+.4f} points |")
    print(f"| threads added by {children} children | {med([i['threads_added'] for i in idle]):.0f} | | | |")
    print(f"| descriptors with {children} children | {med([i['fds'] for i in idle]):.0f} | | | |")
    print(f"| start / stop per child (ms) | {med([i['spawn_ms'] for i in idle]):.2f} / "
          f"{med([i['stop_ms'] for i in idle]):.2f} | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
