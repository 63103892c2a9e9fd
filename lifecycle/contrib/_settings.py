"""Framework settings (Flask's `LIFECYCLE_*` keys, Django's `LIFECYCLE` dict) parsed and validated once.

Both frameworks name the same settings; only how a key is spelled in messages differs
(`LIFECYCLE_JITTER` against `LIFECYCLE['JITTER']`), so the parser takes a `spell` function.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import logging
import re
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from .. import _validate
from .._partitions import MAX_PARTITIONS
from .._redis_url import redis_location, redis_url_problems
from .._text import mask_credentials, quote
from ..config import LifecycleConfig
from ..connector import resolve_connector
from ..errors import FieldError, LifecycleError
from ..model import Capability, ExtensionService, ServiceId, TransportConfig

__all__ = ["ConfigurationError", "Settings", "check_settings", "derived_service_id", "describe_registry",
           "parse_settings", "redis_url_problems"]

log = logging.getLogger("lifecycle")

Authorize = Callable[[Any], object]
"""An authorization hook: given the framework's request, truthy to allow it, falsy to refuse (403)."""

CONFIG_KEYS = {f.name.upper(): f.name for f in fields(LifecycleConfig)}
"""Setting key -> `LifecycleConfig` field, e.g. HEARTBEAT_TIMEOUT_SECS -> heartbeat_timeout_secs."""

OTHER_KEYS = ("CONNECTOR", "AUTH", "HEARTBEAT_TOKEN", "SHUTDOWN_TIMEOUT", "AUTOSTART", "REDIS_URL", "NAMESPACE",
              "REDIS_CLUSTER", "REDIS_PARTITIONS", "REDIS_LEASE_SECS", "SERVICES")

DEFAULT_NAMESPACE = "lifecycle"

DEFAULT_SHUTDOWN_TIMEOUT = 5.0

_BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class ConfigurationError(LifecycleError, ValueError):
    """One or more lifecycle settings are unknown or invalid.

    `key` is the (first) setting as the user spells it (`LIFECYCLE_JITTER`, `LIFECYCLE['JITTER']`),
    `setting` the bare name (`JITTER`; None when the whole setting is wrong), `code` what is
    wrong (docs/limits.md), `message` the text after the key and `hint` what to do, if known.

    `problems` lists every problem found, as (key, message) pairs in the order found, the first
    being the one `key` names; `errors` holds them as single errors (`others` is all but the
    first). The text of an error with several problems names each on its own line.
    """

    def __init__(self, key: str, message: str, *, code: str = "invalid", setting: str | None = None,
                 hint: str = "", others: Sequence[ConfigurationError] = ()) -> None:
        self.key = key
        self.message = message
        self.code = code
        self.setting = setting
        self.hint = hint
        self.others: list[ConfigurationError] = [e for other in others for e in other.errors]
        self.errors: list[ConfigurationError] = [self if not others else _single(self), *self.others]
        self.problems: list[tuple[str, str]] = [(e.key, e.detail) for e in self.errors]
        if self.others:
            lines = "\n".join(f"  {key}: {detail}" for key, detail in self.problems)
            super().__init__(f"{len(self.problems)} problems in the lifecycle settings:\n{lines}")
        else:
            super().__init__(f"{key}: {self.detail}")

    @property
    def detail(self) -> str:
        """The message and its hint, as the error's text shows them after the key."""
        return f"{self.message}; {self.hint}" if self.hint else self.message

    @classmethod
    def of(cls, errors: Sequence[ConfigurationError]) -> ConfigurationError:
        """One error reporting all of `errors` (non-empty): the first itself when it is alone."""
        first, *rest = errors
        if not rest:
            return first
        return cls(first.key, first.message, code=first.code, setting=first.setting, hint=first.hint, others=rest)


