"""What users would otherwise write; ``python -m benchmarks.baselines CASE N`` prints one JSON line.

- ``floor``: the least a heartbeat can cost in CPython, ``time.monotonic()`` + ``with lock:`` + dict
  write, called as a function (as ``handle_heartbeat`` is), with `Lock` (the floor) and `RLock`.
- ``timer``: one `threading.Timer` per service, cancelled and re-created on each heartbeat.
- ``poller`` / ``poller_lag``: a thread per service waking every timeout/3 (the original design).

Thread-per-service baselines refuse sizes that would exhaust the machine's pid/thread limits.
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from ._util import (
    Result,
    case_main,
    cpu_seconds,
    quantile,
    require_threads,
    rss_kib,
    settle,
    throughput,
    time_batches,
)
from .harness import run_lag

__all__ = ["CASES", "PollerWatch", "TimerWatch"]

IDLE_TIMEOUT = 90.0


def _ids(n: int) -> list[str]:
    """Ids shaped like the library's (uuid4 text)."""
    return [str(uuid.uuid4()) for _ in range(n)]


def case_floor(n: int, args: argparse.Namespace) -> Result:
    """``time.monotonic()`` + ``with Lock:`` + dict write per call (and with RLock); 4-thread throughput."""
    ids = _ids(n)
    last: dict[str, float] = dict.fromkeys(ids, 0.0)
    mono = time.monotonic
    lock = threading.Lock()
    rlock = threading.RLock()

    def beat_lock(sid: str) -> None:
        with lock:
            last[sid] = mono()

    def beat_rlock(sid: str) -> None:
        with rlock:
            last[sid] = mono()

    time_batches(beat_lock, ids, 1000, 20)
    settle()
    plain: list[float] = []
    reentrant: list[float] = []
    for _ in range(8):
        plain += time_batches(beat_lock, ids, 1000, 40)
        reentrant += time_batches(beat_rlock, ids, 1000, 40)
    return {
        "lock_p50_us": quantile(plain, 0.5),
        "lock_p99_us": quantile(plain, 0.99),
        "rlock_p50_us": quantile(reentrant, 0.5),
        "rlock_p99_us": quantile(reentrant, 0.99),
        "calls_per_s_4threads": throughput(beat_lock, ids, threads=4, seconds=1.5),
    }


class TimerWatch:
    """One daemon `threading.Timer` per service; each heartbeat cancels it and starts a new one."""

    def __init__(self, timeout: float, on_timeout: Callable[[str], object]) -> None:
        self.timeout = timeout
        self.on_timeout = on_timeout
        self.timers: dict[str, threading.Timer] = {}
        self.lock = threading.Lock()

    def _arm(self, sid: str) -> None:
        timer = threading.Timer(self.timeout, self.on_timeout, (sid,))
        timer.daemon = True
        timer.start()
        self.timers[sid] = timer

    def start(self, sid: str) -> None:
        """Watch a new service."""
        with self.lock:
            self._arm(sid)

    def beat(self, sid: str) -> None:
        """Record a heartbeat: cancel the service's timer and start a fresh one."""
        with self.lock:
            self.timers[sid].cancel()
            self._arm(sid)


def _start_all(start: Any, ids: list[str]) -> Result:
    """Start every id; return start cost, threads alive and RSS growth per service, then settle."""
    n = len(ids)
    gc.collect()
    rss0 = rss_kib()
    t0 = time.perf_counter_ns()
    for sid in ids:
        start(sid)
    start_ns = time.perf_counter_ns() - t0
    gc.collect()
    rss1 = rss_kib()
    threads = threading.active_count()
    settle(0.5)
    return {
        "start_us": start_ns / n / 1000.0,
        "start_total_s": start_ns / 1e9,
        "threads": threads,
        "rss_kib_per_service": (rss1 - rss0) / n,
    }


