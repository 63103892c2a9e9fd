"""Detection lag with paced heartbeats, against a minimal one-thread `sched` design in the same run.

``python -m benchmarks paced-lag`` runs both designs at 1,000 and 10,000 services, three runs each,
interleaved (library, baseline, library, ...), and prints p50/p99/max per design with the ratio
library ÷ baseline (medians over the runs). One run: ``python -m benchmarks.paced paced_lag N``
(the library) or ``paced_lag_base N`` (the baseline); each prints one JSON line.

The scenario: heartbeat timeout 1 s, each service beaten every timeout/3 by **one** thread at its
own due time (a FIFO of (service, last beat); the thread sleeps until the oldest entry is due, so
it wakes about 3 x N times a second and never beats in bursts). After a warm-up, 200 services
beat for the last time within about a millisecond (the beating thread beats them back to back)
and go silent. Lag = when the timeout callback runs (its own clock) minus (the monotonic time
just before that service's last ``handle_heartbeat`` call + timeout): never less than the true lag.

The baseline (`SchedWatch`) is what a user could write in 40 lines: a dict of last-beat times,
one `sched.scheduler` on one daemon thread, one timer per service re-armed lazily (a heartbeat
only writes the dict; a timer that finds a newer beat re-enters itself for that beat + timeout),
and the timeout callback called directly on the timer thread.
"""

from __future__ import annotations

import argparse
import collections
import sched
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, signals

from ._util import Result, case_main, cpu_seconds, quantile

__all__ = ["CASES", "PacedBeater", "SchedWatch", "run_paced"]

#: Seconds of paced beating before the 200 go silent (every deadline has been re-armed at least twice).
WARMUP = 3.0
SILENT = 200


class SchedWatch:
    """The baseline: one `sched` queue on one thread, lazy re-arm, the callback on the timer thread."""

    def __init__(self, timeout: float, on_timeout: Callable[[str], object]) -> None:
        self.timeout = timeout
        self.on_timeout = on_timeout
        self.last: dict[str, float] = {}
        self.sched = sched.scheduler(time.monotonic, lambda _s: None)
        self.cond = threading.Condition(threading.Lock())
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, name="bench-sched", daemon=True)
        self.thread.start()

    def start(self, sid: str) -> str:
        """Watch `sid` from now (the start counts as a beat)."""
        now = time.monotonic()
        self.last[sid] = now
        with self.cond:
            self.sched.enterabs(now + self.timeout, 0, self._check, (sid,))
            self.cond.notify()
        return sid

    def beat(self, sid: str) -> None:
        """A heartbeat: one dict write; the timer is not touched."""
        self.last[sid] = time.monotonic()

    def stop(self) -> None:
        """Stop the timer thread."""
        with self.cond:
            self.stopped = True
            self.cond.notify()

    def _check(self, sid: str) -> None:
        last = self.last[sid]
        if time.monotonic() - last < self.timeout:
            self.sched.enterabs(last + self.timeout, 0, self._check, (sid,))  # lazy re-arm
        else:
            self.on_timeout(sid)

    def _loop(self) -> None:
        while True:
            delay = self.sched.run(blocking=False)
            with self.cond:
                if self.stopped:
                    return
                self.cond.wait(delay)


