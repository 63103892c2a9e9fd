"""The service model: ids, statuses, transport settings and the `ExtensionService` record."""

from __future__ import annotations

import copy
import enum
import time
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from . import _validate
from ._text import quote
from .errors import FieldTypeError, FieldValueError

_T = TypeVar("_T")

__all__ = [
    "Capability",
    "ExtensionService",
    "RegistrationInfo",
    "ServiceFilter",
    "ServiceId",
    "ServiceStatus",
    "TransportConfig",
    "TransportType",
]


class ServiceId(str):
    """A service's unique id: plain text, equal to and hashed like the same `str`."""

    __slots__ = ()

    @classmethod
    def generate(cls) -> ServiceId:
        """Return a new random id (uuid4 text)."""
        return cls(uuid.uuid4())

    def __repr__(self) -> str:
        return f"ServiceId({str.__repr__(self)})"


class ServiceStatus(enum.StrEnum):
    """Where a service is in its life; see the state diagram in README.md."""

    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"
    RECONNECTING = "reconnecting"


class TransportType(enum.StrEnum):
    """How the host talks to the service; descriptive only, the manager never dials it."""

    STDIO = "stdio"
    TCP = "tcp"
    UNIX = "unix"
    WEBSOCKET = "websocket"


def _status(value: Any, field_name: str = "status") -> ServiceStatus:
    if isinstance(value, ServiceStatus):
        return value
    if isinstance(value, str):
        try:
            return ServiceStatus(value)
        except ValueError:
            choices = ", ".join(s.value for s in ServiceStatus)
            raise FieldValueError(field_name, "choice", f"must be one of {choices}; got {quote(value)}") from None
    raise TypeError(f"{field_name} must be a ServiceStatus, not {type(value).__name__}")


def _transport_type(value: object) -> TransportType:
    if isinstance(value, TransportType):
        return value
    if not isinstance(value, str):
        raise TypeError(f"TransportConfig.transport_type must be a TransportType, not {type(value).__name__}")
    try:
        return TransportType(value)
    except ValueError:
        choices = ", ".join(t.value for t in TransportType)
        raise FieldValueError(
            "TransportConfig.transport_type", "choice", f"must be one of {choices}; got {quote(value)}"
        ) from None


SERVICE_ID_VARIABLE = "LIFECYCLE_SERVICE_ID"
"""Set in a STDIO child's environment to its service's id: a new owner finds a paused owner's child by it."""

_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def check_host(value: object, field_name: str) -> str:
    """A host name as a fleet records it beside a child: 1-253 letters, digits, '.', '-' or '_'."""
    if not isinstance(value, str):
        raise FieldTypeError(field_name, "type", f"must be a str, not {_kind(value)}")
    if not value:
        raise FieldValueError(field_name, "blank", "must not be empty")
    if len(value) > 253 or not _HOST_CHARS.issuperset(value):
        raise FieldValueError(field_name, "invalid", f"must be a host name (at most 253 letters, digits, '.', '-' "
                              f"or '_'), got {quote(value[:80])}")
    return value


def _kind(value: object) -> str:
    """A refused element described by type and (shortened) value, e.g. "int 5"."""
    return f"{type(value).__name__} {quote(value)}"


_field_names: dict[type, tuple[str, ...]] = {}


def _shallow_copy(obj: _T) -> _T:
    """`copy.copy` for slotted dataclasses without its slow reduce protocol; subclasses keep their extras."""
    cls = type(obj)
    names = _field_names.get(cls)
    if names is None:
        names = _field_names[cls] = tuple(f.name for f in fields(obj))  # type: ignore[arg-type]
    clone = object.__new__(cls)
    for name in names:
        object.__setattr__(clone, name, getattr(obj, name))
    extra = getattr(obj, "__dict__", None)
    if extra:
        clone.__dict__.update(copy.deepcopy(extra))
    return clone


def _copy_container(value: Any) -> Any:
    # Most services carry empty lists and dicts; skipping deepcopy for those keeps
    # registration and snapshots cheap without giving up isolation.
    if not value and type(value) in (list, dict):
        return type(value)()
    return copy.deepcopy(value)


@dataclass(slots=True)
class Capability:
    """Something a service can do, e.g. `Capability("search", "2")`."""

    name: str
    version: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _validate.text(self.name, "Capability.name")
        if not isinstance(self.version, str):
            raise TypeError(f"Capability.version must be a str, not {type(self.version).__name__}")
        if not isinstance(self.config, dict):
            raise TypeError(f"Capability.config must be a dict, not {type(self.config).__name__}")


