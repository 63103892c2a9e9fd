"""Starts the "example-extension" service; `project/wsgi.py` calls it, so only servers run it."""

from __future__ import annotations

from lifecycle import ExtensionService
from lifecycle.contrib.django import get_manager


def start_services() -> None:
    """Start the example's one service on this process's manager.

    Called from wsgi.py rather than an `AppConfig.ready()`: every manage.py command runs
    `ready()`, so `check` or `lifecycle_status` would start (and at exit stop) the service, and a
    bad `LIFECYCLE` setting would crash `django.setup()` before the system checks could list it.
    """
    # A fixed id keeps the docs' curl commands copy-pasteable; by default ids are random uuids.
    get_manager().start_service(ExtensionService("example-extension", "1.0", id="example-extension"))
