"""`alerter unack`: remove an acknowledgement; the scope's repeats resume at the daemon's next poll."""

from __future__ import annotations

from alerter import commands
from alerter.commands import add_config

HELP = "remove a scope's acknowledgement: its repeats resume"


def add_arguments(parser) -> None:
    add_config(parser)
    parser.add_argument("account", metavar="ACCOUNT", help="the account")
    parser.add_argument("scope", nargs="?", metavar="SCOPE", help="the scope as status shows it (default: the account)")


def run(args) -> int:
    from alerter import acks
    from alerter.config import load_settings

    ack = acks.remove(load_settings(args.config), args.account, args.scope)
    print(f"{acks.where(ack.account, ack.scope)}: acknowledgement removed; {ack.level.label} repeats resume")
    return commands.EXIT_OK
