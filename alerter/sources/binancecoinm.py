"""Binance COIN-M (coin-margined) futures: /dapi/v1/account (in `fetch_balance()['info']`) + /dapi/v1/positionRisk.

Every COIN-M figure is in a coin: a contract is a fixed face value in USD (BTCUSD: 100 USD, the
others 10 USD), `positionAmt` counts contracts, and the margin, PnL and maintenance of a position
are in its margin coin (BTCUSD_PERP: BTC). Binance's own rules
(https://www.binance.com/en/support/faq/be2c7d9d95b04a7e8044ed02dd7dfe5c, "Leverage and Margin in
Coin-Margined Futures Contracts"): "In Cross Margin Mode, the margin can only be shared with the
same type of asset": all BTC in the COIN-M wallet backs all BTC contracts, so there is one cross
scope per margin coin. A scope's margin ratio is maintenance margin ÷ margin balance, and positions
are liquidated when it reaches 100 % (https://www.binance.com/en/support/faq/360033162192, and for
COIN-M "margin ratio hits 100%" in
https://www.binance.com/en/support/announcement/updates-to-maintenance-margin-of-binance-futures-coin-margined-contracts-2021-03-01-f344c70ffa534f118caceceaac8229f2).

Account (cross), per coin (`assets[]` of "Account Information",
https://developers.binance.com/docs/derivatives/coin-margined-futures/account/rest-api/Account-Information):
equity = `crossWalletBalance` ("wallet balance for crossed margin") + `crossUnPnl` ("total
unrealized profit or loss of crossed positions"); maintenance = the coin's `maintMargin` − its
isolated positions' `maintMargin`, never below its cross positions' own `maintMargin` (the safer
figure wins, as for USDⓈ-M).

One cross scope per margin coin ("cross:BTC", a `Pool`), each in its coin, alerted on its own:
two coins near liquidation are two alerts. The snapshot's own figures are the worst coin's (for
summaries); with no position anywhere the account scope is the first coin with a balance, at
ratio 0. Isolated positions are scopes of their own, each in its coin.

Positions: /dapi/v1/positionRisk states no maintenance margin; the account answer lists the
positions again (`positions[]`: `symbol`, `positionSide`, `positionAmt`, `maintMargin`,
`isolated`), and each open position's maintenance is taken from there (a position missing from
either answer makes the poll fail: one of them is partial). The liquidation distance is
Binance's own `liquidationPrice` ("0" = none); health.py applies no linear model to inverse
contracts.

Isolated: ratio = the position's `maintMargin` ÷ its margin balance, `isolatedMargin` (the
isolated wallet plus the unrealised PnL; `isolatedWallet` + `unRealizedProfit` when it is left
out), Binance's isolated margin ratio, liquidated at 100 %.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alerter.models import AccountSnapshot, Pool, Position, cross_scope
from alerter.sources.binanceusdm import fetch, is_position_row
from alerter.sources.errors import SourceError
from alerter.sources.fields import (
    is_blank,
    make_position,
    make_snapshot,
    mapping,
    number,
    optional_number,
    price_or_none,
    shape_error,
)
from alerter.sources.profile import Profile, Redirect

ID = "binancecoinm"


def check_body(path: str, data: Any) -> None:
    """/dapi/v1/positionRisk: a JSON list of positions; /dapi/v1/account: an object with `assets`
    and `positions` lists. Other answers only need to be JSON."""
    if "/dapi/" not in path:
        return
    if path.endswith("/positionRisk"):
        if not isinstance(data, list) or not all(is_position_row(row) for row in data):
            raise shape_error(ID, path, "a list of positions (symbol, positionAmt)", data)
    elif path.endswith("/account"):
        rows = data.get("positions") if isinstance(data, Mapping) else None
        assets = data.get("assets") if isinstance(data, Mapping) else None
        if not isinstance(rows, list) or not all(is_position_row(row) for row in rows) or not isinstance(assets, list):
            raise shape_error(ID, path, "an account object with assets and positions lists", data)


def _side(row: Mapping, amount: float) -> str:
    if row.get("positionSide") in ("LONG", "SHORT"):
        return row["positionSide"].lower()
    return "long" if amount > 0 else "short"


def _key(row: Mapping, amount: float) -> tuple[str, str]:
    return str(row.get("symbol")), _side(row, amount)


def account_positions(info: Mapping) -> dict[tuple[str, str], Mapping]:
    """(symbol, side) → the account answer's row, for the rows with a non-zero amount."""
    rows = info.get("positions")
    if not isinstance(rows, list):
        raise SourceError("data", f"{ID} account answer has no positions list (cannot read the positions' maintenance margin)")
    found = {}
    for row in rows:
        row = mapping(row, f"{ID} account positions")
        amount = number(row.get("positionAmt"), f"{ID} account positions {row.get('symbol')}.positionAmt")
        if amount != 0:
            found[_key(row, amount)] = row
    return found


