"""The Django app config: registers lifecycle's system checks; the manager itself is built lazily."""

from __future__ import annotations

from django.apps import AppConfig


class LifecycleAppConfig(AppConfig):
    """`lifecycle.contrib.django` in INSTALLED_APPS; its label is "lifecycle"."""

    name = "lifecycle.contrib.django"
    label = "lifecycle"
    verbose_name = "Lifecycle (extension services)"

    def ready(self) -> None:
        """Register the checks; the manager is not built here, so a bad setting is reported by the checks."""
        from . import checks  # noqa: F401
