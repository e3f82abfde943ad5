"""Pure simulated-exchange state and Binance USDⓈ-M (one-way mode) margin formulas. No I/O.

Formulas, as Binance documents them:
  https://www.binance.com/en/support/faq/how-to-calculate-liquidation-price-of-usd%E2%93%A2-m-futures-contracts-b3c689c1f50a44cabb3a84e663b81d93
  https://www.binance.com/en/support/faq/leverage-and-margin-of-usd%E2%93%A2-m-futures-360033162192

- notional = size × mark (size signed: short < 0); unrealised PnL = size × (mark − entry)
- maintenance margin = |notional| × rate − cum, rate/cum from the bracket of |notional|
- initial margin = |notional| ÷ leverage
- an account's `wallet_balance` here is its CROSS wallet (USDT not locked in isolated
  positions); Binance's totalWalletBalance = cross wallet + Σ isolated wallets
- margin balance = total wallet + Σ unrealised PnL
- cross margin ratio = Σ cross maintenance ÷ (cross wallet + Σ cross unrealised PnL)
- isolated: isolatedMargin = isolatedWallet + unrealised PnL; ratio = maintenance ÷ isolatedMargin
- liquidation price (cum-amount form), s = +1 long / −1 short, q = size:
    LP = (WB − TMM1 + UPNL1 + cum − s·|q|·entry) ÷ (|q|·rate − s·|q|)
  cross: WB = cross wallet, TMM1/UPNL1 = maintenance / PnL of the OTHER cross positions (at
  their current marks); isolated: WB = isolated wallet, TMM1 = UPNL1 = 0. A result ≤ 0 is 0.
  The bracket is chosen to be consistent with the result: the first bracket whose
  [floor, cap) holds |q| × LP; so re-pricing the mark to LP puts the ratio at exactly 100 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from alerter.simulator.loans import Loan
from alerter.simulator.symbols import SYMBOLS, Bracket, SymbolSpec, bracket_for

CROSS = "cross"
ISOLATED = "isolated"


@dataclass(frozen=True)
class Position:
    symbol: str
    size: float  # signed contracts (base units); short < 0
    entry_price: float
    margin_type: str = CROSS  # "cross" | "isolated"
    leverage: int = 20
    isolated_wallet: float = 0.0  # only for isolated positions

    def __post_init__(self) -> None:
        if self.margin_type not in (CROSS, ISOLATED):
            raise ValueError(f"margin_type must be 'cross' or 'isolated', not {self.margin_type!r}")
        if self.margin_type == CROSS and self.isolated_wallet:
            raise ValueError("isolated_wallet is only for isolated positions")
        if self.leverage < 1:
            raise ValueError("leverage must be >= 1")


@dataclass
class Account:
    api_key: str
    name: str
    wallet_balance: float = 0.0  # cross wallet balance, USDT
    positions: list[Position] = field(default_factory=list)
    loans: tuple[Loan, ...] = ()  # Binance flexible loans (alerter.simulator.loans)


@dataclass(frozen=True)
class PositionRisk:
    position: Position
    mark_price: float
    notional: float  # signed
    unrealized_pnl: float
    bracket: Bracket
    maint_margin: float
    initial_margin: float
    isolated_margin: float  # isolated wallet + PnL; 0 for cross
    liquidation_price: float  # 0 when none

    @property
    def margin_ratio(self) -> float | None:
        """Isolated positions only: maintenance ÷ isolatedMargin (1.0 = liquidation)."""
        if self.position.margin_type != ISOLATED:
            return None
        return _ratio(self.maint_margin, self.isolated_margin)


@dataclass(frozen=True)
class AccountRisk:
    positions: tuple[PositionRisk, ...]
    cross_wallet_balance: float
    total_wallet_balance: float
    cross_unrealized_pnl: float
    total_unrealized_pnl: float
    cross_maint_margin: float
    total_maint_margin: float
    total_initial_margin: float
    cross_initial_margin: float

    @property
    def margin_balance(self) -> float:
        return self.total_wallet_balance + self.total_unrealized_pnl

    @property
    def cross_margin_balance(self) -> float:
        return self.cross_wallet_balance + self.cross_unrealized_pnl

    @property
    def cross_margin_ratio(self) -> float:
        return _ratio(self.cross_maint_margin, self.cross_margin_balance)

    @property
    def available_balance(self) -> float:
        return max(0.0, self.cross_margin_balance - self.cross_initial_margin)

    @property
    def max_withdraw_amount(self) -> float:
        return max(0.0, min(self.available_balance, self.cross_wallet_balance))


def _ratio(maint: float, balance: float) -> float:
    if maint <= 0:
        return 0.0
    return maint / balance if balance > 0 else math.inf


def maint_margin(spec: SymbolSpec, notional: float) -> tuple[Bracket, float]:
    bracket = bracket_for(spec.brackets, notional)
    return bracket, abs(notional) * bracket.maint_rate - bracket.cum


def liquidation_price(
    position: Position, spec: SymbolSpec, wallet: float, other_maint: float = 0.0, other_pnl: float = 0.0
) -> float:
    """Binance's cum-amount liquidation price; 0.0 when there is none (result ≤ 0)."""
    qty = abs(position.size)
    if qty == 0:
        return 0.0
    s = 1.0 if position.size > 0 else -1.0

    def solve(bracket: Bracket) -> float:
        numerator = wallet - other_maint + other_pnl + bracket.cum - s * qty * position.entry_price
        return numerator / (qty * bracket.maint_rate - s * qty)

    for bracket in spec.brackets:
        price = solve(bracket)
        if price <= 0:
            if bracket is spec.brackets[0]:
                return 0.0
            continue
        if bracket.notional_floor <= qty * price < bracket.notional_cap:
            return price
    # no self-consistent bracket (cannot happen with continuous brackets); use the current one
    return max(0.0, solve(bracket_for(spec.brackets, qty * position.entry_price)))


