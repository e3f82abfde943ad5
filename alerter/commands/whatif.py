"""`alerter whatif`: stress test the last recorded (or freshly fetched) positions.

The arithmetic is alerter.stress' (`stress`, `trip_moves`); the snapshots come through
alerter.views (`load_snapshots`, `fetch_snapshots`); this parses the moves and prints.
"""

from __future__ import annotations

import re
import sys
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from alerter import commands, display
from alerter.commands import add_config
from alerter.models import ACCOUNT_SCOPE

if TYPE_CHECKING:
    from alerter.stress import StressResult, TripMoves

HELP = "stress test the last recorded positions: the ratio, level and deposit after a price move"
NEGATIVE_MOVE = re.compile(r"^-\d+(\.\d+)?%?$|^-\.\d+%?$")
TRIP_LEVELS = ("warning", "call", "critical", "liquidation")


def add_arguments(parser) -> None:
    add_config(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    parser.add_argument("account", nargs="?", metavar="ACCOUNT", help="only this account (default: all)")
    parser.add_argument("--move", action="append", metavar="SYMBOL=MOVE", help="move one asset's price, e.g. BTC=-20%% (repeatable)")
    parser.add_argument("--all", metavar="MOVE", help="move every other price, e.g. -15%%")
    parser.add_argument("--levels", action="store_true", help="the uniform move at which each level and liquidation would trip (the default)")
    parser.add_argument("--fetch", action="store_true", help="poll the exchanges now instead of using the last recorded positions")
    parser._negative_number_matcher = NEGATIVE_MOVE  # let "--all -15%" through: argparse takes "-15%" for an option


def _row_label(account: str, scope: str, note: str = ""):
    from rich.text import Text

    if scope == ACCOUNT_SCOPE:
        return Text(account, style="bold") + Text(note, style="dim")
    return Text(f" └ {display.scope_label(scope, short=True)}")


def _render_stress(results: list[StressResult], now: datetime, console) -> None:
    from rich.text import Text

    for r in results:
        age = f" (snapshot {display.age(now - r.snapshot_at)} old)" if r.snapshot_at else ""
        moved = " · ".join(f"{sym.split(':')[0]} {display.price(b)} → {display.price(a)}" for sym, b, a in r.prices) or "no position moved"
        table = commands.table(f"{r.account}{age}: {moved}")
        table.add_column("account", overflow="fold", min_width=12)
        for name in ("ratio now", "after", "level after", "deposit after", "to liq. after"):
            table.add_column(name, no_wrap=True, justify="left" if name == "level after" else "right")
        for h, lb, a, la in r.scopes:
            label = _row_label(r.account, h.scope)
            if a is None:
                table.add_row(label, display.ratio(h.margin_ratio), "—", "gone", "", "")
                continue
            deposit = display.money(a.deposit_needed, a.currency) if a.deposit_needed > 0 else Text("—", style="dim")
            level = Text("LIQUIDATED", style="bold red reverse") if a.margin_ratio >= 1 else Text(la.label, style=display.LEVEL_STYLES[la])
            table.add_row(
                label, Text(display.ratio(h.margin_ratio), style=display.LEVEL_STYLES[lb]),
                Text(display.ratio(a.margin_ratio), style=display.LEVEL_STYLES[la]), level, deposit,
                "" if a.margin_ratio >= 1 else ("never" if a.liquidation_move is None and a.top_positions else display.move(a.liquidation_move)),
            )
        console.print(table)


def _render_levels(rows: dict[str, tuple[datetime | None, list[TripMoves]]], now: datetime, console, figures=None) -> None:
    from rich.text import Text

    table = commands.table("the uniform price move (all marks together) at which each level trips")
    table.add_column("account", overflow="fold", min_width=12)
    for name in ("ratio", *TRIP_LEVELS):
        table.add_column(name, no_wrap=True, justify="right")
    for account, (at, trips) in rows.items():
        for t in trips:
            label = _row_label(account, t.scope, f" ({display.age(now - at)} old)" if at else "")
            cells = []
            for name in TRIP_LEVELS:
                m = t.moves[name]
                cells.append(Text("n/a", style="dim") if t.refused else Text("reached", style="bold red") if m == 0
                             else (Text("never", style="dim") if m is None else display.move(m)))
            ratio = display.ratio(t.margin_ratio) + (f" = {t.figure}" if t.figure else "")
            table.add_row(label, Text(ratio, style=display.LEVEL_STYLES[t.level]), *cells)
    for reason in dict.fromkeys(t.refused for _, trips in rows.values() for t in trips if t.refused):
        console.print(f"└ n/a: {reason}", style="dim")
    console.print(table)
    console.print("└ isolated position · never: no move of the marks within −100 % gets there (linear model, "
                  "maintenance rates of the current brackets)", style="dim")
    for account, (figure, thresholds) in (figures or {}).items():
        console.print(f"└ {account}, in the exchange's own figure: {display.own_levels(figure, thresholds)}", style="dim")


def run(args) -> int:
    from alerter import views
    from alerter.config import load_settings
    from alerter.errors import StoreError
    from alerter.plan import plans
    from alerter.stress import parse_fraction, parse_move, stress, trip_moves
    from alerter.views import levels_json, stress_json

    settings = load_settings(args.config)
    account_plans = plans(settings)
    try:
        moves = dict(parse_move(m) for m in args.move or [])
        default = parse_fraction(args.all) if args.all is not None else None
    except ValueError as e:
        return commands.error(str(e), commands.EXIT_CONFIG)
    try:
        snapshots = (views.fetch_snapshots if args.fetch else views.load_snapshots)(settings, account_plans, args.account)
    except StoreError as e:
        return commands.error(str(e), commands.EXIT_RUNTIME)
    except LookupError as e:
        return commands.error(str(e.args[0]), commands.EXIT_CONFIG)
    if not snapshots:
        if args.fetch:
            return commands.error("no account could be polled", commands.EXIT_RUNTIME)
        return commands.error("no position snapshot recorded yet (the daemon saves one per account on every good poll)", commands.EXIT_RUNTIME)
    now = commands.now()
    if args.levels or (not moves and default is None):
        rows, figures = {}, {}
        for name, s in snapshots.items():
            plan, thresholds = account_plans.get(name), views._thresholds(settings, account_plans, name)
            # the venue's own figure (its rounding and words: "health factor 0.966, liquidatable now"), where the
            # stored one is of its name: a stored figure keeps its values, not its venue's way of showing them
            own = plan.own_figure if plan else None
            figure = own if own is not None and (s.own_figure is None or s.own_figure.name == own.name) else s.own_figure
            rows[name] = (s.fetched_at, trip_moves(replace(s, own_figure=figure), thresholds))
            if figure is not None:
                figures[name] = (figure, thresholds)
        if args.json:
            commands.print_json(levels_json(rows))
        else:
            _render_levels(rows, now, commands.console(), figures)
        return commands.EXIT_OK
    held = {k for s in snapshots.values() for p in s.positions for k in (p.symbol, p.symbol.split("/")[0])}
    for key in moves:
        if key not in held:
            print(f"warning: no position in {key} (held: {', '.join(sorted(k for k in held if '/' not in k)) or 'none'})", file=sys.stderr)
    results = [stress(s, moves, default, views._thresholds(settings, account_plans, name)) for name, s in snapshots.items()]
    if args.json:
        commands.print_json(stress_json(results, moves, default))
    else:
        _render_stress(results, now, commands.console())
    return commands.EXIT_OK
