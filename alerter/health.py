"""Pure margin math: an account snapshot → the health of each scope.

No I/O, no clock. The account scope is the cross-margin account; each isolated position is
a scope of its own, with its own collateral. Ratios are maintenance margin ÷ equity, so
1.0 is liquidation on every exchange (the sources normalise to this convention).

Price moves are modelled linearly: a position's maintenance margin grows with its notional
at its current bracket rate (exact while the notional stays in its bracket, the way Binance's
"maintenance amount" form keeps the formula continuous), its unrealised PnL moves with
size × Δprice.

Inverse (coin-margined) positions are not linear in the price: their figures are in the coin,
their notional is face ÷ mark and their PnL is sign × face × (1/entry − 1/mark). No uniform-move
model is applied to them: an inverse isolated scope's liquidation distance is the exchange's own
liquidation price (None without one), and an account holding an inverse cross position gets no
uniform-move figure (each position still shows its own). `reprice` uses the inverse formulas.
Each isolated scope is in its position's currency (`Position.currency`, else the account's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

from alerter.models import ACCOUNT_SCOPE, AccountSnapshot, Health, Pool, Position, PositionRisk

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


def move_to_ratio(equity: float, maintenance: float, positions: Sequence[Position], ratio: float) -> float | None:
    """The uniform relative move m of all marks at which maintenance(m) ÷ equity(m) = `ratio`:
    the one solver behind the distance to liquidation (ratio 1) and `whatif --levels`.

    equity(m) = E + m·Σ sᵢ·Nᵢ and maintenance(m) = M + m·Σ rᵢ·Nᵢ (linear positions, each inside
    its maintenance bracket), so m = (ρ·E − M) ÷ (Σ rᵢ·Nᵢ − ρ·Σ sᵢ·Nᵢ). Negative: prices must
    fall; positive: rise. 0 when the ratio is already at or above `ratio`; None when no move of
    the marks (within −100 %) gets there.
    """
    if not ratio > 0:
        raise ValueError(f"ratio must be positive, got {ratio!r}")
    if maintenance > 0 and (equity <= 0 or maintenance >= ratio * equity):
        return 0.0
    if not positions:
        return None
    exposure = sum(p.sign * p.notional for p in positions)
    growth = sum(position_rate(p) * p.notional for p in positions)
    slope = growth - ratio * exposure
    if slope == 0:
        return None
    move = (ratio * equity - maintenance) / slope
    if not move > -1.0 or maintenance + move * growth <= 0:
        return None
    return move


def liquidation_move(equity: float, maintenance: float, positions: Sequence[Position]) -> float | None:
    """The uniform relative move of all marks that takes the ratio to 100 % (see move_to_ratio)."""
    return move_to_ratio(equity, maintenance, positions, 1.0)


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
        currency=position.currency,
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
    for pool in snapshot.pools:
        for name in ("equity", "maintenance_margin"):
            value = getattr(pool, name)
            if value is None or not math.isfinite(value):
                raise ValueError(f"{snapshot.account}: {pool.scope} {name} is {value!r}, not a finite number")
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


def repay_needed(maintenance: float, equity: float, target: float, trigger: float, *, from_assets: bool = True) -> float:
    """A lender's account (maintenance = trigger × debt, equity = assets): the debt R to repay so
    that the ratio is `target` (never negative).
    - Out of the assets (spot margin): trigger × (debt − R) ÷ (assets − R) = target, so
      R = (maintenance − target × equity) ÷ (trigger − target); the trigger (a margin level of
      1.1, or 1 ÷ a liquidation LTV) is above 1 and the target below it, so the divisor is positive.
    - From outside (a loan repaid in its loan coin): trigger × (debt − R) ÷ assets = target, so
      R = (maintenance − target × equity) ÷ trigger."""
    return max(0.0, (maintenance - target * equity) / ((trigger - target) if from_assets else trigger))


def _cross_health(snapshot: AccountSnapshot, scope: str, equity: float, maintenance: float, currency: str,
                  cross: list[Position], target: float, pool: Pool | None = None) -> Health:
    """The health of a cross scope: the account, or one pool (a margin coin's cross positions)."""
    move = None
    if len(cross) == 1 and cross[0].liquidation_price:
        # one position: the exchange states where the account liquidates (its own rule, with
        # brackets, fees and other collateral), so that is the distance, not our extrapolation
        move = position_risk(cross[0]).liquidation_move
    elif not any(p.inverse for p in cross):  # the uniform-move model holds for linear positions only
        move = liquidation_move(equity, maintenance, cross)
    trigger = (pool.lender_trigger if pool is not None else None) or snapshot.lender_trigger
    from_assets = pool.repay_from_assets if pool is not None and pool.lender_trigger else snapshot.repay_from_assets
    return Health(
        account=snapshot.account,
        exchange=snapshot.exchange,
        scope=scope,
        margin_ratio=margin_ratio(maintenance, equity),
        equity=equity,
        maintenance_margin=maintenance,
        deposit_needed=deposit_needed(maintenance, equity, target),
        liquidation_move=move,
        top_positions=top_positions(cross),
        currency=currency,
        estimated=snapshot.estimated,
        approximate=snapshot.approximate,
        repay_needed=repay_needed(maintenance, equity, target, trigger, from_assets=from_assets) if trigger else None,
        own_figure=(pool.own_figure if pool is not None else None) or snapshot.own_figure,
    )


def evaluate(snapshot: AccountSnapshot, target: float) -> list[Health]:
    """Health of the cross account (or of each pool, where the snapshot has pools) first, then one
    per isolated position."""
    check_finite(snapshot)
    cross = [p for p in snapshot.positions if not p.isolated]
    figure = snapshot.own_figure
    common = dict(account=snapshot.account, exchange=snapshot.exchange, estimated=snapshot.estimated,
                  approximate=snapshot.approximate, own_figure=None if figure is None or figure.cross_only else figure)
    if snapshot.pools:
        healths = [_cross_health(snapshot, pool.scope, pool.equity, pool.maintenance_margin, pool.currency,
                                 [p for p in cross if p.symbol in pool.symbols], target, pool)
                   for pool in snapshot.pools]
    else:
        healths = [_cross_health(snapshot, ACCOUNT_SCOPE, snapshot.equity, snapshot.maintenance_margin, snapshot.currency, cross, target)]
    for p in snapshot.positions:
        if not p.isolated:
            continue
        collateral = p.collateral if p.collateral is not None else 0.0
        risk = position_risk(p)
        move = risk.liquidation_move
        if move is None and not p.inverse:
            move = liquidation_move(collateral, p.maintenance_margin, [p])
        healths.append(
            Health(
                scope=p.scope,
                margin_ratio=margin_ratio(p.maintenance_margin, collateral),
                equity=collateral,
                maintenance_margin=p.maintenance_margin,
                # in the position's currency (the coin for inverse contracts): a deposit adds to
                # the collateral and leaves the maintenance as it is, so this is exact there too
                deposit_needed=deposit_needed(p.maintenance_margin, collateral, target),
                liquidation_move=move,
                top_positions=(risk,),
                currency=p.currency or snapshot.currency,
                **common,
            )
        )
    return healths


def reprice_position(position: Position, mark: float) -> Position:
    """The same position at another mark price: PnL, notional, maintenance and collateral follow.

    Inverse: notional = face ÷ mark and PnL = sign × face × (1/entry − 1/mark), in the coin (OKX's
    inverse PnL formula), so the PnL moves by sign × face × (1/old mark − 1/mark) from the stated
    one; the maintenance still grows with that coin notional."""
    if position.inverse:
        notional = position.contracts / mark
        pnl = position.unrealized_pnl + position.sign * position.contracts * (1.0 / position.mark_price - 1.0 / mark)
    else:
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
    their maintenance change; isolated positions carry their own collateral. An inverse cross
    position moves the account figures only when they are in its coin (a coin amount cannot be
    added to a USD total without the exchange's own conversion): otherwise they move at the next
    full poll. The result is marked `estimated` until a full poll confirms it.
    """
    equity, maintenance = snapshot.equity, snapshot.maintenance_margin
    pools = {pool.scope: [pool.equity, pool.maintenance_margin] for pool in snapshot.pools}
    pool_of = {symbol: pool.scope for pool in snapshot.pools for symbol in pool.symbols}
    positions = []
    for p in snapshot.positions:
        mark = marks.get(p.symbol)
        if mark is None or not mark > 0 or mark == p.mark_price:
            positions.append(p)
            continue
        q = reprice_position(p, mark)
        if not p.isolated and p.symbol in pool_of:  # a pool's figures are in its own currency, as its positions'
            figures = pools[pool_of[p.symbol]]
            figures[0] += q.unrealized_pnl - p.unrealized_pnl
            figures[1] += q.maintenance_margin - p.maintenance_margin
        elif not p.isolated and (not p.inverse or p.currency == snapshot.currency):
            equity += q.unrealized_pnl - p.unrealized_pnl
            maintenance += q.maintenance_margin - p.maintenance_margin
        positions.append(q)
    repriced = tuple(replace(pool, equity=pools[pool.scope][0], maintenance_margin=max(0.0, pools[pool.scope][1])) for pool in snapshot.pools)
    return replace(snapshot, equity=equity, maintenance_margin=max(0.0, maintenance), positions=tuple(positions), pools=repriced, estimated=True)


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
