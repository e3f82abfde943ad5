"""Seeing the risk: the data of `alerter status`, `alerter history` and `alerter whatif`
(their command modules, alerter/commands/, print it).

These commands only read the database (the daemon may be running: SQLite's WAL lets readers
in) and never call an exchange (but `whatif --fetch`); status and whatif import neither ccxt,
apprise nor matplotlib, and history imports matplotlib only for ``--plot``. Each command gathers
its data (`read_*`, `load_snapshots`), turns it into plain records with pure functions
(`build_*`, `stress`, `trip_moves`), then prints a rich table or, with ``--json``, the records
as JSON (`*_json` here).

JSON conventions (all three commands): ratios and moves are fractions (0.42 = 42 %), money is
in the scope's "currency" (the account's settle currency, or the coin of a coin's cross pool or
a coin-margined position; null for a sample recorded before alerter kept it), times are UTC ISO-8601, an infinite margin ratio (equity ≤ 0
with exposure) is the string "inf", an unknown value is null. Keys are only ever added.

``status --json``::

    {"generated_at", "database",
     "accounts": [{"account", "exchange" (null: not configured), "configured", "approximate", "thresholds":
                   {"warning", "call", "critical", "hysteresis", "target"}, "poll_interval_seconds",
                   "last_poll_at", "last_poll_age_seconds", "stale", "failures", "blind",
                   "pending_deliveries",
                   "scopes": [{"scope", "at", "margin_ratio", "level", "since_at", "trend_1h",
                               "equity", "maintenance_margin", "deposit_needed", "currency",
                               "liquidation_move", "estimated",
                               "ack": null | {"level", "acked_at", "until_at", "note"}}]}]}

``history --json``::

    {"since", "until",
     "series": [{"account", "scope", "thresholds": {…},
                 "samples": [{"at", "margin_ratio", "equity", "maintenance_margin", "currency",
                              "liquidation_move", "level", "estimated"}],
                 "alerts": [{"id", every `Alert` field as stored (kind, level, created_at,
                             margin_ratio, …), "deliveries": {channel: status}}]}]}

``whatif --move/--all --json``::

    {"moves": {asset: move}, "default": move | null,
     "accounts": [{"account", "snapshot_at", "prices": [{"symbol", "before", "after"}],
                   "scopes": [{"scope", "before": H, "after": H | null}]}]}
    H = {"margin_ratio", "level", "equity", "maintenance_margin", "deposit_needed",
         "liquidation_move", "liquidated"}

``whatif --levels --json``::

    {"accounts": [{"account", "snapshot_at",
                   "scopes": [{"scope", "margin_ratio", "level",
                               "moves": {"warning", "call", "critical", "liquidation"}}]}]}

    a move is 0 when the level is already reached, null when no price move gets there.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from alerter.codec import json_float
from alerter.health import deposit_needed
from alerter.models import ACCOUNT_SCOPE, Ack, Health, Level, Thresholds
from alerter.stress import StressResult, TripMoves

TREND_WINDOW = timedelta(hours=1)
STALE_AFTER_POLLS = 3  # the last good poll is stale after this many poll intervals
STATUS_ROWS = 20  # isolated positions per account in the status table (the worst); --json has all


def json_at(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at else None


def thresholds_json(t: Thresholds) -> dict:
    return {"warning": t.warning, "call": t.call, "critical": t.critical, "hysteresis": t.hysteresis, "target": t.target}


def _thresholds(settings, plans: dict, account: str) -> Thresholds:
    """The account's thresholds (its plan's), or the global ones for an account no longer configured."""
    plan = plans.get(account)
    return plan.thresholds if plan is not None else settings.thresholds.value()


def _poll_interval(settings, plans: dict, account: str) -> timedelta:
    plan = plans.get(account)
    return plan.poll_interval if plan is not None else settings.daemon.poll_interval


# ---------------------------------------------------------------- status

@dataclass(frozen=True)
class ScopeStatus:
    scope: str
    at: datetime  # of the last sample
    margin_ratio: float
    level: Level | None
    since_at: datetime | None
    trend: float | None  # change of the ratio over the trend window (fraction), None if unknown
    equity: float
    maintenance_margin: float
    deposit_needed: float
    liquidation_move: float | None
    estimated: bool
    ack: Ack | None = None  # an acknowledgement in force: the level's repeats are held back
    figure: str = ""  # the exchange's own figure at this ratio ("margin level 1.24"), where it has one
    currency: str | None = None  # of equity, maintenance and the deposit; None: recorded before it was


@dataclass(frozen=True)
class AccountStatus:
    account: str
    exchange: str | None  # None: in the database but no longer configured
    thresholds: Thresholds
    poll_interval: timedelta
    last_poll_at: datetime | None  # the newest sample (samples are written by good polls only)
    age: timedelta | None
    stale: bool
    failures: int
    blind: bool
    pending: int
    scopes: list[ScopeStatus] = field(default_factory=list)
    approximate: bool = False  # profile = "generic": ccxt's unified figures, not the exchange's own


def trend(last: float, base: tuple[float, int] | None) -> float | None:
    """The change of the ratio over the trend window: the last ratio minus the oldest finite one
    of the window. `base`: (that oldest finite ratio, the window's number of finite ratios up to
    2), None when the window has none. None without two finite ratios or when the last one is not
    finite."""
    if base is None or base[1] < 2 or last is None or not math.isfinite(last):
        return None
    return last - base[0]


def own_figure_text(figure, scope: str, ratio: float) -> str:
    """The exchange's own figure of a scope at this ratio ("" where there is none: no figure, or
    one the exchange states for the cross account only, on an isolated position)."""
    if figure is None or (figure.cross_only and scope.startswith("isolated:")):
        return ""
    return figure.text(ratio)


def build_status(settings, plans: dict, latest, bases, states, pending: dict[str, int], now: datetime,
                 acks: dict[tuple[str, str], Ack] | None = None) -> list[AccountStatus]:
    """Pure: one `AccountStatus` per configured or recorded account, configured ones first.
    `plans`: the configured accounts' (alerter.plan.plans).

    `latest`: `Store.latest_samples()`; `bases`: `Store.trend_bases(now - TREND_WINDOW, …)`;
    `states`: account → scope → `ScopeState`; `pending`: account → undelivered deliveries;
    `acks`: (account, scope) → the acknowledgement in force."""
    by_account: dict[str, list] = {}
    for s in latest:
        by_account.setdefault(s.account, []).append(s)
    names = list(plans)
    names += sorted(n for n in {*by_account, *states} if n not in names)
    out = []
    for name in names:
        plan = plans.get(name)
        thresholds = _thresholds(settings, plans, name)
        interval = _poll_interval(settings, plans, name)
        account_states = states.get(name, {})
        samples = sorted(by_account.get(name, []), key=lambda s: (s.scope != ACCOUNT_SCOPE, s.scope.startswith("isolated:"), s.scope))
        last = max((s.at for s in samples), default=None)
        # only the scopes of the last good poll: an isolated position closed since then is gone
        samples = [s for s in samples if s.at == last]
        age = now - last if last else None
        account_state = account_states.get(ACCOUNT_SCOPE)
        scopes = []
        for s in samples:
            state = account_states.get(s.scope)
            scopes.append(ScopeStatus(
                scope=s.scope, at=s.at, margin_ratio=s.margin_ratio,
                level=state.level if state else s.level, since_at=state.since_at if state else None,
                trend=trend(s.margin_ratio, bases.get((name, s.scope))),
                equity=s.equity, maintenance_margin=s.maintenance_margin,
                deposit_needed=deposit_needed(s.maintenance_margin, s.equity, thresholds.target),
                liquidation_move=s.liquidation_move, estimated=s.estimated, ack=(acks or {}).get((name, s.scope)),
                figure=own_figure_text(plan.own_figure if plan is not None else None, s.scope, s.margin_ratio),
                currency=s.currency,
            ))
        out.append(AccountStatus(
            account=name, exchange=plan.exchange if plan else None, thresholds=thresholds, poll_interval=interval,
            last_poll_at=last, age=age, stale=age is None or age > STALE_AFTER_POLLS * interval,
            failures=account_state.failures if account_state else 0, blind=bool(account_state and account_state.blind),
            pending=pending.get(name, 0), scopes=scopes, approximate=plan is not None and plan.approximate,
        ))
    return out


def read_status(store, settings, plans: dict, now: datetime) -> list[AccountStatus]:
    latest = store.latest_samples()
    bases = store.trend_bases(now - TREND_WINDOW, [(s.account, s.scope) for s in latest])
    accounts = set(plans) | {s.account for s in latest}
    states = {name: store.load_states(name) for name in sorted(accounts)}
    pending: dict[str, int] = {}
    for d in store.deliveries(status="pending"):
        pending[d.alert.account] = pending.get(d.alert.account, 0) + 1
    acks = {(a.account, a.scope): a for a in store.acks() if a.until_at is None or a.until_at > now}
    return build_status(settings, plans, latest, bases, states, pending, now, acks)


def status_json(accounts: list[AccountStatus], now: datetime, database: str) -> dict:
    return {
        "generated_at": json_at(now),
        "database": database,
        "accounts": [
            {
                "account": a.account,
                "exchange": a.exchange,
                "configured": a.exchange is not None,
                "approximate": a.approximate,
                "thresholds": thresholds_json(a.thresholds),
                "poll_interval_seconds": a.poll_interval.total_seconds(),
                "last_poll_at": json_at(a.last_poll_at),
                "last_poll_age_seconds": a.age.total_seconds() if a.age is not None else None,
                "stale": a.stale,
                "failures": a.failures,
                "blind": a.blind,
                "pending_deliveries": a.pending,
                "scopes": [
                    {
                        "scope": s.scope,
                        "at": json_at(s.at),
                        "margin_ratio": json_float(s.margin_ratio),
                        "level": s.level.label if s.level is not None else None,
                        "since_at": json_at(s.since_at),
                        "trend_1h": json_float(s.trend),
                        "equity": s.equity,
                        "maintenance_margin": s.maintenance_margin,
                        "deposit_needed": json_float(s.deposit_needed),
                        "currency": s.currency,
                        "liquidation_move": s.liquidation_move,
                        "estimated": s.estimated,
                        "ack": ack_json(s.ack),
                        **({"exchange_figure": s.figure} if s.figure else {}),
                    }
                    for s in a.scopes
                ],
            }
            for a in accounts
        ],
    }


def ack_json(ack: Ack | None) -> dict | None:
    if ack is None:
        return None
    return {"level": ack.level.label, "acked_at": json_at(ack.acked_at), "until_at": json_at(ack.until_at), "note": ack.note}


def worst_scopes(scopes: list[ScopeStatus], limit: int = STATUS_ROWS) -> tuple[list[ScopeStatus], list[ScopeStatus]]:
    """(shown, hidden): the account scope and the `limit` worst isolated positions (highest level,
    then highest ratio), shown in their usual order; the rest hidden. A table of thousands of rows
    helps nobody and takes rich seconds to lay out."""
    isolated = [s for s in scopes if s.scope.startswith("isolated:")]  # the cross scopes (account, pools) are always shown
    if len(isolated) <= limit:
        return scopes, []

    def badness(s: ScopeStatus):
        return (-1 if s.level is None else int(s.level), s.margin_ratio if s.margin_ratio is not None else -math.inf)

    keep = {id(s) for s in sorted(isolated, key=badness, reverse=True)[:limit]}
    return ([s for s in scopes if not s.scope.startswith("isolated:") or id(s) in keep],
            [s for s in isolated if id(s) not in keep])


def level_counts(scopes: list[ScopeStatus]) -> str:
    """"3 warning, 4,947 ok": how many of these scopes are at each level, worst first."""
    counts: dict[str, int] = {}
    for s in sorted(scopes, key=lambda s: -1 if s.level is None else int(s.level), reverse=True):
        key = "unknown" if s.level is None else s.level.label
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n:,} {label}" for label, n in counts.items())



# ---------------------------------------------------------------- history

@dataclass(frozen=True)
class HistorySeries:
    account: str
    scope: str
    thresholds: Thresholds
    samples: list  # store.Sample, oldest first
    alerts: list  # store.HistoryEntry of this scope, oldest first


def build_history(settings, plans: dict, samples, entries) -> list[HistorySeries]:
    """Pure: group samples and alert history entries by (account, scope)."""
    keys: dict[tuple[str, str], None] = {}
    for s in samples:
        keys[(s.account, s.scope)] = None
    for e in entries:
        keys[(e.alert.account, e.alert.scope)] = None
    ordered = sorted(keys, key=lambda k: (k[0], k[1] != ACCOUNT_SCOPE, k[1]))
    return [
        HistorySeries(
            account=account, scope=scope, thresholds=_thresholds(settings, plans, account),
            samples=[s for s in samples if (s.account, s.scope) == (account, scope)],
            alerts=[e for e in entries if (e.alert.account, e.alert.scope) == (account, scope)],
        )
        for account, scope in ordered
    ]


def history_json(series: list[HistorySeries], since: datetime, now: datetime) -> dict:
    from alerter.codec import alert_to_dict

    return {
        "since": json_at(since),
        "until": json_at(now),
        "series": [
            {
                "account": s.account,
                "scope": s.scope,
                "thresholds": thresholds_json(s.thresholds),
                "samples": [
                    {
                        "at": json_at(x.at), "margin_ratio": json_float(x.margin_ratio),
                        "equity": x.equity, "maintenance_margin": x.maintenance_margin, "currency": x.currency,
                        "liquidation_move": x.liquidation_move,
                        "level": x.level.label if x.level is not None else None, "estimated": x.estimated,
                    }
                    for x in s.samples
                ],
                "alerts": [{"id": e.alert_id, **alert_to_dict(e.alert), "deliveries": dict(e.deliveries)} for e in s.alerts],
            }
            for s in series
        ],
    }



# ---------------------------------------------------------------- whatif

def _health_json(h: Health, level: Level) -> dict:
    return {
        "margin_ratio": json_float(h.margin_ratio), "level": level.label, "equity": h.equity,
        "maintenance_margin": h.maintenance_margin, "deposit_needed": json_float(h.deposit_needed),
        "liquidation_move": h.liquidation_move, "liquidated": h.margin_ratio >= 1.0,
    }


def stress_json(results: list[StressResult], moves: dict[str, float], default: float | None) -> dict:
    return {
        "moves": moves,
        "default": default,
        "accounts": [
            {
                "account": r.account,
                "snapshot_at": json_at(r.snapshot_at),
                "prices": [{"symbol": s, "before": b, "after": a} for s, b, a in r.prices],
                "scopes": [
                    {"scope": h.scope, "before": _health_json(h, lb), "after": _health_json(a, la) if a else None}
                    for h, lb, a, la in r.scopes
                ],
            }
            for r in results
        ],
    }


def levels_json(rows: dict[str, tuple[datetime | None, list[TripMoves]]]) -> dict:
    return {
        "accounts": [
            {
                "account": account,
                "snapshot_at": json_at(at),
                "scopes": [
                    {"scope": t.scope, "margin_ratio": json_float(t.margin_ratio), "level": t.level.label, "moves": t.moves,
                     **({"refused": t.refused} if t.refused else {}), **({"exchange_figure": t.figure} if t.figure else {})}
                    for t in trips
                ],
            }
            for account, (at, trips) in rows.items()
        ]
    }


# ---------------------------------------------------------------- reading

def open_store(settings):
    """The store, opened only if the file exists (a status must not create an empty database)."""
    from alerter.errors import StoreError
    from alerter.store import Store

    path = settings.daemon.database
    if not path.exists():
        raise StoreError(f"{path}: no database yet (the daemon creates it on its first poll)")
    return Store(path)




def known_accounts(store, plans: dict) -> set[str]:
    return set(plans) | {s.account for s in store.latest_samples()}




def fetch_snapshots(settings, plans: dict, account: str | None):
    """A fresh full poll of the configured accounts (the one whatif path that calls exchanges)."""
    import asyncio

    from alerter.secrets import of as secrets_of
    from alerter.logs import setup_logging
    from alerter.sources import SharedMarkets, SourceError, build_source

    names = list(plans)
    if account is not None and account not in names:
        raise LookupError(f"no account named {account!r} (configured: {', '.join(names) or 'none'})")
    setup_logging("warning", secrets_of(settings))

    async def fetch_all():
        markets = SharedMarkets()
        timeout = settings.daemon.request_timeout.total_seconds()
        sources = [build_source(a, timeout_s=timeout, shared=markets, market_key=plans[a.name].market_key)
                   for a in settings.accounts if account in (None, a.name)]
        try:
            results = await asyncio.gather(*(s.fetch_snapshot() for s in sources), return_exceptions=True)
        finally:
            await asyncio.gather(*(s.close() for s in sources), return_exceptions=True)
        snapshots = {}
        for source, result in zip(sources, results, strict=True):
            if isinstance(result, SourceError):
                print(f"warning: {source.account_name}: {result.kind}: {result}", file=sys.stderr)
            elif isinstance(result, BaseException):
                raise result
            else:
                snapshots[source.account_name] = result
        return snapshots

    return asyncio.run(fetch_all())


def load_snapshots(settings, plans: dict, account: str | None):
    with open_store(settings) as store:
        snapshots = store.snapshots()
        known = known_accounts(store, plans) | set(snapshots)
    if account is not None:
        if account not in known:
            raise LookupError(f"no account named {account!r} (known: {', '.join(sorted(known)) or 'none'})")
        snapshots = {k: v for k, v in snapshots.items() if k == account}
    return snapshots


