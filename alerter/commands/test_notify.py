"""`alerter test-notify`: a test message to each channel, and whether it was delivered."""

from __future__ import annotations

from alerter.commands import EXIT_OK, EXIT_RUNTIME, add_config

HELP = "send a test message to each channel and report whether it was delivered"


def add_arguments(parser) -> None:
    add_config(parser)
    parser.add_argument("--channel", action="append", metavar="NAME", help="only this channel (repeatable)")
    parser.add_argument("--level", choices=("warning", "call", "critical"),
                        help="send by the URL an alert of this level takes (the channel's url_by_level, else its url)")


def run(args) -> int:
    import asyncio

    from alerter.config import ConfigError, load_settings
    from alerter.delivery import test_notify
    from alerter.logs import setup_logging
    from alerter.models import Level
    from alerter.notify import Notifier
    from alerter.secrets import of as secrets_of

    settings = load_settings(args.config)
    setup_logging("warning", secrets_of(settings))
    names = [c.name for c in settings.channels]
    if args.channel:
        unknown = [n for n in args.channel if n not in names]
        if unknown:
            raise ConfigError(f"--channel: no channel named {', '.join(map(repr, unknown))} (channels: {', '.join(names) or 'none'})")
        names = args.channel
    level = Level.parse(args.level) if args.level else Level.OK
    notifier = Notifier(settings.channels)
    outcomes = asyncio.run(test_notify(notifier, names, level))
    for name, outcome in outcomes.items():
        via = f" (by {notifier.via(name, level)})" if args.level else ""
        print(f"{name:<20} {'delivered' if outcome.ok else 'FAILED: ' + (outcome.error or 'unknown error')}{via}")
    return EXIT_OK if all(o.ok for o in outcomes.values()) else EXIT_RUNTIME
