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
from ..errors import FieldError, LifecycleError

__all__ = ["ConfigurationError", "Settings", "check_settings", "parse_settings"]

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
    """A lifecycle setting is unknown or invalid.

    `key` is the setting as the user spells it (`LIFECYCLE_JITTER`, `LIFECYCLE['JITTER']`),
    `setting` the bare name (`JITTER`; None when the whole setting is wrong), `code` what is
    wrong (docs/limits.md), `message` the text after the key and `hint` what to do, if known.
    """

    def __init__(self, key: str, message: str, *, code: str = "invalid", setting: str | None = None,
                 hint: str = "") -> None:
        super().__init__(f"{key}: {message}; {hint}" if hint else f"{key}: {message}")
        self.key = key
        self.message = message
        self.code = code
        self.setting = setting
        self.hint = hint


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

    Raises the first `ConfigurationError` (naming the key as `spell(key)` spells it); its
    `others` attribute holds the rest. Keys in `extra` are accepted unchecked and returned in
    `Settings.extra` for the caller to check.
    """
    settings, errors = check_settings(values, spell, extra=extra)
    if settings is None:
        first = errors[0]
        first.others = errors[1:]  # type: ignore[attr-defined]
        raise first
    return settings


def check_settings(
    values: Mapping[str, Any], spell: Callable[[str], str], *, extra: Collection[str] = ()
) -> tuple[Settings | None, list[ConfigurationError]]:
    """Every problem of `values` at once (each key checked on its own), and `Settings` when there is none."""
    return _Check(values, spell, extra).run()


class _Check:
    """One pass over the settings that records every bad key instead of stopping at the first."""

    def __init__(self, values: Mapping[str, Any], spell: Callable[[str], str], extra: Collection[str]) -> None:
        self.values = values
        self.spell = spell
        self.extra = extra
        self.errors: list[ConfigurationError] = []

    def fail(self, key: str, message: str, code: str = "invalid", hint: str = "") -> None:
        self.errors.append(ConfigurationError(self.spell(key), message, code=code, setting=key, hint=hint))

    def field_error(self, key: str, exc: FieldError) -> None:
        # A config field keeps its own name in the message (it differs from the key's spelling).
        self.fail(key, exc.detail if key == exc.field else str(exc), exc.code)

    def run(self) -> tuple[Settings | None, list[ConfigurationError]]:
        values = self.values
        known = [*CONFIG_KEYS, *OTHER_KEYS, *self.extra]
        for key in values:
            if key not in known:
                self.fail(key, "unknown setting", "unknown", _suggestion(key, known, self.spell))
        config = self.config()
        connector = self.imported("CONNECTOR")
        if connector is not None or "CONNECTOR" not in values:
            try:
                resolve_connector(connector)
            except TypeError as exc:
                self.fail("CONNECTOR", str(exc), "type")
        authorize = self.imported("AUTH")
        if authorize is not None and not callable(authorize):
            kind = type(authorize).__name__
            self.fail("AUTH", f"must be a callable taking the request (or its dotted path), not {kind}", "type")
        token = self.token(authorize is not None)
        timeout = DEFAULT_SHUTDOWN_TIMEOUT
        try:
            timeout = _validate.duration(values.get("SHUTDOWN_TIMEOUT", timeout), "SHUTDOWN_TIMEOUT", positive=False)
        except FieldError as exc:
            self.field_error("SHUTDOWN_TIMEOUT", exc)
        autostart = values.get("AUTOSTART", True)
        if not isinstance(autostart, bool):
            self.fail("AUTOSTART", f"must be a bool (False: manual mode), not {type(autostart).__name__}", "type")
        redis_url, namespace = self.fleet()
        if self.errors or config is None:
            return None, self.errors
        settings = Settings(
            config=config,
            redis_url=redis_url,
            namespace=namespace,
            autostart=autostart,
            connector=connector,
            authorize=authorize,
            token=token,
            shutdown_timeout=timeout,
            extra={key: values[key] for key in self.extra if key in values},
        )
        return settings, []

    def config(self) -> LifecycleConfig | None:
        given = {key: self.values[key] for key in CONFIG_KEYS if key in self.values}
        bad = False
        for key, value in given.items():
            try:
                LifecycleConfig(**{CONFIG_KEYS[key]: value})  # the field's own checks, against the defaults
            except FieldError as exc:
                if exc.code != "order":  # an order against a default may be fixed by another key
                    self.field_error(key, exc)
                    bad = True
        if bad:
            return None
        try:
            return LifecycleConfig(**{CONFIG_KEYS[key]: value for key, value in given.items()})
        except FieldError as exc:
            # Blame a key the user set: the named field, or else its partner in the relation.
            field_name = exc.field if exc.field.upper() in given else _PARTNERS.get(exc.field, exc.field)
            self.field_error(field_name.upper(), exc)
            return None

    def imported(self, key: str) -> Any:
        """The setting's value, a dotted path imported; None (recorded) when the path does not import."""
        value = self.values.get(key)
        if not isinstance(value, str):
            return value
        module_name, _, attribute = value.rpartition(".")
        if not module_name:
            self.fail(key, f"{_validate.quote(value)} is not a dotted path such as 'package.module.name'", "import")
            return None
        try:
            return getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            self.fail(key, f"cannot import {_validate.quote(value)}: {exc}", "import")
        except Exception as exc:  # the module itself raised while importing
            self.fail(key, f"importing {_validate.quote(value)} raised {type(exc).__name__}: {exc}", "import")
        return None

    def token(self, with_auth: bool) -> str | None:
        token = self.values.get("HEARTBEAT_TOKEN")
        if token is None:
            return None
        if not isinstance(token, str) or not token.strip():
            self.fail("HEARTBEAT_TOKEN", "must be a non-empty str", "type" if not isinstance(token, str) else "blank")
        elif not _BEARER_TOKEN.fullmatch(token):
            # Anything else cannot travel unchanged in an Authorization header (RFC 6750's b64token).
            self.fail("HEARTBEAT_TOKEN", "may hold only letters, digits and - . _ ~ + / (then trailing =)")
        elif with_auth or isinstance(self.values.get("AUTH"), str):
            spell = self.spell
            self.fail(
                "HEARTBEAT_TOKEN",
                f"set either {spell('AUTH')} or {spell('HEARTBEAT_TOKEN')}, not both "
                "(a hook can check the token itself with lifecycle.contrib.bearer_token_valid)",
                "conflict",
            )
        else:
            return token
        return None

    def fleet(self) -> tuple[str | None, str]:
        """REDIS_URL and NAMESPACE (fleet mode); a URL is never repeated in a message (it may hold a password)."""
        values, spell = self.values, self.spell
        url = values.get("REDIS_URL")
        if url is not None:
            if not isinstance(url, str):
                self.fail("REDIS_URL", f"must be a str, not {type(url).__name__}", "type")
            elif not url.startswith(REDIS_SCHEMES):
                self.fail("REDIS_URL", f"must start with {', '.join(REDIS_SCHEMES)}")
            elif importlib.util.find_spec("redis") is None:
                self.fail("REDIS_URL", "fleet mode needs redis-py: pip install 'service-lifecycle[redis]'", "missing")
        namespace = values.get("NAMESPACE", DEFAULT_NAMESPACE)
        if not isinstance(namespace, str) or not namespace.strip() or "{" in namespace or "}" in namespace:
            self.fail("NAMESPACE", "must be a non-empty str without braces")
        elif "NAMESPACE" in values and url is None:
            self.fail("NAMESPACE", f"only means something with {spell('REDIS_URL')} (fleet mode)", "conflict")
        return url, namespace


