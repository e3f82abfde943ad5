"""Seeing the risk: `alerter status`, `alerter history` and `alerter whatif`.

These commands only read the database (the daemon may be running: SQLite's WAL lets readers
in) and never call an exchange; status and whatif import neither ccxt, apprise nor
matplotlib, and history imports matplotlib only for ``--plot``. Each command gathers its data
(`read_*`), turns it into plain records with pure functions (`build_*`, `stress`,
`trip_moves`), then prints a rich table or, with ``--json``, the records as JSON.

JSON conventions (all three commands): ratios and moves are fractions (0.42 = 42 %), money is
in the account's settle currency, times are UTC ISO-8601, an infinite margin ratio (equity ≤ 0
with exposure) is the string "inf", an unknown value is null. Keys are only ever added.

``status --json``::

    {"generated_at", "database",
     "accounts": [{"account", "exchange" (null: not configured), "configured", "approximate", "thresholds":
                   {"warning", "call", "critical", "hysteresis", "target"}, "poll_interval_seconds",
                   "last_poll_at", "last_poll_age_seconds", "stale", "failures", "blind",
                   "pending_deliveries",
                   "scopes": [{"scope", "at", "margin_ratio", "level", "since_at", "trend_1h",
                               "equity", "maintenance_margin", "deposit_needed",
                               "liquidation_move", "estimated"}]}]}

``history --json``::

    {"since", "until",
     "series": [{"account", "scope", "thresholds": {…},
                 "samples": [{"at", "margin_ratio", "equity", "maintenance_margin",
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

import json
import math
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from alerter.codec import json_float
from alerter.health import deposit_needed
from alerter.models import ACCOUNT_SCOPE, Health, Level, Thresholds
from alerter.stress import StressResult, TripMoves, parse_fraction, parse_move, stress, trip_moves

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2

TREND_WINDOW = timedelta(hours=1)
STALE_AFTER_POLLS = 3  # the last good poll is stale after this many poll intervals
STEADY = 0.005  # a change of less than half a point over the trend window is "→"
STATUS_ROWS = 20  # isolated positions per account in the status table (the worst); --json has all
TRIP_LEVELS = ("warning", "call", "critical", "liquidation")
PLOT_MISSING = "matplotlib is not installed: pip install 'alerter[plot]'"
LEVEL_STYLES = {Level.OK: "green", Level.WARNING: "yellow", Level.CALL: "bold red", Level.CRITICAL: "bold white on red"}  # as `alerter check`


# ---------------------------------------------------------------- formatting

def json_at(at: datetime | None) -> str | None:
    return at.astimezone(UTC).isoformat() if at else None


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "—"
    return "∞" if math.isinf(x) else f"{x * 100:.1f}%"


def fmt_move(x: float | None) -> str:
    """A signed relative price move: "−23.4%", "+8.0%", "—" when none."""
    if x is None:
        return "—"
    return f"{x * 100:+.1f}%".replace("-", "−")


def fmt_money(x: float, currency: str = "") -> str:
    text = f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"
    return f"{text} {currency}".strip()


def fmt_age(td: timedelta) -> str:
    """"45s", "14m", "2h05m", "3d04h"."""
    seconds = max(0, int(td.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def scope_label(scope: str, *, short: bool = False) -> str:
    """"account", or "BTC/USDT:USDT long (isolated)" (short: "BTC/USDT long")."""
    if scope == ACCOUNT_SCOPE or not scope.startswith("isolated:"):
        return scope
    symbol, _, side = scope.removeprefix("isolated:").rpartition(":")
    if short:
        return f"{symbol.split(':')[0]} {side}"
    return f"{symbol} {side} (isolated)"


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


def build_status(settings, plans: dict, latest, bases, states, pending: dict[str, int], now: datetime) -> list[AccountStatus]:
    """Pure: one `AccountStatus` per configured or recorded account, configured ones first.
    `plans`: the configured accounts' (alerter.plan.plans).

    `latest`: `Store.latest_samples()`; `bases`: `Store.trend_bases(now - TREND_WINDOW, …)`;
    `states`: account → scope → `ScopeState`; `pending`: account → undelivered deliveries."""
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
        samples = sorted(by_account.get(name, []), key=lambda s: (s.scope != ACCOUNT_SCOPE, s.scope))
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
                liquidation_move=s.liquidation_move, estimated=s.estimated,
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
    return build_status(settings, plans, latest, bases, states, pending, now)


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
                        "liquidation_move": s.liquidation_move,
                        "estimated": s.estimated,
                    }
                    for s in a.scopes
                ],
            }
            for a in accounts
        ],
    }


def _level_text(level: Level | None, since_at: datetime | None, now: datetime):
    from rich.text import Text

    if level is None:
        return Text("—")
    text = Text(level.label, style=LEVEL_STYLES[level])
    if since_at is not None:
        text.append(f" {fmt_age(now - since_at)}", style="dim")
    return text


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
        text = Text(f"stale {fmt_age(a.age)}", style="bold red")
    else:
        text = Text(f"{fmt_age(a.age)} ago")
    if a.blind:
        text.append(" · blind", style="bold red")
    if a.failures:
        text.append(f" · {a.failures} failed", style="red")
    return text


def render_status(accounts: list[AccountStatus], now: datetime):
    from rich import box
    from rich.table import Table
    from rich.text import Text

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
            label = name if s.scope == ACCOUNT_SCOPE else Text(f" └ {scope_label(s.scope, short=True)}")
            deposit = fmt_money(s.deposit_needed) if s.deposit_needed > 0 else Text("—", style="dim")
            ratio = Text(("≈" if a.approximate else "") + fmt_ratio(s.margin_ratio) + ("*" if s.estimated else ""),
                         style=LEVEL_STYLES.get(s.level, "") if s.level is not None else "")
            table.add_row(
                label, ratio, _level_text(s.level, s.since_at, now), _trend_text(s.trend), deposit,
                fmt_move(s.liquidation_move), poll if i == 0 else "", unsent if i == 0 else "",
            )
        if hidden:
            table.add_row(Text(f" └ +{len(hidden):,} more: {level_counts(hidden)}", style="dim"), *[""] * 7)
    return table


def worst_scopes(scopes: list[ScopeStatus], limit: int = STATUS_ROWS) -> tuple[list[ScopeStatus], list[ScopeStatus]]:
    """(shown, hidden): the account scope and the `limit` worst isolated positions (highest level,
    then highest ratio), shown in their usual order; the rest hidden. A table of thousands of rows
    helps nobody and takes rich seconds to lay out."""
    isolated = [s for s in scopes if s.scope != ACCOUNT_SCOPE]
    if len(isolated) <= limit:
        return scopes, []

    def badness(s: ScopeStatus):
        return (-1 if s.level is None else int(s.level), s.margin_ratio if s.margin_ratio is not None else -math.inf)

    keep = {id(s) for s in sorted(isolated, key=badness, reverse=True)[:limit]}
    return ([s for s in scopes if s.scope == ACCOUNT_SCOPE or id(s) in keep],
            [s for s in isolated if id(s) not in keep])


def level_counts(scopes: list[ScopeStatus]) -> str:
    """"3 warning, 4,947 ok": how many of these scopes are at each level, worst first."""
    counts: dict[str, int] = {}
    for s in sorted(scopes, key=lambda s: -1 if s.level is None else int(s.level), reverse=True):
        key = "unknown" if s.level is None else s.level.label
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n:,} {label}" for label, n in counts.items())


def status_legend(accounts: list[AccountStatus]) -> str:
    targets = sorted({a.thresholds.target for a in accounts})
    target = " / ".join(f"{t * 100:g}%" for t in targets) or "40%"
    return (f"└ isolated position · Δ 1h: change of the ratio over the last hour, in points · deposit: brings the "
            f"ratio back to {target} · to liq.: the uniform price move that liquidates · stale: no good poll for "
            f"{STALE_AFTER_POLLS}× the poll interval · unsent: alerts not yet delivered"
            + (" · * estimated from mark prices" if any(s.estimated for a in accounts for s in a.scopes) else "")
            + (' · ≈ approximate: ccxt\'s unified figures (profile = "generic"), not the exchange\'s own'
               if any(a.approximate for a in accounts) else "")
            + (f" · more: only the {STATUS_ROWS} worst isolated positions of an account are listed, --json lists all"
               if any(worst_scopes(a.scopes)[1] for a in accounts) else ""))


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
    from alerter.store import alert_to_dict

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
                        "equity": x.equity, "maintenance_margin": x.maintenance_margin,
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


def render_history_text(series: list[HistorySeries], width: int = 72) -> list[str]:
    """Plain lines: one chart per (account, scope) with its alerts marked under the time axis."""
    from alerter.charts import alert_marker, render_text

    lines: list[str] = []
    for s in series:
        t = s.thresholds
        title = f"{s.account} · {scope_label(s.scope)}"
        ratios = [x.margin_ratio for x in s.samples]
        if ratios:
            finite = [r for r in ratios if math.isfinite(r)]
            summary = (f"{len(ratios)} samples, last {fmt_ratio(ratios[-1])}, "
                       f"max {fmt_ratio(max(ratios))}, min {fmt_ratio(min(finite) if finite else None)}")
        else:
            summary = "no samples"
        lines += [f"{title} — margin ratio ({summary})"]
        lines += render_text(
            [(x.at, x.margin_ratio) for x in s.samples], t,
            markers=[(e.alert.created_at, alert_marker(e.alert)) for e in s.alerts], width=width,
        )
        lines.append("")
    return lines


def render_alert_table(series: list[HistorySeries]):
    entries = sorted((e for s in series for e in s.alerts), key=lambda e: (e.alert.created_at, e.alert_id))
    table = _table("alerts")
    for name in ("time (UTC)", "account · scope", "alert", "ratio", "deliveries"):
        table.add_column(name, justify="right" if name == "ratio" else "left")
    for e in entries:
        a = e.alert
        what = f"{a.kind} {a.level.label}" if a.kind in ("raised", "repeat", "resolved") else str(a.kind)
        if a.reason:
            what += f" ({a.reason})"
        deliveries = ", ".join(f"{ch} {st}" for ch, st in e.deliveries.items()) or "—"
        table.add_row(f"{a.created_at:%Y-%m-%d %H:%M:%S}", f"{a.account} · {scope_label(a.scope, short=True)}", what,
                      fmt_ratio(a.margin_ratio), deliveries, style=LEVEL_STYLES.get(a.level, "") if a.kind in ("raised", "repeat") else "")
    return table


def plot_history(series: list[HistorySeries], path, title: str):
    """The PNG of `series`; raises charts.PlotUnavailable without matplotlib."""
    from alerter.charts import Series, plot_png

    return plot_png(
        [
            Series(label=f"{s.account} · {scope_label(s.scope, short=True)}" + (" (isolated)" if s.scope != ACCOUNT_SCOPE else ""), points=[(x.at, x.margin_ratio) for x in s.samples],
                   thresholds=s.thresholds, alerts=[e.alert for e in s.alerts])
            for s in series
        ],
        path, title=title,
    )


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
                     **({"refused": t.refused} if t.refused else {})}
                    for t in trips
                ],
            }
            for account, (at, trips) in rows.items()
        ]
    }


# ---------------------------------------------------------------- commands

def _console():
    from rich.console import Console

    return Console(highlight=False)


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _open(settings):
    """The store, opened only if the file exists (a status must not create an empty database)."""
    from alerter.errors import StoreError
    from alerter.store import Store

    path = settings.daemon.database
    if not path.exists():
        raise StoreError(f"{path}: no database yet (the daemon creates it on its first poll)")
    return Store(path)


def _print_json(data: dict) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False))


def _now() -> datetime:
    return datetime.now(UTC)


def cmd_status(args) -> int:
    from alerter.config import load_settings
    from alerter.errors import StoreError
    from alerter.plan import plans

    settings = load_settings(args.config)
    now = _now()
    try:
        with _open(settings) as store:
            accounts = read_status(store, settings, plans(settings), now)
            notes = store.notes()
    except StoreError as e:
        return _error(str(e), EXIT_RUNTIME)
    if args.json:
        data = status_json(accounts, now, str(settings.daemon.database))
        data["notes"] = [{"at": json_at(at), "text": text} for at, text in notes]
        _print_json(data)
        return EXIT_OK
    console = _console()
    for _, text in notes:  # what happened to the database file itself
        console.print(f"note: {text}", style="bold yellow")
    if not accounts:
        console.print("no accounts configured and nothing recorded")
        return EXIT_OK
    console.print(render_status(accounts, now))
    console.print(status_legend(accounts), style="dim")
    return EXIT_OK


def _known_accounts(store, plans: dict) -> set[str]:
    return set(plans) | {s.account for s in store.latest_samples()}


def cmd_history(args) -> int:
    from alerter.charts import PlotUnavailable
    from alerter.config import load_settings, parse_duration
    from alerter.errors import StoreError
    from alerter.plan import plans

    settings = load_settings(args.config)
    account_plans = plans(settings)
    try:
        window = parse_duration(args.since)
    except ValueError as e:
        return _error(f"--since: {e}", EXIT_CONFIG)
    now = _now()
    since = now - window
    try:
        with _open(settings) as store:
            if args.account and args.account not in _known_accounts(store, account_plans):
                known = ", ".join(sorted(_known_accounts(store, account_plans))) or "none"
                return _error(f"no account named {args.account!r} (known: {known})", EXIT_CONFIG)
            samples = store.samples(account=args.account, since=since)
            entries = store.history(account=args.account, since=since)
    except StoreError as e:
        return _error(str(e), EXIT_RUNTIME)
    series = build_history(settings, account_plans, samples, entries)
    if args.plot:
        times = [x.at for s in series for x in s.samples] + [e.alert.created_at for s in series for e in s.alerts]
        span = f"{min(times):%Y-%m-%d %H:%M} – {max(times):%Y-%m-%d %H:%M} UTC" if times else f"nothing since {since:%Y-%m-%d %H:%M} UTC"
        title = f"margin ratio · {args.account or 'all accounts'} · {span}"
        try:
            path = plot_history(series, args.plot, title)
        except PlotUnavailable:
            return _error(PLOT_MISSING, EXIT_CONFIG)
        except OSError as e:
            return _error(f"{args.plot}: cannot write ({e.strerror})", EXIT_RUNTIME)
        if not args.json:
            print(f"wrote {path}")
    if args.json:
        _print_json(history_json(series, since, now))
        return EXIT_OK
    if args.plot:
        return EXIT_OK
    if not series:
        print(f"nothing recorded since {since:%Y-%m-%d %H:%M} UTC" + (f" for {args.account}" if args.account else ""))
        return EXIT_OK
    for line in render_history_text(series):
        print(line)
    if any(s.alerts for s in series):
        _console().print(render_alert_table(series))
    return EXIT_OK


def _fetch_snapshots(settings, plans: dict, account: str | None):
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


def _load_snapshots(settings, plans: dict, account: str | None):
    with _open(settings) as store:
        snapshots = store.snapshots()
        known = _known_accounts(store, plans) | set(snapshots)
    if account is not None:
        if account not in known:
            raise LookupError(f"no account named {account!r} (known: {', '.join(sorted(known)) or 'none'})")
        snapshots = {k: v for k, v in snapshots.items() if k == account}
    return snapshots


def _table(title: str):
    from rich import box
    from rich.table import Table

    return Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)


def _row_label(account: str, scope: str, note: str = ""):
    from rich.text import Text

    if scope == ACCOUNT_SCOPE:
        return Text(account, style="bold") + Text(note, style="dim")
    return Text(f" └ {scope_label(scope, short=True)}")


def _render_stress(results: list[StressResult], now: datetime, console) -> None:
    from rich.text import Text

    for r in results:
        age = f" (snapshot {fmt_age(now - r.snapshot_at)} old)" if r.snapshot_at else ""
        moved = " · ".join(f"{sym.split(':')[0]} {fmt_money(b)} → {fmt_money(a)}" for sym, b, a in r.prices) or "no position moved"
        table = _table(f"{r.account}{age}: {moved}")
        table.add_column("account", overflow="fold", min_width=12)
        for name in ("ratio now", "after", "level after", "deposit after", "to liq. after"):
            table.add_column(name, no_wrap=True, justify="left" if name == "level after" else "right")
        for h, lb, a, la in r.scopes:
            label = _row_label(r.account, h.scope)
            if a is None:
                table.add_row(label, fmt_ratio(h.margin_ratio), "—", "gone", "", "")
                continue
            deposit = fmt_money(a.deposit_needed, a.currency) if a.deposit_needed > 0 else Text("—", style="dim")
            level = Text("LIQUIDATED", style="bold red reverse") if a.margin_ratio >= 1 else Text(la.label, style=LEVEL_STYLES[la])
            table.add_row(
                label, Text(fmt_ratio(h.margin_ratio), style=LEVEL_STYLES[lb]),
                Text(fmt_ratio(a.margin_ratio), style=LEVEL_STYLES[la]), level, deposit,
                "" if a.margin_ratio >= 1 else ("never" if a.liquidation_move is None and a.top_positions else fmt_move(a.liquidation_move)),
            )
        console.print(table)


def _render_levels(rows: dict[str, tuple[datetime | None, list[TripMoves]]], now: datetime, console) -> None:
    from rich.text import Text

    table = _table("the uniform price move (all marks together) at which each level trips")
    table.add_column("account", overflow="fold", min_width=12)
    for name in ("ratio", *TRIP_LEVELS):
        table.add_column(name, no_wrap=True, justify="right")
    for account, (at, trips) in rows.items():
        for t in trips:
            label = _row_label(account, t.scope, f" ({fmt_age(now - at)} old)" if at else "")
            cells = []
            for name in TRIP_LEVELS:
                m = t.moves[name]
                cells.append(Text("n/a", style="dim") if t.refused else Text("reached", style="bold red") if m == 0
                             else (Text("never", style="dim") if m is None else fmt_move(m)))
            table.add_row(label, Text(fmt_ratio(t.margin_ratio), style=LEVEL_STYLES[t.level]), *cells)
    for reason in dict.fromkeys(t.refused for _, trips in rows.values() for t in trips if t.refused):
        console.print(f"└ n/a: {reason}", style="dim")
    console.print(table)
    console.print("└ isolated position · never: no move of the marks within −100 % gets there (linear model, "
                  "maintenance rates of the current brackets)", style="dim")


def cmd_whatif(args) -> int:
    from alerter.config import load_settings
    from alerter.errors import StoreError
    from alerter.plan import plans

    settings = load_settings(args.config)
    account_plans = plans(settings)
    try:
        moves = dict(parse_move(m) for m in args.move or [])
        default = parse_fraction(args.all) if args.all is not None else None
    except ValueError as e:
        return _error(str(e), EXIT_CONFIG)
    try:
        snapshots = (_fetch_snapshots if args.fetch else _load_snapshots)(settings, account_plans, args.account)
    except StoreError as e:
        return _error(str(e), EXIT_RUNTIME)
    except LookupError as e:
        return _error(str(e.args[0]), EXIT_CONFIG)
    if not snapshots:
        if args.fetch:
            return _error("no account could be polled", EXIT_RUNTIME)
        return _error("no position snapshot recorded yet (the daemon saves one per account on every good poll)", EXIT_RUNTIME)
    now = _now()
    if args.levels or (not moves and default is None):
        rows = {name: (s.fetched_at, trip_moves(s, _thresholds(settings, account_plans, name))) for name, s in snapshots.items()}
        if args.json:
            _print_json(levels_json(rows))
        else:
            _render_levels(rows, now, _console())
        return EXIT_OK
    held = {k for s in snapshots.values() for p in s.positions for k in (p.symbol, p.symbol.split("/")[0])}
    for key in moves:
        if key not in held:
            print(f"warning: no position in {key} (held: {', '.join(sorted(k for k in held if '/' not in k)) or 'none'})", file=sys.stderr)
    results = [stress(s, moves, default, _thresholds(settings, account_plans, name)) for name, s in snapshots.items()]
    if args.json:
        _print_json(stress_json(results, moves, default))
    else:
        _render_stress(results, now, _console())
    return EXIT_OK
