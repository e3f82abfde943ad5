"""`alerter check`'s work: one poll of every account, evaluated (alerter.commands.check prints it).

Levels here are the thresholds' verdict on this one poll (no hysteresis, no history): the
accounts' plans and sources go through `Pipeline.fetch` and nothing else, so no database is
opened. With `--notify` the poll also goes through the daemon's policy and store
(`Pipeline.handle`), so what it decides is recorded and sent exactly as the daemon would (and not
again by the daemon).
"""

from __future__ import annotations

import asyncio
import os
import sys

from alerter.codec import json_float
from alerter.config import load_settings
from alerter.logs import setup_logging
from alerter.models import ACCOUNT_SCOPE
from alerter.pipeline import Pipeline, Poll
from alerter.plan import AccountPlan
from alerter.policy import level_for
from alerter.runtime import Parts, preflight
from alerter.secrets import of as secrets_of

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
    parts = Parts()
    sources = {a.name: parts.source(settings, a) for a in settings.accounts}
    store = None
    try:
        if notify:
            from alerter.store import Store
            from alerter.storethread import StoreThread

            store = StoreThread(Store(settings.daemon.database))
        pipeline = Pipeline(settings, sources=sources, store=store, notifier=parts.notifier(settings) if notify else None)
        polls = await asyncio.gather(*(pipeline.fetch(name) for name in pipeline.plans))
        if notify:
            await record_and_send(pipeline, polls)
        return rows_for(pipeline.plans, list(polls))
    finally:
        await asyncio.gather(*(s.close() for s in sources.values()), return_exceptions=True)
        if store is not None:
            await store.close()


async def record_and_send(pipeline: Pipeline, polls: list[Poll]) -> None:
    """`--notify`: decide and record each poll as the daemon does, then deliver what is due,
    unless a daemon holds the database (it delivers what this recorded: two senders would send
    it twice)."""
    from alerter.delivery import deliver_due
    from alerter.lockfile import DatabaseInUse, hold_lock

    for poll in polls:
        await pipeline.handle(poll)
    settings = pipeline.settings
    try:
        lock = hold_lock(settings.daemon.database)
    except DatabaseInUse:
        print("note: a daemon is running on this database: it delivers the alerts recorded here", file=sys.stderr)
        return
    try:
        await deliver_due(pipeline.store, pipeline.notifier, settings.channels, pipeline.clock(), expiry=settings.daemon.alert_expiry)
    finally:
        os.close(lock)