def _single(error: ConfigurationError) -> ConfigurationError:
    return ConfigurationError(error.key, error.message, code=error.code, setting=error.setting, hint=error.hint)


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
    redis_cluster: bool | None = None  # REDIS_CLUSTER: None asks the server whether it is a Redis Cluster
    redis_partitions: int = 1  # REDIS_PARTITIONS
    redis_lease_secs: float | None = None  # REDIS_LEASE_SECS: RedisRegistry's lease_ttl_secs (None: its default)
    services: tuple[ExtensionService, ...] = ()  # SERVICES: declared by every process when it starts serving

    @property
    def protected(self) -> bool:
        """True when the HTTP endpoints check every request (a token or a hook)."""
        return self.token is not None or self.authorize is not None


def parse_settings(
    values: Mapping[str, Any], spell: Callable[[str], str], *, extra: Collection[str] = ()
) -> Settings:
    """Validate `values` (keys without prefix, e.g. "JITTER") into `Settings`.

    Raises one `ConfigurationError` listing every problem (each naming its key as `spell(key)`
    spells it; `key` is the first's). Keys in `extra` are accepted unchecked and returned in
    `Settings.extra` for the caller to check.
    """
    settings, errors = check_settings(values, spell, extra=extra)
    if settings is None:
        raise ConfigurationError.of(errors)
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
        cluster, partitions = self.cluster(redis_url is not None)
        lease = self.lease(redis_url is not None)
        services = self.services()
        if self.errors or config is None:
            return None, self.errors
        settings = Settings(
            config=config,
            redis_url=redis_url,
            namespace=namespace,
            redis_cluster=cluster,
            redis_partitions=partitions,
            redis_lease_secs=lease,
            services=services,
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
            self.fail(key, f"cannot import {_validate.quote(value)}: {mask_credentials(str(exc))}", "import")
        except Exception as exc:  # the module itself raised while importing
            said = mask_credentials(str(exc))
            self.fail(key, f"importing {_validate.quote(value)} raised {type(exc).__name__}: {said}", "import")
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
            else:
                for message, code in redis_url_problems(url):
                    self.fail("REDIS_URL", message, code)
                if importlib.util.find_spec("redis") is None:
                    self.fail("REDIS_URL", "fleet mode needs redis-py: pip install 'service-lifecycle[redis]'",
                              "missing")
        namespace = values.get("NAMESPACE", DEFAULT_NAMESPACE)
        if not isinstance(namespace, str) or not namespace.strip() or "{" in namespace or "}" in namespace:
            self.fail("NAMESPACE", "must be a non-empty str without braces")
        elif "NAMESPACE" in values and url is None:
            self.fail("NAMESPACE", f"only means something with {spell('REDIS_URL')} (fleet mode)", "conflict")
        return url, namespace


    # -- SERVICES: declared services, each problem named by its index and field ------------------------

    def cluster(self, fleet: bool) -> tuple[bool | None, int]:
        """REDIS_CLUSTER (None: ask the server) and REDIS_PARTITIONS (1 to 1024), as `from_url` takes them."""
        values, cluster, partitions = self.values, None, 1
        for key in ("REDIS_CLUSTER", "REDIS_PARTITIONS"):
            if key in values and not fleet:
                self.fail(key, f"only means something with {self.spell('REDIS_URL')} (fleet mode)", "conflict")
        given = values.get("REDIS_CLUSTER")
        if given is not None and not isinstance(given, bool):
            self.fail("REDIS_CLUSTER", f"must be a bool, or None to ask the server, not {type(given).__name__}",
                      "type")
        else:
            cluster = given
        try:
            partitions = _validate.integer(values.get("REDIS_PARTITIONS", 1), "REDIS_PARTITIONS", minimum=1)
        except FieldError as exc:
            self.field_error("REDIS_PARTITIONS", exc)
        else:
            if partitions > MAX_PARTITIONS:
                self.fail("REDIS_PARTITIONS", f"must be at most {MAX_PARTITIONS}, got {partitions}", "too_large")
        return cluster, partitions

    def lease(self, fleet: bool) -> float | None:
        """REDIS_LEASE_SECS: the leases' TTL in seconds (leader and owners; a tick every third of it); None: unset."""
        if "REDIS_LEASE_SECS" not in self.values:
            return None
        if not fleet:
            self.fail("REDIS_LEASE_SECS", f"only means something with {self.spell('REDIS_URL')} (fleet mode)",
                      "conflict")
            return None
        try:
            return _validate.duration(self.values["REDIS_LEASE_SECS"], "REDIS_LEASE_SECS")
        except FieldError as exc:
            self.field_error("REDIS_LEASE_SECS", exc)
        return None

    def services(self) -> tuple[ExtensionService, ...]:
        """SERVICES: a list of mappings of `ExtensionService` fields, each built as every process will declare it."""
        value = self.values.get("SERVICES")
        if value is None:
            return ()
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            self.fail("SERVICES", "must be a list of mappings (one per service, e.g. "
                      "[{'name': 'search', 'version': '1.0', 'id': 'search'}]), "
                      f"not {type(value).__name__}", "type")
            return ()
        built: list[ExtensionService] = []
        names: dict[str, int] = {}
        ids: dict[str, int] = {}
        for index, entry in enumerate(value):
            service = self.service(f"[{index}]", entry)
            if service is None:
                continue
            for seen, attribute in ((names, "name"), (ids, "id")):
                text = str(getattr(service, attribute))
                if text in seen:
                    first = f"{self.spell('SERVICES')}[{seen[text]}].{attribute}"
                    self.fail_at(f"[{index}].{attribute}", f"{quote(text)} is declared twice (also {first}); "
                                 f"each declared service needs its own {attribute}", "conflict")
                else:
                    seen[text] = index
            built.append(service)
        return tuple(built)

    def fail_at(self, path: str, message: str, code: str = "invalid", hint: str = "") -> None:
        """A problem inside SERVICES, named by its path (e.g. "[1].transport.timeout_secs")."""
        self.errors.append(ConfigurationError(self.spell("SERVICES") + path, message, code=code, setting="SERVICES",
                                              hint=hint))

    def refused(self, path: str, prefix: str, exc: Exception) -> None:
        """A model class refused a value: name it by `path` plus the field the error names (after `prefix`)."""
        if isinstance(exc, FieldError):
            self.fail_at(f"{path}.{exc.field.removeprefix(prefix)}", exc.detail.replace(prefix, ""), exc.code)
            return
        text = str(exc)
        code = "type" if isinstance(exc, TypeError) else "invalid"
        head, _, rest = text.partition(" ")
        if head.startswith(prefix) and rest:
            self.fail_at(f"{path}.{head.removeprefix(prefix)}", rest, code)
        else:
            self.fail_at(path, text, code)

    def fields_known(self, path: str, entry: Mapping[Any, Any], known: Sequence[str], what: str) -> bool:
        good = True
        for key in entry:
            if key in known:
                continue
            good = False
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.7) if isinstance(key, str) else []
            hint = f"did you mean {close[0]!r}?" if close else f"{what} fields: {', '.join(known)}"
            self.fail_at(f"{path}.{key}" if isinstance(key, str) else path,
                         "unknown field" if isinstance(key, str) else f"field names must be str, not {quote(key)}",
                         "unknown", hint)
        return good

    def service(self, path: str, entry: object) -> ExtensionService | None:
        if not isinstance(entry, Mapping):
            self.fail_at(path, f"must be a mapping of ExtensionService fields ({', '.join(SERVICE_FIELDS)}), "
                         f"not {type(entry).__name__}", "type")
            return None
        good = self.fields_known(path, entry, SERVICE_FIELDS, "service")
        for key in ("name", "version"):
            if key not in entry:
                self.fail_at(f"{path}.{key}", "is required", "missing")
                good = False
        plain = {key: entry[key] for key in ("name", "version", "id", "description", "metadata") if key in entry}
        for key, value in plain.items():
            try:
                ExtensionService(**{"name": "n", "version": "1", key: value})  # the field's own checks
            except (TypeError, ValueError) as exc:
                self.refused(path, "ExtensionService.", exc)
                good = False
        capabilities = self.capabilities(f"{path}.capabilities", entry.get("capabilities", []))
        transport = self.transport(f"{path}.transport", entry.get("transport", {}))
        if not good or capabilities is None or transport is None:
            return None
        if "id" not in plain:
            plain["id"] = derived_service_id(plain["name"], plain["version"])
        try:
            return ExtensionService(**plain, capabilities=capabilities, transport=transport)
        except (TypeError, ValueError) as exc:  # pragma: no cover - each field was checked above
            self.refused(path, "ExtensionService.", exc)
            return None

    def capabilities(self, path: str, value: object) -> list[Capability] | None:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            self.fail_at(path, f"must be a list of capability names or mappings (name, version, config), "
                         f"not {type(value).__name__}", "type")
            return None
        built: list[Capability] | None = []
        for index, item in enumerate(value):
            at = f"{path}[{index}]"
            try:
                if isinstance(item, str):
                    capability = Capability(item)
                elif isinstance(item, Mapping):
                    if not self.fields_known(at, item, CAPABILITY_FIELDS, "capability"):
                        built = None
                        continue
                    capability = Capability(**item)
                else:
                    self.fail_at(at, f"must be a capability name or a mapping (name, version, config), "
                                 f"not {type(item).__name__}", "type")
                    built = None
                    continue
            except (TypeError, ValueError) as exc:
                self.refused(at, "Capability.", exc)
                built = None
                continue
            if built is not None:
                built.append(capability)
        return built

    def transport(self, path: str, value: object) -> TransportConfig | None:
        if isinstance(value, TransportConfig):
            return value
        if not isinstance(value, Mapping):
            self.fail_at(path, f"must be a mapping of TransportConfig fields, not {type(value).__name__}", "type")
            return None
        good = self.fields_known(path, value, TRANSPORT_FIELDS, "transport")
        given = {key: item for key, item in value.items() if key in TRANSPORT_FIELDS}
        for key, item in given.items():
            try:
                TransportConfig(**{key: item})  # the field's own checks, against the defaults
            except FieldError as exc:
                if exc.code != "order":  # an order against a default may be fixed by another field
                    self.refused(path, "TransportConfig.", exc)
                    good = False
            except (TypeError, ValueError) as exc:
                self.refused(path, "TransportConfig.", exc)
                good = False
        if not good:
            return None
        try:
            return TransportConfig(**given)
        except (TypeError, ValueError) as exc:
            self.refused(path, "TransportConfig.", exc)
            return None


