"""The HTTP endpoints both framework integrations serve, written once without any framework.

Each endpoint takes the manager and returns a `Reply`; `contrib.flask` and `contrib.django`
only translate it into their own response objects. Every outcome a client can cause
(unknown id, wrong method, refused credentials, a closed manager) is a JSON reply with a
4xx/5xx status, never an exception; so is a shared registry that is down (503
`registry_unavailable`, with `Retry-After`) or refuses this server (500 `registry_refused`).
"""

from __future__ import annotations

import hmac
import importlib.util
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._text import quote
from .._validate import MAX_TEXT_LENGTH
from ..errors import InvalidState, ManagerClosed, RegistryRefused, RegistryUnavailable, ServiceNotFound
from ..manager import LifecycleManager
from ..model import ExtensionService, ServiceFilter, ServiceId, ServiceStatus
from . import _page
from ._eventlog import event_log
from ._process import declared_services, fleet_stopped_services, stopped_services
from ._settings import Settings
from ._status import leader_fields

__all__ = [
    "Reply",
    "bearer_token_valid",
    "check_access",
    "describe_service",
    "get_service",
    "healthz",
    "heartbeat",
    "list_services",
    "method_not_allowed",
    "metrics",
    "not_found",
    "serve",
    "status",
    "status_asset",
    "status_page",
]

log = logging.getLogger("lifecycle")



JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    """A response: status code, body (JSON-ready, bytes sent as they are, or None), extra headers, media type."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    media_type: str = JSON

    def content(self) -> bytes:
        """The body as bytes (JSON unless it already is bytes); empty for no body and for 204."""
        if self.body is None or self.status == 204:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


def _error(status: int, error: str, message: str, **extra: Any) -> Reply:
    return Reply(status, {"error": error, "message": message, **extra})


def _unknown(id: str) -> Reply:
    return _error(404, "not_found", f"no service with id {quote(id)}")


def not_found(path: str) -> Reply:
    """404 for a path under the endpoints' prefix that names no endpoint."""
    return _error(404, "not_found", f"no lifecycle endpoint at {quote(path)}")


def method_not_allowed(method: str, allowed: tuple[str, ...]) -> Reply:
    """405 with the Allow header listing what the endpoint does accept."""
    return Reply(
        405,
        {"error": "method_not_allowed", "message": f"{method} is not allowed here", "allowed": list(allowed)},
        {"Allow": ", ".join(allowed)},
    )


