"""`manage.py lifecycle_status`: this process's services, or a running server's with `--url`.

With the in-memory registry each process has its own view: run locally, the command shows the
services started while Django set up (e.g. in an `AppConfig.ready()`); `--url` asks a server.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...._http import list_services
from ... import get_manager

_COLUMNS = (
    ("id", "ID"),
    ("name", "NAME"),
    ("version", "VERSION"),
    ("status", "STATUS"),
    ("seconds_since_heartbeat", "SINCE HEARTBEAT (s)"),
)


class Command(BaseCommand):
    """Print a status table (or JSON) of the lifecycle services."""

    help = "Show the lifecycle services of this process, or of a running server with --url."
    # A status query should not repeat `check`'s warnings on every run; a bad LIFECYCLE still fails below.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        """--url, --token, --timeout and --json."""
        parser.add_argument(
            "--url",
            help="base URL of the endpoints on a running server, e.g. http://127.0.0.1:8000/lifecycle",
        )
        parser.add_argument("--token", help="bearer token for --url (the server's LIFECYCLE['HEARTBEAT_TOKEN'])")
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for --url (default 10)")
        parser.add_argument("--json", action="store_true", help="print the services as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        """Fetch the services, then print them."""
        if options["url"]:
            services = _fetch(options["url"], options["token"], options["timeout"])
        else:
            if options["token"]:
                raise CommandError("--token only makes sense with --url")
            try:
                manager = get_manager()
            except ImproperlyConfigured as exc:
                raise CommandError(f"{exc} (run manage.py check for details)") from exc
            services = list_services(manager).body
        if options["json"]:
            self.stdout.write(json.dumps(services, indent=2))
        else:
            self.stdout.write(_table(services))


def _fetch(base: str, token: str | None, timeout: float) -> list[dict[str, Any]]:
    """GET <base>/services with the stdlib; every failure is a CommandError naming the URL."""
    url = base.rstrip("/") + "/services"
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise CommandError(f"--url must be an http:// or https:// URL, not {base!r}")
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
            raise CommandError(f"{url} refused the request with {exc.code} {exc.reason}; {advice}") from None
        raise CommandError(f"{url} answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CommandError(f"cannot reach {url}: {reason}") from None
    try:
        services = json.loads(payload)
    except ValueError:
        raise CommandError(f"{url} did not answer with JSON; is it the lifecycle endpoints' URL?") from None
    if not isinstance(services, list) or not all(isinstance(s, dict) for s in services):
        raise CommandError(f"{url} did not answer with a list of services; is it the lifecycle endpoints' URL?")
    return services


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _table(services: list[dict[str, Any]]) -> str:
    """Fixed-width columns sized to their content, one row per service."""
    if not services:
        return "No lifecycle services."
    rows = [[title for _, title in _COLUMNS]]
    rows += [[_cell(service.get(key)) for key, _ in _COLUMNS] for service in services]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)
