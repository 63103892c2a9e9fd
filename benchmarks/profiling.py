"""Profile the library's hot paths with cProfile: ``python -m benchmarks.profiling WORKLOAD N``.

Workloads: ``heartbeat`` (``--receiver`` connects one receiver), ``start``, ``watchdog`` (the
watchdog thread during the 1 s-timeout lag workload, all services beating). Prints the top
functions by own time with their share of the profiled total. For lock waits and threads, use
py-spy instead, e.g. ``py-spy record -f raw -o out.txt -- python -m benchmarks.cases throughput 100000``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from typing import Any

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, signals

from ._util import quiet_logging
from .harness import Heartbeaters

__all__ = ["main", "top"]


#: Blocking calls: their own time is waiting (idle or contended), not work.
_WAITS = {"<method 'acquire' of '_thread.lock' objects>", "<method 'acquire' of '_thread.RLock' objects>",
          "<built-in method time.sleep>"}


def top(stats: pstats.Stats, limit: int) -> str:
    """The `limit` functions with the most own time, as Markdown, with % of the profiled total."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    waits = {k: v for k, v in raw.items() if k[2] in _WAITS}
    busy = {k: v for k, v in raw.items() if k[2] not in _WAITS}
    total = sum(entry[2] for entry in busy.values()) or 1.0
    waited = sum(entry[2] for entry in waits.values())
    rows = sorted(busy.items(), key=lambda kv: kv[1][2], reverse=True)[:limit]
    lines = [f"profiled own time, busy: {total:.3f} s (blocked in lock acquire / waits, excluded: {waited:.3f} s)",
             "",
             "| function | calls | own s | own % | cumulative s |", "|---|---|---|---|---|"]
    for (path, line, name), (_cc, calls, tottime, cumtime, _callers) in rows:
        where = "/".join(path.rsplit("/", 2)[-2:]) if "/" in path else path
        lines.append(f"| {name} ({where}:{line}) | {calls:,} | {tottime:.3f} | {100 * tottime / total:.1f} | "
                     f"{cumtime:.3f} |")
    return "\n".join(lines)


def _receiver(sender: object, **kwargs: object) -> None:
    """A trivial receiver."""


def _heartbeat(n: int, args: argparse.Namespace, profile: cProfile.Profile) -> None:
    manager = LifecycleManager()
    ids = [manager.start_service(ExtensionService(f"svc-{i}", "1.0")) for i in range(n)]
    if args.receiver:
        signals.heartbeat_received.connect(_receiver, weak=False)
    beat = manager.handle_heartbeat
    calls = max(args.calls, n)
    sequence = (ids * (calls // n + 1))[:calls]
    profile.enable()
    for sid in sequence:
        beat(sid)
    profile.disable()


def _start(n: int, args: argparse.Namespace, profile: cProfile.Profile) -> None:
    manager = LifecycleManager()
    services = [ExtensionService(f"svc-{i}", "1.0") for i in range(n)]
    start = manager.start_service
    profile.enable()
    for service in services:
        start(service)
    profile.disable()


def _watchdog(n: int, args: argparse.Namespace, profile: cProfile.Profile) -> None:
    config = LifecycleConfig(heartbeat_interval_secs=0.25, heartbeat_timeout_secs=1.0, auto_reconnect=False)
    manager = LifecycleManager(config=config)
    watchdog = manager._watchdog
    loop = watchdog._loop

    def profiled_loop() -> None:
        profile.enable()
        try:
            loop()
        finally:
            profile.disable()

    watchdog._loop = profiled_loop  # type: ignore[method-assign]
    ids: list[Any] = []
    beaters = Heartbeaters(ids, n, manager.handle_heartbeat)
    beaters.start()
    for i in range(n):
        ids.append(manager.start_service(ExtensionService(f"svc-{i}", "1.0")))
    time.sleep(args.seconds)
    beaters.stop()
    watchdog.stop(2.0)


WORKLOADS = {"heartbeat": _heartbeat, "start": _start, "watchdog": _watchdog}


def main(argv: list[str] | None = None) -> int:
    """Run one workload under cProfile and print the top functions."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("n", type=int)
    parser.add_argument("--receiver", action="store_true", help="heartbeat: connect one receiver")
    parser.add_argument("--calls", type=int, default=200_000, help="heartbeat: calls to profile")
    parser.add_argument("--seconds", type=float, default=5.0, help="watchdog: seconds to profile")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    quiet_logging()
    profile = cProfile.Profile()
    WORKLOADS[args.workload](args.n, args, profile)
    print(f"## {args.workload} N={args.n:,}{' with receiver' if args.receiver else ''}")
    print(top(pstats.Stats(profile), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
