"""`alerter status`: margin health of every account and isolated position, from the database.

The data is alerter.views' (`read_status`, `status_json`); this renders it as a rich table. Like
every command module it imports them inside its functions: the parser imports every command.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from alerter import commands, display
from alerter.commands import add_config
from alerter.models import ACCOUNT_SCOPE, Level

if TYPE_CHECKING:
    from alerter.views import AccountStatus

HELP = "margin health of every account and isolated position, from the database (no exchange call)"
STEADY = 0.005  # a change of less than half a point over the trend window is "→"


def add_arguments(parser) -> None:
    add_config(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")


def _level_text(level: Level | None, since_at: datetime | None, now: datetime, acked: bool = False):
    from rich.text import Text

    if level is None:
        return Text("—")
    text = Text(level.label, style=display.LEVEL_STYLES[level])
    if since_at is not None:
        text.append(f" {display.age(now - since_at)}", style="dim")
    if acked:
        text.append(" acked", style="cyan")
    return text


def ack_lines(accounts: list[AccountStatus], now: datetime) -> list[str]:
    """One line per acknowledgement in force, under the table: "main · account: acked 13:05, 1h00m left, adding margin"."""
    from alerter.acks import ack_text
    from alerter.display import where

    return [f"{where(a.account, s.scope)}: {ack_text(s.ack, now)}" for a in accounts for s in a.scopes if s.ack is not None]


def _trend_text(delta: float | None):
    from rich.text import Text

    if delta is None:
        return Text("—", style="dim")
    points = f"{delta * 100:+.1f}".replace("-", "−")
    if abs(delta) < STEADY:
        return Text(f"→ {points}", style="dim")
    return Text(f"↑ {points}", style="red") if delta > 0 else Text(f"↓ {points}", style="green")


def _poll_text(a: AccountStatus):
    from rich.text import Text

    if a.last_poll_at is None:
        text = Text("no data yet", style="bold red" if a.failures else "dim")
    elif a.stale:
        text = Text(f"stale {display.age(a.age)}", style="bold red")
    else:
        text = Text(f"{display.age(a.age)} ago")
    if a.blind:
        text.append(" · blind", style="bold red")
    if a.failures:
        text.append(f" · {a.failures} failed", style="red")
    return text


def render_status(accounts: list[AccountStatus], now: datetime):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from alerter.views import level_counts, worst_scopes

    table = Table(title=f"margin health · {now:%Y-%m-%d %H:%M:%S} UTC", title_justify="left", header_style="bold",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("account", overflow="fold", min_width=12)  # the only column that wraps in a narrow terminal
    for name in ("ratio", "level", "Δ 1h", "deposit", "to liq.", "last poll", "unsent"):
        table.add_column(name, no_wrap=True, justify="left" if name in ("level", "last poll") else "right")
    for a in accounts:
        poll = _poll_text(a)
        unsent = Text(str(a.pending), style="bold yellow" if a.pending else "dim")
        name = Text(a.account, style="bold") + Text("" if a.exchange else " (not configured)", style="dim")
        if a.approximate:
            name += Text(" (approximate)", style="yellow")
        if not a.scopes:
            table.add_row(name, "—", "—", "", "", "", poll, unsent)
            continue
        shown, hidden = worst_scopes(a.scopes)
        for i, s in enumerate(shown):
            if s.scope == ACCOUNT_SCOPE:
                label = name
            elif s.scope.startswith("isolated:"):
                label = Text(f" └ {display.scope_label(s.scope, short=True)}")
            else:  # a cross scope of its own (one margin coin's): the account's name and the coin
                label = name + Text(f" · {display.scope_label(s.scope, short=True)}")
            deposit = display.money(s.deposit_needed, s.currency or "").strip() if s.deposit_needed > 0 else Text("—", style="dim")
            ratio = Text(("≈" if a.approximate else "") + display.ratio(s.margin_ratio) + ("*" if s.estimated else ""),
                         style=display.LEVEL_STYLES.get(s.level, "") if s.level is not None else "")
            if s.figure:  # the exchange's own figure, to check against its app
                ratio += Text(f" = {s.figure}", style="dim")
            table.add_row(
                label, ratio, _level_text(s.level, s.since_at, now, s.ack is not None), _trend_text(s.trend), deposit,
                display.move(s.liquidation_move), poll if i == 0 else "", unsent if i == 0 else "",
            )
        if hidden:
            table.add_row(Text(f" └ +{len(hidden):,} more: {level_counts(hidden)}", style="dim"), *[""] * 7)
    return table



def status_legend(accounts: list[AccountStatus]) -> str:
    from alerter.views import STALE_AFTER_POLLS, STATUS_ROWS, worst_scopes

    targets = sorted({a.thresholds.target for a in accounts})
    target = " / ".join(display.ratio(t) for t in targets) or display.ratio(0.4)
    return (f"└ isolated position · Δ 1h: change of the ratio over the last hour, in points · deposit: brings the "
            f"ratio back to {target} · to liq.: the uniform price move that liquidates · stale: no good poll for "
            f"{STALE_AFTER_POLLS}× the poll interval · unsent: alerts not yet delivered"
            + (" · * estimated from mark prices" if any(s.estimated for a in accounts for s in a.scopes) else "")
            + (" · acked: its repeats are held back (alerter ack --list, alerter unack)" if any(s.ack for a in accounts for s in a.scopes) else "")
            + (' · ≈ approximate: ccxt\'s unified figures (profile = "generic"), not the exchange\'s own'
               if any(a.approximate for a in accounts) else "")
            + (f" · more: only the {STATUS_ROWS} worst isolated positions of an account are listed, --json lists all"
               if any(worst_scopes(a.scopes)[1] for a in accounts) else ""))



def run(args) -> int:
    from alerter import views
    from alerter.config import load_settings
    from alerter.errors import StoreError
    from alerter.plan import plans
    from alerter.views import json_at, read_status, status_json

    settings = load_settings(args.config)
    account_plans = plans(settings)
    now = commands.now()
    try:
        with views.open_store(settings) as store:
            accounts = read_status(store, settings, account_plans, now)
            notes = store.notes()
    except StoreError as e:
        return commands.error(str(e), commands.EXIT_RUNTIME)
    if args.json:
        data = status_json(accounts, now, str(settings.daemon.database))
        data["notes"] = [{"at": json_at(at), "text": text} for at, text in notes]
        commands.print_json(data)
        return commands.EXIT_OK
    console = commands.console()
    for _, text in notes:  # what happened to the database file itself
        console.print(f"note: {text}", style="bold yellow")
    if not accounts:
        console.print("no accounts configured and nothing recorded")
        return commands.EXIT_OK
    console.print(render_status(accounts, now))
    for line in ack_lines(accounts, now):
        console.print(line, style="cyan", markup=False, highlight=False)
    console.print(status_legend(accounts), style="dim")
    return commands.EXIT_OK
