"""The bot's commands: parse a chat message, call what the CLI command of the same name calls,
and render the answer for a phone (a compact monospace table, split under Telegram's limit).

Each command function takes the daemon's current settings and `now` and returns a `Reply`; they
read the database like the CLI (a second connection: SQLite's WAL lets readers in beside the
daemon), so the bot runs them in a worker thread, never on the event loop. Nothing here can
change the configuration, and no answer holds a secret (every text is masked on the way out).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alerter import display
from alerter.errors import ConfigError, StoreError
from alerter.models import ACCOUNT_SCOPE

# (command, what it does, its arguments): /help and Telegram's command menu (setMyCommands)
COMMANDS = (
    ("status", "every account, worst first", ""),
    ("ack", "hold back a scope's repeats", "ACCOUNT [SCOPE] [DURATION] [NOTE]"),
    ("unack", "let a scope's repeats resume", "ACCOUNT [SCOPE]"),
    ("history", "the ratio chart as a photo", "ACCOUNT [24h]"),
    ("whatif", "stress test: prices move", "ACCOUNT -10%"),
    ("digest", "today's digest, now", ""),
    ("help", "this list", ""),
)
USAGE = {name: f"/{name} {args}".strip() for name, _, args in COMMANDS}
EXAMPLES = {"ack": "/ack main 2h adding margin", "unack": "/unack main", "history": "/history main 6h", "whatif": "/whatif main -10%"}
MAX_NOTE = 200  # as `alerter ack --note`
HISTORY_WINDOW = timedelta(hours=24)
NAME_WIDTH = 18  # the scope column of the tables, in characters


@dataclass
class Reply:
    text: str = ""
    monospace: bool = False  # a <pre> block: the tables
    photo: bytes | None = None  # a PNG, `text` its caption
    wake: bool = False  # an announcement is in the outbox: wake the daemon's channel workers
    parts: list[str] = field(default_factory=list)


def usage(name: str) -> str:
    example = EXAMPLES.get(name)
    return f"usage: {USAGE[name]}" + (f" (e.g. {example})" if example else "")


def parse(text: str) -> tuple[str, list[str]] | None:
    """("ack", ["main", "2h"]) from "/ack@alerter_bot main 2h"; None when it is not a command."""
    words = text.strip().split()
    if not words or not words[0].startswith("/") or len(words[0]) < 2:
        return None
    return words[0][1:].split("@", 1)[0].lower(), words[1:]


def help_text() -> str:
    lines = ["alerter answers these commands (from this chat only):"]
    lines += [f"{USAGE[name]} · {what}" for name, what, _ in COMMANDS]
    lines.append("Reply 'ack' to a CALL or CRITICAL alert, or tap its button, to acknowledge it for 1h.")
    return "\n".join(lines)


def dispatch(settings, name: str, args: list[str], now: datetime) -> Reply:
    """The answer to one command (run in a worker thread: it reads the database)."""
    handler = HANDLERS.get(name)
    if handler is None:
        return Reply(f"unknown command /{name}: try /help")
    try:
        return handler(settings, args, now)
    except (ConfigError, LookupError) as e:
        return Reply(_one_line(e))
    except StoreError as e:
        return Reply(f"cannot read the database: {_one_line(e)}")
    except ValueError as e:
        return Reply(_one_line(e))


def _one_line(e: BaseException) -> str:
    text = "; ".join(e.problems) if isinstance(e, ConfigError) and getattr(e, "problems", None) else str(e.args[0] if e.args else e)
    return " ".join(text.split())


# ---------------------------------------------------------------- /status

def _row(name: str, ratio: str, level: str, liq: str, deposit: str) -> str:
    name = name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"
    return f"{name:<{NAME_WIDTH}} {ratio:>6} {level:<8} {liq:>7} {deposit}".rstrip()


def status(settings, args: list[str], now: datetime) -> Reply:
    """`alerter status`'s rows (views.read_status), every scope, worst first."""
    from alerter import acks, views
    from alerter.plan import plans

    if args:
        return Reply("usage: /status (no arguments)")
    with views.open_store(settings) as store:
        accounts = views.read_status(store, settings, plans(settings), now)
    if not accounts:
        return Reply("no accounts configured and nothing recorded")
    rows: list[tuple[tuple, str]] = []
    notes: list[str] = []
    for a in accounts:
        if a.blind or a.stale or not a.scopes:
            why = "BLIND" if a.blind else ("stale" if a.scopes else "no data yet")
            age = f" (last poll {display.age(a.age)} ago)" if a.age is not None else ""
            rows.append(((9, 0.0), _row(a.account, "—", why, "", "") + age))
        for s in a.scopes:
            name = display.where(a.account, s.scope) if s.scope != ACCOUNT_SCOPE else a.account
            level = (s.level.name if s.level is not None else "—") + ("*" if s.ack is not None else "")
            deposit = display.money(s.deposit_needed, s.currency or "").strip() if s.deposit_needed > 0 else "—"
            ratio = ("≈" if a.approximate else "") + display.ratio(s.margin_ratio).replace(" ", "")
            sort = (int(s.level) if s.level is not None else 0, s.margin_ratio if s.margin_ratio == s.margin_ratio else 0.0)
            rows.append((sort, _row(name, ratio, level, display.move(s.liquidation_move).replace(" ", ""), deposit)))
            if s.ack is not None:
                notes.append(f"* {name}: {acks.ack_text(s.ack, now)}")
    rows.sort(key=lambda r: r[0], reverse=True)
    header = _row("account · scope", "ratio", "level", "to liq.", "deposit")
    text = "\n".join([f"margin health · {now:%H:%M} UTC", header, *(r for _, r in rows), *notes])
    return Reply(text, monospace=True)


