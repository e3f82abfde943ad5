"""Bybit v5 (unified trading account, linear contracts).

Account: `balance['info']['result']['list'][0]` of GET /v5/account/wallet-balance
(https://bybit-exchange.github.io/docs/v5/account/wallet-balance): `accountMMRate` =
account maintenance margin ÷ account margin balance, already "higher is worse, 1 = liquidation".
equity = `totalMarginBalance` (wallet + perp UPL, USD; `totalEquity` if empty), maintenance =
`totalMaintenanceMargin` — never less than `accountMMRate` × equity, so the ratio is at least
what Bybit reports (the rate is rounded to 4 decimals, the totals are not).

"All account wide fields are not applicable to isolated margin" (same page): in a unified
account in isolated-margin mode they come as "", and `tradeMode` on positions is always 0 in
UTA 2.0 (https://bybit-exchange.github.io/docs/v5/position), so every position of such an account is
treated as isolated. Classic (CONTRACT) accounts also have empty account fields; there `tradeMode`
(0 cross, 1 isolated) holds, and the cross figures are summed from the positions.

Positions (GET /v5/position/list): `size` (base units, ≥ 0) with `side` Buy/Sell (hedge mode:
`positionIdx` 1 long, 2 short), `markPrice`, `avgPrice`, `unrealisedPnl`, `positionMM`,
`positionIM`, `liqPrice` ("" = none), `positionBalance` = the isolated position's margin
without its unrealised PnL (ccxt adds the PnL the same way), so collateral = balance + PnL.
`positionValue` is size × entry, so the notional is computed as size × mark.
"""

from __future__ import annotations

from collections.abc import Mapping

from alerter.models import AccountSnapshot, Position
from alerter.sources.errors import SourceError
from alerter.sources.fields import (
    base_quantity,
    first_present,
    make_position,
    make_snapshot,
    mapping,
    number,
    optional_number,
    price_or_none,
    wallet_snapshot,
)


def account_entry(balance: Mapping) -> dict:
    result = mapping(mapping(balance.get("info"), "bybit wallet-balance answer").get("result"), "bybit wallet-balance result")
    entries = result.get("list") or []
    if not entries:
        raise SourceError("data", "bybit wallet-balance answer has no result.list[0]")
    return mapping(entries[0], "bybit wallet-balance result.list[0]")


def position_side(info: Mapping, where: str) -> str:
    index = str(info.get("positionIdx", "0"))
    if index == "1":
        return "long"
    if index == "2":
        return "short"
    side = info.get("side")
    if side == "Buy":
        return "long"
    if side == "Sell":
        return "short"
    raise SourceError("data", f"{where}.side: expected Buy or Sell, got {side!r}")


def parse_position(position: Mapping, markets: Mapping, all_isolated: bool) -> Position | None:
    info = mapping(position.get("info"), "bybit position info")
    symbol = position.get("symbol") or info.get("symbol")
    where = f"bybit position {symbol}"
    size = optional_number(info.get("size"), f"{where}.size")
    if not size:
        return None
    contracts = base_quantity(position, markets, where)
    mark = number(info.get("markPrice"), f"{where}.markPrice")
    pnl = number(info.get("unrealisedPnl"), f"{where}.unrealisedPnl")
    isolated = all_isolated or str(info.get("tradeMode", "0")) == "1"
    collateral = None
    if isolated:
        collateral = number(info.get("positionBalance"), f"{where}.positionBalance (isolated margin)") + pnl
    _, entry = first_present(info, "avgPrice", "entryPrice")
    initial = optional_number(info.get("positionIM"), f"{where}.positionIM")
    return make_position(
        where=where,
        symbol=symbol,
        side=position_side(info, where),
        contracts=contracts,
        entry_price=number(entry, f"{where}.avgPrice"),
        mark_price=mark,
        notional=contracts * mark,
        unrealized_pnl=pnl,
        maintenance_margin=number(info.get("positionMM"), f"{where}.positionMM"),
        margin_mode="isolated" if isolated else "cross",
        collateral=collateral,
        liquidation_price=price_or_none(info.get("liqPrice"), f"{where}.liqPrice"),
        initial_margin=initial,
    )


def coin_figure(entry: Mapping, coin: str, key: str) -> float | None:
    for item in entry.get("coin") or []:
        if item.get("coin") == coin:
            return optional_number(item.get(key), f"bybit account coin[{coin}].{key}")
    return None


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    entry = account_entry(balance)
    where = f"{exchange_id} account"
    rate = optional_number(entry.get("accountMMRate"), f"{where}.accountMMRate")
    unified = entry.get("accountType") == "UNIFIED"
    all_isolated = unified and rate is None
    parsed = [p for p in (parse_position(raw, markets, all_isolated) for raw in positions) if p is not None]
    cross = [p for p in parsed if not p.isolated]
    initial = sum(p.initial_margin or 0.0 for p in cross)
    if rate is not None:
        key, value = first_present(entry, "totalMarginBalance", "totalEquity")
        equity = number(value, f"{where}.{key}")
        maintenance = number(entry.get("totalMaintenanceMargin"), f"{where}.totalMaintenanceMargin")
        if equity > 0:
            maintenance = max(maintenance, rate * equity)
        wallet = optional_number(entry.get("totalWalletBalance"), f"{where}.totalWalletBalance")
        initial = optional_number(entry.get("totalInitialMargin"), f"{where}.totalInitialMargin") or initial
        return make_snapshot(
            account=account_name,
            exchange=exchange_id,
            equity=equity,
            maintenance_margin=maintenance,
            wallet_balance=equity if wallet is None else wallet,
            positions=parsed,
            initial_margin=initial,
            currency="USD",
        )
    # no account-wide figures: isolated-margin unified account, or a classic account
    settle = "USDT"
    wallet = coin_figure(entry, settle, "walletBalance")
    if wallet is None:
        key, value = first_present(entry, "totalWalletBalance", "totalEquity")
        wallet = optional_number(value, f"{where}.{key}")
    if cross and wallet is None:
        raise SourceError("data", f"{where}: cross positions but neither accountMMRate nor a {settle} wallet balance")
    return wallet_snapshot(account=account_name, exchange=exchange_id, wallet=wallet or 0.0, positions=parsed,
                           currency=settle, initial_margin=initial)
