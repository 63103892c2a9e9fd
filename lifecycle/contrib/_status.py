"""The service status table the command lines print, and fetching it from a running server.

With the in-memory registry each process has its own view, and a command's own process serves
nothing: so every status command asks a running server's `GET <prefix>/services` endpoint
(`--url`), and says so when it is not given. Standard library only.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .._text import quote

__all__ = ["URL_REQUIRED", "StatusUnavailable", "fetch_fleet", "fetch_services", "render_table"]

URL_REQUIRED = (
    "--url is required: this command's own process serves nothing, so its manager would show nothing "
    "real; pass the running server's endpoints, e.g. --url http://127.0.0.1:8000/lifecycle"
)

_COLUMNS = (
    ("id", "ID"),
    ("name", "NAME"),
    ("version", "VERSION"),
    ("status", "STATUS"),
    ("seconds_since_heartbeat", "SINCE HEARTBEAT (s)"),
)


class StatusUnavailable(Exception):
    """The server could not be asked, or did not answer with a service list; the message says why."""


def fetch_services(base: str, token: str | None = None, timeout: float = 10.0) -> list[dict[str, Any]]:
    """GET <base>/services; every failure is a `StatusUnavailable` naming the URL."""
    url = base.rstrip("/") + "/services"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise StatusUnavailable(f"--url must be an http:// or https:// URL, not {quote(base)}")
    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            advice = "pass --token" if exc.code == 401 else "check --token"
            raise StatusUnavailable(f"{url} refused the request with {exc.code} {exc.reason}; {advice}") from None
        raise StatusUnavailable(f"{url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatusUnavailable(f"cannot reach {url}: {reason}") from None
    try:
        services = json.loads(payload)
    except ValueError:
        raise StatusUnavailable(f"{url} did not answer with JSON; is it the lifecycle endpoints' URL?") from None
    if not isinstance(services, list) or not all(isinstance(s, dict) for s in services):
        raise StatusUnavailable(f"{url} did not answer with a list of services; is it the lifecycle endpoints' URL?")
    return services


def fetch_fleet(redis_url: str, namespace: str, timeout: float = 10.0) -> tuple[list[dict[str, Any]], str | None]:
    """The services of a fleet's shared registry, read straight from Redis, and the leader's owner token."""
    from ..errors import LifecycleError
    from ..redis import RedisRegistry
    from ._http import describe_service

    try:
        registry = RedisRegistry.from_url(redis_url, namespace=namespace, socket_timeout=timeout,
                                          socket_connect_timeout=timeout)
        services = registry.list_all()
        leader = registry.leader()
    except (LifecycleError, ValueError) as exc:
        raise StatusUnavailable(str(exc)) from None
    now = time.monotonic()
    return [describe_service(service, now) for service in services], leader


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


_OPTIONAL_COLUMNS = (
    ("restarts", "RESTARTS"),  # with max_restarts: restarts within the window
    ("phi", "PHI"),  # with the phi detector: the suspicion level now
)


def render_table(services: list[dict[str, Any]]) -> str:
    """Fixed-width columns sized to their content, one row per service.

    RESTARTS and PHI are shown when the server reports them (restart intensity, the phi detector).
    """
    if not services:
        return "No lifecycle services."
    columns = [*_COLUMNS, *(column for column in _OPTIONAL_COLUMNS if any(column[0] in s for s in services))]
    rows = [[title for _, title in columns]]
    rows += [[_cell(service.get(key)) for key, _ in columns] for service in services]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)