# ---------------------------------------------------------------- /ack, /unack

def _duration_word(word: str) -> timedelta | None:
    from alerter.values import parse_positive_duration

    if not word[:1].isdigit():
        return None
    try:
        return parse_positive_duration(word)
    except ValueError:
        return None


def parse_ack(args: list[str]) -> tuple[str, str | None, timedelta | None, str]:
    """ACCOUNT [SCOPE…] [DURATION] [NOTE…]: the scope is the words before the duration (or all of
    them without one), the note the words after it."""
    if not args:
        raise ValueError(usage("ack"))
    account, rest = args[0], args[1:]
    at = next((i for i, w in enumerate(rest) if _duration_word(w) is not None), None)
    if at is None:
        return account, " ".join(rest) or None, None, ""
    note = " ".join(rest[at + 1:])
    if len(note) > MAX_NOTE:
        raise ValueError(f"note: at most {MAX_NOTE} characters, got {len(note)}")
    return account, " ".join(rest[:at]) or None, _duration_word(rest[at]), note


def acked_text(done, now: datetime) -> str:
    """What `alerter ack` prints, in one message."""
    from alerter import acks

    said = acks.acknowledged_text(done.ack, now)
    told = f" Announced to {', '.join(done.channels)}." if done.channels else ""
    return f"{said[0].upper()}{said[1:]}.{told}"


def ack(settings, args: list[str], now: datetime, *, duration: timedelta | None = None) -> Reply:
    from alerter import acks

    account, scope, parsed, note = parse_ack(args)
    done = acks.acknowledge_scope(settings, account, scope, duration=parsed or duration, note=note, now=now, in_daemon=True)
    return Reply(acked_text(done, now), wake=True)


def unack(settings, args: list[str], now: datetime) -> Reply:
    from alerter import acks

    if not 1 <= len(args):
        return Reply(usage("unack"))
    done = acks.remove(settings, args[0], " ".join(args[1:]) or None, now, in_daemon=True)
    told = f" Announced to {', '.join(done.channels)}." if done.channels else ""
    return Reply(f"{display.where(done.ack.account, done.ack.scope)}: acknowledgement removed; {done.ack.level.label} repeats resume.{told}",
                 wake=True)


def ack_by_key(settings, key: str, now: datetime, duration: timedelta) -> Reply:
    """The "Acknowledge 1h" button: the scope whose `sender.scope_key` is `key`."""
    from alerter import acks, views
    from alerter.plan import plans
    from alerter.telegram.sender import scope_key

    with views.open_store(settings) as store:
        found = [(name, scope) for name in plans(settings) for scope in store.load_states(name) if scope_key(name, scope) == key]
    if not found:
        return Reply("this alert's scope is no longer watched")
    account, scope = found[0]
    done = acks.acknowledge_scope(settings, account, scope, duration=duration, note="", now=now, in_daemon=True)
    return Reply(acked_text(done, now), wake=True)


