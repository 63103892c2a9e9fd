"""Django integration: one `LifecycleManager` per process, configured by the `LIFECYCLE` setting.

Usage: add "lifecycle.contrib.django" to INSTALLED_APPS, set `LIFECYCLE = {...}` (optional;
missing keys take their defaults), mount the endpoints with
`path("lifecycle/", include("lifecycle.contrib.django.urls"))`, and get the manager with
`get_manager()`. The manager is built when a server loads the project (the app's `ready()`:
a gunicorn worker or master, runserver's serving process, `get_wsgi_application()`), else on
first use, and shut down at interpreter exit; a management command builds none. Each worker
process of a server has its own manager and registry: a heartbeat POSTed to one worker is not
seen by the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_started, setting_changed

from ..._forksafe import hold_across_fork
from ..._validate import quote as _quote
from ...manager import LifecycleManager
from .._boot import FORKS, LOADS, SERVES, boot_role
from .._process import build_manager, start_watching
from .._settings import ConfigurationError, Settings, check_settings, log_registry

__all__ = ["get_manager"]

log = logging.getLogger("lifecycle")

SETTING = "LIFECYCLE"

_lock = threading.Lock()
_cached: tuple[LifecycleManager, Settings] | None = None


def _renew_lock() -> None:
    global _lock
    _lock = threading.Lock()


# A worker forked (gunicorn --preload) while another thread builds the manager must not inherit _lock held.
hold_across_fork(lambda: [_lock], _renew_lock)


def _spell(key: str) -> str:
    return f"{SETTING}['{key}']"


def _values() -> Any:
    """The raw `settings.LIFECYCLE` (None when unset); importing django.conf late keeps import side-effect free."""
    from django.conf import settings

    return getattr(settings, SETTING, None)


def _parse(values: Any) -> Settings:
    """`Settings` from a raw `LIFECYCLE` value; raises one `ConfigurationError` listing every problem."""
    settings, errors = _check(values)
    if settings is None:
        raise ConfigurationError.of(errors)
    return settings


def _check(values: Any) -> tuple[Settings | None, list[ConfigurationError]]:
    """`Settings` from a raw `LIFECYCLE` value, or every problem it has (what the system checks report)."""
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        return None, [ConfigurationError(SETTING, f"must be a dict, not {type(values).__name__}", code="type")]
    bad_keys = [key for key in values if not isinstance(key, str)]
    if bad_keys:
        return None, [ConfigurationError(SETTING, f"setting names must be str, not {_quote(bad_keys[0])}",
                                         code="type")]
    return check_settings(values, _spell)


def get_manager() -> LifecycleManager:
    """This process's manager, built from `settings.LIFECYCLE` on first call.

    Raises `ImproperlyConfigured` for a bad setting: system checks do not run under every
    server (gunicorn), so the accessor validates too.
    """
    return _current()[0]


def _current() -> tuple[LifecycleManager, Settings]:
    """The cached (manager, settings) pair; the views need both, built from one reading of the setting."""
    global _cached
    cached = _cached
    if cached is not None:
        return cached
    # Parsing imports the CONNECTOR and AUTH modules: user code, so it runs outside the lock.
    try:
        settings = _parse(_values())
    except ConfigurationError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
    with _lock:
        if _cached is None:
            _cached = (build_manager(settings), settings)
            log_registry(settings)
        return _cached


def _boot() -> None:
    """At `ready()`: build the manager where a server loads the project, so that it watches and
    declares its SERVICES from boot (a serving process) or from the fork (gunicorn's --preload
    master); a management command, a reloader's parent or a test builds nothing here."""
    if boot_role() in (SERVES, FORKS, LOADS):
        get_manager()


def _reset() -> None:
    """Shut the cached manager down and drop it, so that the next `get_manager()` builds a fresh one."""
    global _cached
    with _lock:
        dropped, _cached = _cached, None
    if dropped is not None:
        manager, settings = dropped
        # Outside the lock: a slow disconnect must not block get_manager() in other threads.
        try:
            manager.shutdown(settings.shutdown_timeout)
        except Exception:
            log.exception("lifecycle: shutting down the manager replaced after a settings change failed")


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    # Sent by override_settings in tests: the old manager was built from the old value.
    if setting == SETTING:
        _reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="lifecycle.contrib.django.setting_changed")


def _on_request(**kwargs: Any) -> None:
    # A request in this process: it serves, so the manager watches here (see contrib._process).
    start_watching()


request_started.connect(_on_request, dispatch_uid="lifecycle.contrib.django.request_started")
