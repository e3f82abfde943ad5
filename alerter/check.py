"""`alerter check`'s work: one poll of every account, evaluated (alerter.commands.check prints it).

Levels here are the thresholds' verdict on this one poll (no hysteresis, no history). With
`--notify` the poll also goes through the daemon's policy and store, so what it decides is
recorded and sent exactly as the daemon would (and not again by the daemon).
"""

from __future__ import annotations

import asyncio
import os
import sys

from alerter.codec import json_float
from alerter.config import load_settings
from alerter.lockfile import DatabaseInUse, hold_lock
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
                "approximate": h.approximate,  # profile = "generic": ccxt's figures, not the exchange's
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
    lock = None
    try:
        polls = await asyncio.gather(*(fetch_health(daemon.plans[name], source) for name, source in daemon.sources.items()))
        if notify:
            for poll in polls:
                await daemon.handle(poll)
            try:  # a running daemon delivers what this recorded: two senders would send it twice
                lock = hold_lock(settings.daemon.database)
            except DatabaseInUse:
                print("note: a daemon is running on this database: it delivers the alerts recorded here", file=sys.stderr)
            else:
                await daemon.deliver_once()
        return rows_for(daemon.plans, list(polls))
    finally:
        if lock is not None:
            os.close(lock)
        await asyncio.gather(*(s.close() for s in daemon.sources.values()), return_exceptions=True)
        await daemon.store_thread.close()
