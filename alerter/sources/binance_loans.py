"""Binance flexible-rate crypto loans: each ongoing loan read by Binance's own LTVs.

Two answers make the figure, both read through ccxt's implicit API (ccxt has no unified method
for loans):

- "Get Flexible Loan Ongoing Orders" (GET /sapi/v2/loan/flexible/ongoing/orders, ccxt
  `sapiV2GetLoanFlexibleOngoingOrders`,
  https://developers.binance.com/docs/crypto_loan/flexible-rate/user-information/Get-Flexible-Loan-Ongoing-Orders):
  `rows` of `loanCoin`, `totalDebt`, `collateralCoin`, `collateralAmount`, `currentLTV`, and
  `total`, the number of ongoing orders. It is a page (`limit` at most 100): asked for 100, an
  answer whose `total` is not the number of its rows is partial, so blind.
- "Get Flexible Loan Collateral Assets Data" (GET /sapi/v2/loan/flexible/collateral/data, ccxt
  `sapiV2GetLoanFlexibleCollateralData`,
  https://developers.binance.com/docs/crypto_loan/flexible-rate/market-data): per
  `collateralCoin` its `initialLTV`, `marginCallLTV` and `liquidationLTV`. The order row states no
  level, so each order is paired with its collateral coin's row.

Each order with a debt is a scope of its own, "loan:BUSD/BNB" (borrowed BUSD against BNB), in its
loan coin, read as alerter.sources.loans reads a loan: ratio = `currentLTV` ÷ the collateral's
`liquidationLTV`, 100 % exactly at Binance's liquidation LTV; debt = `totalDebt`; the collateral
value = debt ÷ `currentLTV` (Binance's own valuation, in the loan coin: the answer states no
price). "Repay Y of the loan" is the repayment out of the collateral (Binance's `repaymentType`
2, "Repayment with collateral",
https://developers.binance.com/docs/crypto_loan/flexible-rate/trade/Flexible-Loan-Repay), which
lowers the debt and the collateral together; a repayment in the loan coin from elsewhere needs
less. The own figure is Binance's LTV, "LTV 0.57", with Binance's margin call (`marginCallLTV`)
as its notice.

An order whose figures cannot be read, or whose collateral coin has no levels, is blind on its
own scope (`unreadable`); when no order is left to watch, the account is blind. Without an
ongoing loan the account scope reads 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alerter.models import AccountSnapshot, Pool
from alerter.sources.errors import SourceError
from alerter.sources.fields import is_blank, mapping, number, shape_error
from alerter.sources.loans import loan_pool, loans_snapshot
from alerter.sources.profile import FetchContext, Profile, Raw

ID = "binance"
ORDERS_PATH = "/sapi/v2/loan/flexible/ongoing/orders"
COLLATERAL_PATH = "/sapi/v2/loan/flexible/collateral/data"
ORDERS_METHOD = "sapiV2GetLoanFlexibleOngoingOrders"  # ccxt's implicit method for ORDERS_PATH
COLLATERAL_METHOD = "sapiV2GetLoanFlexibleCollateralData"  # and for COLLATERAL_PATH
ORDERS_PARAMS = {"limit": 100}  # Binance's largest page: more ongoing orders than this are a partial answer
NO_LOAN_CURRENCY = "USDT"  # the account scope's currency when nothing is borrowed (its figures are 0)


def loan_scope(loan_coin: str, collateral_coin: str) -> str:
    """The scope of one flexible loan: "loan:BUSD/BNB" (BUSD borrowed against BNB)."""
    return f"loan:{loan_coin}/{collateral_coin}"


def check_loan_body(path: str, data: Any) -> None:
    """The two loan answers must be objects with their `rows` (a cut answer is blind)."""
    if path.endswith(ORDERS_PATH):
        if not isinstance(data, Mapping) or not isinstance(data.get("rows"), list) or "total" not in data:
            raise shape_error(ID, path, "the ongoing flexible loans (rows, total)", data)
    elif path.endswith(COLLATERAL_PATH):
        if not isinstance(data, Mapping) or not isinstance(data.get("rows"), list):
            raise shape_error(ID, path, "the flexible loan collateral data (rows)", data)


def _coin(row: Mapping, key: str, where: str) -> str:
    coin = row.get(key)
    if not isinstance(coin, str) or is_blank(coin):
        raise SourceError("data", f"{where}.{key}: missing (got {coin!r})")
    return coin


def collateral_levels(answer: Any) -> dict[str, tuple[float, float] | str]:
    """Per collateral coin: (margin-call LTV, liquidation LTV), or why its row cannot be read."""
    where = f"{ID} {COLLATERAL_PATH}"
    rows = mapping(answer, where).get("rows")
    if not isinstance(rows, list):
        raise SourceError("data", f"{where}.rows: expected a list, got {type(rows).__name__}")
    levels: dict[str, tuple[float, float] | str] = {}
    for i, row in enumerate(rows):
        row = mapping(row, f"{where}.rows[{i}]")
        coin = _coin(row, "collateralCoin", f"{where}.rows[{i}]")
        here = f"{where} {coin}"
        try:
            found: tuple[float, float] | str = (number(row.get("marginCallLTV"), f"{here}.marginCallLTV"),
                                                number(row.get("liquidationLTV"), f"{here}.liquidationLTV"))
        except SourceError as e:
            found = e.message
        if coin in levels:
            found = f"{where}: {coin} is listed twice"
        levels[coin] = found
    return levels


def normalise_loans(account_name: str, orders: Any, collateral: Any) -> AccountSnapshot:
    """The ongoing orders answer and the collateral data answer → one pool per loan (see module)."""
    where = f"{ID} {ORDERS_PATH}"
    answer = mapping(orders, where)
    rows = answer.get("rows")
    if not isinstance(rows, list):
        raise SourceError("data", f"{where}.rows: expected a list, got {type(rows).__name__}")
    total = number(answer.get("total"), f"{where}.total")
    if total != len(rows):
        raise SourceError("data", f"{where}: total {total:g} ongoing orders but {len(rows)} rows: a partial answer")
    levels = collateral_levels(collateral) if rows else {}
    pools: list[Pool] = []
    unreadable: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        row = mapping(row, f"{where}.rows[{i}]")
        loan_coin = _coin(row, "loanCoin", f"{where}.rows[{i}]")
        collateral_coin = _coin(row, "collateralCoin", f"{where}.rows[{i}]")
        scope = loan_scope(loan_coin, collateral_coin)
        here = f"{where} {loan_coin}/{collateral_coin}"
        try:
            if scope in seen:
                raise SourceError("data", f"{where}: {loan_coin}/{collateral_coin} is listed twice")
            seen.add(scope)
            level = levels.get(collateral_coin)
            if level is None:
                raise SourceError("data", f"{ID} {COLLATERAL_PATH}: no row for {collateral_coin}, so the loan's "
                                          "margin-call and liquidation LTVs are unknown")
            if isinstance(level, str):
                raise SourceError("data", level)
            number(row.get("collateralAmount"), f"{here}.collateralAmount")  # stated, or the answer is partial
            pool = loan_pool(scope, debt=number(row.get("totalDebt"), f"{here}.totalDebt"),
                             ltv=number(row.get("currentLTV"), f"{here}.currentLTV"), margin_call_ltv=level[0],
                             liquidation_ltv=level[1], currency=loan_coin, where=here, lender="Binance")
        except SourceError as e:
            unreadable.append((scope, e.message))
            continue
        if pool is not None:
            pools.append(pool)
    return loans_snapshot(account_name, ID, pools, unreadable, NO_LOAN_CURRENCY)


def loan_mode(options: Mapping[str, Any]) -> bool:
    """An account reads its flexible loans with ccxt option `defaultType = "loan"`."""
    return options.get("defaultType") == "loan"


async def fetch_loans(ctx: FetchContext) -> Raw:
    """Both loan answers, concurrently, each checked against its documented shape; `normalise`
    finds them in balance["loans"]. No positions."""
    exchange = ctx.exchange
    orders, collateral = await ctx.gather(ctx.call(getattr(exchange, ORDERS_METHOD), dict(ORDERS_PARAMS), check=True),
                                          ctx.call(getattr(exchange, COLLATERAL_METHOD), check=True))
    return {"loans": {"orders": orders, "collateral": collateral}}, []


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    """The mode's normaliser: the two answers `fetch_loans` put in balance["loans"]."""
    loans = mapping(balance.get("loans"), f"{ID} flexible loan answers")
    return normalise_loans(account_name, loans.get("orders"), loans.get("collateral"))


