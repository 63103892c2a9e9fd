"""Keep three real extension processes alive and print what happens to them.

    python examples/supervise.py [--seconds N] [--fast]

- ``steady`` writes a ``heartbeat`` line every second and never fails;
- ``crashy`` heartbeats, then exits with code 1 after 3 seconds, again and again: each exit is
  reported at once and the child is respawned with backoff;
- ``hang`` heartbeats for 2 seconds, then stays alive but silent: it misses its heartbeat
  deadline, is killed and respawned.

The extensions are this same file run with ``--extension KIND``; any program that prints
``heartbeat`` lines would do. ``--seconds`` stops after that long (default: until Ctrl+C);
``--fast`` divides every duration by five. At the end the manager shuts down and the script
checks that none of the children it saw is still running.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import queue
import sys
import time

from lifecycle import ExtensionService, LifecycleConfig, LifecycleManager, TransportConfig
from lifecycle.connectors import SubprocessConnector
from lifecycle.events import Heartbeat


def extension(kind: str, scale: float) -> None:
    """Run as an extension: speak the line protocol on stdout until killed (or crashing, or hanging)."""
    started = time.monotonic()
    while True:
        elapsed = time.monotonic() - started
        if kind == "crashy" and elapsed > 3 * scale:
            print("crashing on purpose", file=sys.stderr, flush=True)
            sys.exit(1)
        if kind == "hang" and elapsed > 2 * scale:
            time.sleep(3600)  # alive, silent: only the heartbeat deadline notices
        print("heartbeat", flush=True)
        time.sleep(scale if kind == "steady" else 0.5 * scale)


def supervise(seconds: float | None, scale: float) -> int:
    """Start the three extensions under one manager, print events until `seconds` pass, shut down."""
    config = LifecycleConfig(
        heartbeat_interval_secs=1.0 * scale,
        heartbeat_timeout_secs=3.0 * scale,
        reconnect_delay_ms=500 * scale,
        max_reconnect_delay_ms=5000 * scale,
        max_reconnect_attempts=5,
    )
    connector = SubprocessConnector()
    manager = LifecycleManager(config=config, connector=connector)
    names: dict[str, str] = {}
    children: set[int] = set()
    beats: dict[str, int] = {}
    began = time.monotonic()
    with manager, manager.subscribe(maxsize=10_000) as events:
        for kind in ("steady", "crashy", "hang"):
            transport = TransportConfig(command=sys.executable,
                                        args=[os.path.abspath(__file__), "--extension", kind, "--scale", str(scale)],
                                        timeout_secs=max(1.0, 2 * scale))
            # Desired state: started now, in this thread; a failed first spawn is retried with backoff.
            sid = manager.declare(ExtensionService(kind, "1.0", id=kind, transport=transport))
            names[sid] = kind
            children.add(connector.pid(sid) or 0)
            print(f"{0.0:7.2f}s  {kind:<7} started as process {connector.pid(sid)}", flush=True)
        end = None if seconds is None else began + seconds
        try:
            while end is None or time.monotonic() < end:
                wait = 0.5 if end is None else max(0.0, min(0.5, end - time.monotonic()))
                try:
                    event = events.get(timeout=wait)
                except queue.Empty:
                    continue
                name = names.get(event.service_id, event.service_id)
                pid = connector.pid(event.service_id)
                if pid:
                    children.add(pid)
                if isinstance(event, Heartbeat):
                    beats[name] = beats.get(name, 0) + 1
                    continue
                text = " ".join(f"{f.name}={_short(getattr(event, f.name))}" for f in dataclasses.fields(event)
                                if f.name not in ("service_id", "at"))
                print(f"{event.at - began:7.2f}s  {name:<7} {event.signal_name} {text}".rstrip(), flush=True)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
    left = [pid for pid in children if pid and _alive(pid)]
    print("heartbeats: " + ", ".join(f"{name}={count}" for name, count in sorted(beats.items())), flush=True)
    print(f"children left after shutdown: {len(left)}", flush=True)
    return 1 if left else 0


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl+C)")
    parser.add_argument("--fast", action="store_true", help="divide every duration by five")
    parser.add_argument("--extension", choices=("steady", "crashy", "hang"), help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.extension:
        extension(args.extension, args.scale)
        return 0
    return supervise(args.seconds, 0.2 if args.fast else 1.0)


if __name__ == "__main__":
    sys.exit(main())
