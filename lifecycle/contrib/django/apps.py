"""The Django app config: lifecycle's system checks, and the manager built where a server loads the project."""

from __future__ import annotations

from django.apps import AppConfig


class LifecycleAppConfig(AppConfig):
    """`lifecycle.contrib.django` in INSTALLED_APPS; its label is "lifecycle"."""

    name = "lifecycle.contrib.django"
    label = "lifecycle"
    verbose_name = "Lifecycle (extension services)"

    def ready(self) -> None:
        """Register the checks; build the manager only in a server's process (see `_boot`), so that a
        management command starts nothing and reports a bad setting through the checks."""
        from . import _boot, checks  # noqa: F401

        _boot()
