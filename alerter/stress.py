"""Stress tests on a snapshot: pure functions behind `alerter whatif`.

Everything takes an `AccountSnapshot`, so the last stored snapshot (`alerter.snapshots`) and a
fresh poll work alike. Price moves go through `health.move_prices` + `health.evaluate` only, and
the trip moves through `health.move_to_ratio`, the solver behind the distance to liquidation (one
implementation of the margin math).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from alerter.health import evaluate, move_prices, move_to_ratio
from alerter.models import ACCOUNT_SCOPE, AccountSnapshot, Health, Level, Position, Thresholds
from alerter.policy import level_for


def _scope_inputs(snapshot: AccountSnapshot) -> list[tuple[str, float, float, list[Position]]]:
    """(scope, equity, maintenance, positions) as `health.evaluate` sees each scope."""
    cross = [p for p in snapshot.positions if not p.isolated]
    if snapshot.pools:
        out = [(pool.scope, pool.equity, pool.maintenance_margin, [p for p in cross if p.symbol in pool.symbols]) for pool in snapshot.pools]
    else:
        out = [(ACCOUNT_SCOPE, snapshot.equity, snapshot.maintenance_margin, cross)]
    for p in snapshot.positions:
        if p.isolated:
            out.append((p.scope, p.collateral if p.collateral is not None else 0.0, p.maintenance_margin, [p]))
    return out


@dataclass(frozen=True)
class TripMoves:
    account: str
    scope: str
    margin_ratio: float
    level: Level
    moves: dict[str, float | None]  # "warning" | "call" | "critical" | "liquidation" → move
    refused: str | None = None  # why no move is given (then every move is None)
    figure: str = ""  # the exchange's own figure at `margin_ratio` ("margin level 1.24"), where it has one


INVERSE_REFUSED = "coin-margined (inverse) positions: prices and PnL are not linear, no uniform-move figure"


def trip_moves(snapshot: AccountSnapshot, thresholds: Thresholds) -> list[TripMoves]:
    """Per scope, the uniform price move at which each level (and liquidation) would trip."""
    targets = {"warning": thresholds.warning, "call": thresholds.call, "critical": thresholds.critical, "liquidation": 1.0}
    healths = {h.scope: h for h in evaluate(snapshot, thresholds.target)}
    out = []
    for scope, equity, maintenance, positions in _scope_inputs(snapshot):
        ratio = healths[scope].margin_ratio
        figure = healths[scope].own_figure  # a pool may have a figure of its own (a lender's pair in its tier)
        common = dict(account=snapshot.account, scope=scope, margin_ratio=ratio, level=level_for(ratio, thresholds),
                      figure=figure.text(ratio) if figure else "")
        if any(p.inverse for p in positions):  # refused, never guessed
            out.append(TripMoves(moves=dict.fromkeys(targets), refused=INVERSE_REFUSED, **common))
            continue
        out.append(TripMoves(moves={name: move_to_ratio(equity, maintenance, positions, value) for name, value in targets.items()}, **common))
    return out


@dataclass(frozen=True)
class StressResult:
    account: str
    snapshot_at: datetime | None
    prices: list[tuple[str, float, float]]  # (symbol, mark before, mark after) of moved positions
    scopes: list[tuple[Health, Level, Health | None, Level | None]]  # before, its level, after (None: gone), level


def stress(snapshot: AccountSnapshot, moves: dict[str, float], default: float | None, thresholds: Thresholds) -> StressResult:
    """The snapshot's health before and after moving prices (`health.move_prices`), per scope."""
    before = evaluate(snapshot, thresholds.target)
    moved = move_prices(snapshot, moves, default)
    after = {h.scope: h for h in evaluate(moved, thresholds.target)}
    prices = list(dict.fromkeys(
        (p.symbol, p.mark_price, q.mark_price) for p, q in zip(snapshot.positions, moved.positions, strict=True) if q.mark_price != p.mark_price
    ))
    scopes = []
    for h in before:
        a = after.get(h.scope)
        scopes.append((h, level_for(h.margin_ratio, thresholds), a, level_for(a.margin_ratio, thresholds) if a else None))
    return StressResult(account=snapshot.account, snapshot_at=snapshot.fetched_at, prices=prices, scopes=scopes)


_FRACTION = re.compile(r"^([+\-]?\d*\.?\d+)(%?)$")


def parse_fraction(text: str) -> float:
    """"-20%" → −0.2; "-0.2" → −0.2. A bare number beyond ±1 must carry "%"."""
    m = _FRACTION.match(text.strip().replace("−", "-"))
    if not m:
        raise ValueError(f"expected a move like -20% or +5%, got {text!r}")
    value = float(m.group(1))
    if m.group(2):
        value /= 100
    elif abs(value) >= 1:
        raise ValueError(f"{text!r}: write a percentage ({text}%) or a fraction (-0.2)")
    if value <= -1:
        raise ValueError(f"{text!r}: a price cannot fall by 100 % or more")
    return value


def parse_move(text: str) -> tuple[str, float]:
    """"BTC=-20%" → ("BTC", −0.2); the key is a base asset or a full ccxt symbol."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected SYMBOL=MOVE like BTC=-20%, got {text!r}")
    return key.strip().upper() if "/" not in key else key.strip(), parse_fraction(value)
