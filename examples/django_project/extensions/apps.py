"""Starts the "example-extension" service in each process, once Django's apps are ready."""

from __future__ import annotations

import os
import sys

from django.apps import AppConfig


class ExtensionsConfig(AppConfig):
    """The example's own app; its ready() is where a host program starts its extension services."""

    name = "extensions"

    def ready(self) -> None:
        """Start the example service; skipped in runserver's file-watching parent, which serves nothing."""
        if _autoreload_parent():
            return
        from lifecycle import ExtensionService
        from lifecycle.contrib.django import get_manager

        # A fixed id keeps the README's curl commands copy-pasteable; by default ids are random uuids.
        get_manager().start_service(ExtensionService("example-extension", "1.0", id="example-extension"))


def _autoreload_parent() -> bool:
    # With the autoreloader, runserver runs ready() twice: in a watcher and in the serving child (RUN_MAIN).
    return "runserver" in sys.argv and "--noreload" not in sys.argv and os.environ.get("RUN_MAIN") != "true"
