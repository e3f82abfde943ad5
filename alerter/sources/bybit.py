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

Isolated scope, Bybit's own rule: "When the Mark Price reaches the liquidation price ... the
position margin balance has fallen below the necessary maintenance margin level"
(https://www.bybit.com/en/help-center/article/Liquidation-Price-Calculation-under-Isolated-Mode-Unified-Trading-Account,
and "Liquidation Price (USDT Contract)": liq. price (long) = entry − (IM − MM) ÷ size − extra
margin ÷ size, i.e. margin + PnL = MM there). The position margin balance is `positionBalance`
+ `unrealisedPnl` and the maintenance is `positionMM` (which Bybit states including its
estimated fee to close), so the ratio is positionMM ÷ (positionBalance + unrealisedPnl): 100 % at
`liqPrice`. positionMM ÷ positionBalance alone would not reach 100 % there (in Bybit's worked
example, 1 BTC long at 20,000 with 50x and MMR 0.5 %: 100 ÷ 400 = 25 % at the 19,700 liq. price).
Bybit states no ratio per position, so this is the one figure computed, from Bybit's own rule.

Completeness: every raw v5 answer must be `{"retCode": 0, "result": {...}}`, the wallet and the
position list with a `result.list` list (`check_body`): ccxt reads a cut body as text and that
text as "no positions". `check_positions_agree` then compares the wallet with the positions,
looking only for clear gaps, never for equality (Bybit rounds, the marks move between the two
requests, and options and spot borrowing add margin that no linear position carries):
- the USDT coin's `totalPositionMM` (maintenance of the positions margined in USDT) is above a
  cent while no USDT-settled position is listed: positions are missing. (Bybit's options settle
  in USDC, so USDC is not checked this way: its margin may belong to options.)
- with account-wide figures (cross), the listed cross positions' Σ `positionMM` (or Σ
  `positionIM`) is more than twice `totalMaintenanceMargin` (`totalInitialMargin`) plus a cent:
  the wallet leaves out positions it should carry, and the account ratio would read too low.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
    shape_error,
    wallet_snapshot,
)
from alerter.sources.profile import FetchContext, Profile, Raw, fetch_account
from alerter.sources.streamspec import StreamSpec, no_notice, watch_balance, watch_positions

GAP = 0.01  # a cent: margin figures at or below this are rounding, not a position
CHECKED_COINS = ("USDT",)  # coins whose position maintenance belongs to linear positions only


def check_body(path: str, data: Any) -> None:
    """Every v5 answer is {"retCode": 0, "result": {...}}; the wallet and the position list have
    a `result.list` list of objects."""
    if "/v5/" not in path:
        return
    result = data.get("result") if isinstance(data, Mapping) else None
    if str(data.get("retCode") if isinstance(data, Mapping) else None) != "0" or not isinstance(result, Mapping):
        raise shape_error("bybit", path, 'an object {"retCode": 0, "result": {...}}', data)
    if path.endswith(("/position/list", "/account/wallet-balance")):
        rows = result.get("list")
        if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
            raise shape_error("bybit", path, "a list in result.list", result)


def check_positions_agree(entry: Mapping, positions: list[Position], cross_figures: bool) -> None:
    """Clear gaps between the wallet (`entry`) and the parsed positions; see the module's docstring."""
    where = "bybit account"
    for coin in CHECKED_COINS:
        held = coin_figure(entry, coin, "totalPositionMM")
        if held is not None and held > GAP and not any(p.symbol.endswith(f":{coin}") for p in positions):
            raise SourceError("data", f"{where}: the wallet shows {held:g} {coin} of position maintenance margin (coin[{coin}].totalPositionMM) "
                                      f"but the position list has no {coin} position: positions missing")
    if not cross_figures:
        return
    cross = [p for p in positions if not p.isolated]
    for total_key, label, listed in (
        ("totalMaintenanceMargin", "positionMM", sum(p.maintenance_margin for p in cross)),
        ("totalInitialMargin", "positionIM", sum(p.initial_margin or 0.0 for p in cross)),
    ):
        total = optional_number(entry.get(total_key), f"{where}.{total_key}")
        if total is not None and listed > 2 * total + GAP:
            raise SourceError("data", f"{where}: the positions' Σ {label} {listed:g} is far above the wallet's {total_key} {total:g}: "
                                      "the wallet answer is partial")


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
    if isolated:  # Bybit's position margin balance; its ratio is positionMM ÷ this (module docstring)
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
    check_positions_agree(entry, parsed, cross_figures=rate is not None)
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


