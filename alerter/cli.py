"""Command line: parse, call, print. Errors become one line on stderr and an exit code.

Heavy libraries (ccxt, apprise, matplotlib) are imported inside the commands that need them,
so `alerter --help` and `alerter validate` start in a blink.
"""

from __future__ import annotations

import argparse
import sys

from alerter import __version__

EXIT_OK, EXIT_CONFIG = 0, 2


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

    path = find_config(args.config)
    data = read_toml(path)
    settings = build_settings(data)
    warning = permission_warning(path, data)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    d, t = settings.daemon, settings.thresholds
    print(f"{path}: ok")
    print(f"  database       {d.database}")
    print(f"  poll interval  {_duration(d.poll_interval)}, blind after {d.blind_after} failed polls")
    print(f"  thresholds     warning {_pct(t.warning)} · call {_pct(t.call)} · critical {_pct(t.critical)} "
          f"· hysteresis {_pct(t.hysteresis)} · target {_pct(t.target)}")
    r = settings.repeat
    print(f"  repeat         warning {_duration(r.warning)} · call {_duration(r.call)} · critical {_duration(r.critical)} · blind {_duration(r.blind)}")
    print(f"  accounts       {len(settings.accounts)}")
    for a in settings.accounts:
        th = settings.thresholds_for(a)
        extra = f", thresholds {_pct(th.warning)}/{_pct(th.call)}/{_pct(th.critical)}" if a.thresholds.model_dump(exclude_none=True) else ""
        print(f"    {a.name:<20} {a.exchange:<14} every {_duration(settings.poll_interval_for(a))}, key ********{extra}")
    print(f"  channels       {len(settings.channels)}")
    for c in settings.channels:
        scheme = c.url.get_secret_value().split("://", 1)[0]
        scope = ", ".join(c.accounts) if c.accounts else "all accounts"
        print(f"    {c.name:<20} {scheme}://********  {c.min_level} and above, {scope}")
    if not settings.channels:
        print("warning: no [[channels]]: alerts would only be logged", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alerter",
        description="Watches margin accounts on crypto exchanges and warns before a collateral call becomes a liquidation.",
    )
    parser.add_argument("--version", action="version", version=f"alerter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name, func, help):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    def with_config(p):
        p.add_argument("--config", "-c", metavar="PATH",
                       help="configuration file (default: $ALERTER_CONFIG, ./alerter.toml, /etc/alerter/config.toml)")
        return p

    with_config(command("validate", cmd_validate, "check the configuration file and print a summary (secrets masked)"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from alerter.config import ConfigError

    try:
        return args.func(args)
    except ConfigError as e:
        for problem in e.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
