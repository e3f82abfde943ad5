"""`alerter ack`: "I'm on it" — hold back the repeats of a scope's current level; `--list` shows
the acknowledgements in force. The work is alerter.acks'; this prints it."""

from __future__ import annotations

from alerter import commands, display
from alerter.commands import add_config

MAX_NOTE = 200
HELP = "acknowledge a scope's alert: its repeats stop until it resolves, rises, or --for runs out; --list shows them"


def add_arguments(parser) -> None:
    add_config(parser)
    parser.add_argument("account", nargs="?", metavar="ACCOUNT", help="the account")
    parser.add_argument("scope", nargs="?", metavar="SCOPE",
                        help="the scope as status shows it, e.g. 'BTC/USDT long' or 'BTC cross' (default: the account)")
    parser.add_argument("--for", dest="duration", metavar="DURATION", help="hold the repeats back this long at most: 30m, 2h, 1d (default: until resolved)")
    parser.add_argument("--note", default="", metavar="TEXT", help="a note for the announcement and status, e.g. 'adding margin'")
    parser.add_argument("--list", action="store_true", help="list the acknowledgements in force")
    parser.add_argument("--json", action="store_true", help="with --list: print them as JSON")


def run(args) -> int:
    from alerter import acks
    from alerter.config import load_settings
    from alerter.values import parse_positive_duration

    if args.list:
        if args.account or args.duration or args.note:
            return commands.error("--list takes no ACCOUNT, SCOPE, --for or --note", commands.EXIT_CONFIG)
        return list_acks(load_settings(args.config), as_json=args.json)
    if args.json:
        return commands.error("--json goes with --list", commands.EXIT_CONFIG)
    if not args.account:
        return commands.error("name the ACCOUNT to acknowledge (or --list)", commands.EXIT_CONFIG)
    duration = None
    if args.duration is not None:
        try:
            duration = parse_positive_duration(args.duration)
        except ValueError as e:
            return commands.error(f"--for: {e}", commands.EXIT_CONFIG)
    if len(args.note) > MAX_NOTE:
        return commands.error(f"--note: at most {MAX_NOTE} characters (it goes into every channel's message), got {len(args.note)}",
                              commands.EXIT_CONFIG)
    settings = load_settings(args.config)
    now = commands.now()
    try:
        done = acks.acknowledge_scope(settings, args.account, args.scope, duration=duration, note=args.note.strip(), now=now)
    except ValueError as e:
        return commands.error(str(e), commands.EXIT_RUNTIME)
    print(acks.acknowledged_text(done.ack, now))
    print_announcement(done)
    return commands.EXIT_OK


def print_announcement(done) -> None:
    """Where the announcement of an ack or unack (`acks.Acked`) went."""
    if not done.channels:
        print("announced to no channel (none hears this level)")
    elif done.daemon:
        print(f"announcement for {', '.join(done.channels)}: the running daemon sends it")
    else:
        for channel in done.channels:
            error = done.sent.get(channel)
            print(f"announced to {channel}" if error is None else f"announcement to {channel} FAILED: {error} (it stays in the outbox)")


def list_acks(settings, *, as_json: bool = False) -> int:
    from alerter import acks

    now = commands.now()
    rows = acks.listing(settings, now)
    if as_json:  # status --json's "ack" object, with the account, the scope and its level now
        import json

        from alerter.views import ack_json, json_at

        print(json.dumps({"generated_at": json_at(now), "acks": [
            {"account": ack.account, "scope": ack.scope, **ack_json(ack), "level_now": level.label if level is not None else None}
            for ack, level in rows]}, indent=2))
        return commands.EXIT_OK
    if not rows:
        print("no acknowledgements in force")
        return commands.EXIT_OK
    table = commands.table(f"acknowledgements · {now:%Y-%m-%d %H:%M:%S} UTC")
    for name in ("account · scope", "acknowledged", "level now", "ack"):
        table.add_column(name)
    for ack, level in rows:
        table.add_row(display.where(ack.account, ack.scope), ack.level.label, level.label if level is not None else "—", acks.ack_text(ack, now))
    commands.console().print(table)
    return commands.EXIT_OK
