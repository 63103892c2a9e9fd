"""The HTTP endpoints as Django views: each hands the request to `_http.serve` and returns its reply."""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from .._http import Reply, not_found, serve
from . import _current

__all__ = ["get_service", "healthz", "heartbeat", "list_services", "metrics", "status", "status_asset",
           "status_page", "unknown"]

log = logging.getLogger("lifecycle")

_warned = threading.Event()  # the "unprotected endpoints" warning is logged once per process


def _response(reply: Reply, method: str = "GET") -> HttpResponse:
    body = reply.content()
    # HEAD: the GET answer's headers without its body (gunicorn complains about body bytes on HEAD).
    response = HttpResponse(b"" if method == "HEAD" else body, status=reply.status, content_type=reply.media_type)
    if method == "HEAD" and body:
        response["Content-Length"] = str(len(body))
    for name, value in reply.headers.items():
        response[name] = value
    return response


def _answer(request: HttpRequest, endpoint: str, **arguments: str) -> HttpResponse:
    manager, settings = _current()
    if not settings.protected and not _warned.is_set():
        _warned.set()
        log.warning(
            "lifecycle: the endpoints (first request: %s) have no authorization; set LIFECYCLE['HEARTBEAT_TOKEN'] "
            "or LIFECYCLE['AUTH'] before exposing them beyond a trusted network",
            request.path,
        )
    return _response(serve(endpoint, manager, settings, request, **arguments), request.method)


def _heartbeat(request: HttpRequest, id: str) -> HttpResponse:
    """POST services/<id>/heartbeat: 204, 404, 409 (stopping) or 503 (shut down)."""
    return _answer(request, "heartbeat", id=id)


def _list_services(request: HttpRequest) -> HttpResponse:
    """GET services: every service of this process's manager."""
    return _answer(request, "list_services")


def _get_service(request: HttpRequest, id: str) -> HttpResponse:
    """GET services/<id>: one service, or 404."""
    return _answer(request, "get_service", id=id)


def _healthz(request: HttpRequest) -> HttpResponse:
    """GET healthz: 200 when every service is RUNNING, else 503."""
    return _answer(request, "healthz")


def _status(request: HttpRequest) -> HttpResponse:
    """GET status: what the status page shows (services, counts, recent events)."""
    return _answer(request, "status")


def _status_page(request: HttpRequest) -> HttpResponse:
    """GET (the include's root): the status page."""
    return _answer(request, "status_page")


def _status_asset(request: HttpRequest, name: str) -> HttpResponse:
    """GET status.css, status.js: the status page's stylesheet and script."""
    return _answer(request, "status_asset", name=name)


def _metrics(request: HttpRequest) -> HttpResponse:
    """GET metrics: this process's numbers in Prometheus' text format."""
    return _answer(request, "metrics")


def _unknown(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """Any other path under the include: a JSON 404 rather than Django's HTML page."""
    return _response(not_found(request.path), request.method)


# Clients are programs, not browsers holding a CSRF cookie; access is guarded by the token or AUTH hook.
heartbeat = csrf_exempt(_heartbeat)
list_services = csrf_exempt(_list_services)
get_service = csrf_exempt(_get_service)
healthz = csrf_exempt(_healthz)
status = csrf_exempt(_status)
status_page = csrf_exempt(_status_page)
status_asset = csrf_exempt(_status_asset)
metrics = csrf_exempt(_metrics)
unknown = csrf_exempt(_unknown)
