"""One manager per process for the framework integrations, shut down when the interpreter exits."""

from __future__ import annotations

import atexit
import logging
import weakref

from ..manager import LifecycleManager
from ._settings import Settings

__all__ = ["build_manager"]

log = logging.getLogger("lifecycle")

# manager -> its shutdown timeout; weak so that a dropped app does not keep its manager alive.
_at_exit: weakref.WeakKeyDictionary[LifecycleManager, float] = weakref.WeakKeyDictionary()


def build_manager(settings: Settings) -> LifecycleManager:
    """A manager from `settings`, registered for a bounded shutdown at interpreter exit."""
    manager = LifecycleManager(config=settings.config, connector=settings.connector, autostart=settings.autostart)
    _at_exit[manager] = settings.shutdown_timeout
    return manager


def _shutdown_all() -> None:
    """Shut every integration-built manager down; each waits at most its SHUTDOWN_TIMEOUT."""
    for manager, timeout in list(_at_exit.items()):
        try:
            manager.shutdown(timeout)
        except Exception:
            log.exception("lifecycle: shutting %r down at exit failed", manager)


atexit.register(_shutdown_all)
