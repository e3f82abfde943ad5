"""`alerter check`: one poll of every account, evaluated and printed; the worst level is the exit code.

Levels here are the thresholds' verdict on this one poll (no hysteresis, no history). With
`--notify` the poll also goes through the daemon's policy and store, so what it decides is
recorded and sent exactly as the daemon would (and not again by the daemon).
"""

from __future__ import annotations

import asyncio

from alerter.codec import from_json_float, json_float
from alerter.config import load_settings
from alerter.daemon import Poll, fetch_health
from alerter.runtime import build_daemon, preflight
from alerter.secrets import of as secrets_of
from alerter.logs import setup_logging
from alerter.models import ACCOUNT_SCOPE
from alerter.plan import AccountPlan
from alerter.policy import level_for

ORDER = ["ok", "warning", "call", "critical", "blind"]


def rows_for(plans: dict[str, AccountPlan], polls: list[Poll]) -> list[dict]:
    rows = []
    for poll in polls:
        plan = plans[poll.account]
        if poll.error is not None:
            rows.append({"account": poll.account, "exchange": plan.exchange, "scope": ACCOUNT_SCOPE, "level": "blind", "error": poll.error})
            continue
        thresholds = plan.thresholds
        for h in poll.healths:
            rows.append({
                "account": h.account,
                "exchange": h.exchange,
                "scope": h.scope,
                "level": level_for(h.margin_ratio, thresholds).label,
                "margin_ratio": json_float(h.margin_ratio),
                "equity": h.equity,
                "maintenance_margin": h.maintenance_margin,
                "deposit_needed": h.deposit_needed,
                "target": thresholds.target,
                "liquidation_move": h.liquidation_move,
                "currency": h.currency,
            })
        # a position the profile cannot evaluate: its scope is blind, so check never exits "ok"
        for scope, reason in poll.snapshot.unreadable if poll.snapshot is not None else ():
            rows.append({"account": poll.account, "exchange": plan.exchange, "scope": scope, "level": "blind", "error": reason})
    return rows


def worst(rows: list[dict]) -> str:
    return max((r["level"] for r in rows), key=ORDER.index, default="ok")


async def check_accounts(config_path, *, notify: bool = False) -> list[dict]:
    settings = load_settings(config_path)
    setup_logging("warning", secrets_of(settings))
    preflight(settings)
    daemon = build_daemon(settings)
    try:
        polls = await asyncio.gather(*(fetch_health(daemon.plans[name], source) for name, source in daemon.sources.items()))
        if notify:
            for poll in polls:
                await daemon.handle(poll)
            await daemon.deliver_once()
        return rows_for(daemon.plans, list(polls))
    finally:
        await asyncio.gather(*(s.close() for s in daemon.sources.values()), return_exceptions=True)
        await daemon.store_thread.close()


def render_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    from alerter.notify import format_money, format_move, format_pct, scope_label

    style = {"ok": "green", "warning": "yellow", "call": "bold red", "critical": "bold white on red", "blind": "bold magenta"}
    table = Table(title="margin health")
    for column in ("account", "scope", "ratio", "level", "deposit to target", "liquidation at"):
        table.add_column(column, justify="right" if column in ("ratio", "deposit to target", "liquidation at") else "left")
    for r in rows:
        level = f"[{style[r['level']]}]{r['level']}[/]"
        if r["level"] == "blind":
            table.add_row(r["account"], scope_label(r["scope"]) or "account", "—", level, "—", r["error"][:60])
            continue
        ratio = r["margin_ratio"]
        table.add_row(
            r["account"],
            scope_label(r["scope"]) or "account",
            format_pct(from_json_float(ratio)),
            level,
            format_money(r["deposit_needed"], r["currency"]) if r["deposit_needed"] > 0 else "—",
            format_move(r["liquidation_move"]) if r["liquidation_move"] is not None else "—",
        )
    console = Console()
    console.print(table)
    for r in rows:  # the table cuts the reason; a blind account's full reason, one line each
        if r["level"] == "blind":
            where = r["account"] + (f" · {scope_label(r['scope'])}" if scope_label(r["scope"]) else "")
            console.print(f"{where}: {r['error']}", markup=False, highlight=False, soft_wrap=True)
