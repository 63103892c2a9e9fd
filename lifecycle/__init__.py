"""lifecycle: keep a host program's extension services alive.

Register services, watch their heartbeat deadlines, reconnect them with exponential backoff
and jitter, report everything through blinker signals (`lifecycle.signals`), shut down cleanly.
"""

from __future__ import annotations

import logging

from . import events, signals
from ._text import MaskedCredentials
from .backoff import ExponentialBackoff
from .config import LifecycleConfig
from .connector import Connector
from .errors import (
    ConnectionFailed,
    FieldError,
    FieldTypeError,
    FieldValueError,
    InvalidState,
    LifecycleError,
    ManagerClosed,
    NotInFleetMode,
    RegistryRefused,
    RegistryUnavailable,
    ServiceAlreadyExists,
    ServiceNotFound,
)
from .events import LifecycleEvent
from .manager import LifecycleManager
from .metrics import Metrics
from .model import (
    Capability,
    ExtensionService,
    RegistrationInfo,
    ServiceFilter,
    ServiceId,
    ServiceStatus,
    TransportConfig,
    TransportType,
)
from .receivers import Connection, connect
from .registry import Registry, RegistryReader, RegistryService, RegistryStats, Store
from .subscription import Subscription

__version__ = "0.1.0"

# Applications decide where library logs go (the logger is "lifecycle"); no line of it shows a password.
logging.getLogger("lifecycle").addHandler(logging.NullHandler())
logging.getLogger("lifecycle").addFilter(MaskedCredentials())

__all__ = [
    "Capability",
    "Connection",
    "ConnectionFailed",
    "Connector",
    "ExponentialBackoff",
    "ExtensionService",
    "FieldError",
    "FieldTypeError",
    "FieldValueError",
    "InvalidState",
    "LifecycleConfig",
    "LifecycleError",
    "LifecycleEvent",
    "LifecycleManager",
    "ManagerClosed",
    "Metrics",
    "NotInFleetMode",
    "RegistrationInfo",
    "Registry",
    "RegistryReader",
    "RegistryRefused",
    "RegistryService",
    "RegistryStats",
    "RegistryUnavailable",
    "ServiceAlreadyExists",
    "ServiceFilter",
    "ServiceId",
    "ServiceNotFound",
    "ServiceStatus",
    "Store",
    "Subscription",
    "TransportConfig",
    "TransportType",
    "__version__",
    "connect",
    "events",
    "signals",
]