SERVICE_FIELDS = ("name", "version", "id", "description", "capabilities", "transport", "metadata")
"""The fields of an entry of SERVICES (an `ExtensionService`'s description; its state is not configured)."""

CAPABILITY_FIELDS = tuple(f.name for f in fields(Capability))

TRANSPORT_FIELDS = tuple(f.name for f in fields(TransportConfig))

_SERVICE_ID_NAMESPACE = uuid.UUID("7d1e6f0a-3c2b-5e8f-9a4d-6c1b2e3f4a5b")


def derived_service_id(name: str, version: str) -> ServiceId:
    """The id of a declared service given without one: the same in every process, from its name and version.

    ``uuid5(7d1e6f0a-3c2b-5e8f-9a4d-6c1b2e3f4a5b, f"{name}\\n{version}")`` as text. A new version
    is a new id; an explicit `id` is better still (it survives a change of version).
    """
    return ServiceId(uuid.uuid5(_SERVICE_ID_NAMESPACE, f"{name}\n{version}"))


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


def describe_registry(settings: Settings) -> str:
    """The registry `settings` select, as the startup line says it; never a password."""
    if settings.redis_url is None:
        return "in-memory (this process only)"
    location = redis_location(settings.redis_url)
    where = str(location) if location is not None else "Redis"
    return f"{where}, namespace {settings.namespace!r} (fleet mode)"


def log_registry(settings: Settings) -> None:
    """The one INFO line at startup saying which registry a new manager uses."""
    log.info("lifecycle: registry: %s", describe_registry(settings))