@dataclass(slots=True)
class TransportConfig:
    """How to reach a service, and (optionally) its own timing.

    The manager reads `auto_reconnect`, `timeout_secs` and the three per-service overrides
    `heartbeat_timeout_secs`, `ping_interval_secs` and `max_reconnect_attempts`: None (the
    default) means the manager's `LifecycleConfig` value. `max_retries` and
    `heartbeat_interval_secs` describe the service for its users; the manager never reads them.

    Placement of a process-bound service (a STDIO child) in a fleet: `host` pins it to the
    members whose host is that name (only they may own and spawn it); `per_host=True` gives each
    host its own copy, with the id and name `<id>@<host>` and `<name>@<host>`. In memory each
    process supervises its own copy whatever they say.
    """

    transport_type: TransportType = TransportType.STDIO
    address: str | None = None
    port: int | None = None
    command: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout_secs: float = 30.0
    auto_reconnect: bool = True
    max_retries: int = 3
    heartbeat_interval_secs: float = 30.0
    heartbeat_timeout_secs: float | None = None
    ping_interval_secs: float | None = None
    max_reconnect_attempts: int | None = None
    host: str | None = None
    per_host: bool = False

    def __post_init__(self) -> None:
        self.transport_type = _transport_type(self.transport_type)
        for name in ("address", "command", "cwd"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"TransportConfig.{name} must be a str or None, not {type(value).__name__}")
        if self.port is not None:
            _validate.integer(self.port, "TransportConfig.port", minimum=0)
            if self.port > 65535:
                raise ValueError(f"TransportConfig.port must be <= 65535, got {self.port}")
        if not isinstance(self.args, list):
            raise FieldTypeError("TransportConfig.args", "type", f"must be a list, not {type(self.args).__name__}")
        # The annotations say str; callers may still pass anything, so check as objects.
        for index, arg in enumerate(cast("list[object]", self.args)):
            if not isinstance(arg, str):
                raise FieldTypeError(f"TransportConfig.args[{index}]", "element", f"must be a str, not {_kind(arg)}")
        if not isinstance(self.env, dict):
            raise FieldTypeError("TransportConfig.env", "type", f"must be a dict, not {type(self.env).__name__}")
        for variable, setting in cast("dict[object, object]", self.env).items():
            if not isinstance(variable, str):
                raise FieldTypeError("TransportConfig.env", "element", f"names must be str, not {_kind(variable)}")
            if not isinstance(setting, str):
                field_name = f"TransportConfig.env[{quote(variable)}]"
                raise FieldTypeError(field_name, "element", f"must be a str, not {_kind(setting)}")
        self.timeout_secs = _validate.duration(self.timeout_secs, "TransportConfig.timeout_secs")
        _validate.flag(self.auto_reconnect, "TransportConfig.auto_reconnect")
        _validate.integer(self.max_retries, "TransportConfig.max_retries", minimum=0)
        self.heartbeat_interval_secs = _validate.duration(
            self.heartbeat_interval_secs, "TransportConfig.heartbeat_interval_secs"
        )
        for name in ("heartbeat_timeout_secs", "ping_interval_secs"):
            if getattr(self, name) is not None:
                setattr(self, name, _validate.duration(getattr(self, name), f"TransportConfig.{name}"))
        if self.max_reconnect_attempts is not None:
            _validate.integer(self.max_reconnect_attempts, "TransportConfig.max_reconnect_attempts", minimum=0)
        if (self.heartbeat_timeout_secs is not None and self.ping_interval_secs is not None
                and self.heartbeat_timeout_secs < self.ping_interval_secs):
            raise FieldValueError("TransportConfig.heartbeat_timeout_secs", "order",
                                  f"({self.heartbeat_timeout_secs!r}) must be >= "
                                  f"TransportConfig.ping_interval_secs ({self.ping_interval_secs!r})")
        self._check_placement()

    def _check_placement(self) -> None:
        """`host` and `per_host`: a host name or None, a bool, and not both (a copy per host is on every host)."""
        if self.host is not None:
            check_host(self.host, "TransportConfig.host")
        _validate.flag(self.per_host, "TransportConfig.per_host")
        if self.per_host and self.host is not None:
            raise FieldValueError("TransportConfig.per_host", "conflict", f"cannot be combined with "
                                  f"TransportConfig.host ({quote(self.host)}): a copy per host runs on every host")

    def __deepcopy__(self, memo: dict[int, Any]) -> TransportConfig:
        clone = _shallow_copy(self)
        clone.args = _copy_container(self.args)
        clone.env = _copy_container(self.env)
        return clone


