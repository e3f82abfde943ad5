"""`alerter history`: the margin ratio over time, with the thresholds and the alerts that fired.

The data is alerter.views' (`build_history`, `history_json`); the charts are alerter.charts';
matplotlib is imported only for --plot.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from alerter import commands, display
from alerter.commands import add_config
from alerter.models import ACCOUNT_SCOPE

if TYPE_CHECKING:
    from alerter.views import HistorySeries

HELP = "the margin ratio over time, with the thresholds and the alerts that fired"
PLOT_MISSING = "matplotlib is not installed: pip install 'alerter[plot]'"


def add_arguments(parser) -> None:
    add_config(parser)
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of tables")
    parser.add_argument("account", nargs="?", metavar="ACCOUNT", help="only this account (default: all)")
    parser.add_argument("--since", default="24h", metavar="DURATION", help="how far back: 30m, 24h, 7d (default: 24h)")
    parser.add_argument("--plot", metavar="FILE.png", help="write a PNG chart (needs matplotlib: pip install 'alerter[plot]')")


def render_history_text(series: list[HistorySeries], width: int = 72) -> list[str]:
    """Plain lines: one chart per (account, scope) with its alerts marked under the time axis."""
    from alerter.charts import alert_marker, render_text

    lines: list[str] = []
    for s in series:
        t = s.thresholds
        title = f"{s.account} · {display.scope_label(s.scope) or ACCOUNT_SCOPE}"
        ratios = [x.margin_ratio for x in s.samples]
        if ratios:
            finite = [r for r in ratios if math.isfinite(r)]
            summary = (f"{len(ratios)} samples, last {display.ratio(ratios[-1])}, "
                       f"max {display.ratio(max(ratios))}, min {display.ratio(min(finite) if finite else None)}")
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
    table = commands.table("alerts")
    for name in ("time (UTC)", "account · scope", "alert", "ratio", "deliveries"):
        table.add_column(name, justify="right" if name == "ratio" else "left")
    for e in entries:
        a = e.alert
        what = f"{a.kind} {a.level.label}" if a.kind in ("raised", "repeat", "resolved", "acknowledged") else str(a.kind)
        if a.reason:
            what += f" ({a.reason})"
        deliveries = ", ".join(f"{ch} {st}" for ch, st in e.deliveries.items()) or "—"
        table.add_row(f"{a.created_at:%Y-%m-%d %H:%M:%S}", f"{a.account} · {display.scope_label(a.scope, short=True) or ACCOUNT_SCOPE}", what,
                      display.ratio(a.margin_ratio), deliveries, style=display.LEVEL_STYLES.get(a.level, "") if a.kind in ("raised", "repeat") else "")
    return table


def plot_history(series: list[HistorySeries], path, title: str):
    """The PNG of `series`; raises charts.PlotUnavailable without matplotlib."""
    from alerter.charts import Series, plot_png

    return plot_png(
        [
            Series(label=f"{s.account} · {display.scope_label(s.scope, short=True) or ACCOUNT_SCOPE}" + (" (isolated)" if s.scope != ACCOUNT_SCOPE else ""), points=[(x.at, x.margin_ratio) for x in s.samples],
                   thresholds=s.thresholds, alerts=[e.alert for e in s.alerts])
            for s in series
        ],
        path, title=title,
    )


def read_history(settings, account_plans: dict, account: str | None, since) -> list[HistorySeries]:
    """The series since `since` from the database (the Telegram bot's /history reads them too).
    Raises LookupError (no such account), StoreError."""
    from alerter import views

    with views.open_store(settings) as store:
        if account and account not in views.known_accounts(store, account_plans):
            known = ", ".join(sorted(views.known_accounts(store, account_plans))) or "none"
            raise LookupError(f"no account named {account!r} (known: {known})")
        samples = store.samples(account=account, since=since)
        entries = store.history(account=account, since=since)
    return views.build_history(settings, account_plans, samples, entries)


def plot_title(series: list[HistorySeries], account: str | None, since) -> str:
    times = [x.at for s in series for x in s.samples] + [e.alert.created_at for s in series for e in s.alerts]
    span = f"{min(times):%Y-%m-%d %H:%M} – {max(times):%Y-%m-%d %H:%M} UTC" if times else f"nothing since {since:%Y-%m-%d %H:%M} UTC"
    return f"margin ratio · {account or 'all accounts'} · {span}"


def run(args) -> int:
    from alerter.charts import PlotUnavailable
    from alerter.config import load_settings
    from alerter.values import parse_duration
    from alerter.errors import StoreError
    from alerter.plan import plans
    from alerter.views import history_json

    settings = load_settings(args.config)
    account_plans = plans(settings)
    try:
        window = parse_duration(args.since)
    except ValueError as e:
        return commands.error(f"--since: {e}", commands.EXIT_CONFIG)
    now = commands.now()
    since = now - window
    try:
        series = read_history(settings, account_plans, args.account, since)
    except LookupError as e:
        return commands.error(str(e.args[0]), commands.EXIT_CONFIG)
    except StoreError as e:
        return commands.error(str(e), commands.EXIT_RUNTIME)
    if args.plot:
        try:
            path = plot_history(series, args.plot, plot_title(series, args.account, since))
        except PlotUnavailable:
            return commands.error(PLOT_MISSING, commands.EXIT_CONFIG)
        except OSError as e:
            return commands.error(f"{args.plot}: cannot write ({e.strerror})", commands.EXIT_RUNTIME)
        if not args.json:
            print(f"wrote {path}")
    if args.json:
        commands.print_json(history_json(series, since, now))
        return commands.EXIT_OK
    if args.plot:
        return commands.EXIT_OK
    if not series:
        print(f"nothing recorded since {since:%Y-%m-%d %H:%M} UTC" + (f" for {args.account}" if args.account else ""))
        return commands.EXIT_OK
    for line in render_history_text(series):
        print(line)
    if any(s.alerts for s in series):
        commands.console().print(render_alert_table(series))
    return commands.EXIT_OK
