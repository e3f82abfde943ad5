"""Pure margin math: an account snapshot → the health of each scope.

No I/O, no clock. The account scope is the cross-margin account; each isolated position is
a scope of its own, with its own collateral. Ratios are maintenance margin ÷ equity, so
1.0 is liquidation on every exchange (the sources normalise to this convention).

Price moves are modelled linearly: a position's maintenance margin grows with its notional
at its current bracket rate (exact while the notional stays in its bracket, the way Binance's
"maintenance amount" form keeps the formula continuous), its unrealised PnL moves with
size × Δprice.
"""

from __future__ import annotations

import math
from dataclasses import replace

from alerter.models import ACCOUNT_SCOPE, AccountSnapshot, Health, Position, PositionRisk

TOP_POSITIONS = 3
POSITION_FIGURES = ("notional", "maintenance_margin", "mark_price", "unrealized_pnl")


def margin_ratio(maintenance: float, equity: float) -> float:
    """Maintenance ÷ equity; ∞ when equity ≤ 0 and something must be maintained; 0 with no exposure."""
    if maintenance <= 0:
        return 0.0
    if equity <= 0:
        return math.inf
    return maintenance / equity


def deposit_needed(maintenance: float, equity: float, target: float) -> float:
    """The deposit that brings maintenance ÷ (equity + deposit) down to `target` (never negative)."""
    return max(0.0, maintenance / target - equity)


def position_rate(position: Position) -> float:
    """The rate at which the position's maintenance margin grows per unit of notional."""
    if position.maintenance_rate is not None:
        return position.maintenance_rate
    return position.maintenance_margin / position.notional if position.notional > 0 else 0.0


def liquidation_move(equity: float, maintenance: float, positions: tuple[Position, ...] | list[Position]) -> float | None:
    """The uniform relative move m of all marks at which maintenance(m) = equity(m).

    equity(m) = E + m·Σ sᵢ·Nᵢ and maintenance(m) = M + m·Σ rᵢ·Nᵢ, so the one crossing is
    m = (E − M) ÷ (Σ rᵢ·Nᵢ − Σ sᵢ·Nᵢ). Negative: prices must fall; positive: rise. 0 when
    already at or past liquidation; None when no move of the marks (within −100 %) liquidates.
    """
    if not positions:
        return None if equity > maintenance or maintenance <= 0 else 0.0
    if equity <= maintenance:
        return 0.0
    exposure = sum(p.sign * p.notional for p in positions)
    growth = sum(position_rate(p) * p.notional for p in positions)
    slope = growth - exposure
    if slope == 0:
        return None
    move = (equity - maintenance) / slope
    return move if move > -1.0 else None


def position_risk(position: Position) -> PositionRisk:
    lp = position.liquidation_price
    move = None
    if lp is not None and lp > 0 and position.mark_price > 0:
        move = lp / position.mark_price - 1.0
    return PositionRisk(
        symbol=position.symbol,
        side=position.side,
        notional=position.notional,
        maintenance_margin=position.maintenance_margin,
        mark_price=position.mark_price,
        liquidation_price=lp if lp and lp > 0 else None,
        liquidation_move=move,
    )


def top_positions(positions: list[Position] | tuple[Position, ...], count: int = TOP_POSITIONS) -> tuple[PositionRisk, ...]:
    ranked = sorted(positions, key=lambda p: (p.maintenance_margin, p.notional), reverse=True)
    return tuple(position_risk(p) for p in ranked[:count])


def check_finite(snapshot: AccountSnapshot) -> None:
    """NaN or ∞ in the inputs would make a false "ok": refuse them, naming the field.

    This runs for every position on every poll, so each position is first checked as one sum
    (NaN and ∞ survive addition; None fails it); only a failed sum is searched for the field."""
    for name in ("equity", "maintenance_margin"):
        value = getattr(snapshot, name)
        if value is None or not math.isfinite(value):
            raise ValueError(f"{snapshot.account}: {name} is {value!r}, not a finite number")
    for p in snapshot.positions:
        try:
            total = p.notional + p.maintenance_margin + p.mark_price + p.unrealized_pnl + (p.collateral if p.isolated else 0.0)
            if math.isfinite(total):
                continue
        except TypeError:
            pass
        for name in POSITION_FIGURES + (("collateral",) if p.isolated else ()):
            value = getattr(p, name)
            if value is None or not math.isfinite(value):
                raise ValueError(f"{snapshot.account}: {p.symbol}.{name} is {value!r}, not a finite number")
        raise ValueError(f"{snapshot.account}: {p.symbol}: figures too large to add up")


