"""Deribit v2 (JSON-RPC over HTTP GET): private/get_account_summaries + private/get_positions.

https://docs.deribit.com/api-reference/account-management/private-get_account_summaries
Each margined currency (BTC, ETH, USDC, …) is its own cross account on Deribit: its
`maintenance_margin`, `margin_balance` and `equity` are stated in that currency. Deribit
liquidates while "the maintenance margin is higher than the margin balance" and stops "as soon as
the required maintenance margin is lower than the margin balance of the account"
(https://support.deribit.com/hc/en-us/articles/25944769313309-Liquidations). So the ratio is
`maintenance_margin` ÷ `margin_balance`, in the currency: 100 % is Deribit's trigger.

ccxt's fetch_balance() without a code asks private/get_account_summaries (every currency in one
answer: `balance['info']['summaries']`, ccxt's info being the `result`); fetch_positions() without a currency asks
private/get_positions for all of them. Each currency with a maintenance margin is a cross scope of
its own ("cross:BTC", a `Pool`, in that currency); the snapshot's summary figures are the worst
one's. With none anywhere, the first summary with equity (BTC before the others, in Deribit's own
order) stands for the account, at ratio 0.

Positions (https://docs.deribit.com/api-reference/account-management/private-get_positions):
`instrument_name`, `size` (USD for inverse contracts, the base coin for linear ones), `mark_price`,
`maintenance_margin`, `initial_margin`, `floating_profit_loss`, `estimated_liquidation_price`
(futures only, segregated standard margin), `kind`. Futures are listed for the alert; options are
skipped with a warning (they still count in the currency's summary). ccxt's
`maintenanceMarginPercentage` is not read (it arrives ×100).

Completeness: every raw answer is {"jsonrpc": "2.0", "result": …} (`check_body`), and a currency
whose summary states a maintenance margin while no position in it is listed makes the poll blind
(one of the two answers is partial).
Re-pricing between polls is off: option margins and Deribit's own maintenance rates do not follow
the mark linearly, and the summary is the only faithful source of the figures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from alerter.models import AccountSnapshot, Pool, Position, cross_scope
from alerter.sources.errors import SourceError
from alerter.sources.fields import make_position, make_snapshot, mapping, number, optional_number, price_or_none, shape_error
from alerter.sources.profile import Profile

logger = logging.getLogger(__name__)


def check_body(path: str, data: Any) -> None:
    """Every v2 answer is {"jsonrpc": "2.0", "result": …}; summaries are objects, positions a list."""
    if "/api/v2/private/" not in path:
        return
    if not isinstance(data, Mapping) or "result" not in data:
        raise shape_error("deribit", path, 'an object {"jsonrpc": "2.0", "result": ...}', data)
    result = data["result"]
    if path.endswith("/get_positions") and not (isinstance(result, list) and all(isinstance(r, Mapping) and "instrument_name" in r for r in result)):
        raise shape_error("deribit", path, "a list of positions (instrument_name) in result", result)
    if path.endswith("/get_account_summaries") and not (isinstance(result, Mapping) and isinstance(result.get("summaries"), list)):
        raise shape_error("deribit", path, "summaries in result", result)


def summaries(balance: Mapping) -> list[Mapping]:
    result = mapping(balance.get("info"), "deribit account summary result")  # ccxt's info is the answer's `result`
    rows = result["summaries"] if "summaries" in result else [result]
    return [mapping(row, "deribit account summary") for row in rows]


def parse_position(raw: Mapping, markets: Mapping) -> Position | None:
    info = mapping(raw.get("info"), "deribit position info")
    name = info.get("instrument_name")
    where = f"deribit position {name}"
    size = optional_number(info.get("size"), f"{where}.size")
    if not size:
        return None
    if info.get("kind") != "future":
        logger.warning("%s: %s position skipped (only futures are listed; it still counts in the summary)", where, info.get("kind"))
        return None
    symbol = raw.get("symbol") or name
    market = markets.get(symbol) or {}
    inverse = market.get("inverse") is True
    mark = number(info.get("mark_price"), f"{where}.mark_price")
    contracts = abs(size)
    return make_position(
        where=where,
        symbol=symbol,
        side="long" if size > 0 else "short",
        contracts=contracts,
        entry_price=number(info.get("average_price"), f"{where}.average_price"),
        mark_price=mark,
        notional=contracts / mark if inverse else contracts * mark,
        unrealized_pnl=number(info.get("floating_profit_loss"), f"{where}.floating_profit_loss"),
        maintenance_margin=number(info.get("maintenance_margin"), f"{where}.maintenance_margin"),
        liquidation_price=price_or_none(info.get("estimated_liquidation_price"), f"{where}.estimated_liquidation_price"),
        initial_margin=optional_number(info.get("initial_margin"), f"{where}.initial_margin"),
        inverse=inverse,
        currency=market.get("settle"),
    )


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    by_currency: dict[str, list[Position]] = {}
    for raw in positions:
        position = parse_position(raw, markets)
        if position is not None:
            by_currency.setdefault(position.currency or "", []).append(position)
    listed = {mapping(raw.get("info"), "deribit position info").get("instrument_name", "").split("-")[0].split("_")[0]
              for raw in positions if optional_number(mapping(raw.get("info"), "deribit position info").get("size"), "deribit position size")}
    candidates = []
    fallback = None
    for row in summaries(balance):
        ccy = str(row.get("currency") or "")
        where = f"deribit summary[{ccy}]"
        margin_balance = number(row.get("margin_balance"), f"{where}.margin_balance")
        maintenance = number(row.get("maintenance_margin"), f"{where}.maintenance_margin")
        figures = dict(
            equity=margin_balance,
            maintenance_margin=maintenance,
            wallet_balance=number(row.get("equity"), f"{where}.equity"),
            initial_margin=optional_number(row.get("initial_margin"), f"{where}.initial_margin") or 0.0,
            currency=ccy,
        )
        if maintenance > 0:
            if not by_currency.get(ccy) and ccy not in listed:
                raise SourceError("data", f"deribit summary[{ccy}].maintenance_margin {maintenance:g} but the positions answer lists "
                                          f"no {ccy} position: positions missing")
            ratio = maintenance / margin_balance if margin_balance > 0 else float("inf")
            candidates.append((ratio, ccy, figures))
        elif fallback is None and figures["wallet_balance"] > 0:
            fallback = figures
    if candidates:
        _, ccy, figures = max(candidates, key=lambda c: (c[0], c[1]))
    elif fallback is not None:
        ccy, figures = fallback["currency"], fallback
    else:
        raise SourceError("data", "deribit account summaries: no currency with equity or margin")
    # one cross scope per margined currency with a maintenance margin, in that currency
    pools = [Pool(cross_scope(c), f["equity"], f["maintenance_margin"], c, f["wallet_balance"], tuple(p.symbol for p in by_currency.get(c, [])))
             for _, c, f in sorted(candidates, key=lambda c: c[1])]
    listed_positions = [p for c in sorted(by_currency) for p in by_currency[c]] if pools else by_currency.get(ccy, [])
    return make_snapshot(account=account_name, exchange=exchange_id, positions=listed_positions, pools=pools, **figures)


# ---------------------------------------------------------------- profile

PROFILE = Profile(
    name="Deribit",
    ids=("deribit",),
    modes="BTC-, ETH- and USDC-margined (segregated) accounts, futures; options count in the currency's figures "
          "but are not listed; one cross scope per currency with a maintenance margin (`BTC cross`, amounts in the currency)",
    figure="`maintenance_margin` ÷ `margin_balance` of the currency's private/get_account_summaries entry",
    currency="the margined currency (BTC, ETH, USDC)",
    liquidation="Deribit liquidates while the maintenance margin is higher than the margin balance (100 % here).",
    liquidation_url="https://support.deribit.com/hc/en-us/articles/25944769313309-Liquidations",
    normalise=normalise,
    check_body=check_body,
    # load_markets() reads public/get_instruments once (not get_currencies then one call per currency)
    ccxt_defaults={"has": {"fetchCurrencies": False}},
    permissions="a key with the read scopes alerter's two calls need (`account:read` for the account summaries, `trade:read` for the positions), no write scopes",
    reprice=False,  # option margins and Deribit's maintenance do not follow the mark linearly
)
