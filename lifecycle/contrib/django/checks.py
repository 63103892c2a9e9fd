"""System checks for `settings.LIFECYCLE`: a misconfiguration is a check error with an id, not a traceback."""

from __future__ import annotations

from typing import Any

from django.core import checks

from .._settings import ConfigurationError, Settings
from . import SETTING, _check, _parse, _spell, _values

__all__ = ["check_endpoints_protected", "check_settings"]

_OBJ = f"settings.{SETTING}"


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001 not a dict, E002 unknown key, E003 invalid value, E004 CONNECTOR/AUTH path that does not import.

    A problem inside SERVICES is an E003 naming its index and field, e.g.
    `LIFECYCLE['SERVICES'][1].transport.timeout_secs`.

    Every bad key is reported, each on its own, from the errors' `code` and `setting`.
    """
    _, errors = _check(_values())
    return [_message(error) for error in errors]


def _message(error: ConfigurationError) -> checks.CheckMessage:
    if error.setting is None:
        return checks.Error(
            f"{SETTING} {error.message}",
            hint=f"Set {SETTING} to a dict such as {{'HEARTBEAT_TIMEOUT_SECS': 90}}, or leave it unset.",
            obj=_OBJ,
            id="lifecycle.E001",
        )
    if error.code == "unknown" and error.key == _spell(error.setting):  # a key, not a field inside SERVICES
        return checks.Error(
            f"{error.key} is not a lifecycle setting.",
            hint=error.hint[:1].upper() + error.hint[1:],
            obj=_OBJ,
            id="lifecycle.E002",
        )
    if error.code == "import":
        return checks.Error(
            f"{error.key}: {error.message}",
            hint="Give the dotted path of an importable object, e.g. 'myproject.lifecycle.connector'.",
            obj=_OBJ,
            id="lifecycle.E004",
        )
    return checks.Error(
        f"{error.key}: {error.message}",
        hint="See the LIFECYCLE settings table in the lifecycle docs for each key's type and range.",
        obj=_OBJ,
        id="lifecycle.E003",
    )


def check_endpoints_protected(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W001: the endpoints are mounted (namespace "lifecycle") without HEARTBEAT_TOKEN or AUTH."""
    try:
        settings: Settings = _parse(_values())
    except Exception:
        return []  # check_settings reports it
    if settings.protected or not _endpoints_mounted():
        return []
    return [
        checks.Warning(
            "The lifecycle endpoints are mounted without authorization: anyone who can reach them can "
            "send heartbeats and read the service list.",
            hint=f"Set {_spell('HEARTBEAT_TOKEN')} or {_spell('AUTH')} before exposing them beyond a trusted network.",
            obj=_OBJ,
            id="lifecycle.W001",
        )
    ]


def _endpoints_mounted() -> bool:
    from django.urls import NoReverseMatch, reverse

    try:
        reverse("lifecycle:healthz")
    except NoReverseMatch:
        return False
    except Exception:
        return False  # a broken URLconf is reported by Django's own URL checks
    return True


# Registered by call rather than decorator: the call keeps the functions' own type hints for mypy.
checks.register(check_settings, "lifecycle")
checks.register(check_endpoints_protected, "lifecycle", checks.Tags.security, checks.Tags.urls)
