"""Soak test: thousands of services with random heartbeat dropouts, for as long as you like.

Not run in CI. Typical use::

    python benchmarks/soak.py --services 10000 --duration 180

One `LifecycleManager` (real threads) watches ``--services`` services with a ``--timeout`` second
heartbeat timeout. A few heartbeat threads beat every service every ``timeout / 4`` seconds;
after each beat a service goes silent with probability ``--dropout-rate`` for a random period of
0.2x to 3x the timeout, so some silences must be detected and some must not.

Reported periodically and at the end:

* missed deadlines: a silence that outlived its deadline by more than ``--slack`` with no
  ``heartbeat_timeout`` (must be 0); late detections (detected, but lag > slack);
* false timeouts: a ``heartbeat_timeout`` whose service's last *completed* heartbeat was sent less
  than the timeout before the event (must be 0). Heartbeat send times are recorded, so this is
  exact, not statistical; a heartbeat thread starved past the timeout causes a true ("unplanned")
  timeout, reported separately together with the worst heartbeat-thread lateness;
* detection lag: event time minus the deadline implied by the last heartbeat's send time (an
  upper bound of the true lag), max and p99;
* memory: RSS (VmRSS from /proc/self/status) sampled over time, with a least-squares slope after
  a warm-up (must be flat);
* events: per-signal receiver counts, and a `Subscription` drained by a consumer thread, with its
  ``dropped`` count; consumed + dropped + pending must equal what the receivers saw.
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import random
import resource
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))

import lifecycle
from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, ServiceStatus


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class LagHistogram:
    """Detection lags in constant memory: log-spaced buckets (2 % wide) from 10 us up, plus the
    exact max, so the soak's own bookkeeping does not show up in the memory slope."""

    FLOOR = 1e-5
    RATIO = 1.02

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.n = 0
        self.max = -math.inf

    def add(self, value: float) -> None:
        bucket = 0 if value <= self.FLOOR else 1 + int(math.log(value / self.FLOOR, self.RATIO))
        self.counts[bucket] += 1
        self.n += 1
        self.max = max(self.max, value)

    def quantile(self, q: float) -> float:
        """The upper edge of the bucket holding the q-quantile (at most 2 % high), capped at max."""
        if not self.n:
            return math.nan
        rank = max(1, math.ceil(q * self.n))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return min(self.max, self.FLOOR * self.RATIO**bucket)
        return self.max


