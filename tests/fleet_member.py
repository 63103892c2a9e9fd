"""One member of a test fleet: a manager on a shared namespace, driven by stdin, reporting JSON lines on stdout.

    python tests/fleet_member.py --url URL --namespace NS --mode-file PATH [--ttl S] [--timeout S] [--attempts N]
        [--partitions P] [--report KIND,...]

Commands, one per line on stdin: ``start ID...`` (start or join each service, id = name),
``beat ID...`` (a heartbeat for each, then a ``beaten`` line), ``quit`` (shut down and exit).
Every lifecycle event this process dispatches (heartbeats excepted; with ``--report``, the kinds
named only), every connect call and every "lifecycle" log record is printed as one JSON object
per line, with this process's pid and the wall-clock time `t`, so
that a test can count events across the fleet and time them.

The connector reads the mode file on each connect: ``ok`` returns, ``fail`` raises, ``block``
waits until the file says something else (a reconnect in progress that a test can kill or stop).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import lifecycle
from lifecycle import ExtensionService, LifecycleConfig, LifecycleError, LifecycleEvent, LifecycleManager
from lifecycle.model import TransportConfig
from lifecycle.redis import RedisRegistry

_out = threading.Lock()


def say(kind: str, **fields: Any) -> None:
    line = json.dumps({"kind": kind, "pid": os.getpid(), "t": time.time(), **fields}, default=str)
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class FileConnector:
    """`connect` does what the mode file says: ok, fail, or block until it says something else."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mode(self) -> str:
        try:
            return self.path.read_text().strip() or "ok"
        except OSError:
            return "ok"

    def connect(self, service: ExtensionService) -> None:
        say("connect", id=service.id, phase="begin", attempt=service.retry_count)
        pause = threading.Event()
        while (mode := self.mode()) == "block":
            pause.wait(0.02)  # the test flips a file; there is nothing to wait on
        say("connect", id=service.id, phase="end", mode=mode)
        if mode == "fail":
            raise ConnectionError("the test's mode file says fail")


class LogLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        say("log", level=record.levelname, msg=record.getMessage())


REPORT: frozenset[str] | None = None  # --report: the kinds of event said (None: all but heartbeats)


def on_event(sender: object, *, event: LifecycleEvent, **_: Any) -> None:
    if event.signal_name in REPORT if REPORT is not None else event.signal_name != "heartbeat_received":
        # `made`: when the engine made the event (its `at`, on the wall clock), apart from when this says it.
        made = time.time() - (time.monotonic() - event.at)
        say("event", event=event.signal_name, id=str(event.service_id), made=made, **event.signal_kwargs())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--mode-file", type=Path, required=True)
    parser.add_argument("--ttl", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=1.0)
    parser.add_argument("--attempts", type=int, default=3)
    parser.add_argument("--connect-timeout", type=float, default=30.0)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--report", help="comma-separated signal names: the only events said (a benchmark's "
                        "burst says its timeouts only, so the members' pipes cost it little)")
    args = parser.parse_args()
    global REPORT
    REPORT = None if args.report is None else frozenset(args.report.split(","))
    log = logging.getLogger("lifecycle")
    log.addHandler(LogLines())
    log.setLevel(logging.INFO)
    config = LifecycleConfig(heartbeat_interval_secs=args.timeout / 4, heartbeat_timeout_secs=args.timeout,
                             reconnect_delay_ms=50, max_reconnect_delay_ms=200,
                             max_reconnect_attempts=args.attempts)
    registry = RedisRegistry.from_url(args.url, namespace=args.namespace, partitions=args.partitions,
                                      lease_ttl_secs=args.ttl,
                                      heartbeat_timeout_secs=args.timeout, socket_timeout=1.0,
                                      socket_connect_timeout=1.0)
    manager = LifecycleManager(registry, config, connector=FileConnector(args.mode_file))
    connection = lifecycle.connect(on_event, sender=manager)
    transport = TransportConfig(timeout_secs=args.connect_timeout)
    say("ready")
    failing = False  # report a registry outage once, and its end
    for line in sys.stdin:
        command, *ids = line.split()
        if command == "quit":
            break
        for sid in ids:
            try:
                if command == "start":
                    manager.start_service(ExtensionService(sid, "1", id=sid, transport=transport))
                    say("started", id=sid)
                elif command == "beat":
                    manager.handle_heartbeat(sid)
            except LifecycleError as exc:
                if not failing:
                    say("call_failed", id=sid, error=type(exc).__name__, text=str(exc))
                failing = True
            else:
                if failing:
                    say("call_ok", id=sid)
                failing = False
        if command == "beat":
            say("beaten", n=len(ids))  # the line is done: the test's beater may send this member the next one
    connection.disconnect()
    manager.shutdown(2.0)
    say("bye")
    return 0


if __name__ == "__main__":
    sys.exit(main())
