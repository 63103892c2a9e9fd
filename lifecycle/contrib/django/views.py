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


def _endpoint(name: str, doc: str) -> Any:
    """The view for endpoint `name` of `_http.ENDPOINTS`; the URL's named groups become its arguments."""

    def view(request: HttpRequest, **arguments: str) -> HttpResponse:
        return _answer(request, name, **arguments)

    view.__name__ = view.__qualname__ = name
    view.__doc__ = doc
    # Clients are programs, not browsers holding a CSRF cookie; access is guarded by the token or AUTH hook.
    return csrf_exempt(view)


def _unknown(request: HttpRequest, **kwargs: Any) -> HttpResponse:
    """Any other path under the include: a JSON 404 rather than Django's HTML page."""
    return _response(not_found(request.path), request.method)


heartbeat = _endpoint("heartbeat", "POST services/<id>/heartbeat: 204, 404, 409 (stopping) or 503 (shut down).")
list_services = _endpoint("list_services", "GET services: every service of this process's manager.")
get_service = _endpoint("get_service", "GET services/<id>: one service, or 404.")
healthz = _endpoint("healthz", "GET healthz: 200 when every service is RUNNING, else 503.")
status = _endpoint("status", "GET status: what the status page shows (services, counts, recent events).")
status_page = _endpoint("status_page", "GET (the include's root): the status page.")
status_asset = _endpoint("status_asset", "GET status.css, status.js: the status page's stylesheet and script.")
metrics = _endpoint("metrics", "GET metrics: this process's numbers in Prometheus' text format.")
unknown = csrf_exempt(_unknown)