def parse_position(position: Mapping, stated: Mapping[tuple[str, str], Mapping], markets: Mapping) -> Position | None:
    info = mapping(position.get("info"), f"{ID} position info")
    symbol = position.get("symbol") or info.get("symbol")
    where = f"{ID} position {symbol}"
    amount = number(info.get("positionAmt"), f"{where}.positionAmt")
    if amount == 0:
        return None
    key = _key(info, amount)
    row = stated.get(key)
    if row is None:
        raise SourceError("data", f"{where} {key[1]} ({amount:g}) is in the positions answer but missing from the account answer")
    market = markets.get(symbol) or {}
    size = position.get("contractSize") or market.get("contractSize")
    if size is None:
        raise SourceError("data", f"{where}: contract size unknown (no market)")
    face = abs(amount) * float(size)  # USD
    mark = number(info.get("markPrice"), f"{where}.markPrice")
    if is_blank(info.get("notionalValue")):
        notional = face / mark
    else:
        notional = abs(number(info["notionalValue"], f"{where}.notionalValue"))
    pnl = number(info.get("unRealizedProfit"), f"{where}.unRealizedProfit")
    mode = "isolated" if str(info.get("marginType") or "").lower() == "isolated" or row.get("isolated") is True else "cross"
    collateral = None
    if mode == "isolated":
        collateral = optional_number(info.get("isolatedMargin"), f"{where}.isolatedMargin")
        if collateral is None:
            collateral = number(info.get("isolatedWallet"), f"{where}.isolatedWallet") + pnl
    return make_position(
        where=where,
        symbol=symbol,
        side=key[1],
        contracts=face,
        entry_price=number(info.get("entryPrice"), f"{where}.entryPrice"),
        mark_price=mark,
        notional=notional,
        unrealized_pnl=pnl,
        maintenance_margin=number(row.get("maintMargin"), f"{ID} account positions {symbol}.maintMargin"),
        margin_mode=mode,
        collateral=collateral,
        liquidation_price=price_or_none(info.get("liquidationPrice"), f"{where}.liquidationPrice"),
        initial_margin=optional_number(row.get("positionInitialMargin"), f"{ID} account positions {symbol}.positionInitialMargin"),
        inverse=True,
        currency=market.get("settle") or str(row.get("marginAsset") or "") or None,
    )


