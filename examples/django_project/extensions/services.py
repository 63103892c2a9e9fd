"""Starts the "example-extension" service; `project/wsgi.py` calls it, so only servers run it."""

from __future__ import annotations

import logging
from typing import Any

import lifecycle
from lifecycle import ExtensionService, LifecycleEvent
from lifecycle.contrib.django import get_manager

log = logging.getLogger("example")
_event_log: lifecycle.Connection | None = None


def log_event(sender: object, *, event: LifecycleEvent, **_: Any) -> None:
    """Every lifecycle event of this process, in the log (heartbeats are too many to show)."""
    if event.signal_name != "heartbeat_received":
        details = ", ".join(f"{key}={value}" for key, value in event.signal_kwargs().items())
        log.info("%s: %s", event.signal_name, details)


def start_services() -> None:
    """Start the example's one service on this process's manager.

    Called from wsgi.py rather than an `AppConfig.ready()`: every manage.py command runs
    `ready()`, so `check` or `lifecycle_status` would start (and at exit stop) the service, and a
    bad `LIFECYCLE` setting would crash `django.setup()` before the system checks could list it.
    """
    global _event_log
    manager = get_manager()
    # Connected first, so that service_started is logged too; held strongly by lifecycle.connect.
    if _event_log is None:
        _event_log = lifecycle.connect(log_event, sender=manager)
    # A fixed id keeps the docs' curl commands copy-pasteable; by default ids are random uuids.
    manager.start_service(ExtensionService("example-extension", "1.0", id="example-extension"))