# ---------------------------------------------------------------- the mode's profile (binance.PROFILE lists it)

PROFILE = Profile(
    name="Binance flexible loans",
    ids=(ID,),
    modes='flexible-rate crypto loans (`defaultType = "loan"`): each ongoing loan (one loan coin against one collateral '
          "coin) a scope of its own, `loan:USDT/BTC`",
    figure="per loan: `currentLTV` of /sapi/v2/loan/flexible/ongoing/orders ÷ its collateral coin's `liquidationLTV` of "
           "/sapi/v2/loan/flexible/collateral/data",
    currency="each loan's loan coin",
    liquidation="A loan is liquidated when its LTV (debt with interest ÷ collateral value at the index price) reaches its "
                "liquidation LTV; Binance sends a margin call at the margin-call LTV (both per collateral coin).",
    liquidation_url="https://www.binance.com/en/support/faq/what-is-binance-flexible-loan-and-frequently-asked-questions-1c9dddb774054983992b8977ae36577a",
    normalise=normalise,
    check_body=check_loan_body,
    fetch=fetch_loans,
    # load_markets() reads the spot exchangeInfo only (no figure comes from the markets)
    ccxt_defaults={"options": {"fetchCurrencies": False, "fetchMargins": False, "fetchMarkets": {"types": ["spot"]}}},
    reprice=False,  # an LTV moves with the collateral's index price, which no position carries
    permissions='"Enable Reading" only',
    recording_mark="flexible-loan",
    live_levels=True,
)