def bearer_token_valid(authorization: str | None, token: str) -> bool:
    """True if an Authorization header carries exactly `token` as a bearer token (constant-time compare)."""
    if authorization is None:
        return False
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # compare_digest on str accepts ASCII only; bytes make any header safe to compare.
    return hmac.compare_digest(credentials.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8"))


def check_access(settings: Settings, request: Any, authorization: str | None) -> Reply | None:
    """None when the request may proceed; otherwise the 401/403 reply that refuses it.

    With `HEARTBEAT_TOKEN`, no credentials give 401 (with a Bearer challenge), a header that is not
    `<scheme> <credentials>` 400 (malformed), another scheme or a wrong token 403.
    With an `AUTH` hook, a falsy result gives 403; a hook that raises refuses too (and is logged),
    so a broken hook fails closed.
    """
    if settings.token is not None:
        if authorization is None or not authorization.strip():
            return Reply(
                401,
                {"error": "unauthorized", "message": "a bearer token is required"},
                {"WWW-Authenticate": 'Bearer realm="lifecycle"'},
            )
        scheme, _, credentials = authorization.strip().partition(" ")
        if not credentials.strip():
            # A lone word ("s3cret", "Bearer"): a token pasted without its scheme, or a scheme without one.
            return Reply(
                400,
                {"error": "malformed_header", "message": "the Authorization header must be 'Bearer <token>'"},
                {"WWW-Authenticate": 'Bearer realm="lifecycle", error="invalid_request"'},
            )
        if scheme.lower() != "bearer":
            return _error(403, "forbidden", f"the Authorization scheme must be Bearer, not {scheme[:20]!r}")
        if not bearer_token_valid(authorization, settings.token):
            return _error(403, "forbidden", "the bearer token is not valid")
        return None
    if settings.authorize is not None:
        try:
            allowed = settings.authorize(request)
        except Exception:
            log.exception("lifecycle: the authorization hook raised; refusing the request")
            allowed = False
        if not allowed:
            return _error(403, "forbidden", "the authorization hook refused this request")
    return None


def _valid_id(id: str) -> bool:
    return 0 < len(id) <= MAX_TEXT_LENGTH


def heartbeat(manager: LifecycleManager, id: str) -> Reply:
    """POST /services/<id>/heartbeat: 204, or 404 (unknown), 409 (stopping), 503 (shut down)."""
    if not _valid_id(id):
        return _unknown(id)
    try:
        manager.handle_heartbeat(id)
    except ServiceNotFound:
        return _unknown(id)
    except InvalidState as exc:
        return _error(409, "conflict", str(exc))
    except ManagerClosed:
        return _error(503, "closed", "the lifecycle manager is shut down")
    return Reply(204)


def describe_service(service: ExtensionService, now: float) -> dict[str, Any]:
    """A service as the endpoints and status tables show it."""
    last = service.last_heartbeat
    return {
        "id": str(service.id),
        "name": service.name,
        "version": service.version,
        "status": str(service.status),
        "seconds_since_heartbeat": None if last is None else round(max(0.0, now - last), 3),
    }


def supervision(manager: LifecycleManager, row: dict[str, Any]) -> dict[str, Any]:
    """Add to a described service what the manager's supervision uses: `restarts` in the window
    (with `max_restarts`) and the phi detector's suspicion `phi` (with ``detector="phi"``)."""
    config = manager.config
    if config.max_restarts is not None:
        row["restarts"] = manager.restarts(row["id"])
    if config.detector == "phi":
        row["phi"] = round(manager.phi(row["id"]), 2)
    return row


def list_services(manager: LifecycleManager) -> Reply:
    """GET /services: every managed service, in registration order."""
    now = time.monotonic()
    return Reply(200, [supervision(manager, describe_service(service, now))
                       for service in manager.registry.list_all()])


def get_service(manager: LifecycleManager, id: str) -> Reply:
    """GET /services/<id>: one service, or 404."""
    service = manager.registry.get(id) if _valid_id(id) else None
    if service is None:
        return _unknown(id)
    return Reply(200, supervision(manager, describe_service(service, time.monotonic())))


def healthz(manager: LifecycleManager) -> Reply:
    """GET /healthz: 200 when every service is RUNNING, else 503 listing the others by id and status.

    With SERVICES declared, also 503 while any of them is not registered yet (the registry is
    unreachable, or its connect keeps failing and is retried with backoff): the body's `pending`
    lists them by id and name; and 503 for one that `stop_service` stopped on purpose (it is
    not brought back), in this process or, in fleet mode, in another (read from the fleet's event
    log): the body's `stopped` lists those. The body's `status` says why, first
    that applies: "failing", "pending", "stopped". A shared registry that cannot be reached
    is 503 "unavailable" with its `reason`, every declared service still `pending`.

    Load balancers ask often, so the usual answer costs O(services not RUNNING), not O(services):
    the registry's counts tell whether anything is failing, and only failing services are copied
    (grouped by status, in registration order within each). Each declared service costs one
    status lookup (in fleet mode a round trip to the registry).
    """
    if manager.closed:
        return Reply(503, {"status": "closed", "failing": []})
    declared = declared_services(manager)
    stopped_ids = stopped_services(manager)
    try:
        return _health(manager, declared, stopped_ids)
    except RegistryUnavailable as exc:
        if not declared:
            raise  # serve() answers it as every endpoint does
        pending = [{"id": str(sid), "name": name} for sid, name in declared if sid not in stopped_ids]
        return Reply(503, {"status": "unavailable", "error": "registry_unavailable", "message": str(exc),
                           "reason": exc.reason, "failing": [], "pending": pending},
                     {"Retry-After": "1"})


def _health(manager: LifecycleManager, declared: tuple[tuple[ServiceId, str], ...],
            stopped_ids: frozenset[str]) -> Reply:
    missing = [(sid, name) for sid, name in declared if manager.get_status(sid) is None]
    if manager.fleet and any(sid not in stopped_ids for sid, _ in missing):
        stopped_ids = fleet_stopped_services(manager)  # stopped on purpose by another process of the fleet?
    stopped = [{"id": str(sid), "name": name} for sid, name in missing if sid in stopped_ids]
    pending = [{"id": str(sid), "name": name} for sid, name in missing if sid not in stopped_ids]
    registry = manager.registry
    stats = registry.stats()
    extra: dict[str, Any] = {"pending": pending, "stopped": stopped} if declared else {}
    if stats.running == stats.total and not pending and not stopped:
        return Reply(200, {"status": "ok", "services": stats.total, "failing": [], **extra})
    counts = {
        ServiceStatus.STARTING: stats.starting,
        ServiceStatus.RECONNECTING: stats.reconnecting,
        ServiceStatus.ERROR: stats.errors,
        ServiceStatus.STOPPING: stats.stopping,
        ServiceStatus.STOPPED: stats.stopped,
    }
    failing = [
        {"id": str(s.id), "name": s.name, "status": str(s.status)}
        for status, count in counts.items()
        if count
        for s in registry.list(ServiceFilter(status=status))
    ]
    state = "failing" if failing or not (pending or stopped) else "pending" if pending else "stopped"
    return Reply(503, {"status": state, "services": stats.total, "failing": failing, **extra})


def status(manager: LifecycleManager) -> Reply:
    """GET /status: everything the status page shows, in one reply.

    Each service as `/services` describes it plus its reconnect `attempt` (0 when none), the
    counts per status, and the most recent events newest first. With the in-memory registry
    `scope` is "process" and `leader` None: the process answers for its own manager. In fleet
    mode `scope` is "fleet", the services and events are the whole namespace's, and `leader`
    names the process that acts (host and pid, from the registry). Clients must ignore fields they do
    not know, so later ones (a service's `restarts`, an event's `origin`) can be added.
    """
    fleet = manager.fleet
    log = event_log(manager)
    if log is not None and fleet:
        log.follow_fleet(manager)
    now = time.monotonic()
    services = manager.registry.list_all()
    counts = dict.fromkeys((str(s) for s in ServiceStatus), 0)
    rows = []
    for service in services:
        row = supervision(manager, describe_service(service, now))
        # A shared registry keeps the attempt in the record; asking the manager would cost a round trip each.
        row["attempt"] = service.retry_count if fleet else manager.attempts(service.id)
        counts[row["status"]] = counts.get(row["status"], 0) + 1
        rows.append(row)
    body = {
        "scope": "fleet" if fleet else "process",
        "pid": os.getpid(),
        **leader_fields(manager),  # fleet mode: the lease holder from the registry, the same in every worker
        "closed": manager.closed,
        "max_attempts": manager.config.max_reconnect_attempts,
        "total": len(rows),
        "counts": counts,
        "services": rows,
        "events": [] if log is None else log.recent(now),
        "events_seen": 0 if log is None else log.seen(),
        "events_kept": 0 if log is None else log.maxlen,
    }
    return Reply(200, body, {"Cache-Control": "no-store"})


_PAGE_HEADERS = {
    "Content-Security-Policy": _page.CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def status_asset(manager: LifecycleManager, name: str) -> Reply:
    """GET /status.css, /status.js: the page's stylesheet and script."""
    if name not in _page.ASSETS:
        return not_found(name)
    return Reply(200, _page.read(name), _PAGE_HEADERS, _page.ASSETS[name])


def status_page(manager: LifecycleManager) -> Reply:
    """GET /: the status page; it holds no data, so it is served without the access check."""
    return status_asset(manager, "index.html")


def metrics(manager: LifecycleManager) -> Reply:
    """GET /metrics: this process's `metrics()` in Prometheus' text format, each sample labelled with its pid.

    Every worker of a pre-forking server answers for itself; the pid keeps their series apart.
    501 when prometheus_client is not installed.
    """
    if importlib.util.find_spec("prometheus_client") is None:
        return _error(501, "not_installed", "the metrics endpoint needs prometheus_client: "
                      "pip install 'service-lifecycle[prometheus]'")
    from prometheus_client import CONTENT_TYPE_LATEST

    from .prometheus import exposition

    return Reply(200, exposition(manager, {"pid": str(os.getpid())}), media_type=CONTENT_TYPE_LATEST)


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
"""The methods the integrations route to `serve`, so that each gets a JSON answer."""

ENDPOINTS: dict[str, tuple[tuple[str, ...], Callable[..., Reply]]] = {
    "heartbeat": (("POST",), heartbeat),
    "list_services": (("GET", "HEAD"), list_services),
    "get_service": (("GET", "HEAD"), get_service),
    "healthz": (("GET", "HEAD"), healthz),
    "status": (("GET", "HEAD"), status),
    "status_page": (("GET", "HEAD"), status_page),
    "status_asset": (("GET", "HEAD"), status_asset),
    "metrics": (("GET", "HEAD"), metrics),
}
"""Endpoint name -> (methods it accepts, handler taking the manager and the URL's arguments)."""

OPEN_ENDPOINTS = frozenset({"status_page", "status_asset"})
"""Endpoints served without the access check: the page's own files, the same for everyone."""


def serve(endpoint: str, manager: LifecycleManager, settings: Settings, request: Any, **arguments: str) -> Reply:
    """Answer one request: the method is checked first, then access, then the endpoint runs.

    `request` is the framework's own (Flask's and Django's both have `.method` and a
    case-insensitive `.headers`); the `AUTH` hook receives it as it is.
    """
    allowed, handler = ENDPOINTS[endpoint]
    method = request.method
    if method == "OPTIONS":
        return Reply(204, None, {"Allow": ", ".join((*allowed, "OPTIONS"))})
    if method not in allowed:
        return method_not_allowed(method, (*allowed, "OPTIONS"))
    if endpoint not in OPEN_ENDPOINTS:
        refused = check_access(settings, request, request.headers.get("Authorization"))
        if refused is not None:
            return refused
    try:
        return handler(manager, **arguments)
    except RegistryUnavailable as exc:
        # Fleet mode with the shared registry down: the client should retry, not give up.
        return Reply(503, {"error": "registry_unavailable", "message": str(exc), "reason": exc.reason},
                     {"Retry-After": "1"})
    except RegistryRefused as exc:
        # The registry refuses this server (credentials, ACL, ...): the server's configuration is wrong, not the
        # client's request, and retrying will not help until it is fixed. Not logged per request: the watchdog's
        # tick meets the same refusal and logs it once.
        return _error(500, "registry_refused", str(exc), reason=exc.reason)
