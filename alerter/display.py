"""How a number reads, everywhere: alerts, `check`, `status`, `history`, `whatif`, `validate`.

One format per kind of number, so a trader sees the same figure in a message and in a table:
a ratio "42.4 %" (a whole one without its ".0": "42 %"), a signed move "−23.4 %", money with its
currency ("1,234.50 USDT"; a coin to the satoshi: "0.00036204 BTC"), a price, a time of day, an
age ("2h05m") and a configured duration ("5m"). Pure and light: no I/O, nothing heavy imported.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from alerter.models import ACCOUNT_SCOPE, Level

MINUS = "\u2212"
LEVEL_STYLES = {Level.OK: "green", Level.WARNING: "yellow", Level.CALL: "bold red", Level.CRITICAL: "bold white on red"}  # rich styles


def ratio(x: float | None) -> str:
    """A margin ratio or a threshold (a fraction), to a tenth of a percent, a whole one without its
    ".0": "42 %", "42.4 %", "4.5 %", "∞"; "—" when unknown. A threshold set at 42.5 % reads as set."""
    if x is None or math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞"
    text = f"{x * 100:.1f}"
    return f"{text.removesuffix('.0')} %".replace("-", MINUS)


def move(x: float | None) -> str:
    """A signed relative price move: "−23.4 %", "+8.0 %"; "—" when none."""
    if x is None:
        return "—"
    sign = MINUS if x < 0 else "+"
    return f"{sign}{abs(x) * 100:.1f} %"


def cents(currency: str) -> bool:
    """Amounts in dollars, euros and their stablecoins show cents; a coin (BTC, ETH) does not."""
    return "USD" in currency.upper() or currency.upper() in ("EUR", "DAI")


def money(amount: float, currency: str) -> str:
    """"1,234.50 USDT"; a coin-margined amount to the satoshi, trailing zeros dropped: "0.00036204 BTC"."""
    sign = MINUS if amount < 0 else ""
    if math.isinf(amount):
        return f"{sign}∞ {currency}"
    if cents(currency):
        return f"{sign}{abs(amount):,.2f} {currency}"
    text = f"{abs(amount):,.8f}".rstrip("0")
    return f"{sign}{text + '0' * (2 - len(text.partition('.')[2]))} {currency}"


def price(x: float) -> str:
    return f"{x:,.2f}" if abs(x) >= 1 else f"{x:.6g}"


def time_of_day(at: datetime | None, now: datetime | None = None) -> str:
    """"14:02 UTC"; with the date when `at` is not on `now`'s day; "?" when unknown."""
    if at is None:
        return "?"
    if now is not None and at.date() != now.date():
        return at.strftime("%Y-%m-%d %H:%M UTC")
    return at.strftime("%H:%M UTC")


def age(td: timedelta) -> str:
    """How long ago: "45s", "14m", "2h05m", "3d04h"."""
    seconds = max(0, int(td.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def duration(td: timedelta | None) -> str:
    """A span of time as a configuration would write it: "5m", "2h", "1d", "30s", "1.5s", "90s"
    (a whole number of the largest unit that divides it); "never" for None."""
    if td is None:
        return "never"
    seconds = td.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def scope_label(scope: str, *, short: bool = False) -> str | None:
    """None for the cross account; "BTC/USDT:USDT long (isolated)" for an isolated position
    (short: "BTC/USDT long"); "BTC cross" for a margin coin's cross pool; other pools as named."""
    if scope == ACCOUNT_SCOPE:
        return None
    if scope.startswith("cross:"):
        return f"{scope.removeprefix('cross:')} cross"
    if not scope.startswith("isolated:"):
        return scope
    symbol, _, side = scope.removeprefix("isolated:").rpartition(":")
    if short:
        return f"{symbol.split(':')[0]} {side}"
    return f"{symbol} {side} (isolated)"


def own_levels(figure, thresholds) -> str:
    """The levels in the exchange's own figure (an OwnFigure):
    "warning 50 % = margin level 2.20 · call 70 % = margin level 1.57 · … · liquidation 100 % = margin level 1.10"."""
    levels = (("warning", thresholds.warning), ("call", thresholds.call), ("critical", thresholds.critical), ("liquidation", 1.0))
    return " · ".join(f"{name} {ratio(value)} = {figure.text(value)}" for name, value in levels)


def shown(scope: str) -> str:
    """A scope as `status` shows it ("account" for the account scope)."""
    return scope_label(scope, short=True) or ACCOUNT_SCOPE


def where(account: str, scope: str) -> str:
    """An account's scope as the commands name it: "main · BTC/USDT isolated"."""
    return f"{account} · {shown(scope)}"