# ---------------------------------------------------------------- profile

# the linear position list needs a settle coin when no symbol is given; USDC contracts settle in USDC
POSITION_PARAMS = ({"settleCoin": "USDT"}, {"settleCoin": "USDC"})
SYSTEM_ERRORS = ("10016",)  # {"retCode":10016,"retMsg":"System error..."}: try again


async def fetch(ctx: FetchContext) -> Raw:
    return await fetch_account(ctx, POSITION_PARAMS)


def system_error(body: str) -> bool:
    """An answer whose retCode Bybit documents as "system error, try again" (ccxt raises it as a
    plain ExchangeError, even with HTTP 200)."""
    if not any(code in body for code in SYSTEM_ERRORS):
        return False
    compact = body.replace(" ", "")
    return any(f'"retCode":{code}' in compact or f'"retCode":"{code}"' in compact for code in SYSTEM_ERRORS)


def bybit_event(message: Mapping[str, Any]) -> str | None:
    """A push of Bybit's private `wallet` or `position` topic."""
    topic = message.get("topic")
    return f"{topic} push" if topic in ("wallet", "position") and "data" in message else None


# linear `tickers.<symbol>` on /v5/public/linear carry markPrice (ccxt.pro bybit has no
# watch_mark_prices); `wallet` and `position` on /v5/private after `auth`. No margin-call push.
STREAM = StreamSpec(
    name="Bybit",
    event=bybit_event,
    notice=no_notice,
    options={
        # a unified trading account (as the bybit source reads it): no REST look-up of the
        # account type before subscribing, no REST positions snapshot behind the stream
        "enableUnifiedAccount": True,
        "enableUnifiedMargin": False,
        "watchPositions": {"fetchPositionsSnapshot": False, "awaitPositionsSnapshot": False},
    },
    prices="linear `tickers.<symbol>`, whose `markPrice` comes every 100 ms (`/v5/public/linear`)",
    events="`wallet` and `position` pushes (`/v5/private`, after `auth`; a unified trading account)",
    notices="none: Bybit pushes no margin call",
    # enableUnifiedAccount would make the REST balance read a classic account as unified
    shares_source=False,
    watch_prices="watch_tickers",
    unwatch_prices="un_watch_tickers",
    account_watches=(watch_balance, watch_positions),
)


PROFILE = Profile(
    name="Bybit",
    ids=("bybit",),
    modes="unified trading account (cross and portfolio margin: account-wide figures; isolated-margin mode) and classic "
          "contract accounts; linear USDT and USDC contracts",
    figure="account: `totalMaintenanceMargin` (at least `accountMMRate` × equity) ÷ `totalMarginBalance` of "
           "/v5/account/wallet-balance, i.e. `accountMMRate`; isolated, and classic cross from its positions: "
           "`positionMM` ÷ (`positionBalance` + `unrealisedPnl`) of /v5/position/list",
    currency="USD (unified account-wide figures); USDT (isolated-margin mode and classic accounts)",
    liquidation="A unified account in cross or portfolio margin is liquidated when its maintenance margin rate "
                "(`accountMMRate`, maintenance ÷ margin balance) reaches 100 %; an isolated position when the mark "
                "price reaches its liquidation price, where its margin falls to its maintenance margin.",
    liquidation_url="https://www.bybit.com/en/help-center/article/UTA-Trading-Rules",
    normalise=normalise,
    check_body=check_body,
    # load_markets() lists linear contracts only (ccxt's default adds spot, inverse and thousands of
    # options, four requests); fetchCurrencies would add the signed /v5/asset/coin/query-info
    ccxt_defaults={"options": {"fetchMarkets": {"types": ["linear"]}}, "has": {"fetchCurrencies": False}},
    fetch=fetch,
    server_error=system_error,
    stream=STREAM,
    permissions='a read-only key with "Contracts – Orders & Positions" (Unified Trading) read access',
    reprice=True,  # linear contracts: maintenance and PnL follow the mark
    options={"defaultType": ("swap", "future"), "defaultSubType": ("linear",)},
)
