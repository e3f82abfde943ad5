"""Binance USDⓈ-M futures: /fapi/v3/account (in `fetch_balance()['info']`) + /fapi/v3/positionRisk.

Account (cross) figures, per the field comments of "Account Information V3":
https://developers.binance.com/docs/derivatives/usds-margined-futures/account/rest-api/Account-Information-V3
- `totalCrossWalletBalance` "crossed wallet balance", `totalCrossUnPnl` "unrealized profit of
  crossed positions": cross equity = the two added (Binance's cross margin balance).
- `totalMaintMargin` "total maintenance margin required" — documented without a cross/isolated
  restriction (unlike `totalCrossWalletBalance`), and Binance's own cross margin ratio
  (https://www.binance.com/en/support/faq/360033162192: margin ratio = maintenance margin ÷ margin
  balance, per margin mode) leaves isolated positions out. So the cross maintenance is
  `totalMaintMargin` − Σ isolated positions' `maintMargin`. Because the docs do not say so
  explicitly, it is never taken below Σ cross positions' own `maintMargin` (that would mean
  `totalMaintMargin` already excluded the isolated ones): the larger, i.e. safer, figure wins.

Positions (v3 positionRisk has no `marginType`/`leverage`; v2 has them): `positionAmt` signed,
`maintMargin` (v3; ccxt's bracket-derived figure otherwise), `isolatedMargin` = isolated wallet +
unrealised PnL (the position's collateral), `liquidationPrice` "0" = none.
"""

from __future__ import annotations

from collections.abc import Mapping

from alerter.models import AccountSnapshot, Position
from alerter.sources.fields import is_blank, make_position, mapping, make_snapshot, number, optional_number, price_or_none


def margin_mode(position: Mapping, info: Mapping, where: str) -> str:
    """`marginType` (v2), else isolated iff `isolatedWallet` > 0 (v3), else ccxt's `marginMode`."""
    margin_type = info.get("marginType")
    if not is_blank(margin_type):
        mode = str(margin_type).lower()
    elif not is_blank(info.get("isolatedWallet")):
        mode = "isolated" if number(info["isolatedWallet"], f"{where}.isolatedWallet") > 0 else "cross"
    else:
        mode = position.get("marginMode") or "cross"
    return "isolated" if mode == "isolated" else "cross"


def parse_position(position: Mapping) -> Position | None:
    info = mapping(position.get("info"), "binanceusdm position info")
    symbol = position.get("symbol") or info.get("symbol")
    where = f"binanceusdm position {symbol}"
    amount = number(info.get("positionAmt"), f"{where}.positionAmt")
    if amount == 0:
        return None
    mark = number(info.get("markPrice"), f"{where}.markPrice")
    if is_blank(info.get("notional")):
        notional = abs(amount) * mark
    else:
        notional = abs(number(info["notional"], f"{where}.notional"))
    if is_blank(info.get("maintMargin")):
        maintenance = number(position.get("maintenanceMargin"), f"{where}.maintenanceMargin")
    else:
        maintenance = number(info["maintMargin"], f"{where}.maintMargin")
    pnl = number(info.get("unRealizedProfit"), f"{where}.unRealizedProfit")
    mode = margin_mode(position, info, where)
    collateral = None
    if mode == "isolated":
        collateral = optional_number(info.get("isolatedMargin"), f"{where}.isolatedMargin")
        if collateral is None:
            collateral = number(info.get("isolatedWallet"), f"{where}.isolatedWallet") + pnl
    side = "long" if amount > 0 else "short"
    if info.get("positionSide") in ("LONG", "SHORT"):
        side = info["positionSide"].lower()
    initial = optional_number(info.get("positionInitialMargin", info.get("initialMargin")), f"{where}.initialMargin")
    if initial is None:
        initial = optional_number(position.get("initialMargin"), f"{where}.initialMargin")
    return make_position(
        where=where,
        symbol=symbol,
        side=side,
        contracts=abs(amount),  # USDⓈ-M contract size is 1 base unit
        entry_price=number(info.get("entryPrice"), f"{where}.entryPrice"),
        mark_price=mark,
        notional=notional,
        unrealized_pnl=pnl,
        maintenance_margin=maintenance,
        margin_mode=mode,
        collateral=collateral,
        liquidation_price=price_or_none(info.get("liquidationPrice"), f"{where}.liquidationPrice"),
        initial_margin=initial,
        # ccxt picks the bracket's maintMarginRatio from /fapi/v1/leverageBracket
        maintenance_rate=optional_number(position.get("maintenanceMarginPercentage"), f"{where}.maintenanceMarginPercentage"),
    )


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    where = f"{exchange_id} account"
    info = mapping(balance.get("info"), f"{where} (/fapi/v3/account)")
    parsed = [p for p in (parse_position(raw) for raw in positions) if p is not None]
    cross = [p for p in parsed if not p.isolated]
    isolated = [p for p in parsed if p.isolated]
    wallet = number(info.get("totalCrossWalletBalance"), f"{where}.totalCrossWalletBalance")
    cross_pnl = number(info.get("totalCrossUnPnl"), f"{where}.totalCrossUnPnl")
    total_maint = number(info.get("totalMaintMargin"), f"{where}.totalMaintMargin")
    maintenance = max(total_maint - sum(p.maintenance_margin for p in isolated), sum(p.maintenance_margin for p in cross), 0.0)
    initial = sum(p.initial_margin or 0.0 for p in cross)
    return make_snapshot(
        account=account_name,
        exchange=exchange_id,
        equity=wallet + cross_pnl,
        maintenance_margin=maintenance,
        wallet_balance=wallet,
        positions=parsed,
        initial_margin=initial,
        # multi-assets mode reports the totals in USD value
        currency="USD" if info.get("multiAssetsMargin") is True else "USDT",
    )
