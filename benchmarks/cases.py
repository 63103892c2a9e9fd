"""Measurements of the library itself; ``python -m benchmarks.cases CASE N`` prints one JSON line.

Cases: start, heartbeat, throughput, idle, wakeups, lag, lag_spread, storm, handoff. Each runs in a fresh process.
"""

from __future__ import annotations

import argparse
import collections
import gc
import sys
import threading
import time
from typing import Any

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, signals
from lifecycle import manager as manager_module
from lifecycle.watchdog import Watchdog

from ._util import (
    Result,
    case_main,
    cpu_seconds,
    os_cpu_seconds,
    quantile,
    rss_kib,
    settle,
    throughput,
    time_batches,
)
from .harness import run_lag

__all__ = ["CASES", "count_wakeups", "start_many"]

#: Heartbeat timing: batches of this many calls, alternating blocks with and without a receiver.
BATCH = 1000
BLOCKS = 8
BATCHES_PER_BLOCK = 40


def _service(i: int) -> ExtensionService:
    return ExtensionService(f"svc-{i}", "1.0")


def start_many(manager: LifecycleManager, n: int) -> list[str]:
    """Start `n` fresh services on `manager` and return their ids."""
    return [manager.start_service(_service(i)) for i in range(n)]


def count_wakeups(watchdog: Watchdog) -> list[int]:
    """Wrap this watchdog's `sched.run` so each loop iteration bumps the returned one-element counter."""
    counter = [0]
    sched = watchdog._queue._sched
    run = sched.run

    def counting_run(blocking: bool = True) -> float | None:
        counter[0] += 1
        return run(blocking)

    sched.run = counting_run  # type: ignore[method-assign]
    return counter


def _receiver(sender: object, **kwargs: object) -> None:
    """A trivial receiver, connected strongly."""


def case_start(n: int, args: argparse.Namespace) -> Result:
    """start_service cost per service, threads alive afterwards, RSS growth per service (default config)."""
    manager = LifecycleManager()
    gc.collect()
    rss0 = rss_kib()
    pc = time.perf_counter_ns
    total = 0
    worst = 0
    for i in range(n):
        service = _service(i)
        t0 = pc()
        manager.start_service(service)
        took = pc() - t0
        total += took
        worst = max(worst, took)
    del service
    gc.collect()
    rss1 = rss_kib()
    return {
        "start_us": total / n / 1000.0,
        "start_total_s": total / 1e9,
        "start_max_us": worst / 1000.0,
        "threads": threading.active_count(),
        "rss_kib_per_service": (rss1 - rss0) / n,
        "rss_mib_total": (rss1 - rss0) / 1024.0,
    }


def case_heartbeat(n: int, args: argparse.Namespace) -> Result:
    """handle_heartbeat µs per call (median and p99 of batch means), without and with one receiver."""
    manager = LifecycleManager()
    ids = start_many(manager, n)
    beat = manager.handle_heartbeat
    signal = signals.heartbeat_received
    time_batches(beat, ids, BATCH, 20)  # warm up
    settle()
    plain: list[float] = []
    received: list[float] = []
    for _ in range(BLOCKS):
        plain += time_batches(beat, ids, BATCH, BATCHES_PER_BLOCK)
        signal.connect(_receiver, weak=False)
        received += time_batches(beat, ids, BATCH, BATCHES_PER_BLOCK)
        signal.disconnect(_receiver)
    # No event object may be built when nothing listens: count constructions for 1,000 beats.
    built = [0]
    namespace = vars(manager_module)
    real = namespace["Heartbeat"]

    def counting(*a: Any) -> Any:
        built[0] += 1
        return real(*a)

    namespace["Heartbeat"] = counting
    try:
        for sid in ids[:1000]:
            beat(sid)
    finally:
        namespace["Heartbeat"] = real
    return {
        "none_p50_us": quantile(plain, 0.5),
        "none_p99_us": quantile(plain, 0.99),
        "recv_p50_us": quantile(received, 0.5),
        "recv_p99_us": quantile(received, 0.99),
        "batches": len(plain),
        "batch": BATCH,
        "events_built_no_receiver": built[0],
    }


def case_throughput(n: int, args: argparse.Namespace) -> Result:
    """handle_heartbeat calls per second from 4 threads and from 1 (disjoint services, no receivers), alternated."""
    manager = LifecycleManager()
    ids = start_many(manager, n)
    settle()
    four: list[float] = []
    one: list[float] = []
    for _ in range(3):
        four.append(throughput(manager.handle_heartbeat, ids, threads=4, seconds=0.5))
        one.append(throughput(manager.handle_heartbeat, ids, threads=1, seconds=0.5))
    return {"calls_per_s": quantile(four, 0.5), "threads_used": 4, "calls_per_s_1_thread": quantile(one, 0.5),
            "ratio_4_to_1": quantile(four, 0.5) / quantile(one, 0.5)}


