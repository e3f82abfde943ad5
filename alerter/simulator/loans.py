"""Binance flexible loans in the simulator: an account's loans, valued at the scenario's prices.

    [[accounts.loans]]
    loan_coin = "USDT"            # a stablecoin, valued at 1 USDT (USDT, USDC, FDUSD)
    debt = 30000                  # totalDebt, in the loan coin
    collateral_coin = "BTC"       # valued at the BTCUSDT mark of the scenario
    collateral_amount = 1
    margin_call_ltv = 0.75        # this collateral coin's levels, as Binance's collateral data states them
    liquidation_ltv = 0.83

The two endpoints ccxt's binance reads a loan through, in Binance's documented shape
(https://developers.binance.com/docs/crypto_loan/flexible-rate/user-information/Get-Flexible-Loan-Ongoing-Orders,
https://developers.binance.com/docs/crypto_loan/flexible-rate/market-data): the ongoing orders
(`currentLTV` = debt ÷ (collateral amount × mark), stated to 8 decimals, paged by `current` and
`limit` as Binance pages them) and the collateral data (each collateral coin of the account's
loans with its levels). An account without loans has no ongoing order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STABLECOINS = ("USDT", "USDC", "FDUSD")
ORDERS_PATH = "/sapi/v2/loan/flexible/ongoing/orders"
COLLATERAL_PATH = "/sapi/v2/loan/flexible/collateral/data"
MAX_LIMIT = 100  # Binance's largest page of ongoing orders


@dataclass(frozen=True)
class Loan:
    loan_coin: str
    debt: float
    collateral_coin: str
    collateral_amount: float
    margin_call_ltv: float
    liquidation_ltv: float

    @property
    def symbol(self) -> str:
        """The scenario symbol that prices the collateral: "BTCUSDT"."""
        return f"{self.collateral_coin}USDT"

    def ltv(self, prices: dict[str, float]) -> float:
        """Binance's current LTV at these marks: debt ÷ collateral value."""
        return self.debt / (self.collateral_amount * prices[self.symbol])


def parse_loans(raw: Any, where: str, errors: list[str], symbols) -> tuple[Loan, ...]:
    """The `loans` of a scenario account; problems are appended to `errors` with their key path."""
    if not isinstance(raw, list):
        errors.append(f"{where}: expected a list")
        return ()
    loans: list[Loan] = []
    allowed = {"loan_coin", "debt", "collateral_coin", "collateral_amount", "margin_call_ltv", "liquidation_ltv"}
    for i, item in enumerate(raw):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            errors.append(f"{here}: expected a table")
            continue
        before = len(errors)
        for key in sorted(set(item) - allowed):
            errors.append(f"{here}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
        loan_coin, collateral_coin = item.get("loan_coin"), item.get("collateral_coin")
        if loan_coin not in STABLECOINS:
            errors.append(f"{here}.loan_coin: {loan_coin!r} is not one of {', '.join(STABLECOINS)}")
        if not isinstance(collateral_coin, str) or f"{collateral_coin}USDT" not in symbols:
            errors.append(f"{here}.collateral_coin: {collateral_coin!r} has no USDT price (known: "
                          f"{', '.join(s.removesuffix('USDT') for s in symbols)})")
        figures = {}
        for key in ("debt", "collateral_amount", "margin_call_ltv", "liquidation_ltv"):
            value = item.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                errors.append(f"{here}.{key}: required, a number > 0")
            else:
                figures[key] = float(value)
        if len(figures) == 4 and not figures["margin_call_ltv"] < figures["liquidation_ltv"] < 1:
            errors.append(f"{here}: margin_call_ltv < liquidation_ltv < 1 must hold")
        if len(errors) == before:
            loans.append(Loan(loan_coin, figures["debt"], collateral_coin, figures["collateral_amount"],
                              figures["margin_call_ltv"], figures["liquidation_ltv"]))
    pairs = [(loan.loan_coin, loan.collateral_coin) for loan in loans]
    for pair in sorted({p for p in pairs if pairs.count(p) > 1}):
        errors.append(f"{where}: {pair[0]} against {pair[1]} appears twice (Binance holds one flexible loan per pair)")
    levels: dict[str, tuple[float, float]] = {}
    for loan in loans:
        if levels.setdefault(loan.collateral_coin, (loan.margin_call_ltv, loan.liquidation_ltv)) != (loan.margin_call_ltv, loan.liquidation_ltv):
            errors.append(f"{where}: the {loan.collateral_coin} loans state different levels (Binance has one per collateral coin)")
    return tuple(loans)


def _num(value: float) -> str:
    return f"{value:.8f}".rstrip("0").rstrip(".") or "0"


def ongoing_orders(loans: list[Loan] | tuple[Loan, ...], prices: dict[str, float], query: dict[str, str]) -> dict:
    """The ongoing orders answer, one page (`current` from 1, `limit` default 10, at most 100)."""
    limit = min(int(query.get("limit") or 10), MAX_LIMIT)
    current = max(int(query.get("current") or 1), 1)
    rows = [{"loanCoin": loan.loan_coin, "totalDebt": _num(loan.debt), "collateralCoin": loan.collateral_coin,
             "collateralAmount": _num(loan.collateral_amount), "currentLTV": _num(loan.ltv(prices))}
            for loan in loans
            if (not query.get("loanCoin") or query["loanCoin"] == loan.loan_coin)
            and (not query.get("collateralCoin") or query["collateralCoin"] == loan.collateral_coin)]
    return {"rows": rows[(current - 1) * limit:current * limit], "total": len(rows)}


def collateral_data(loans: list[Loan] | tuple[Loan, ...], query: dict[str, str]) -> dict:
    """The collateral data answer: each collateral coin of the loans with its levels."""
    levels = {loan.collateral_coin: loan for loan in loans}
    # initialLTV is not read by alerter: stated 0.10 below the margin call, as in Binance's documented BNB row
    rows = [{"collateralCoin": coin, "initialLTV": _num(max(loan.margin_call_ltv - 0.1, 0.05)),
             "marginCallLTV": _num(loan.margin_call_ltv), "liquidationLTV": _num(loan.liquidation_ltv), "maxLimit": "1000000"}
            for coin, loan in sorted(levels.items()) if not query.get("collateralCoin") or query["collateralCoin"] == coin]
    return {"rows": rows, "total": len(rows)}


def add_routes(app, signed, state_key) -> None:
    """The two loan endpoints, signed as Binance's USER_DATA endpoints are (`signed` from binance_api)."""
    from aiohttp import web

    @signed
    async def orders(request, account):
        state = request.app[state_key]
        return web.json_response(ongoing_orders(account.loans, state.prices(), dict(request.query)))

    @signed
    async def collateral(request, account):
        return web.json_response(collateral_data(account.loans, dict(request.query)))

    app.router.add_get(ORDERS_PATH, orders)
    app.router.add_get(COLLATERAL_PATH, collateral)