def case_timer(n: int, args: argparse.Namespace) -> Result:
    """Timer per service: start cost, threads, RSS per service, idle CPU, heartbeat cost."""
    require_threads(n)
    watch = TimerWatch(IDLE_TIMEOUT, lambda sid: None)
    ids = _ids(n)
    started = _start_all(watch.start, ids)
    pc = time.perf_counter_ns
    c0, w0 = cpu_seconds(), time.monotonic()
    time.sleep(args.seconds)
    idle = 100.0 * (cpu_seconds() - c0) / (time.monotonic() - w0)
    # Heartbeats: small batches (each one starts a thread), bounded by count and by time.
    costs: list[float] = []
    batch = 100
    end = time.monotonic() + 3.0
    pos = 0
    while len(costs) < 50 and time.monotonic() < end:
        chunk = [ids[(pos + k) % n] for k in range(batch)]
        pos = (pos + batch) % n
        t0 = pc()
        for sid in chunk:
            watch.beat(sid)
        costs.append((pc() - t0) / batch / 1000.0)
    return {
        **started,
        "idle_cpu_pct": idle,
        "hb_p50_us": quantile(costs, 0.5),
        "hb_p99_us": quantile(costs, 0.99),
        "hb_calls": len(costs) * batch,
    }


class PollerWatch:
    """A thread per service that wakes every timeout/3 and reports a heartbeat older than the timeout."""

    def __init__(self, timeout: float, on_timeout: Callable[[str, float], object], *, random_phase: bool) -> None:
        self.timeout = timeout
        self.period = timeout / 3.0
        self.on_timeout = on_timeout
        self.random_phase = random_phase
        self.last: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stopped = False
        self.wakeups = 0

    def start(self, sid: str) -> str:
        """Record the start as a heartbeat and start the service's poller thread."""
        with self.lock:
            self.last[sid] = time.monotonic()
        threading.Thread(target=self._poll, args=(sid,), daemon=True).start()
        return sid

    def beat(self, sid: str) -> None:
        """Record a heartbeat (a plain locked dict write)."""
        with self.lock:
            self.last[sid] = time.monotonic()

    def last_beat(self, sid: str) -> float:
        """The service's last heartbeat time."""
        with self.lock:
            return self.last[sid]

    def _poll(self, sid: str) -> None:
        delay = random.random() * self.period if self.random_phase else self.period
        reported = False
        while not self.stopped:
            time.sleep(delay)
            delay = self.period
            self.wakeups += 1  # approximate under contention (not atomic); good enough for a rate
            now = time.monotonic()
            with self.lock:
                last = self.last[sid]
            if now - last >= self.timeout:
                if not reported:
                    reported = True
                    self.on_timeout(sid, now)
            else:
                reported = False


def case_poller(n: int, args: argparse.Namespace) -> Result:
    """Poller per service (timeout 90 s, random phase): start cost, threads, RSS per service, idle CPU."""
    require_threads(n)
    watch = PollerWatch(IDLE_TIMEOUT, lambda sid, at: None, random_phase=True)
    started = _start_all(watch.start, _ids(n))
    c0, w0, k0 = cpu_seconds(), time.monotonic(), watch.wakeups
    time.sleep(args.seconds)
    elapsed = time.monotonic() - w0
    return {
        **started,
        "idle_cpu_pct": 100.0 * (cpu_seconds() - c0) / elapsed,
        "wakeups_per_s": (watch.wakeups - k0) / elapsed,
    }


def case_poller_lag(n: int, args: argparse.Namespace) -> Result:
    """Poller per service, 1 s timeout (wakes every 0.33 s, random phase): the same lag workload as ours."""
    require_threads(n)
    timeouts: list[tuple[Any, float]] = []
    watch = PollerWatch(1.0, lambda sid, at: timeouts.append((sid, at)), random_phase=True)
    ids = _ids(n)
    result = run_lag(n, lambda i: watch.start(ids[i]), watch.beat, watch.last_beat, timeouts, timeout=1.0,
                     start_budget=args.budget)
    watch.stopped = True
    result["threads"] = threading.active_count()
    return result


CASES = {
    "floor": case_floor,
    "timer": case_timer,
    "poller": case_poller,
    "poller_lag": case_poller_lag,
}

if __name__ == "__main__":
    sys.exit(case_main(CASES))
