"""Receivers through blinker's public API only, against the code before it, in one process.

``python -m benchmarks.blinker_api [--rounds R]`` prints one Markdown table. "before" is a
copy of what lifecycle did until it stopped reading blinker's internals: connecting
`lifecycle.connect` receivers for the given sender, caching blinker's own stored references
(found with `blinker._utilities.make_id`), and a disconnect that read `signal._by_receiver`.
Rounds alternate before/after so drift of the machine falls on both; each figure is the
median over rounds of a batch mean, with the spread of the rounds (p10..p90) beside it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from blinker import ANY, NamedSignal
from blinker._utilities import make_id  # the "before" code needs it; lifecycle itself no longer does

import lifecycle
from lifecycle import ExtensionService, LifecycleManager, dispatch, signals
from lifecycle.dispatch import Dispatcher

from ._util import quantile, quiet_logging, settle

BEAT_BATCH = 20_000
CONNECT_BATCH = 2_000


def before_references(signal: NamedSignal, sender: object) -> tuple[Any, ...]:
    """The dispatcher's cache entries as they were: blinker's stored references, found by make_id."""
    stored = signal.receivers
    return tuple(stored[make_id(receiver)] for receiver in signal.receivers_for(sender))


class BeforeConnection:
    """lifecycle.connect as it was: the receiver itself, connected for the sender."""

    def __init__(self, receiver: Callable[..., Any], signal: NamedSignal, sender: Any) -> None:
        self.receiver, self.signal, self.sender = receiver, signal, sender
        signal.connect(receiver, sender=sender, weak=False)

    def disconnect(self) -> None:
        self.signal.disconnect(self.receiver, sender=self.sender)
        if not self.signal._by_receiver.get(make_id(self.receiver)):
            self.signal.disconnect(self.receiver)


def _receiver(sender: object, **kwargs: object) -> None:
    """A trivial receiver."""


def _beat_us(manager: LifecycleManager, sid: str) -> float:
    beat = manager.handle_heartbeat
    t0 = time.perf_counter_ns()
    for _ in range(BEAT_BATCH):
        beat(sid)
    return (time.perf_counter_ns() - t0) / BEAT_BATCH / 1000


def _connect_cycle_us(connect: Callable[[], Any]) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(CONNECT_BATCH):
        connect().disconnect()
    return (time.perf_counter_ns() - t0) / CONNECT_BATCH / 1000


def _first_event_us(manager: LifecycleManager, sid: str, connect: Callable[[], Any]) -> float:
    """A connect, one heartbeat (the cache is rebuilt for it), a disconnect."""
    t0 = time.perf_counter_ns()
    for _ in range(CONNECT_BATCH):
        connection = connect()
        manager.handle_heartbeat(sid)
        connection.disconnect()
    return (time.perf_counter_ns() - t0) / CONNECT_BATCH / 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    quiet_logging()
    signal = signals.heartbeat_received
    manager = LifecycleManager()
    sid = manager.start_service(ExtensionService("bench", "1"))
    after_dispatcher = manager._dispatcher
    before_dispatcher = Dispatcher()  # its own cache

    def run(kind: str) -> dict[str, float]:
        real = dispatch._references
        if kind == "before":
            dispatch._references = before_references
            manager._dispatcher = before_dispatcher

            def connect() -> Any:
                return BeforeConnection(_receiver, signal, manager)
        else:
            manager._dispatcher = after_dispatcher

            def connect() -> Any:
                return lifecycle.connect(_receiver, signal, sender=manager)
        try:
            held = connect()
            beat = _beat_us(manager, sid)
            held.disconnect()
            if kind == "before":
                signal.connect(_receiver, sender=ANY, weak=False)
            else:
                held = lifecycle.connect(_receiver, signal)
            beat_any = _beat_us(manager, sid)
            if kind == "before":
                signal.disconnect(_receiver)
            else:
                held.disconnect()
            return {
                "heartbeat, one receiver for this manager (µs)": beat,
                "heartbeat, one receiver for every manager (µs)": beat_any,
                "connect + disconnect (µs)": _connect_cycle_us(connect),
                "connect + first event + disconnect (µs)": _first_event_us(manager, sid, connect),
            }
        finally:
            dispatch._references = real

    run("before"), run("after")  # warm up
    settle()
    results: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    for _ in range(args.rounds):
        for kind in ("before", "after"):
            for name, value in run(kind).items():
                results[kind].setdefault(name, []).append(value)
    manager.shutdown()
    print(f"blinker public API, {args.rounds} alternating rounds; median (p10..p90 of rounds)\n")
    print("| measure | before | after | after / before |")
    print("|---|---|---|---|")
    for name in results["before"]:
        b, a = results["before"][name], results["after"][name]
        mb, ma = statistics.median(b), statistics.median(a)
        print(f"| {name} | {mb:.3f} ({quantile(b, 0.1):.3f}..{quantile(b, 0.9):.3f}) | "
              f"{ma:.3f} ({quantile(a, 0.1):.3f}..{quantile(a, 0.9):.3f}) | {ma / mb:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
