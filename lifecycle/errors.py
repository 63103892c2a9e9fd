"""The exceptions the library raises; every one derives from `LifecycleError`."""

from __future__ import annotations

from ._text import quote

__all__ = [
    "ConnectionFailed",
    "FieldError",
    "FieldTypeError",
    "FieldValueError",
    "InvalidState",
    "LifecycleError",
    "ManagerClosed",
    "NotInFleetMode",
    "PartitionsRefused",
    "RegistryRefused",
    "RegistryUnavailable",
    "ServiceAlreadyExists",
    "ServiceNotFound",
]


class LifecycleError(Exception):
    """Base class of every error raised by lifecycle."""


class ServiceNotFound(LifecycleError, LookupError):
    """No service with the given id (or name) is known."""

    def __str__(self) -> str:
        # LookupError subclasses (KeyError-like) would otherwise repr() the message.
        return str(self.args[0]) if self.args else ""


class ServiceAlreadyExists(LifecycleError):
    """A service with the same name (or id) is already registered; `name` and `id` say which one."""

    def __init__(self, *args: object, name: str | None = None, id: str | None = None) -> None:
        super().__init__(*args)
        self.name = name
        self.id = id

    @classmethod
    def named(cls, name: str, id: str) -> ServiceAlreadyExists:
        """The error for a second service called `name`; `id` is the registered one's."""
        return cls(
            f"a service named {quote(str(name))} is already registered (id {quote(str(id))}); stop it first "
            "(stop_service(id)) or give the new one another name",
            name=str(name),
            id=str(id),
        )

    @classmethod
    def with_id(cls, id: str) -> ServiceAlreadyExists:
        """The error for a second service whose id is `id`."""
        return cls(
            f"a service with id {quote(str(id))} is already registered; stop it first (stop_service(id)) "
            "or leave the new service's id to its default (a fresh uuid)",
            id=str(id),
        )


class InvalidState(LifecycleError):
    """The call is not allowed in the service's current status."""


class ConnectionFailed(LifecycleError):
    """The connector could not connect the service; the cause is chained."""


class ManagerClosed(LifecycleError):
    """The manager has been shut down and accepts no more work."""


class RegistryUnavailable(LifecycleError):
    """A shared registry cannot serve the call for now: unreachable, or refusing for a transient cause.

    `host` and `port` say which server (never a password); `reason` gives the cause in one
    word, stable for callers to branch on: ``connection``, ``timeout`` (cannot be reached),
    ``out_of_memory`` (maxmemory reached with noeviction), ``read_only`` (a replica, or a
    primary being failed over), ``loading`` (the server is loading its data), ``busy`` (a
    long script runs), ``master_down``, ``cluster_down``, ``try_again``, ``moved``
    (resharding or failover in a cluster), ``no_replicas``, ``persistence`` (MISCONF: the
    server cannot write to disk), ``unblocked``, ``no_script`` (the script cache keeps being
    flushed), ``max_clients``, ``max_connections`` (this client's pool is full), ``protocol``
    (a reply that could not be read), ``cluster``, or ``error`` (any other error the server
    or redis-py raised; the original is chained as ``__cause__``).

    The watchdog retries these with backoff and logs each cause once; the HTTP endpoints
    answer 503 with ``Retry-After``.
    """

    def __init__(self, message: str, *, host: str = "", port: int | None = None, reason: str = "connection") -> None:
        super().__init__(message)
        self.host = host
        self.port = port
        self.reason = reason


class RegistryRefused(LifecycleError):
    """A shared registry answers but refuses this client: a configuration problem, not an outage.

    `reason` says what to fix, in one stable word: ``auth`` (wrong user name or password, or
    none given), ``permission`` (the ACL user may not run a command lifecycle needs, or not on
    its keys), ``unknown_command`` (the server, or a proxy in front of it, lacks or renamed a
    command: Lua scripting and streams are needed), ``database`` (the URL names a database the
    server does not have), ``wrong_type`` (another program uses the namespace's keys),
    ``cross_slot`` (a key outside the namespace's hash slot: a lifecycle bug), ``tls`` (the
    server's certificate was not accepted), ``cluster_client`` (a plain client on a node of a
    Redis Cluster that does not serve the namespace's slot), ``partitions`` (the namespace is recorded
    with another partition count: `PartitionsRefused`). The message says what to change. `host` and
    `port` say which server (never a password); the redis-py error is chained as
    ``__cause__``.

    Retrying does not help until the configuration changes; the HTTP endpoints answer 500
    ``{"error": "registry_refused", ...}``.
    """

    def __init__(self, message: str, *, host: str = "", port: int | None = None, reason: str = "error") -> None:
        super().__init__(message)
        self.host = host
        self.port = port
        self.reason = reason


class PartitionsRefused(RegistryRefused):
    """The namespace is recorded with another partition count than this process's: both are kept.

    `field` is ``"partitions"``, `code` ``"mismatch"``, `recorded` the count the store holds and
    `configured` this process's; `reason` is ``partitions``.
    """

    field = "partitions"
    code = "mismatch"

    def __init__(self, message: str, *, recorded: int, configured: int, host: str = "",
                 port: int | None = None) -> None:
        super().__init__(message, host=host, port=port, reason="partitions")
        self.recorded = recorded
        self.configured = configured


class FieldError(Exception):
    """A value refused by validation: `field` names it, `code` says what is wrong.

    Not a `LifecycleError`: a bad argument is the caller's bug, not something the library met.

    Codes are short stable words callers may branch on (see docs/limits.md): "type", "blank",
    "too_long", "not_finite", "too_small", "too_large", "choice", "order", "element",
    "unknown", "import". Raised as `FieldTypeError` or `FieldValueError`, so code that catches
    the plain `TypeError`/`ValueError` keeps working.
    """

    def __init__(self, field: str, code: str, detail: str) -> None:
        super().__init__(f"{field} {detail}")
        self.field = field
        self.code = code
        self.detail = detail  # the message without the field's name, e.g. "must be > 0, got -1"


class FieldTypeError(FieldError, TypeError):
    """A value of the wrong type."""


class FieldValueError(FieldError, ValueError):
    """A value of the right type that is out of range, blank, too long or inconsistent."""


class NotInFleetMode(LifecycleError, ValueError):
    """A setting or call that fleet mode (a shared registry) does not support; `feature` names it."""

    def __init__(self, feature: str) -> None:
        super().__init__(
            f"{feature} is not supported in fleet mode (a shared registry): the leader's deadlines and "
            "attempts live in the registry, not in this process; use the in-memory registry for it"
        )
        self.feature = feature
