"""Helpers shared by the benchmark cases: memory, CPU, quantiles, batch timing, limits, the case CLI."""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import logging
import math
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "GaveUp",
    "Infeasible",
    "case_main",
    "cpu_seconds",
    "emit",
    "os_cpu_seconds",
    "quantile",
    "quiet_logging",
    "require_threads",
    "rss_kib",
    "settle",
    "throughput",
    "time_batches",
]

Result = dict[str, Any]
Case = Callable[[int, argparse.Namespace], Result]


class Infeasible(Exception):
    """Raised by a case that refuses to run at this size (and says why) instead of harming the machine."""


class GaveUp(Exception):
    """Raised by a case that stopped itself because the workload could not be set up in time."""


def rss_kib() -> int:
    """Resident set size of this process in KiB, read from /proc/self/status."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("VmRSS missing from /proc/self/status")


def cpu_seconds() -> float:
    """CPU time of the whole process (all threads, user + system), nanosecond clock."""
    return time.process_time()


def os_cpu_seconds() -> float:
    """CPU time of the process from os.times() (user + system; clock-tick resolution)."""
    t = os.times()
    return t.user + t.system


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of `values` with linear interpolation; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def settle(seconds: float = 0.2) -> None:
    """Collect garbage and give background threads a moment before a measurement window."""
    gc.collect()
    time.sleep(seconds)


def quiet_logging() -> None:
    """Silence the library's warnings (thousands of timeouts would otherwise be written to stderr)."""
    logging.getLogger("lifecycle").setLevel(logging.ERROR)


def time_batches(call: Callable[[Any], object], ids: Sequence[Any], batch: int, batches: int) -> list[float]:
    """Time `batches` batches of `batch` calls (rotating over `ids`); return µs per call for each batch."""
    n = len(ids)
    doubled = list(ids) * (1 + batch // max(n, 1) + 1)
    pc = time.perf_counter_ns
    out: list[float] = []
    pos = 0
    for _ in range(batches):
        chunk = doubled[pos:pos + batch]
        t0 = pc()
        for i in chunk:
            call(i)
        out.append((pc() - t0) / batch / 1000.0)
        pos = (pos + batch) % n
    return out


def throughput(call: Callable[[Any], object], ids: Sequence[Any], threads: int = 4, seconds: float = 1.0) -> float:
    """Total calls per second of `call` from `threads` threads, each cycling over its share of `ids`."""
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()
    counts = [0] * threads

    def worker(k: int) -> None:
        mine = list(ids[k::threads]) or list(ids)
        chunks = [mine[p:p + 1000] for p in range(0, len(mine), 1000)]
        done = 0
        barrier.wait()
        for chunk in itertools.cycle(chunks):
            for i in chunk:
                call(i)
            done += len(chunk)
            if stop.is_set():
                break
        counts[k] = done

    workers = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - t0)


def _system_threads() -> int:
    # /proc/loadavg field 4 is "running/total" scheduling entities (threads) on the whole machine.
    with open("/proc/loadavg") as f:
        return int(f.read().split()[3].split("/")[1])


def _read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return None if text in ("", "max") else int(text)


def _mem_available_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


def require_threads(n: int, kib_per_thread: int = 64) -> None:
    """Raise `Infeasible` if `n` more threads would crowd the machine's pid/thread limits or memory.

    Threads take pids from the system-wide `pid_max`, shared with every other process on the
    machine; a baseline that exhausts them would break other people's work, so a reserve is kept.
    """
    limits = {"kernel.pid_max": _read_int("/proc/sys/kernel/pid_max"),
              "kernel.threads-max": _read_int("/proc/sys/kernel/threads-max"),
              "cgroup pids.max": _read_int("/sys/fs/cgroup/pids.max")}
    soft, _hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if soft != resource.RLIM_INFINITY:
        limits["ulimit -u"] = soft
    known = {k: v for k, v in limits.items() if v}
    name, limit = min(known.items(), key=lambda kv: kv[1])
    in_use = _system_threads()
    reserve = max(4096, limit // 4)
    headroom = limit - in_use - reserve
    if n + 16 > headroom:
        raise Infeasible(f"needs {n:,} threads; {name}={limit:,}, {in_use:,} in use, "
                         f"{reserve:,} kept for other processes: at most {max(headroom, 0):,}")
    need = n * kib_per_thread
    avail = _mem_available_kib()
    if need * 2 > avail:
        raise Infeasible(f"needs ~{need // 1024:,} MiB for {n:,} threads, {avail // 1024:,} MiB available")


def emit(result: Result) -> None:
    """Print the case's result as one JSON line on stdout (the runner reads the last such line)."""
    print(json.dumps(result, sort_keys=True), flush=True)


def case_main(cases: Mapping[str, Case], argv: list[str] | None = None) -> int:
    """The case modules' CLI: ``CASE N [--seconds S] [--jitter J] [--budget B] [--timeout T]``, one JSON line."""
    parser = argparse.ArgumentParser(description="Run one benchmark case and print one JSON line.")
    parser.add_argument("case", choices=sorted(cases))
    parser.add_argument("n", type=int, help="number of services")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of idle measurement windows")
    parser.add_argument("--jitter", type=float, default=0.5, help="reconnect jitter (storm case)")
    parser.add_argument("--budget", type=float, default=45.0, help="lag cases: seconds allowed for starting N")
    parser.add_argument("--timeout", type=float, default=1.0, help="lag cases: heartbeat timeout, s (beats every 1/4)")
    args = parser.parse_args(argv)
    quiet_logging()
    base: Result = {"case": args.case, "n": args.n, "python": sys.version.split()[0]}
    try:
        result = cases[args.case](args.n, args)
    except Infeasible as exc:
        emit({**base, "ok": False, "infeasible": str(exc)})
        return 0
    except GaveUp as exc:
        emit({**base, "ok": False, "error": str(exc)})
        return 0
    except Exception as exc:
        traceback.print_exc()
        emit({**base, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    emit({**base, "ok": True, **result})
    return 0
