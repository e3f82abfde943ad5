"""Command line: parse, call, print. Errors become one line on stderr and an exit code.

Heavy libraries (ccxt, apprise, matplotlib) are imported inside the commands that need them,
so `alerter --help` starts in a blink. `validate` imports apprise and ccxt (about a second) for
the start-up checks `run` makes, so that it refuses everything `run` would.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from alerter import __version__

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2
NEGATIVE_MOVE = re.compile(r"^-\d+(\.\d+)?%?$|^-\.\d+%?$")
CHECK_EXIT = {"ok": 0, "warning": 1, "call": 2, "critical": 2, "blind": 3}
DEMO_SPEEDS = (0.01, 100.0)  # a poll every 500 s … every 50 ms (the whole crash in about a second)


def speed_factor(text: str) -> float:
    """`demo --speed`: a number within DEMO_SPEEDS (the demo polls every 5 s ÷ speed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 10, got {text!r}") from None
    low, high = DEMO_SPEEDS
    if not low <= value <= high:  # also NaN
        raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text!r}")
    return value


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:g}%"


def _duration(td) -> str:
    if td is None:
        return "never"
    seconds = int(td.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{td.total_seconds():g}s"


def cmd_validate(args) -> int:
    from alerter.config import build_settings, find_config, permission_warning, read_toml
    from alerter.runtime import preflight
    from alerter.plan import plans

    path = find_config(args.config)
    data = read_toml(path)
    settings = build_settings(data)
    preflight(settings)  # what `run` checks at start-up: refuse all of it here too
    warning = permission_warning(path, data)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    for i, a in enumerate(settings.accounts):
        if a.approximate:
            print(f'warning: accounts[{i}] ({a.name}): profile = "generic": its figures are approximate (ccxt\'s unified fields, '
                  f"not {a.exchange}'s own margin figures); its alerts and status rows say so", file=sys.stderr)
    d, t = settings.daemon, settings.thresholds
    print(f"{path}: ok")
    print(f"  database       {d.database}")
    print(f"  poll interval  {_duration(d.poll_interval)}, blind after {d.blind_after} failed polls")
    print(f"  price checks   {'every ' + _duration(d.price_interval) if d.price_interval else 'off'} (mark-price re-pricing between full polls)")
    print(f"  thresholds     warning {_pct(t.warning)} · call {_pct(t.call)} · critical {_pct(t.critical)} "
          f"· hysteresis {_pct(t.hysteresis)} · target {_pct(t.target)}")
    r = settings.repeat
    print(f"  repeat         warning {_duration(r.warning)} · call {_duration(r.call)} · critical {_duration(r.critical)} · blind {_duration(r.blind)}")
    print(f"  accounts       {len(settings.accounts)}")
    account_plans = plans(settings)
    for a in settings.accounts:
        plan = account_plans[a.name]
        th = plan.thresholds
        extra = f", thresholds {_pct(th.warning)}/{_pct(th.call)}/{_pct(th.critical)}" if a.thresholds.model_dump(exclude_none=True) else ""
        print(f"    {a.name:<20} {a.exchange:<14} every {_duration(plan.poll_interval)}, key ********{extra}")
        profile = plan.profile
        source = 'APPROXIMATE: profile "generic", ccxt\'s unified fields' if plan.approximate else f"{profile.name} profile"
        print(f"    {'':<20} figures: {source}; currency {profile.currency}")
        if plan.repricing:
            between = f"re-priced from mark prices every {_duration(d.price_interval)} (estimated until the next full poll)"
        elif plan.between_polls == "poll" and d.price_interval:
            between = f"full polls every {_duration(plan.poll_interval)} (asked for: between_polls = \"poll\")"
        elif not profile.reprice and a.between_polls is None:
            between = (f"nothing: mark-price re-pricing is not faithful for {a.exchange}; "
                       f"set between_polls = \"poll\" to poll fully every price_interval")
        else:
            between = "nothing (full polls only)"
        print(f"    {'':<20} between polls: {between}")
    print(f"  channels       {len(settings.channels)}")
    for c in settings.channels:
        scheme = c.url.get_secret_value().split("://", 1)[0]
        scope = ", ".join(c.accounts) if c.accounts else "all accounts"
        print(f"    {c.name:<20} {scheme}://********  {c.min_level} and above, {scope}")
    if not settings.channels:
        print("warning: no [[channels]]: alerts would only be logged", file=sys.stderr)
    return EXIT_OK


def cmd_run(args) -> int:
    import asyncio
    import faulthandler

    from alerter.config import find_config, load_settings
    from alerter.errors import StoreError
    from alerter.lockfile import DatabaseInUse, hold_lock
    from alerter.logs import setup_logging
    from alerter.runtime import announce_failure, build_daemon, preflight
    from alerter.secrets import of as secrets_of

    path = find_config(args.config).absolute()  # SIGHUP re-reads this file
    settings = load_settings(path)
    setup_logging(settings.daemon.log_level, secrets_of(settings))
    try:
        faulthandler.enable()  # a crash in C code (SIGSEGV, SIGABRT, …) still leaves its traceback in the log
    except (ValueError, OSError):  # stderr without a file descriptor (run in-process under a test runner)
        pass
    preflight(settings)
    try:
        hold_lock(settings.daemon.database)  # one daemon per database: the lock lasts until this process ends
        daemon = build_daemon(settings, config=path)
    except DatabaseInUse:
        raise  # the other daemon is watching: nothing to announce
    except StoreError as e:
        asyncio.run(announce_failure(settings, f"alerter cannot start: {e}"))
        raise
    asyncio.run(daemon.run())
    return daemon.exit_code


def cmd_demo(args) -> int:
    import asyncio

    from alerter.demo import run_demo
    from alerter.notify import headline

    history = asyncio.run(run_demo(speed=args.speed, channels=args.channel, database=args.database))
    print(f"\ndemo over: {len(history)} alerts")
    for entry in history:
        outcome = ", ".join(f"{channel} {status}" for channel, status in entry.deliveries.items())
        print(f"  {entry.alert.created_at:%H:%M:%S}  {headline(entry.alert)}  [{outcome}]")
    return EXIT_OK


def cmd_simulate(args) -> int:
    from alerter.simulator import main_simulate

    return main_simulate(args.simulator_args)


def cmd_test_notify(args) -> int:
    import asyncio

    from alerter.config import ConfigError, load_settings
    from alerter.delivery import test_notify
    from alerter.logs import setup_logging
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
    outcomes = asyncio.run(test_notify(Notifier(settings.channels), names))
    for name, outcome in outcomes.items():
        print(f"{name:<20} {'delivered' if outcome.ok else 'FAILED: ' + (outcome.error or 'unknown error')}")
    return EXIT_OK if all(o.ok for o in outcomes.values()) else EXIT_RUNTIME


def cmd_check(args) -> int:
    import asyncio
    import json

    from alerter.check import check_accounts, render_table, worst

    rows = asyncio.run(check_accounts(args.config, notify=args.notify))
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        render_table(rows)
    return CHECK_EXIT[worst(rows)]


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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, func, help, **kw):
        p = sub.add_parser(name, help=help, description=help, **kw)
        p.set_defaults(func=func)
        return p

    def with_config(p):
        p.add_argument("--config", "-c", metavar="PATH",
                       help="configuration file (default: $ALERTER_CONFIG, ./alerter.toml, /etc/alerter/config.toml)")
        return p

    with_config(command("validate", cmd_validate, "check the configuration file and print a summary (secrets masked)"))
    with_config(command("run", cmd_run, "run the daemon: poll every account, alert, until SIGTERM/SIGINT; SIGHUP re-reads the configuration"))
    p = with_config(command("check", cmd_check, "poll every account once and print its health; exit 0 ok, 1 warning, 2 call/critical, 3 blind/error"))
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--notify", action="store_true", help="also record and send what the policy decides (uses the database)")
    p = command("demo", cmd_demo, "run the daemon against the built-in simulator's scripted crash (no account needed)")
    p.add_argument("--speed", type=speed_factor, default=1.0, help=f"play the scenario this many times faster (default 1; {DEMO_SPEEDS[0]:g} to {DEMO_SPEEDS[1]:g})")
    p.add_argument("--channel", action="append", default=[], metavar="URL", help="also send the alerts to this apprise URL (repeatable)")
    p.add_argument("--database", type=Path, help="keep the demo's SQLite file here (default: a temporary file)")
    # its options (--scenario FILE|demo, --port N, --speed X, --auto-accounts, --help) are the simulator's own
    command("simulate", cmd_simulate, "run the exchange simulator standalone and print the config snippet that points an account at it", add_help=False)
    def view(name, help):
        """status, history, whatif: their code (alerter.views) is imported only when they run."""
        def handler(args):
            from alerter import views

            return getattr(views, f"cmd_{name}")(args)

        p = with_config(command(name, handler, help))
        p.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
        return p

    view("status", "margin health of every account and isolated position, from the database (no exchange call)")
    p = view("history", "the margin ratio over time, with the thresholds and the alerts that fired")
    p.add_argument("account", nargs="?", metavar="ACCOUNT", help="only this account (default: all)")
    p.add_argument("--since", default="24h", metavar="DURATION", help="how far back: 30m, 24h, 7d (default: 24h)")
    p.add_argument("--plot", metavar="FILE.png", help="write a PNG chart (needs matplotlib: pip install 'alerter[plot]')")
    p = view("whatif", "stress test the last recorded positions: the ratio, level and deposit after a price move")
    p.add_argument("account", nargs="?", metavar="ACCOUNT", help="only this account (default: all)")
    p.add_argument("--move", action="append", metavar="SYMBOL=MOVE", help="move one asset's price, e.g. BTC=-20%% (repeatable)")
    p.add_argument("--all", metavar="MOVE", help="move every other price, e.g. -15%%")
    p.add_argument("--levels", action="store_true", help="the uniform move at which each level and liquidation would trip (the default)")
    p.add_argument("--fetch", action="store_true", help="poll the exchanges now instead of using the last recorded positions")
    p._negative_number_matcher = NEGATIVE_MOVE  # let "--all -15%" through: argparse takes "-15%" for an option
    p = with_config(command("test-notify", cmd_test_notify, "send a test message to each channel and report whether it was delivered"))
    p.add_argument("--channel", action="append", metavar="NAME", help="only this channel (repeatable)")
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
