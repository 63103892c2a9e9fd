"""Fixed timeout against the phi accrual detector on synthetic heartbeat traces.

``python -m benchmarks.phi [--services N] [--minutes M] [--seed S]`` prints one Markdown table
and a JSON line. Each trace gives every service a heartbeat schedule and a moment it dies; a
real manual-mode manager per detector is fed the beats under frozen time (freezegun), and its
`heartbeat_timeout` events are sorted into false timeouts (the service was still beating) and
detections (after its last beat: detection time = timeout - last beat). Both detectors run with
the same config (interval 1 s, timeout 5 s, auto-reconnect off, so a false timeout is healed by
the next beat); phi adds only its own fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import freezegun

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, signals

BASE = LifecycleConfig(heartbeat_interval_secs=1.0, heartbeat_timeout_secs=5.0, auto_reconnect=False)
DETECTORS = {
    "fixed 5 s": BASE,
    "phi 8, Akka defaults (pause 3 s)": dataclasses.replace(BASE, detector="phi"),
    "phi 8, pause 0": dataclasses.replace(BASE, detector="phi", phi_acceptable_pause_secs=0.0),
    "phi 8, pause 0.5 s": dataclasses.replace(BASE, detector="phi", phi_acceptable_pause_secs=0.5),
}

Trace = Callable[[random.Random, float], Iterator[float]]


def regular(rng: random.Random, until: float) -> Iterator[float]:
    """Every 1 s with +/-10 % jitter."""
    t = 0.0
    while (t := t + rng.uniform(0.9, 1.1)) < until:
        yield t


def bursty(rng: random.Random, until: float) -> Iterator[float]:
    """Bursts of 3-8 beats 0.2 s apart, then a pause of 1.5-3.5 s (a batch sender, a busy loop)."""
    t = 0.0
    while t < until:
        for _ in range(rng.randint(3, 8)):
            t += 0.2
            yield t
        t += rng.uniform(1.5, 3.5)


def pauses(rng: random.Random, until: float) -> Iterator[float]:
    """Every 1 s with +/-10 % jitter, and 2 % of intervals a 2.5-4.5 s stall (GC, swapping)."""
    t = 0.0
    while True:
        t += rng.uniform(2.5, 4.5) if rng.random() < 0.02 else rng.uniform(0.9, 1.1)
        if t >= until:
            return
        yield t


TRACES: dict[str, Trace] = {"regular": regular, "bursty": bursty, "pauses": pauses}


def run(config: LifecycleConfig, trace: Trace, services: int, seconds: float, seed: int) -> dict[str, float]:
    """Feed one trace to one manager; count false timeouts and measure detection times."""
    rng = random.Random(seed)
    deaths = [rng.uniform(seconds * 0.5, seconds * 0.9) for _ in range(services)]
    beats = sorted((t, i) for i in range(services) for t in trace(rng, deaths[i]))
    last = [0.0] * services
    false_timeouts = 0
    detections: list[float] = []
    with freezegun.freeze_time("2026-01-01") as frozen:
        start = time.monotonic()
        manager = LifecycleManager(config=config, autostart=False)
        ids = [manager.start_service(ExtensionService(f"s{i}", "1")) for i in range(services)]
        index = {sid: i for i, sid in enumerate(ids)}

        def on_timeout(sender: object, *, service_id: str, **_: object) -> None:
            nonlocal false_timeouts
            i = index[service_id]
            now = time.monotonic() - start
            if now < deaths[i]:
                false_timeouts += 1
            else:
                detections.append(now - last[i])

        signals.heartbeat_timeout.connect(on_timeout, sender=manager, weak=False)
        try:
            clock = 0.0
            for at, i in [*beats, (seconds, -1)]:
                # Step in slices no longer than 50 ms so timers run close to their deadlines.
                while clock < at:
                    step = min(0.05, at - clock)
                    frozen.tick(step)
                    clock += step
                    manager.run_pending()
                if i >= 0:
                    last[i] = at
                    manager.handle_heartbeat(ids[i])
        finally:
            signals.heartbeat_timeout.disconnect(on_timeout, sender=manager)
            manager.shutdown()
    detections.sort()
    hours = services * seconds * 0.7 / 3600.0  # roughly the time alive
    return {
        "false_timeouts": false_timeouts,
        "false_per_service_hour": false_timeouts / hours,
        "detected": len(detections),
        "detect_p50_s": statistics.median(detections) if detections else float("nan"),
        "detect_max_s": detections[-1] if detections else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.phi", description=__doc__)
    parser.add_argument("--services", type=int, default=40)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    seconds = args.minutes * 60.0
    results: dict[str, dict[str, dict[str, float]]] = {}
    print("| trace | detector | false timeouts | per service-hour | detected | detection p50 (s) | max (s) |")
    print("|---|---|---|---|---|---|---|")
    for trace_name, trace in TRACES.items():
        for name, config in DETECTORS.items():
            r = run(config, trace, args.services, seconds, args.seed)
            results.setdefault(trace_name, {})[name] = r
            print(f"| {trace_name} | {name} | {r['false_timeouts']} | {r['false_per_service_hour']:.2f} | "
                  f"{r['detected']}/{args.services} | {r['detect_p50_s']:.2f} | {r['detect_max_s']:.2f} |")
    print(json.dumps({"services": args.services, "minutes": args.minutes, "seed": args.seed, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
