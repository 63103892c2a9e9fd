"""Framework settings (Flask's `LIFECYCLE_*` keys, Django's `LIFECYCLE` dict) parsed and validated once.

Both frameworks name the same settings; only how a key is spelled in messages differs
(`LIFECYCLE_JITTER` against `LIFECYCLE['JITTER']`), so the parser takes a `spell` function.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .. import _validate
from ..config import LifecycleConfig
from ..connector import resolve_connector
from ..errors import LifecycleError

__all__ = ["ConfigurationError", "Settings", "parse_settings"]

Authorize = Callable[[Any], object]
"""An authorization hook: given the framework's request, truthy to allow it, falsy to refuse (403)."""

CONFIG_KEYS = {f.name.upper(): f.name for f in fields(LifecycleConfig)}
"""Setting key -> `LifecycleConfig` field, e.g. HEARTBEAT_TIMEOUT_SECS -> heartbeat_timeout_secs."""

OTHER_KEYS = ("CONNECTOR", "AUTH", "HEARTBEAT_TOKEN", "SHUTDOWN_TIMEOUT", "AUTOSTART", "REDIS_URL", "NAMESPACE")

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
DEFAULT_NAMESPACE = "lifecycle"

DEFAULT_SHUTDOWN_TIMEOUT = 5.0

_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class ConfigurationError(LifecycleError, ValueError):
    """A lifecycle setting is missing, unknown or invalid; `key` is the setting as the user spells it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Settings:
    """What a framework integration needs to build and expose a manager."""

    config: LifecycleConfig
    connector: object = None
    authorize: Authorize | None = None
    token: str | None = None
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    autostart: bool = True
    extra: Mapping[str, Any] | None = None
    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    namespace: str = DEFAULT_NAMESPACE

    @property
    def protected(self) -> bool:
        """True when the HTTP endpoints check every request (a token or a hook)."""
        return self.token is not None or self.authorize is not None


def parse_settings(
    values: Mapping[str, Any], spell: Callable[[str], str], *, extra: Collection[str] = ()
) -> Settings:
    """Validate `values` (keys without prefix, e.g. "JITTER") into `Settings`.

    Raises `ConfigurationError` naming the first bad key as `spell(key)` spells it. Keys in
    `extra` are accepted unchecked and returned in `Settings.extra` for the caller to check.
    """
    known = [*CONFIG_KEYS, *OTHER_KEYS, *extra]
    for key in values:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {spell(close[0])}?" if close else f"; known settings: {', '.join(known)}"
            raise ConfigurationError(spell(key), f"unknown setting{hint}")
    config = _config(values, spell)
    connector = values.get("CONNECTOR")
    if isinstance(connector, str):
        connector = _import(connector, spell("CONNECTOR"))
    try:
        resolve_connector(connector)
    except TypeError as exc:
        raise ConfigurationError(spell("CONNECTOR"), str(exc)) from None
    authorize = values.get("AUTH")
    if isinstance(authorize, str):
        authorize = _import(authorize, spell("AUTH"))
    if authorize is not None and not callable(authorize):
        raise ConfigurationError(
            spell("AUTH"), f"must be a callable taking the request (or its dotted path), not {type(authorize).__name__}"
        )
    token = values.get("HEARTBEAT_TOKEN")
    if token is not None:
        if not isinstance(token, str) or not token.strip():
            raise ConfigurationError(spell("HEARTBEAT_TOKEN"), "must be a non-empty str")
        if not _BEARER_TOKEN.fullmatch(token):
            # Anything else cannot travel unchanged in an Authorization header (RFC 6750's b64token).
            raise ConfigurationError(
                spell("HEARTBEAT_TOKEN"), "may hold only letters, digits and - . _ ~ + / (then trailing =)"
            )
        if authorize is not None:
            raise ConfigurationError(
                spell("HEARTBEAT_TOKEN"),
                f"set either {spell('AUTH')} or {spell('HEARTBEAT_TOKEN')}, not both "
                "(a hook can check the token itself with lifecycle.contrib.bearer_token_valid)",
            )
    timeout = values.get("SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT)
    try:
        timeout = _validate.duration(timeout, spell("SHUTDOWN_TIMEOUT"), positive=False)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(spell("SHUTDOWN_TIMEOUT"), _strip(str(exc), spell("SHUTDOWN_TIMEOUT"))) from None
    autostart = values.get("AUTOSTART", True)
    if not isinstance(autostart, bool):
        kind = type(autostart).__name__
        raise ConfigurationError(spell("AUTOSTART"), f"must be a bool (False: manual mode), not {kind}")
    redis_url, namespace = _fleet(values, spell)
    return Settings(
        config=config,
        redis_url=redis_url,
        namespace=namespace,
        autostart=autostart,
        connector=connector,
        authorize=authorize,
        token=token,
        shutdown_timeout=timeout,
        extra={key: values[key] for key in extra if key in values},
    )


def _config(values: Mapping[str, Any], spell: Callable[[str], str]) -> LifecycleConfig:
    given = {CONFIG_KEYS[key]: value for key, value in values.items() if key in CONFIG_KEYS}
    try:
        return LifecycleConfig(**given)
    except ValueError as exc:
        message = str(exc)
        # The config names fields in its message; blame the first named field the user set.
        named = re.findall(r"[a-z_]+", message)
        field = next((name for name in named if name in given), next(iter(named), ""))
        key = next((k for k, f in CONFIG_KEYS.items() if f == field), "")
        raise ConfigurationError(spell(key) if key else spell("*"), message) from None


def _fleet(values: Mapping[str, Any], spell: Callable[[str], str]) -> tuple[str | None, str]:
    """REDIS_URL and NAMESPACE (fleet mode); a URL is never repeated in a message (it may hold a password)."""
    url = values.get("REDIS_URL")
    if url is not None:
        if not isinstance(url, str):
            raise ConfigurationError(spell("REDIS_URL"), f"must be a str, not {type(url).__name__}")
        if not url.startswith(REDIS_SCHEMES):
            raise ConfigurationError(spell("REDIS_URL"), f"must start with {', '.join(REDIS_SCHEMES)}")
        if importlib.util.find_spec("redis") is None:
            raise ConfigurationError(
                spell("REDIS_URL"), "fleet mode needs redis-py: pip install 'service-lifecycle[redis]'"
            )
    namespace = values.get("NAMESPACE", DEFAULT_NAMESPACE)
    if not isinstance(namespace, str) or not namespace.strip() or "{" in namespace or "}" in namespace:
        raise ConfigurationError(spell("NAMESPACE"), "must be a non-empty str without braces")
    if "NAMESPACE" in values and url is None:
        raise ConfigurationError(spell("NAMESPACE"), f"only means something with {spell('REDIS_URL')} (fleet mode)")
    return url, namespace


def _import(path: str, key: str) -> Any:
    module_name, _, attribute = path.rpartition(".")
    if not module_name:
        raise ConfigurationError(key, f"{path!r} is not a dotted path such as 'package.module.name'")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(key, f"cannot import {path!r}: {exc}") from None


def _strip(message: str, key: str) -> str:
    return message.removeprefix(key).lstrip()
