"""The commands: one module each, with `add_arguments(parser)` and `run(args) -> int`.

A command module is the thin I/O shell of its command: it reads the arguments, calls the
modules that do the work, and prints. Its top level imports nothing heavy (the standard
library, alerter.display): `alerter --help` imports every command module to build the parser,
and ccxt, apprise, matplotlib or pydantic are imported inside `run` by the commands that need
them. Adding a command is adding its module here and its name to COMMANDS.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2

# in the order `alerter --help` lists them; "test-notify" lives in test_notify.py
COMMANDS = ("validate", "run", "check", "demo", "simulate", "status", "history", "whatif", "ack", "unack", "test-notify", "completion", "manpage")


def module_name(command: str) -> str:
    return f"alerter.commands.{command.replace('-', '_')}"


# shtab's completion of file names (shtab.FILE), spelled out: the parser is built without shtab
COMPLETE_FILE = {"bash": "_shtab_compgen_files", "zsh": "_files"}


def add_config(parser) -> None:
    action = parser.add_argument("--config", "-c", metavar="PATH",
                                 help="configuration file (default: $ALERTER_CONFIG, ./alerter.toml, /etc/alerter/config.toml)")
    action.complete = COMPLETE_FILE  # alerter completion: --config completes file names


def error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def print_json(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False))


def console():
    from rich.console import Console

    return Console(highlight=False)


def table(title: str):
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)


def now() -> datetime:
    return datetime.now(UTC)
