"""The on-chain lenders' own figure, with the way back and the distance to liquidation in the
position's own assets (Aave, Spark, Compound V3, Morpho Blue).

A lender's alert names its levers in the assets a trader holds, at the protocol's own oracle
price: "Add 2.10 WETH of collateral or repay 3,400.00 USDC of debt", and per collateral asset,
holding the others fixed, "WETH may fall 11.4 % (to 2,310.50 USD on Aave's oracle) before
liquidation". `LenderFigure` carries the largest collateral and debt assets (`Lever`: the symbol,
its oracle price and value in the figure's currency) and writes those lines for the alert
(alerter.policy asks every OwnFigure; the generic one writes none, and the alert keeps its lines
in the account's currency). Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from alerter import display
from alerter.models import OwnFigure, PositionRisk

SIGNIFICANT = 4  # an amount of a coin to add or repay: rounded up to this many significant digits


@dataclass(frozen=True)
class Lever:
    """One asset of the position: its symbol, its oracle price and its value held (collateral or
    debt), both in the figure's currency (USD on Aave's markets)."""

    symbol: str
    price: float
    value: float


def amount(quantity: float, symbol: str) -> str:
    """An amount of `symbol` to add or repay, rounded up so that it suffices: "2.10 WETH",
    "0.0001235 cbBTC" (SIGNIFICANT digits), "3,400.01 USDC" (a dollar coin to the cent)."""
    if display.cents(symbol):
        return display.money(math.ceil(quantity * 100 - 1e-9) / 100, symbol)
    if not quantity > 0:
        return f"0.00 {symbol}"
    places = max(0, SIGNIFICANT - 1 - math.floor(math.log10(quantity)))
    step = 10.0 ** -places if places else 10.0 ** (math.floor(math.log10(quantity)) - SIGNIFICANT + 1)
    text = f"{math.ceil(quantity / step - 1e-9) * step:,.{places}f}"
    if "." in text:
        text = text.rstrip("0")
        text += "0" * (2 - len(text.partition(".")[2]))
    return f"{text} {symbol}"


@dataclass(frozen=True)
class LenderFigure(OwnFigure):
    """An on-chain lender's own figure. `oracle` names the prices ("Aave's oracle"); `collateral`
    and `debt` are the largest of each (None: not read, and `note` says why, once, beside the
    current figure: never beside the levels)."""

    note: str = ""
    oracle: str = ""
    collateral: Lever | None = None
    debt: Lever | None = None

    def plain(self, ratio: float) -> str:
        """The figure alone, without the note."""
        return OwnFigure.text(self, ratio)

    def text(self, ratio: float) -> str:
        return self.plain(ratio) + (f" · {self.note}" if self.note else "")

    def threshold_text(self, ratio: float) -> str:
        return self.plain(ratio)

    def way_back(self, deposit: float, repay: float | None) -> str:
        """"Add 2.10 WETH of collateral or repay 3,400.00 USDC of debt"; "" without both assets."""
        c, d = self.collateral, self.debt
        if c is None or d is None or repay is None or not deposit > 0 or not c.price > 0 or not d.price > 0:
            return ""
        return f"Add {amount(deposit / c.price, c.symbol)} of collateral or repay {amount(repay / d.price, d.symbol)} of debt"

    def distances(self, positions: Sequence[PositionRisk], currency: str) -> tuple[str, ...]:
        """The largest collateral and debt assets, then each collateral asset's distance to its
        liquidation price, the others held fixed (`positions`: the collateral, largest first)."""
        c, d = self.collateral, self.debt
        if c is None or d is None:
            return ()
        lines = [f"Largest collateral {c.symbol} ({display.money(c.value, currency)}) · largest debt {d.symbol} "
                 f"({display.money(d.value, currency)})"]
        at = f" on {self.oracle}" if self.oracle else ""
        for p in positions:
            price = p.liquidation_price
            if price is None or p.liquidation_move is None:
                lines.append(f"{p.symbol}: no price of its own liquidates the position")
            elif p.liquidation_move < 0:
                lines.append(f"{p.symbol} may fall {-p.liquidation_move * 100:.1f} % (to {display.price(price)} {currency}{at}) "
                             "before liquidation")
            else:
                lines.append(f"{p.symbol} is {p.liquidation_move * 100:.1f} % below its liquidation price "
                             f"({display.price(price)} {currency}{at}): liquidatable now")
        return tuple(lines)


def largest(items: Sequence[tuple[str, float, float]]) -> Lever | None:
    """The Lever of the largest value among (symbol, price, value); None when nothing is held."""
    held = [Lever(symbol, price, value) for symbol, price, value in items if value > 0]
    return max(held, key=lambda lever: lever.value) if held else None
