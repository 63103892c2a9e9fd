"""The detection-lag workload, shared by the library and the poller baseline.

Two heartbeat threads cycle through every started service once per `period` (each takes every
second id), either flat out (deadlines clustered: the hard case) or paced over the period
(deadlines spread). Services start while they already beat, so even 100,000 services with a 1 s
timeout get beats from the start. After a warm-up, `silent` services are muted at a known instant;
their true deadline is their last recorded heartbeat + timeout, and each timeout event's time is
compared with it.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from ._util import GaveUp, cpu_seconds, quantile

__all__ = ["Heartbeaters", "run_lag"]

#: With ``spread=True`` a heartbeat thread sleeps after every this many beats to pace its round.
_SPREAD_CHUNK = 100


class Heartbeaters:
    """Threads that beat every started service once per `period`, skipping muted ones."""

    def __init__(self, ids: list[Any], capacity: int, beat: Callable[[Any], object], *,
                 threads: int = 2, period: float = 0.25, spread: bool = False) -> None:
        self.ids = ids
        self.spread = spread
        self.muted = bytearray(capacity)
        self.beat = beat
        self.period = period
        self.errors = 0
        self.rounds: list[list[tuple[float, float]]] = [[] for _ in range(threads)]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(k,), name=f"bench-beat-{k}", daemon=True)
                         for k in range(threads)]

    def start(self) -> None:
        """Start the heartbeat threads."""
        for t in self._threads:
            t.start()

    def stop(self, *, wait: bool = True) -> None:
        """Stop the heartbeat threads (and join them unless `wait` is false)."""
        self._stop.set()
        for t in self._threads if wait else ():
            t.join()

    def _run(self, k: int) -> None:
        ids, muted, beat, step = self.ids, self.muted, self.beat, len(self._threads)
        rounds = self.rounds[k]
        mono = time.monotonic
        period, chunk = self.period, _SPREAD_CHUNK
        while not self._stop.is_set():
            t0 = mono()
            mine = range(k, len(ids), step)
            for c, j in enumerate(mine):
                if not muted[j]:
                    try:
                        beat(ids[j])
                    except Exception:
                        self.errors += 1
                if self.spread and c % chunk == chunk - 1:
                    # Pace the round so its beats (and so the deadlines) cover the whole period.
                    rest = t0 + period * 0.9 * (c + 1) / len(mine) - mono()
                    if rest > 0:
                        time.sleep(rest)
            t1 = mono()
            rounds.append((t0, t1))
            rest = self.period - (t1 - t0)
            if rest > 0:
                self._stop.wait(rest)

    def keep_up(self, since: float, until: float) -> dict[str, float]:
        """Round statistics in [since, until]; `max_gap_s` bounds the longest time any service went unbeaten."""
        gaps: list[float] = []
        durations: list[float] = []
        for rounds in self.rounds:
            inside = [r for r in rounds if r[0] >= since and r[1] <= until]
            durations.extend(end - start for start, end in inside)
            gaps.extend(b[1] - a[0] for a, b in itertools.pairwise(inside))
        return {
            "hb_round_p50_s": quantile(durations, 0.5),
            "hb_round_max_s": max(durations, default=float("nan")),
            "hb_max_gap_s": max(gaps, default=float("nan")),
            "hb_rounds": float(len(durations)),
        }


def run_lag(n: int, start_one: Callable[[int], Any], beat: Callable[[Any], object],
            last_beat: Callable[[Any], float], timeouts: list[tuple[Any, float]], *,
            timeout: float = 1.0, silent_count: int = 200, warmup: float = 2.0,
            gap_ok: float = 0.6, start_budget: float = 45.0, spread: bool = False) -> dict[str, Any]:
    """Start `n` services while beating them, mute `silent_count` of them, and measure detection lag.

    `timeouts` is filled (by the caller's timeout hook) with ``(id, monotonic time)`` pairs.
    With `spread`, each heartbeat round is paced over the period instead of running flat out, so
    deadlines are spread evenly rather than clustered into a few milliseconds per round.
    The run is valid (``hb_kept_up``) if no service went unbeaten longer than `gap_ok` x `timeout`.
    Raises `GaveUp` if starting the services takes longer than `start_budget` seconds.
    """
    ids: list[Any] = []
    beaters = Heartbeaters(ids, n, beat, spread=spread, period=timeout / 4)
    beaters.start()
    t_start = time.monotonic()
    give_up_at = t_start + start_budget
    for i in range(n):
        ids.append(start_one(i))
        if time.monotonic() > give_up_at:
            beaters.stop(wait=False)
            raise GaveUp(f"started only {i + 1:,} of {n:,} services in {start_budget:g} s "
                         f"({len(timeouts):,} timeouts meanwhile)")
    started_s = time.monotonic() - t_start
    time.sleep(warmup)
    step = max(1, n // silent_count)
    silent_idx = list(range(0, n, step))[:silent_count]
    cpu0 = cpu_seconds()
    t_silence = time.monotonic()
    warmup_timeouts = len(timeouts)
    for j in silent_idx:
        beaters.muted[j] = 1
    time.sleep(0.2)  # a beat already past the mute check lands now; after this the last beat is final
    deadlines = {ids[j]: last_beat(ids[j]) + timeout for j in silent_idx}
    end = max(deadlines.values()) + 1.0 + 0.1
    time.sleep(max(0.0, end - time.monotonic()))
    t_end = time.monotonic()
    cpu = cpu_seconds() - cpu0
    beaters.stop()
    events = list(timeouts)

    first: dict[Any, float] = {}
    false_measure = 0
    for sid, at in events[warmup_timeouts:]:
        if sid in deadlines:
            if sid not in first:
                first[sid] = at
        else:
            false_measure += 1
    lags = [(first[sid] - d) * 1000.0 for sid, d in deadlines.items() if sid in first and first[sid] <= d + 1.0]
    missed = len(deadlines) - len(lags)
    keep = beaters.keep_up(t_start + started_s + 0.5, t_end)
    return {
        "start_while_beating_s": started_s,
        "silent": len(deadlines),
        "lag_p50_ms": quantile(lags, 0.5),
        "lag_p99_ms": quantile(lags, 0.99),
        "lag_max_ms": max(lags, default=float("nan")),
        "lag_min_ms": min(lags, default=float("nan")),
        "false_timeouts": warmup_timeouts + false_measure,
        "false_timeouts_warmup": warmup_timeouts,
        "missed": missed,
        "hb_errors": beaters.errors,
        "hb_kept_up": bool(keep["hb_max_gap_s"] <= gap_ok * timeout),
        "window_cpu_pct": 100.0 * cpu / (t_end - t_silence),
        **keep,
    }
