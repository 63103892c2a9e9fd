"""Where a process-bound service runs in a fleet: the member's host, a pin to one host, a copy per host."""

from __future__ import annotations

import copy
import logging
import os
import socket

from ..errors import LifecycleError
from ..fleet import SharedRegistry
from ..model import ExtensionService, ServiceId, check_host
from .base import label

__all__ = ["HOST_VARIABLE", "elsewhere", "leave", "member_host", "place"]

log = logging.getLogger("lifecycle")

HOST_VARIABLE = "LIFECYCLE_HOST"
"""The environment variable a member's host is read from when none is given (containers whose hostname changes)."""


def member_host(host: str | None) -> str:
    """This member's host: `host` if given, else $LIFECYCLE_HOST, else the machine's hostname."""
    if host is not None:
        return check_host(host, "host")
    named = os.environ.get(HOST_VARIABLE)
    if named:
        return check_host(named, HOST_VARIABLE)
    return socket.gethostname()


def place(service: ExtensionService, host: str) -> ExtensionService:
    """The service as this host runs it: a per-host service becomes its host's own copy, pinned here.

    The copy's id and name are `<id>@<host>` and `<name>@<host>`, so each host's copy is a service
    of its own in the fleet (its own owner, status and events); any other service is returned as is.
    """
    if not service.transport.per_host:
        return service
    placed = copy.deepcopy(service)
    placed.id = ServiceId(f"{service.id}@{host}")
    placed.name = f"{service.name}@{host}"
    placed.transport.per_host = False
    placed.transport.host = host
    return placed


def elsewhere(service: ExtensionService, host: str) -> bool:
    """True when the service is pinned to another host: members here never own or spawn it."""
    pinned = service.transport.host
    return pinned is not None and pinned != host


def leave(registry: SharedRegistry, service: ExtensionService, host: str) -> ServiceId:
    """Start or declare a service pinned to another host: never a candidate here; a member there registers it."""
    try:
        what = "it" if registry.get(service.id) is not None else "starting it"
    except LifecycleError:  # unreachable or refused: only the log line wanted it, and `declare` never raises for that
        what = "it"
    log.info("lifecycle: service %s is pinned to host %s; this member (host %s) leaves %s to the members there",
             label(service.name, service.id), service.transport.host, host, what)
    return service.id

