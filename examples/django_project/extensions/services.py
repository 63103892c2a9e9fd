"""The example's extension service, declared in settings.SERVICES, and a log line for each of its events."""

from __future__ import annotations

import logging
from typing import Any

import lifecycle
from lifecycle import LifecycleEvent

log = logging.getLogger("example")

SERVICES = [{"name": "example-extension", "version": "1.0", "id": "example-extension"}]
"""Desired state, for `LIFECYCLE["SERVICES"]`: every serving process starts (or, in fleet mode, joins)
it as it starts serving; `manage.py` commands never do. A fixed id keeps the docs' curl commands
copy-pasteable; without one the id is derived from the name and version."""

_event_log: lifecycle.Connection | None = None


def log_event(sender: object, *, event: LifecycleEvent, **_: Any) -> None:
    """Every lifecycle event of this process, in the log (heartbeats are too many to show)."""
    if event.signal_name != "heartbeat_received":
        details = ", ".join(f"{key}={value}" for key, value in event.signal_kwargs().items())
        log.info("%s: %s", event.signal_name, details)


def log_events() -> None:
    """Log every manager's events from now on; once per process (`ExtensionsConfig.ready` calls it)."""
    global _event_log
    if _event_log is None:
        # Every sender: the manager is built (and may declare on a thread of its own) after this.
        _event_log = lifecycle.connect(log_event)
