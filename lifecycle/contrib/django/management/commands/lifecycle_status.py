"""`manage.py lifecycle_status --url URL`: the services of a running server.

With the in-memory registry each process has its own view, and this command's process serves
nothing: it asks the server's endpoints, and refuses to run without `--url`. It never builds a
manager, so it starts and stops nothing.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...._status import URL_REQUIRED, StatusUnavailable, fetch_services, render_table


class Command(BaseCommand):
    """Print a status table (or JSON) of the lifecycle services."""

    help = "Show the lifecycle services of a running server (--url)."
    # A status query should not repeat `check`'s warnings on every run; a bad LIFECYCLE still fails below.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        """--url, --token, --timeout and --json."""
        parser.add_argument(
            "--url",
            help="(required) base URL of the endpoints on a running server, e.g. http://127.0.0.1:8000/lifecycle",
        )
        parser.add_argument("--token", help="bearer token for --url (the server's LIFECYCLE['HEARTBEAT_TOKEN'])")
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for --url (default 10)")
        parser.add_argument("--json", action="store_true", help="print the services as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        """Fetch the services, then print them."""
        if not options["url"]:
            raise CommandError(URL_REQUIRED, returncode=2)
        try:
            services = fetch_services(options["url"], options["token"], options["timeout"])
        except StatusUnavailable as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(services, indent=2))
        else:
            self.stdout.write(render_table(services))
