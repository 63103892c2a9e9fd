"""Command line of the package: ``python -m lifecycle demo [options]`` and ``python -m lifecycle status``.

``status --url URL`` asks a running server's endpoints; ``status --redis URL --namespace NS``
reads a fleet's shared registry. Exit codes: see `STATUS_EPILOG`.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__, demo
from .contrib._status import (
    URL_REQUIRED,
    StatusUnavailable,
    describe_empty,
    describe_leader,
    describe_leaders,
    fetch_fleet,
    fetch_services,
    render_table,
)

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_USAGE = 2
EXIT_EMPTY_NAMESPACE = 3

STATUS_EPILOG = f"""\
exit codes:
  {EXIT_OK}  the services were printed (none, too, in a namespace that exists)
  {EXIT_UNAVAILABLE}  the server or the registry could not be read (the reason, on one line)
  {EXIT_USAGE}  usage error: neither --url nor --redis, or both
  {EXIT_EMPTY_NAMESPACE}  --redis: the namespace holds nothing (no service, no leader, no event
     log); the lifecycle namespaces the server does hold are listed, with their service counts
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m lifecycle`` parser, with one subcommand per tool (``demo``, ``status``)."""
    parser = argparse.ArgumentParser(
        prog="python -m lifecycle",
        description="lifecycle: keep a host program's extension services alive.",
        epilog="Run 'python -m lifecycle demo --help' for the demo's options.",
    )
    parser.add_argument("--version", action="version", version=f"lifecycle {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo_parser = commands.add_parser("demo", help="run a ~15 s guided demo with simulated services",
                                      description=demo.DESCRIPTION, epilog=demo.EPILOG)
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(parser=demo_parser)
    status_parser = commands.add_parser(
        "status",
        help="print the services of a running server's lifecycle endpoints",
        description="Print the services a running app serves at <url>/services (Flask or Django endpoints),\n"
                    "or, in fleet mode, the services of the shared registry in Redis (--redis).",
        epilog=STATUS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = status_parser.add_mutually_exclusive_group()
    source.add_argument("--url", help="the endpoints' base URL, e.g. http://127.0.0.1:5000/lifecycle (this or --redis)")
    source.add_argument("--redis", metavar="URL",
                        help="fleet mode: read the shared registry at this Redis URL instead of --url")
    status_parser.add_argument("--token", help="bearer token (the server's HEARTBEAT_TOKEN)")
    status_parser.add_argument("--namespace", default="lifecycle", help="fleet mode: the namespace (default lifecycle)")
    status_parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    status_parser.add_argument("--json", action="store_true", help="print the services as JSON")
    return parser


def status(namespace: argparse.Namespace) -> int:
    """Fetch and print a server's services; the exit code is one of `STATUS_EPILOG`'s."""
    if not namespace.url and not namespace.redis:
        print(f"error: {URL_REQUIRED} (or, in fleet mode, read the shared registry: --redis URL --namespace NS)",
              file=sys.stderr)
        return EXIT_USAGE
    leader: str | None = None
    leaders: list[str | None] | None = None
    try:
        if namespace.redis:
            fleet = fetch_fleet(namespace.redis, namespace.namespace, namespace.timeout)
            if fleet.empty:
                if namespace.json:
                    print(json.dumps(fleet.services))
                print(f"error: {describe_empty(namespace.namespace, fleet)}", file=sys.stderr)
                return EXIT_EMPTY_NAMESPACE
            services, leader, leaders = fleet.services, fleet.leader, fleet.leaders
        else:
            services = fetch_services(namespace.url, namespace.token, namespace.timeout)
    except StatusUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if namespace.json:
        print(json.dumps(services, indent=2))
    else:
        print(render_table(services))
        if namespace.redis and leaders is not None:
            print(f"leaders: {describe_leaders(leaders)}")
        elif namespace.redis:
            print(f"leader: {describe_leader(leader)}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand; return its exit code."""
    namespace = build_parser().parse_args(argv)
    if namespace.command == "status":
        return status(namespace)
    return demo.run(demo.options_from(namespace.parser, namespace))


if __name__ == "__main__":
    sys.exit(main())