def case_idle(n: int, args: argparse.Namespace) -> Result:
    """Process CPU and watchdog wakeups over a window with `n` healthy services and nothing due (90 s)."""
    manager = LifecycleManager()
    counter = count_wakeups(manager._watchdog)
    start_many(manager, n)
    settle(0.5)
    w0, c0, o0, t0 = counter[0], cpu_seconds(), os_cpu_seconds(), time.monotonic()
    time.sleep(args.seconds)
    w1, c1, o1, t1 = counter[0], cpu_seconds(), os_cpu_seconds(), time.monotonic()
    return {
        "cpu_pct": 100.0 * (c1 - c0) / (t1 - t0),
        "os_times_cpu_pct": 100.0 * (o1 - o0) / (t1 - t0),
        "wakeups_per_s": (w1 - w0) / (t1 - t0),
        "window_s": t1 - t0,
        "threads": threading.active_count(),
    }


def case_wakeups(n: int, args: argparse.Namespace) -> Result:
    """Watchdog wakeups/s and CPU with no service: a fresh manager, then one after a start and a stop."""
    manager = LifecycleManager()
    counter = count_wakeups(manager._watchdog)
    settle()
    window = args.seconds
    c0, t0 = cpu_seconds(), time.monotonic()
    time.sleep(window)
    fresh_cpu = 100.0 * (cpu_seconds() - c0) / (time.monotonic() - t0)
    fresh = counter[0] / (time.monotonic() - t0)
    fresh_threads = threading.active_count()
    manager.stop_service(manager.start_service(_service(0)))  # the watchdog thread now exists
    settle()
    w0, c0, t0 = counter[0], cpu_seconds(), time.monotonic()
    time.sleep(window)
    t1 = time.monotonic()
    return {
        "fresh_wakeups_per_s": fresh,
        "fresh_cpu_pct": fresh_cpu,
        "fresh_threads": fresh_threads,
        "wakeups_per_s": (counter[0] - w0) / (t1 - t0),
        "cpu_pct": 100.0 * (cpu_seconds() - c0) / (t1 - t0),
        "threads": threading.active_count(),
    }


def case_lag(n: int, args: argparse.Namespace, *, spread: bool = False) -> Result:
    """Detection lag with a 1 s timeout, all services beating, 200 muted at a known instant."""
    timeout = args.timeout
    config = LifecycleConfig(heartbeat_interval_secs=timeout / 4, heartbeat_timeout_secs=timeout,
                             auto_reconnect=False)
    manager = LifecycleManager(config=config)
    timeouts: list[tuple[Any, float]] = []
    clock = time.monotonic

    def on_timeout(sender: object, *, service_id: str, event: Any, **kw: object) -> None:
        # The receiver's own clock, not the event's timestamp: lag includes getting the event out.
        timeouts.append((service_id, clock()))

    signals.heartbeat_timeout.connect(on_timeout, sender=manager, weak=False)
    registry = manager.registry

    def last_beat(sid: str) -> float:
        live = registry.silence(sid)
        assert live is not None and live[1] is not None
        return time.monotonic() - live[1]

    result = run_lag(n, lambda i: manager.start_service(_service(i)), manager.handle_heartbeat, last_beat,
                     timeouts, timeout=config.heartbeat_timeout_secs, start_budget=args.budget, spread=spread)
    result["config"] = (f"interval {timeout / 4:g} s, timeout {timeout:g} s, auto_reconnect off, 2 heartbeat threads, "
                        f"{'beats paced over each round' if spread else 'rounds flat out (deadlines clustered)'}")
    return result


def case_lag_spread(n: int, args: argparse.Namespace) -> Result:
    """The lag case with each heartbeat round paced over the period, so deadlines are not clustered."""
    return case_lag(n, args, spread=True)


