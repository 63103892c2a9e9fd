"""`manage.py lifecycle_status`: this process's services, or a running server's with `--url`.

With the in-memory registry each process has its own view: run locally, the command shows the
services started while Django set up (e.g. in an `AppConfig.ready()`); `--url` asks a server.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...._http import list_services
from ...._status import StatusUnavailable, fetch_services, render_table
from ... import get_manager


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
            try:
                services = fetch_services(options["url"], options["token"], options["timeout"])
            except StatusUnavailable as exc:
                raise CommandError(str(exc)) from None
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
            self.stdout.write(render_table(services))