@dataclass(slots=True)
class ExtensionService:
    """One extension service as the registry knows it.

    `status`, `last_heartbeat` (a `time.monotonic()` reading) and `retry_count` are state;
    the rest describes the service. Instances handed out by a registry are snapshots.
    """

    name: str
    version: str
    description: str = field(default="", kw_only=True)
    capabilities: list[Capability] = field(default_factory=list, kw_only=True)
    transport: TransportConfig = field(default_factory=TransportConfig, kw_only=True)
    metadata: dict[str, Any] = field(default_factory=dict, kw_only=True)
    id: ServiceId = field(default_factory=ServiceId.generate, kw_only=True)
    status: ServiceStatus = field(default=ServiceStatus.STARTING, kw_only=True)
    last_heartbeat: float | None = field(default=None, kw_only=True)
    retry_count: int = field(default=0, kw_only=True)

    def __post_init__(self) -> None:
        _validate.text(self.name, "ExtensionService.name")
        _validate.text(self.version, "ExtensionService.version")
        if not isinstance(self.description, str):
            raise TypeError(f"ExtensionService.description must be a str, not {type(self.description).__name__}")
        if not isinstance(self.capabilities, list):
            raise TypeError(
                f"ExtensionService.capabilities must be a list, not {type(self.capabilities).__name__}"
            )
        for cap in self.capabilities:
            if not isinstance(cap, Capability):
                raise TypeError(
                    f"ExtensionService.capabilities must hold Capability objects, not {type(cap).__name__}"
                )
        if not isinstance(self.transport, TransportConfig):
            raise TypeError(
                f"ExtensionService.transport must be a TransportConfig, not {type(self.transport).__name__}"
            )
        if not isinstance(self.metadata, dict):
            raise TypeError(f"ExtensionService.metadata must be a dict, not {type(self.metadata).__name__}")
        if type(self.id) is not ServiceId:
            self.id = ServiceId(_validate.text(self.id, "ExtensionService.id"))
        self.status = _status(self.status, "ExtensionService.status")
        if self.last_heartbeat is not None:
            self.last_heartbeat = _validate.number(self.last_heartbeat, "ExtensionService.last_heartbeat")
        _validate.integer(self.retry_count, "ExtensionService.retry_count", minimum=0)

    def __deepcopy__(self, memo: dict[int, Any]) -> ExtensionService:
        clone = _shallow_copy(self)
        clone.capabilities = _copy_container(self.capabilities)
        clone.transport = copy.deepcopy(self.transport, memo)
        clone.metadata = _copy_container(self.metadata)
        return clone

    def heartbeat(self) -> None:
        """Record a heartbeat now (monotonic clock) and reset `retry_count`."""
        self.last_heartbeat = time.monotonic()
        self.retry_count = 0

    def is_healthy(self, timeout_secs: float) -> bool:
        """True only if `RUNNING` and a heartbeat was seen less than `timeout_secs` ago."""
        timeout = _validate.number(timeout_secs, "timeout_secs")
        if self.status is not ServiceStatus.RUNNING or self.last_heartbeat is None:
            return False
        return time.monotonic() - self.last_heartbeat < timeout

    def has_capability(self, name: str) -> bool:
        """True if the service offers a capability called `name`."""
        return any(cap.name == name for cap in self.capabilities)

    def get_capability(self, name: str) -> Capability | None:
        """The capability called `name`, or None."""
        for cap in self.capabilities:
            if cap.name == name:
                return cap
        return None

    def set_status(self, status: ServiceStatus) -> None:
        """Set `status` (no transition check: this is the plain record)."""
        self.status = _status(status)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class RegistrationInfo:
    """A registered service with when it was registered and last updated (aware UTC datetimes)."""

    service: ExtensionService
    registered_at: datetime = field(default_factory=_utcnow)
    updated_at: datetime = field(default_factory=_utcnow)

    def touch(self) -> None:
        """Set `updated_at` to now."""
        self.updated_at = _utcnow()

    def __deepcopy__(self, memo: dict[int, Any]) -> RegistrationInfo:
        return RegistrationInfo(copy.deepcopy(self.service, memo), self.registered_at, self.updated_at)


@dataclass(frozen=True, slots=True)
class ServiceFilter:
    """Criteria for `RegistryService.list`; every criterion given must match."""

    status: ServiceStatus | None = None
    capability: str | None = None
    transport_type: TransportType | None = None

    def __post_init__(self) -> None:
        if self.status is not None:
            object.__setattr__(self, "status", _status(self.status, "ServiceFilter.status"))
        if self.capability is not None:
            _validate.text(self.capability, "ServiceFilter.capability")
        if self.transport_type is not None and not isinstance(self.transport_type, TransportType):
            raise TypeError(
                f"ServiceFilter.transport_type must be a TransportType, not {type(self.transport_type).__name__}"
            )

    def matches(self, service: ExtensionService) -> bool:
        """True if `service` meets every criterion given."""
        if self.status is not None and service.status is not self.status:
            return False
        if self.capability is not None and not service.has_capability(self.capability):
            return False
        return self.transport_type is None or service.transport.transport_type is self.transport_type