def _listed_rows(positions: list) -> list[tuple[Mapping, float]]:
    rows = []
    for raw in positions:
        info = mapping(raw.get("info"), f"{ID} position info")
        amount = number(info.get("positionAmt"), f"{ID} position {info.get('symbol')}.positionAmt")
        if amount != 0:
            rows.append((info, amount))
    return rows


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    where = f"{exchange_id} account"
    info = mapping(balance.get("info"), f"{where} (/dapi/v1/account)")
    stated = account_positions(info)
    parsed = [p for p in (parse_position(raw, stated, markets) for raw in positions) if p is not None]
    listed = {_key(p_info, amount) for p_info, amount in _listed_rows(positions)}
    missing = sorted(set(stated) - listed)
    if missing:
        symbol, side = missing[0]
        raise SourceError("data", f"{ID} position {symbol} {side} is in the account answer but missing from the positions answer")
    assets = {}
    for row in info.get("assets") or []:
        row = mapping(row, f"{where}.assets")
        assets[str(row.get("asset"))] = row
    coins = {p.currency for p in parsed if p.currency} | {c for c, a in assets.items()
                                                         if optional_number(a.get("maintMargin"), f"{where}.assets[{c}].maintMargin")}
    candidates, pools = [], []
    for coin in sorted(coins):
        asset = assets.get(coin)
        at = f"{where}.assets[{coin}]"
        if asset is None:
            raise SourceError("data", f"{at}: missing, but there are {coin}-margined positions")
        wallet = number(asset.get("crossWalletBalance"), f"{at}.crossWalletBalance")
        equity = wallet + number(asset.get("crossUnPnl"), f"{at}.crossUnPnl")
        mine = [p for p in parsed if p.currency == coin]
        isolated = sum(p.maintenance_margin for p in mine if p.isolated)
        cross = sum(p.maintenance_margin for p in mine if not p.isolated)
        maintenance = max(number(asset.get("maintMargin"), f"{at}.maintMargin") - isolated, cross, 0.0)
        ratio = maintenance / equity if equity > 0 else (float("inf") if maintenance > 0 else 0.0)
        initial = sum(p.initial_margin or 0.0 for p in mine if not p.isolated)
        candidates.append((ratio, coin, equity, maintenance, wallet, initial))
        pools.append(Pool(cross_scope(coin), equity, maintenance, coin, wallet, tuple(p.symbol for p in mine if not p.isolated)))
    if not candidates:  # no position anywhere: the first coin with a balance, nothing maintained
        for coin in sorted(assets):
            wallet = number(assets[coin].get("crossWalletBalance"), f"{where}.assets[{coin}].crossWalletBalance")
            candidates.append((0.0, coin, wallet + number(assets[coin].get("crossUnPnl"), f"{where}.assets[{coin}].crossUnPnl"), 0.0, wallet, 0.0))
            if wallet:
                break
    if not candidates:
        raise SourceError("data", f"{where}: no assets listed")
    _, coin, equity, maintenance, wallet, initial = max(candidates, key=lambda c: (c[0], c[3]))
    return make_snapshot(
        account=account_name,
        exchange=exchange_id,
        equity=equity,
        maintenance_margin=maintenance,
        wallet_balance=wallet,
        positions=parsed,
        initial_margin=initial,
        currency=coin,
        pools=tuple(pools),
    )


# ---------------------------------------------------------------- profile

PROFILE = Profile(
    name="Binance COIN-M",
    ids=("binancecoinm",),
    modes="COIN-M (coin-margined) futures, perpetual and delivery: one cross scope per margin coin (`BTC cross`, "
          "`ETH cross`, amounts in the coin) and isolated positions, one-way and hedge mode",
    figure="cross, per margin coin: (`maintMargin` − isolated positions' `maintMargin`) ÷ (`crossWalletBalance` + "
           "`crossUnPnl`) of /dapi/v1/account `assets[]`; isolated: the position's `maintMargin` (/dapi/v1/account "
           "`positions[]`) ÷ `isolatedMargin` (/dapi/v1/positionRisk); liquidation distance: `liquidationPrice`",
    currency="the margin coin (BTC, ETH, …)",
    liquidation="Cross margin is shared only within one margin coin; a scope (one coin's cross positions, or one "
                "isolated position) is liquidated when its margin ratio, maintenance margin ÷ margin balance, reaches 100 %.",
    liquidation_url="https://www.binance.com/en/support/faq/be2c7d9d95b04a7e8044ed02dd7dfe5c",
    normalise=normalise,
    check_body=check_body,
    # load_markets() reads /dapi/v1/exchangeInfo only (no signed spot-wallet or margin-pair lists)
    ccxt_defaults={"options": {"fetchCurrencies": False, "fetchMargins": False}},
    reprice=False,  # inverse contracts across coins: full polls only
    fetch=fetch,  # binanceusdm's: the leverage brackets re-read with the markets
    options={"defaultType": ("delivery", "future", "swap"), "defaultSubType": ("inverse",), "portfolioMargin": (False,)},
    permissions='"Enable Reading" only (no trading, no withdrawals); futures must be enabled on the account',
    redirects=(
        # ccxt's binance reaches the COIN-M endpoints (/dapi) with defaultType "delivery" or subType inverse
        Redirect("binance", {"defaultType": ("delivery",), "portfolioMargin": (None, False)}, 'these are Binance COIN-M futures: use exchange = "binancecoinm"'),
        Redirect("binance", {"defaultSubType": ("inverse",), "portfolioMargin": (None, False)}, 'these are Binance COIN-M futures: use exchange = "binancecoinm"'),
    ),
)