def evaluate(snapshot: AccountSnapshot, target: float) -> list[Health]:
    """Health of the cross account first, then one per isolated position."""
    check_finite(snapshot)
    cross = [p for p in snapshot.positions if not p.isolated]
    common = dict(account=snapshot.account, exchange=snapshot.exchange, currency=snapshot.currency, estimated=snapshot.estimated,
                  approximate=snapshot.approximate)
    healths = [
        Health(
            scope=ACCOUNT_SCOPE,
            margin_ratio=margin_ratio(snapshot.maintenance_margin, snapshot.equity),
            equity=snapshot.equity,
            maintenance_margin=snapshot.maintenance_margin,
            deposit_needed=deposit_needed(snapshot.maintenance_margin, snapshot.equity, target),
            liquidation_move=liquidation_move(snapshot.equity, snapshot.maintenance_margin, cross),
            top_positions=top_positions(cross),
            **common,
        )
    ]
    for p in snapshot.positions:
        if not p.isolated:
            continue
        collateral = p.collateral if p.collateral is not None else 0.0
        risk = position_risk(p)
        move = risk.liquidation_move
        if move is None:
            move = liquidation_move(collateral, p.maintenance_margin, [p])
        healths.append(
            Health(
                scope=p.scope,
                margin_ratio=margin_ratio(p.maintenance_margin, collateral),
                equity=collateral,
                maintenance_margin=p.maintenance_margin,
                deposit_needed=deposit_needed(p.maintenance_margin, collateral, target),
                liquidation_move=move,
                top_positions=(risk,),
                **common,
            )
        )
    return healths


def reprice_position(position: Position, mark: float) -> Position:
    """The same position at another mark price: PnL, notional, maintenance and collateral follow."""
    notional = position.contracts * mark
    pnl = position.sign * position.contracts * (mark - position.entry_price)
    maintenance = max(0.0, position.maintenance_margin + position_rate(position) * (notional - position.notional))
    collateral = position.collateral
    if collateral is not None:
        collateral += pnl - position.unrealized_pnl
    return replace(
        position,
        mark_price=mark,
        notional=notional,
        unrealized_pnl=pnl,
        maintenance_margin=maintenance,
        collateral=collateral,
    )


def reprice(snapshot: AccountSnapshot, marks: dict[str, float]) -> AccountSnapshot:
    """Re-price the last known positions at new marks (symbols not in `marks` keep theirs).

    The cross equity moves by the cross positions' PnL change and the account maintenance by
    their maintenance change; isolated positions carry their own collateral. The result is
    marked `estimated` until a full poll confirms it.
    """
    equity, maintenance = snapshot.equity, snapshot.maintenance_margin
    positions = []
    for p in snapshot.positions:
        mark = marks.get(p.symbol)
        if mark is None or not mark > 0 or mark == p.mark_price:
            positions.append(p)
            continue
        q = reprice_position(p, mark)
        if not p.isolated:
            equity += q.unrealized_pnl - p.unrealized_pnl
            maintenance += q.maintenance_margin - p.maintenance_margin
        positions.append(q)
    return replace(snapshot, equity=equity, maintenance_margin=max(0.0, maintenance), positions=tuple(positions), estimated=True)


def move_prices(snapshot: AccountSnapshot, moves: dict[str, float], default: float | None = None) -> AccountSnapshot:
    """Stress test: move each position's mark by a relative amount. `moves` is keyed by base
    asset (``BTC``) or full symbol; `default` applies to every other position."""
    marks = {}
    for p in snapshot.positions:
        base = p.symbol.split("/")[0]
        move = moves.get(p.symbol, moves.get(base, default))
        if move is not None:
            marks[p.symbol] = p.mark_price * (1.0 + move)
    return reprice(snapshot, marks)
