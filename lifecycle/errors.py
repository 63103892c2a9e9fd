"""The exceptions the library raises; every one derives from `LifecycleError`."""

from __future__ import annotations

__all__ = [
    "ConnectionFailed",
    "InvalidState",
    "LifecycleError",
    "ManagerClosed",
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
    """A service with the same name (or id) is already registered."""


class InvalidState(LifecycleError):
    """The call is not allowed in the service's current status."""


class ConnectionFailed(LifecycleError):
    """The connector could not connect the service; the cause is chained."""


class ManagerClosed(LifecycleError):
    """The manager has been shut down and accepts no more work."""


class RegistryUnavailable(LifecycleError):
    """A shared registry's server cannot be reached; `host` and `port` say which (never a password)."""

    def __init__(self, message: str, *, host: str = "", port: int | None = None) -> None:
        super().__init__(message)
        self.host = host
        self.port = port