def assess_position(
    position: Position, mark: float, wallet: float, other_maint: float = 0.0, other_pnl: float = 0.0,
    symbols: dict[str, SymbolSpec] = SYMBOLS,
) -> PositionRisk:
    """Risk numbers of one position. `wallet` is the cross wallet for cross positions (ignored
    for isolated ones, which use their own isolated wallet)."""
    spec = symbols[position.symbol]
    notional = position.size * mark
    pnl = position.size * (mark - position.entry_price)
    bracket, maint = maint_margin(spec, notional)
    isolated = position.margin_type == ISOLATED
    if isolated:
        wallet, other_maint, other_pnl = position.isolated_wallet, 0.0, 0.0
    return PositionRisk(
        position=position,
        mark_price=mark,
        notional=notional,
        unrealized_pnl=pnl,
        bracket=bracket,
        maint_margin=maint,
        initial_margin=abs(notional) / position.leverage,
        isolated_margin=position.isolated_wallet + pnl if isolated else 0.0,
        liquidation_price=liquidation_price(position, spec, wallet, other_maint, other_pnl),
    )


def assess_account(
    account: Account, marks: dict[str, float], symbols: dict[str, SymbolSpec] = SYMBOLS
) -> AccountRisk:
    """Account totals; each cross position's liquidation price holds the others at their marks."""
    first = [assess_position(p, marks[p.symbol], account.wallet_balance, symbols=symbols) for p in account.positions]
    cross = [r for r in first if r.position.margin_type == CROSS]
    cross_maint = sum(r.maint_margin for r in cross)
    cross_pnl = sum(r.unrealized_pnl for r in cross)
    final = tuple(
        assess_position(
            r.position, r.mark_price, account.wallet_balance,
            other_maint=cross_maint - r.maint_margin, other_pnl=cross_pnl - r.unrealized_pnl, symbols=symbols,
        )
        if r.position.margin_type == CROSS else r
        for r in first
    )
    isolated_wallets = sum(p.isolated_wallet for p in account.positions if p.margin_type == ISOLATED)
    return AccountRisk(
        positions=final,
        cross_wallet_balance=account.wallet_balance,
        total_wallet_balance=account.wallet_balance + isolated_wallets,
        cross_unrealized_pnl=cross_pnl,
        total_unrealized_pnl=sum(r.unrealized_pnl for r in final),
        cross_maint_margin=cross_maint,
        total_maint_margin=sum(r.maint_margin for r in final),
        total_initial_margin=sum(r.initial_margin for r in final),
        cross_initial_margin=sum(r.initial_margin for r in cross),
    )


@dataclass(frozen=True)
class Keyframe:
    at: float  # seconds since the scenario started
    prices: dict[str, float]


def interpolate(keyframes: tuple[Keyframe, ...], base: dict[str, float], elapsed: float) -> dict[str, float]:
    """Prices at `elapsed` seconds: per symbol, linear between the keyframes that name it.

    `base` (the scenario's initial marks) acts as a keyframe at 0 for any symbol whose path
    has no keyframe at 0. Before the first point a symbol holds its first value, after the
    last point its last value. Symbols in no keyframe keep their base price.
    """
    result = dict(base)
    symbols = {s for kf in keyframes for s in kf.prices}
    for symbol in symbols:
        points = sorted((kf.at, kf.prices[symbol]) for kf in keyframes if symbol in kf.prices)
        if symbol in base and points[0][0] > 0:
            points.insert(0, (0.0, base[symbol]))
        result[symbol] = _interpolate_points(points, elapsed)
    return result


def _interpolate_points(points: list[tuple[float, float]], t: float) -> float:
    if t <= points[0][0]:
        return points[0][1]
    for (t0, p0), (t1, p1) in zip(points, points[1:]):
        if t <= t1:
            return p0 if t1 == t0 else p0 + (p1 - p0) * (t - t0) / (t1 - t0)
    return points[-1][1]