# Each relation LifecycleConfig checks between two fields, by the field it blames.
_PARTNERS = {"heartbeat_timeout_secs": "heartbeat_interval_secs", "max_reconnect_delay_ms": "reconnect_delay_ms"}


def _suggestion(key: str, known: list[str], spell: Callable[[str], str]) -> str:
    """ "did you mean ...?" for a misspelt or partial key, else the list of known settings."""
    bare = key.upper().removeprefix("LIFECYCLE_")
    if bare in known:  # a prefix written twice, or lower case
        return f"did you mean {spell(bare)}?"
    typo = difflib.get_close_matches(bare, known, n=1, cutoff=0.8)
    if typo:
        return f"did you mean {spell(typo[0])}?"
    # A partial name (TIMEOUT, RETRIES): the keys made of its words, each word allowing a typo.
    vocabulary = sorted({word for name in known for word in name.split("_")})
    words = [difflib.get_close_matches(word, vocabulary, n=1, cutoff=0.8) for word in bare.split("_") if word]
    if words and all(words):
        wanted = {match[0] for match in words}
        candidates = [name for name in known if wanted <= set(name.split("_"))]
        if 0 < len(candidates) <= 3:
            return f"did you mean {' or '.join(spell(name) for name in candidates)}?"
    return f"known settings: {', '.join(known)}"
