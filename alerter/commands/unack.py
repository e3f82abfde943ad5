"""`alerter unack`: remove an acknowledgement; the scope's repeats resume at the daemon's next poll,
and the channels that hear its level are told."""

from __future__ import annotations

from alerter import commands, display
from alerter.commands import add_config

HELP = "remove a scope's acknowledgement: its repeats resume"


def add_arguments(parser) -> None:
    add_config(parser)
    parser.add_argument("account", metavar="ACCOUNT", help="the account")
    parser.add_argument("scope", nargs="?", metavar="SCOPE", help="the scope as status shows it (default: the account)")


def run(args) -> int:
    from alerter import acks
    from alerter.commands.ack import print_announcement
    from alerter.config import load_settings

    done = acks.remove(load_settings(args.config), args.account, args.scope, commands.now())
    print(f"{display.where(done.ack.account, done.ack.scope)}: acknowledgement removed; {done.ack.level.label} repeats resume")
    print_announcement(done)
    return commands.EXIT_OK
