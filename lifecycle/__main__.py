"""Command line of the package: ``python -m lifecycle demo [options]``."""

from __future__ import annotations

import argparse
import sys

from . import __version__, demo


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m lifecycle`` parser, with one subcommand per tool (so far: ``demo``)."""
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
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the chosen subcommand; return its exit code."""
    namespace = build_parser().parse_args(argv)
    return demo.run(demo.options_from(namespace.parser, namespace))


if __name__ == "__main__":
    sys.exit(main())