def case_handoff(n: int, args: argparse.Namespace) -> Result:
    """How late a 10 ms watchdog timer runs while 2 threads heartbeat `n` services flat out (the GIL handoff)."""
    config = LifecycleConfig(heartbeat_interval_secs=2.5, heartbeat_timeout_secs=10.0, auto_reconnect=False)
    manager = LifecycleManager(config=config)
    ids = start_many(manager, n)
    stop = threading.Event()
    beats = [0, 0]

    def beat(k: int) -> None:
        mine = ids[k::2]
        while not stop.is_set():
            for sid in mine:
                manager.handle_heartbeat(sid)
            beats[k] += len(mine)

    late: list[float] = []
    done = threading.Event()
    watchdog = manager._watchdog

    def tick(when: float) -> None:
        late.append((time.monotonic() - when) * 1000.0)  # the callback's own clock
        if len(late) >= 300:
            done.set()
            return
        watchdog.call_at(time.monotonic() + 0.01, tick, time.monotonic() + 0.01)

    threads = [threading.Thread(target=beat, args=(k,), daemon=True) for k in range(2)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    watchdog.call_at(t0 + 0.01, tick, t0 + 0.01)
    done.wait(30.0)
    stop.set()
    for t in threads:
        t.join()
    return {
        "late_p50_ms": quantile(late, 0.5),
        "late_p99_ms": quantile(late, 0.99),
        "late_max_ms": max(late, default=float("nan")),
        "ticks": len(late),
        "beats_per_s": sum(beats) / (time.monotonic() - t0),
    }


class _FlakyConnector:
    """`connect` succeeds at start, then fails the first `fails` reconnect calls per service."""

    def __init__(self, fails: int = 2) -> None:
        self.fails = fails
        self.storming = False
        self.calls: collections.Counter[str] = collections.Counter()
        self.attempts: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    def connect(self, service: ExtensionService) -> None:
        """Record the attempt time; fail while this service has had fewer than `fails` attempts."""
        now = time.monotonic()
        if not self.storming:
            return
        with self._lock:
            self.calls[service.name] += 1
            k = self.calls[service.name]
            self.attempts.append((now, k))
        if k <= self.fails:
            raise ConnectionError(f"refused (attempt {k})")


def case_storm(n: int, args: argparse.Namespace) -> Result:
    """`n` services time out together; connect fails twice each: time until all RUNNING, attempt spread."""
    jitter = args.jitter
    config = LifecycleConfig(heartbeat_interval_secs=0.25, heartbeat_timeout_secs=1.0, reconnect_delay_ms=100,
                             max_reconnect_delay_ms=1000, reconnect_backoff_multiplier=2.0, jitter=jitter,
                             max_reconnect_attempts=5)
    connector = _FlakyConnector(fails=2)
    manager = LifecycleManager(config=config, connector=connector)
    timed_out: list[float] = []
    back: dict[str, float] = {}
    done = threading.Event()

    def on_timeout(sender: object, *, event: Any, **kw: object) -> None:
        timed_out.append(event.at)

    def on_reconnected(sender: object, *, service_id: str, event: Any, **kw: object) -> None:
        back.setdefault(service_id, event.at)
        if len(back) >= n:
            done.set()

    signals.heartbeat_timeout.connect(on_timeout, sender=manager, weak=False)
    signals.reconnected.connect(on_reconnected, sender=manager, weak=False)
    start_many(manager, n)  # nobody beats: all deadlines fall within the start's duration
    connector.storming = True
    finished = done.wait(15.0)
    running = manager.registry.stats().running
    if not timed_out:
        raise RuntimeError("no service timed out")
    t0 = min(timed_out)
    rel = sorted((t - t0) * 1000.0 for t, _ in connector.attempts)
    by_attempt: dict[int, list[float]] = collections.defaultdict(list)
    for t, k in connector.attempts:
        by_attempt[k].append((t - t0) * 1000.0)
    top = rel[-1] if rel else 0.0
    width = top / 10 if top > 0 else 1.0
    hist = [0] * 10
    for r in rel:
        hist[min(9, int(r / width))] += 1
    spread = {f"attempt{k}_ms": [round(min(v), 1), round(quantile(v, 0.5), 1), round(max(v), 1)]
              for k, v in sorted(by_attempt.items())}
    first = by_attempt.get(1, [0.0])
    return {
        "all_running": finished,
        "reconnected": len(back),
        "running": running,
        "all_running_s": (max(back.values()) - t0) if back else float("nan"),
        "timeouts_spread_ms": (max(timed_out) - t0) * 1000.0,
        "attempts": len(connector.attempts),
        "attempt1_spread_ms": max(first) - min(first),
        "hist_ms_width": width,
        "hist": hist,
        "by_attempt_min_p50_max_ms": spread,
        "config": f"timeout 1 s, reconnect_delay_ms=100, max 1000, x2, jitter={jitter}, 5 attempts, "
                  "connect fails 2x per service",
    }


CASES = {
    "start": case_start,
    "heartbeat": case_heartbeat,
    "throughput": case_throughput,
    "idle": case_idle,
    "wakeups": case_wakeups,
    "lag": case_lag,
    "lag_spread": case_lag_spread,
    "storm": case_storm,
    "handoff": case_handoff,
}

if __name__ == "__main__":
    sys.exit(case_main(CASES))
