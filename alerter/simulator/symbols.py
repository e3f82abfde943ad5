"""The simulated USDⓈ-M perpetual contracts: trading rules and maintenance-margin brackets.

Bracket tables follow the shape of Binance's published USDⓈ-M brackets
(notional floor/cap, max leverage, maintenance margin rate, maintenance amount "cum"):
  https://www.binance.com/en/futures/trading-rules/perpetual/leverage-margin
  https://developers.binance.com/docs/derivatives/usds-margined-futures/account/rest-api/Notional-and-Leverage-Brackets
Binance retunes the tiers from time to time, so these are realistic, not current. The
maintenance amount is derived the way Binance defines it, so the maintenance margin is
continuous across tier boundaries:  cum_i = cum_(i-1) + floor_i × (rate_i − rate_(i-1)).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bracket:
    bracket: int  # 1-based tier number, as Binance numbers them
    notional_floor: float
    notional_cap: float
    max_leverage: int
    maint_rate: float  # maintMarginRatio, a fraction
    cum: float  # maintenance amount subtracted from |notional| × rate


@dataclass(frozen=True)
class SymbolSpec:
    symbol: str
    base: str
    quote: str
    price_precision: int
    quantity_precision: int
    tick_size: str
    step_size: str
    min_qty: str
    max_qty: str
    min_notional: str
    brackets: tuple[Bracket, ...]


def make_brackets(tiers: list[tuple[float, int, float]]) -> tuple[Bracket, ...]:
    """Build brackets from (notional cap, max leverage, maintenance rate) tiers, floors chained."""
    result: list[Bracket] = []
    floor, cum, prev_rate = 0.0, 0.0, 0.0
    for number, (cap, leverage, rate) in enumerate(tiers, start=1):
        cum = cum + floor * (rate - prev_rate) if result else 0.0
        result.append(Bracket(number, floor, cap, leverage, rate, round(cum, 8)))
        floor, prev_rate = cap, rate
    return tuple(result)


BTC_BRACKETS = make_brackets(
    [
        (50_000, 125, 0.004),
        (500_000, 100, 0.005),
        (8_000_000, 50, 0.01),
        (50_000_000, 20, 0.025),
        (80_000_000, 10, 0.05),
        (100_000_000, 5, 0.10),
        (200_000_000, 4, 0.125),
        (300_000_000, 3, 0.15),
        (500_000_000, 2, 0.25),
        (9_223_372_036_854_775_807, 1, 0.50),
    ]
)

ETH_BRACKETS = make_brackets(
    [
        (10_000, 100, 0.005),
        (100_000, 75, 0.0065),
        (500_000, 50, 0.01),
        (1_000_000, 25, 0.02),
        (2_000_000, 20, 0.025),
        (5_000_000, 10, 0.05),
        (10_000_000, 5, 0.10),
        (20_000_000, 4, 0.125),
        (40_000_000, 3, 0.15),
        (150_000_000, 2, 0.25),
        (9_223_372_036_854_775_807, 1, 0.50),
    ]
)

SOL_BRACKETS = make_brackets(
    [
        (5_000, 50, 0.01),
        (25_000, 25, 0.02),
        (100_000, 20, 0.025),
        (250_000, 10, 0.05),
        (1_000_000, 5, 0.10),
        (5_000_000, 4, 0.125),
        (10_000_000, 3, 0.15),
        (20_000_000, 2, 0.25),
        (9_223_372_036_854_775_807, 1, 0.50),
    ]
)

SYMBOLS: dict[str, SymbolSpec] = {
    spec.symbol: spec
    for spec in (
        SymbolSpec("BTCUSDT", "BTC", "USDT", 2, 3, "0.10", "0.001", "0.001", "1000", "100", BTC_BRACKETS),
        SymbolSpec("ETHUSDT", "ETH", "USDT", 2, 3, "0.01", "0.001", "0.001", "10000", "20", ETH_BRACKETS),
        SymbolSpec("SOLUSDT", "SOL", "USDT", 4, 0, "0.0100", "1", "1", "1000000", "5", SOL_BRACKETS),
    )
}


def bracket_for(brackets: tuple[Bracket, ...], notional: float) -> Bracket:
    """The bracket whose [floor, cap) holds |notional| (the last one beyond the table)."""
    size = abs(notional)
    for bracket in brackets:
        if size < bracket.notional_cap:
            return bracket
    return brackets[-1]
