"""System checks for `settings.LIFECYCLE`: a misconfiguration is a check error with an id, not a traceback."""

from __future__ import annotations

from typing import Any

from django.core import checks

from .._settings import CONFIG_KEYS, OTHER_KEYS, ConfigurationError, Settings
from . import SETTING, _parse, _spell, _values

__all__ = ["check_endpoints_protected", "check_settings"]

_OBJ = f"settings.{SETTING}"
_IMPORTED = ("CONNECTOR", "AUTH")


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001 not a dict, E002 unknown key, E003 invalid value, E004 CONNECTOR/AUTH path that does not import."""
    values = _values()
    try:
        _parse(values)
    except ConfigurationError as exc:
        return _classify(values, exc)
    except Exception as exc:
        # A CONNECTOR or AUTH module that raises while importing (not ImportError) lands here.
        return [
            checks.Error(
                f"importing a dotted path in {SETTING} raised {type(exc).__name__}: {exc}",
                hint=f"Check the modules named by {_spell('CONNECTOR')} and {_spell('AUTH')}.",
                obj=_OBJ,
                id="lifecycle.E004",
            )
        ]
    return []


def _classify(values: Any, error: ConfigurationError) -> list[checks.CheckMessage]:
    if error.key == SETTING:
        return [
            checks.Error(
                f"{SETTING} {error.message}",
                hint=f"Set {SETTING} to a dict such as {{'HEARTBEAT_TIMEOUT_SECS': 90}}, or leave it unset.",
                obj=_OBJ,
                id="lifecycle.E001",
            )
        ]
    if error.message.startswith("unknown setting"):
        # Report every unknown key at once; each single-key parse gives its own "did you mean".
        errors = []
        for key in values:
            if key in CONFIG_KEYS or key in OTHER_KEYS:
                continue
            try:
                _parse({key: values[key]})
            except ConfigurationError as exc:
                hint = exc.message.removeprefix("unknown setting; ")
                errors.append(
                    checks.Error(
                        f"{exc.key} is not a lifecycle setting.",
                        hint=hint[:1].upper() + hint[1:],
                        obj=_OBJ,
                        id="lifecycle.E002",
                    )
                )
        return errors
    if any(error.key == _spell(key) and isinstance(values.get(key), str) for key in _IMPORTED) and (
        error.message.startswith("cannot import") or "is not a dotted path" in error.message
    ):
        return [
            checks.Error(
                f"{error.key}: {error.message}",
                hint="Give the dotted path of an importable object, e.g. 'myproject.lifecycle.connector'.",
                obj=_OBJ,
                id="lifecycle.E004",
            )
        ]
    return [
        checks.Error(
            f"{error.key}: {error.message}",
            hint="See the LIFECYCLE settings table in the lifecycle README for each key's type and range.",
            obj=_OBJ,
            id="lifecycle.E003",
        )
    ]


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