def slope_per_minute(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) samples, in value units per minute."""
    n = len(samples)
    if n < 2:
        return math.nan
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    sxx = sum((t - mx) ** 2 for t, _ in samples)
    sxy = sum((t - mx) * (v - my) for t, v in samples)
    return 60.0 * sxy / sxx if sxx else math.nan


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.timeout = args.timeout
        self.interval = args.beat_interval or args.timeout / 4
        config = LifecycleConfig(
            heartbeat_interval_secs=self.interval,
            heartbeat_timeout_secs=self.timeout,
            max_reconnect_attempts=5,
            reconnect_delay_ms=max(1.0, self.timeout * 100),
            max_reconnect_delay_ms=max(1.0, self.timeout * 1000),
        )
        self.manager = LifecycleManager(config=config, rng=random.Random(args.seed))
        self.stop = threading.Event()
        n = args.services
        self.sids: list[str] = []
        self.index: dict[str, int] = {}
        # Per service: (previous, latest) completed heartbeats as (sent, returned) monotonic times.
        self.beats: list[tuple[tuple[float, float], tuple[float, float]]] = []
        self.silent_until: list[float | None] = [None] * n
        self.timed_out_at: list[float] = [-math.inf] * n
        self.lock = threading.Lock()
        self.signal_counts: Counter[str] = Counter()
        self.lags = LagHistogram()
        self.false_timeouts: list[str] = []
        self.planned_timeouts = 0
        self.unplanned_timeouts = 0
        self.silences = 0
        self.long_silences = 0
        self.missed = 0
        self.late = 0
        self.beat_counts = [0] * args.beat_threads
        self.lateness = [0.0] * args.beat_threads
        self.consumed = 0
        # How late a 10 ms wait wakes up: the host's scheduling noise. Bounded, so the soak's own
        # bookkeeping does not show up in the memory slope.
        self.probe_lateness: deque[float] = deque(maxlen=5000)
        self.probe_max = 0.0
        self.rss: list[tuple[float, float]] = []
        self.began = 0.0

    # -- receivers (run on the watchdog thread or in heartbeat threads) ---------------------------
    def count(self, sender: object, event: Any, **kw: Any) -> None:
        with self.lock:
            self.signal_counts[event.signal_name] += 1

    def on_timeout(self, sender: object, event: Any, **kw: Any) -> None:
        i = self.index[event.service_id]
        at = time.monotonic()  # the receiver's own clock: lag includes getting the event out
        previous, latest = self.beats[i]
        beat = latest if latest[1] < at else previous  # the newest heartbeat completed before the event
        since = at - beat[0]
        with self.lock:
            self.timed_out_at[i] = at
            if since < self.timeout:
                self.false_timeouts.append(f"{event.service_id}: {since:.4f} s after a heartbeat was sent")
                return
            self.lags.add(since - self.timeout)
            if since - self.timeout > self.args.slack:
                self.late += 1
            if self.silent_until[i] is not None:
                self.planned_timeouts += 1
            elif not self.stop.is_set():  # after the run every service is silent: not counted
                self.unplanned_timeouts += 1

    # -- heartbeat threads --------------------------------------------------------------------------
    def beat_loop(self, shard: int) -> None:
        args, m = self.args, self.manager
        rng = random.Random(args.seed * 1000 + shard)
        now = time.monotonic()
        heap = [(now + rng.uniform(0, self.interval), i) for i in range(shard, args.services, args.beat_threads)]
        heapq.heapify(heap)
        lo, hi = 0.2 * self.timeout, 3.0 * self.timeout
        while not self.stop.is_set():
            due, i = heap[0]
            now = time.monotonic()
            if due > now:
                self.stop.wait(due - now)
                continue
            heapq.heappop(heap)
            self.lateness[shard] = max(self.lateness[shard], now - due)
            if self.silent_until[i] is not None:
                self.end_silence(i, now)
            t0 = time.monotonic()
            m.handle_heartbeat(self.sids[i])
            t1 = time.monotonic()
            self.beats[i] = (self.beats[i][1], (t0, t1))
            self.beat_counts[shard] += 1
            if rng.random() < args.dropout_rate:
                silence = rng.uniform(lo, hi)
                with self.lock:
                    self.silences += 1
                    if silence > self.timeout + args.slack:
                        self.long_silences += 1
                    self.silent_until[i] = t1 + silence
                heapq.heappush(heap, (t1 + silence, i))
            else:
                heapq.heappush(heap, (max(due + self.interval, now), i))

    def end_silence(self, i: int, now: float) -> None:
        """The silence of service `i` is over (or the run is): was its deadline detected in time?"""
        sent, returned = self.beats[i][1]
        # The status is read before taking our lock: the watchdog may have decided the timeout and not
        # yet run the receivers; a service no longer RUNNING was detected whatever the receivers saw.
        status = self.manager.get_status(self.sids[i])
        with self.lock:
            # Missed: the deadline (at most `returned + timeout`) passed more than `slack` ago, undetected.
            overdue = now - returned > self.timeout + self.args.slack
            if overdue and self.timed_out_at[i] < sent and status is ServiceStatus.RUNNING:
                self.missed += 1
            self.silent_until[i] = None

    # -- consumer, sampler, reports ------------------------------------------------------------------
    def consume(self, subscription: lifecycle.Subscription) -> None:
        for _ in subscription:  # ends once the manager shuts down
            self.consumed += 1

    def probe(self) -> None:
        """Measure how late this process gets the CPU back: context for lag and late detections."""
        while True:
            asked = time.monotonic()
            if self.stop.wait(0.01):
                return
            late = time.monotonic() - asked - 0.01
            self.probe_lateness.append(late)
            self.probe_max = max(self.probe_max, late)

    def sample(self) -> None:
        self.rss.append((time.monotonic() - self.began, rss_kib() / 1024.0))

    def report(self, label: str, subscription: lifecycle.Subscription, stats: Any = None) -> None:
        elapsed = time.monotonic() - self.began
        beats = sum(self.beat_counts)
        with self.lock:
            lags = self.lags
            line = (
                f"[{label:>7}] beats={beats:,} ({beats / max(elapsed, 1e-9) / 1000:.1f}k/s) "
                f"silences={self.silences} (long {self.long_silences}) "
                f"timeouts planned={self.planned_timeouts} unplanned={self.unplanned_timeouts} "
                f"false={len(self.false_timeouts)} missed={self.missed} late={self.late} "
                f"lag p99={lags.quantile(0.99) * 1000:.1f}ms max={lags.max * 1000:.1f}ms "
                f"rss={self.rss[-1][1] if self.rss else math.nan:.1f}MiB dropped={subscription.dropped} "
                f"host-noise p99={quantile(list(self.probe_lateness), 0.99) * 1000:.1f}ms"
            )
        stats = stats or self.manager.registry.stats()
        line += f" running={stats.running} reconnecting={stats.reconnecting} error={stats.errors}"
        print(line, flush=True)

    def run(self) -> int:
        args, m = self.args, self.manager
        print(f"soak: {args.services} services, timeout {self.timeout} s, beat every {self.interval:.3f} s, "
              f"dropout rate {args.dropout_rate} per beat, silences {0.2 * self.timeout:.2f}-"
              f"{3 * self.timeout:.2f} s, slack {args.slack} s, {args.beat_threads} heartbeat threads, "
              f"{args.duration} s, seed {args.seed}", flush=True)
        threads_before = set(threading.enumerate())
        subscription = m.subscribe(maxsize=args.queue)
        counting = lifecycle.connect(self.count, sender=m)
        timeouts = lifecycle.connect(self.on_timeout, "heartbeat_timeout", sender=m)
        consumer = threading.Thread(target=self.consume, args=(subscription,), name="soak-consumer")
        consumer.start()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        began = time.monotonic()
        for k in range(args.services):
            sid = m.start_service(ExtensionService(f"soak-{k}", "1"))
            self.sids.append(sid)
            self.index[sid] = k
            t = time.monotonic()
            self.beats.append(((t, t), (t, t)))  # the start counts as a heartbeat
        print(f"started {args.services} services in {time.monotonic() - began:.2f} s", flush=True)
        self.began = time.monotonic()
        beaters = [threading.Thread(target=self.beat_loop, args=(k,), name=f"soak-beat-{k}")
                   for k in range(args.beat_threads)]
        beaters.append(threading.Thread(target=self.probe, name="soak-probe"))
        for t in beaters:
            t.start()
        end = self.began + args.duration
        next_report = self.began + args.report_every
        self.sample()
        while (now := time.monotonic()) < end:
            self.stop.wait(min(args.sample_every, end - now, max(0.0, next_report - now)) or 0.01)
            self.sample()
            if time.monotonic() >= next_report:
                self.report(f"{time.monotonic() - self.began:.0f}s", subscription)
                next_report += args.report_every
        self.stop.set()
        for t in beaters:
            t.join()
        # Silences still running at the end whose deadline is long past count too.
        stopped_at = time.monotonic()
        for i in range(args.services):
            if self.silent_until[i] is not None:
                self.end_silence(i, stopped_at)
        stats = m.registry.stats()
        shutdown_began = time.monotonic()
        m.shutdown(timeout=10.0)
        shutdown_took = time.monotonic() - shutdown_began
        consumer.join(10.0)
        timeouts.disconnect()
        counting.disconnect()
        self.report("final", subscription, stats)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        leftover = [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]

        warm = [s for s in self.rss if s[0] >= min(args.warmup, args.duration / 4)]
        slope = slope_per_minute(warm)
        rss_values = [v for _, v in warm]
        total_events = sum(self.signal_counts.values())
        pending = subscription.pending()
        cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
        flat = abs(slope) * (args.duration / 60.0) < max(1.0, 0.02 * (rss_values[0] if rss_values else 0))
        lag_ok = self.lags.n == 0 or self.lags.quantile(0.99) * 1000 <= args.lag_p99_ms
        ok = not self.false_timeouts and self.missed == 0 and flat and lag_ok and subscription.dropped == 0
        lags = self.lags
        print()
        print("== soak summary")
        print(f"duration                {args.duration} s, {sum(self.beat_counts):,} heartbeats, "
              f"cpu {cpu:.1f} s ({100 * cpu / (time.monotonic() - began):.0f}% of one core)")
        print(f"silences                {self.silences} ({self.long_silences} longer than timeout + slack)")
        print(f"timeouts                planned {self.planned_timeouts}, unplanned {self.unplanned_timeouts} "
              f"(worst heartbeat-thread lateness {max(self.lateness) * 1000:.1f} ms)")
        noise = list(self.probe_lateness)
        print(f"host scheduling noise   a 10 ms wait woke up late by p50={quantile(noise, 0.5) * 1000:.2f} ms "
              f"p99={quantile(noise, 0.99) * 1000:.2f} ms (last {len(noise)}), max={self.probe_max * 1000:.1f} ms "
              f"(load average {os.getloadavg()[0]:.1f})")
        print(f"missed deadlines        {self.missed}")
        print(f"late detections         {self.late} (lag > {args.slack} s)")
        print(f"false timeouts          {len(self.false_timeouts)}")
        for line in self.false_timeouts[:10]:
            print(f"    {line}")
        print(f"detection lag           n={lags.n} p50={lags.quantile(0.5) * 1000:.2f} ms "
              f"p99={lags.quantile(0.99) * 1000:.2f} ms max={lags.max * 1000:.2f} ms (2 % buckets)")
        print(f"rss                     start {rss_values[0] if rss_values else math.nan:.1f} MiB, "
              f"end {rss_values[-1] if rss_values else math.nan:.1f} MiB, "
              f"min {min(rss_values, default=math.nan):.1f}, max {max(rss_values, default=math.nan):.1f} MiB, "
              f"{len(self.rss)} samples")
        print(f"rss slope after warm-up {slope * 1024:+.1f} KiB/min -> {'flat' if flat else 'GROWING'}")
        print(f"events                  {total_events:,} seen by receivers: "
              + ", ".join(f"{k}={v:,}" for k, v in sorted(self.signal_counts.items())))
        print(f"subscription            consumed {self.consumed:,}, dropped {subscription.dropped:,}, "
              f"pending {pending}, maxsize {args.queue}; lost "
              f"{total_events - self.consumed - subscription.dropped - pending}")
        print(f"shutdown                {shutdown_took * 1000:.0f} ms, leftover threads {leftover}")
        failed = [name for name, bad in (("false timeouts", bool(self.false_timeouts)), ("missed", self.missed > 0),
                                         ("rss growing", not flat), (f"lag p99 > {args.lag_p99_ms:g} ms", not lag_ok),
                                         ("subscription drops", subscription.dropped > 0)) if bad]
        print(f"verdict                 {'OK' if ok else 'FAIL: ' + ', '.join(failed)}")
        return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60)")
    parser.add_argument("--timeout", type=float, default=2.0, help="heartbeat timeout in seconds (default 2.0)")
    parser.add_argument("--dropout-rate", type=float, default=0.0005,
                        help="probability per heartbeat that a service goes silent (default 0.0005)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--beat-interval", type=float, default=None, help="seconds between beats (timeout/4)")
    parser.add_argument("--beat-threads", type=int, default=8)
    parser.add_argument("--slack", type=float, default=0.25,
                        help="seconds past the deadline before an undetected silence counts as missed")
    parser.add_argument("--queue", type=int, default=10_000, help="subscription maxsize")
    parser.add_argument("--report-every", type=float, default=15.0)
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds between RSS samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds of RSS ignored for the slope")
    parser.add_argument("--lag-p99-ms", type=float, default=10.0, help="detection lag p99 to pass (default 10 ms)")
    args = parser.parse_args(argv)
    if args.services < 1 or args.duration <= 0 or args.timeout <= 0 or not 0 <= args.dropout_rate <= 1:
        parser.error("need --services >= 1, --duration > 0, --timeout > 0, 0 <= --dropout-rate <= 1")
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