# ---------------------------------------------------------------- /history

def history(settings, args: list[str], now: datetime) -> Reply:
    """`alerter history ACCOUNT --since 24h --plot`'s chart, as a photo."""
    from alerter.charts import PlotUnavailable
    from alerter.commands.history import plot_history, plot_title, read_history
    from alerter.values import parse_positive_duration
    from alerter.plan import plans

    if not 1 <= len(args) <= 2:
        return Reply(usage("history"))
    try:
        window = parse_positive_duration(args[1]) if len(args) == 2 else HISTORY_WINDOW
    except ValueError as e:
        return Reply(f"{args[1]}: {e} · {usage('history')}")
    since = now - window
    series = read_history(settings, plans(settings), args[0], since)
    if not any(s.samples for s in series):
        return Reply(f"nothing recorded for {args[0]} since {since:%Y-%m-%d %H:%M} UTC")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="alerter-chart-") as folder:
        try:
            path = plot_history(series, Path(folder) / "chart.png", plot_title(series, args[0], since))
        except PlotUnavailable as e:
            return Reply(f"no chart: {e}")
        png = path.read_bytes()
    last = [s.samples[-1] for s in series if s.samples]
    caption = f"{args[0]} · last {display.duration(window)} · now " + ", ".join(
        f"{display.scope_label(x.scope, short=True) or ACCOUNT_SCOPE} {display.ratio(x.margin_ratio)}" for x in last)
    return Reply(caption, photo=png)


# ---------------------------------------------------------------- /whatif

def whatif(settings, args: list[str], now: datetime) -> Reply:
    """`alerter whatif ACCOUNT --all -10%` (or `BTC=-10%` for one asset) on the last snapshot."""
    from alerter import views
    from alerter.plan import plans
    from alerter.stress import parse_fraction, parse_move, stress

    if len(args) < 2:
        return Reply(usage("whatif"))
    try:
        moves = dict(parse_move(a) for a in args[1:] if "=" in a)
        plain = [a for a in args[1:] if "=" not in a]
        default = parse_fraction(plain[0]) if plain else None
    except ValueError as e:
        return Reply(f"{e} · {usage('whatif')}")
    if len(plain) > 1:
        return Reply(usage("whatif"))
    account_plans = plans(settings)
    snapshots = views.load_snapshots(settings, account_plans, args[0])
    if not snapshots:
        return Reply(f"no position snapshot of {args[0]} recorded yet (the daemon saves one on every good poll)")
    lines = []
    for name, snapshot in snapshots.items():
        r = stress(snapshot, moves, default, views._thresholds(settings, account_plans, name))
        moved = ", ".join(f"{sym.split(':')[0]} {display.price(b)}→{display.price(a)}" for sym, b, a in r.prices) or "no position moved"
        age = f" (snapshot {display.age(now - r.snapshot_at)} old)" if r.snapshot_at else ""
        lines += [f"what if · {name}{age}", moved, f"{_row('scope', 'now', '', '', '')} after"]
        for h, _, a, la in r.scopes:
            label = display.scope_label(h.scope, short=True) or ACCOUNT_SCOPE
            if a is None:
                lines.append(_row(label, display.ratio(h.margin_ratio).replace(" ", ""), "gone", "", ""))
                continue
            level = "LIQUIDATED" if a.margin_ratio >= 1 else la.name
            deposit = display.money(a.deposit_needed, a.currency).strip() if a.deposit_needed > 0 else "—"
            liq = "" if a.margin_ratio >= 1 else display.move(a.liquidation_move).replace(" ", "")
            after = f"{display.ratio(a.margin_ratio).replace(' ', '')} {level}"
            lines.append(f"{_row(label, display.ratio(h.margin_ratio).replace(' ', ''), '', '', '')} {after}")
            lines.append(f"{'':<{NAME_WIDTH}}   to liq. {liq or '—'} · deposit {deposit}")
    return Reply("\n".join(lines), monospace=True)


# ---------------------------------------------------------------- /help

def help_(settings, args: list[str], now: datetime) -> Reply:
    return Reply(help_text())


HANDLERS = {"status": status, "ack": ack, "unack": unack, "history": history, "whatif": whatif, "help": help_, "start": help_}
ASYNC = ("digest",)  # answered on the event loop (alerter.telegram.bot): it reads through the daemon's store thread