class PacedBeater:
    """One thread beating each service at its own due time: a FIFO of (index, last beat).

    It sleeps until the oldest entry is due, beats it and puts it at the back. `silence` asks it
    to beat the given services once more back to back and then never again.
    """

    def __init__(self, ids: list[Any], beat: Callable[[Any], object], interval: float) -> None:
        self.ids = ids
        self.beat = beat
        self.interval = interval
        self.beats = 0
        self.wakeups = 0
        self.errors = 0
        self.late: list[float] = []  # how late each beat was against its due time, s (after the warm-up)
        self.record_late = False
        self.last_beats: dict[Any, float] = {}
        self._muted = bytearray(len(ids))
        self._silence: list[int] | None = None
        self._silenced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-paced-beat", daemon=True)

    def start(self) -> None:
        """Start beating (every service's first beat falls within one interval)."""
        self._thread.start()

    def silence(self, indices: list[int]) -> None:
        """Have the beating thread beat these services one last time, back to back; wait until it has."""
        self._silence = indices
        self._silenced.wait(10.0)

    def stop(self) -> None:
        """Stop and join the beating thread."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        ids, beat, interval, muted = self.ids, self.beat, self.interval, self._muted
        mono, sleep = time.monotonic, time.sleep
        n = len(ids)
        t0 = mono()
        # Spread the first due times over one interval, as if the services had been beating all along.
        fifo = collections.deque((j, t0 - interval + interval * (j + 1) / n) for j in range(n))
        late = self.late
        while not self._stop.is_set():
            if self._silence is not None:
                for j in self._silence:
                    sid = ids[j]
                    self.last_beats[sid] = mono()
                    beat(sid)
                    muted[j] = 1
                self._silence = None
                self._silenced.set()
            j, last = fifo[0]
            due = last + interval
            now = mono()
            if due > now:
                sleep(due - now)
                self.wakeups += 1
                continue
            fifo.popleft()
            if muted[j]:
                continue
            if self.record_late:
                late.append(now - due)
            try:
                beat(ids[j])
            except Exception:
                self.errors += 1
            fifo.append((j, mono()))
            self.beats += 1


def run_paced(n: int, start_one: Callable[[int], Any], beat: Callable[[Any], object],
              timeouts: list[tuple[Any, float]], *, timeout: float = 1.0, warmup: float = WARMUP,
              silent_count: int = SILENT) -> Result:
    """Start `n` services, beat them paced for `warmup` s, silence `silent_count` within ~1 ms, measure lag.

    `timeouts` is filled by the caller's timeout callback with ``(id, monotonic time)`` pairs.
    """
    ids = [start_one(i) for i in range(n)]
    beater = PacedBeater(ids, beat, timeout / 3)
    beater.start()
    time.sleep(warmup / 2)
    beater.record_late = True
    t_mid, beats_mid, wake_mid = time.monotonic(), beater.beats, beater.wakeups
    time.sleep(warmup / 2)
    step = max(1, n // silent_count)
    silent = list(range(0, n, step))[:silent_count]
    warmup_timeouts = len(timeouts)
    cpu0 = cpu_seconds()
    t_silence, beats_end, wake_end = time.monotonic(), beater.beats, beater.wakeups
    beater.silence(silent)
    last = dict(beater.last_beats)
    burst_ms = (max(last.values()) - min(last.values())) * 1000.0
    time.sleep(max(0.0, max(last.values()) + timeout + 0.3 - time.monotonic()))
    t_end = time.monotonic()
    cpu = cpu_seconds() - cpu0
    beater.stop()
    deadlines = {sid: at + timeout for sid, at in last.items()}
    first: dict[Any, float] = {}
    false_measure = 0
    for sid, at in timeouts[warmup_timeouts:]:
        if sid in deadlines:
            first.setdefault(sid, at)
        else:
            false_measure += 1
    lags = [(first[sid] - d) * 1000.0 for sid, d in deadlines.items() if sid in first]
    late_ms = [x * 1000.0 for x in beater.late]
    return {
        "lag_p50_ms": quantile(lags, 0.5),
        "lag_p99_ms": quantile(lags, 0.99),
        "lag_max_ms": max(lags, default=float("nan")),
        "lag_min_ms": min(lags, default=float("nan")),
        "silent": len(deadlines),
        "last_beats_within_ms": burst_ms,
        "false_timeouts": warmup_timeouts + false_measure,
        "missed": len(deadlines) - len(lags),
        "hb_errors": beater.errors,
        "beats_per_s": (beats_end - beats_mid) / (t_silence - t_mid),
        "beater_wakeups_per_s": (wake_end - wake_mid) / (t_silence - t_mid),
        "beat_late_p50_ms": quantile(late_ms, 0.5),
        "beat_late_p99_ms": quantile(late_ms, 0.99),
        "window_cpu_pct": 100.0 * cpu / (t_end - t_silence),
        "config": f"interval {timeout / 3:g} s, timeout {timeout:g} s, one paced beating thread, "
                  f"{silent_count} silenced, warm-up {warmup:g} s",
    }


def _stamp(timeouts: list[tuple[Any, float]]) -> Callable[[str], None]:
    clock, append = time.monotonic, timeouts.append
    return lambda sid: append((sid, clock()))


def case_paced_lag(n: int, args: argparse.Namespace) -> Result:
    """The library: LifecycleManager with interval timeout/3, the timeout receiver stamps its own clock."""
    timeout = args.timeout
    config = LifecycleConfig(heartbeat_interval_secs=timeout / 3, heartbeat_timeout_secs=timeout)
    manager = LifecycleManager(config=config)
    timeouts: list[tuple[Any, float]] = []
    stamp = _stamp(timeouts)

    def on_timeout(sender: object, *, service_id: str, **kw: object) -> None:
        stamp(service_id)

    signals.heartbeat_timeout.connect(on_timeout, sender=manager, weak=False)
    return run_paced(n, lambda i: manager.start_service(ExtensionService(f"svc-{i}", "1.0")),
                     manager.handle_heartbeat, timeouts, timeout=timeout)


def case_paced_lag_base(n: int, args: argparse.Namespace) -> Result:
    """The baseline: `SchedWatch` (one sched thread, lazy re-arm, callback on the timer thread)."""
    timeouts: list[tuple[Any, float]] = []
    watch = SchedWatch(args.timeout, _stamp(timeouts))
    try:
        return run_paced(n, lambda i: watch.start(f"svc-{i}"), watch.beat, timeouts, timeout=args.timeout)
    finally:
        watch.stop()


CASES = {
    "paced_lag": case_paced_lag,
    "paced_lag_base": case_paced_lag_base,
}

if __name__ == "__main__":
    sys.exit(case_main(CASES))
