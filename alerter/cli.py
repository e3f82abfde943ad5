"""Command line: build the parser from the command modules (alerter/commands/), dispatch, and
turn errors into one line on stderr and an exit code.

Heavy libraries (ccxt, apprise, matplotlib) are imported inside the commands that need them,
so `alerter --help` starts in a blink. `validate` imports apprise and ccxt (about a second) for
the start-up checks `run` makes, so that it refuses everything `run` would.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from alerter import __version__
from alerter.commands import COMMANDS, EXIT_CONFIG, EXIT_RUNTIME, module_name
from alerter.commands.check import CHECK_EXIT


class Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line: the usage block would bury the one that matters."""

    def error(self, message: str):
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="alerter",
        description="Watches margin accounts on crypto exchanges and warns before a collateral call becomes a liquidation.",
    )
    parser.add_argument("--version", action="version", version=f"alerter {__version__}")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)

    for name in COMMANDS:
        module = importlib.import_module(module_name(name))
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, add_help=getattr(module, "ADD_HELP", True))
        module.add_arguments(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "simulate":
        args.simulator_args = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from alerter.errors import ConfigError, StoreError

    try:
        return args.func(args)
    except ConfigError as e:
        for problem in e.problems:
            print(f"error: {problem}", file=sys.stderr)
        return CHECK_EXIT["blind"] if args.command == "check" else EXIT_CONFIG
    except StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return CHECK_EXIT["blind"] if args.command == "check" else EXIT_RUNTIME
    except KeyboardInterrupt:
        return 130
