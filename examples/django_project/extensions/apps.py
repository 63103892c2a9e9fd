"""The example's own app: listed before lifecycle's, so its `ready()` connects the event log first."""

from __future__ import annotations

from django.apps import AppConfig


class ExtensionsConfig(AppConfig):
    """Connects the example's event log before lifecycle's `ready()` builds the manager."""

    name = "extensions"

    def ready(self) -> None:
        """Connecting a log receiver starts nothing, so it is safe in every manage.py command too."""
        from .services import log_events

        log_events()
