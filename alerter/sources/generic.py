"""Any other ccxt exchange, from ccxt's unified position and balance fields only.

Positions: `contracts` × `contractSize`, `side`, `entryPrice`, `markPrice`, `unrealizedPnl`,
`maintenanceMargin`, `marginMode`, `collateral` (isolated; ccxt defines it as the position's
margin including its unrealised PnL), `liquidationPrice`, `notional`.

Account: equity = `balance[settle]['total']` + Σ unrealised PnL of the cross positions.
ASSUMPTION: the exchange module's `total` is the wallet balance without unrealised PnL (true for
e.g. ccxt's bybit; not for binance, whose `total` is the margin balance — which is why the big
exchanges have their own normalisers). If an exchange's `total` already includes PnL, losses are
counted twice (ratio too high, alerts early) and profits twice (ratio too low): give it its own
normaliser. The settle currency is the one of the positions' markets (USDT if there are none).

If the exchange module gives no maintenance margin for a position, there is no honest ratio to
report: that is a SourceError(kind="data"), not 0 %.
"""

from __future__ import annotations

from collections.abc import Mapping

from alerter.models import AccountSnapshot, Position
from alerter.sources.errors import SourceError
from alerter.sources.fields import base_quantity, make_position, number, optional_number, price_or_none, wallet_snapshot


def parse_position(position: Mapping, markets: Mapping, exchange_id: str) -> Position | None:
    symbol = position.get("symbol")
    where = f"{exchange_id} position {symbol}"
    contracts = optional_number(position.get("contracts"), f"{where}.contracts")
    if not contracts:
        return None
    quantity = base_quantity(position, markets, where)
    mark = number(position.get("markPrice"), f"{where}.markPrice")
    if position.get("maintenanceMargin") is None:
        raise SourceError(
            "data",
            f"{where}: ccxt's {exchange_id} gives no maintenanceMargin for positions, so the margin ratio cannot be computed "
            "(this exchange needs its own normaliser)",
        )
    mode = "isolated" if position.get("marginMode") == "isolated" else "cross"
    collateral = number(position.get("collateral"), f"{where}.collateral (isolated)") if mode == "isolated" else None
    notional = optional_number(position.get("notional"), f"{where}.notional")
    notional = abs(notional) if notional else quantity * mark
    side = position.get("side")
    return make_position(
        where=where,
        symbol=symbol,
        side=side,
        contracts=quantity,
        entry_price=number(position.get("entryPrice"), f"{where}.entryPrice"),
        mark_price=mark,
        notional=notional,
        unrealized_pnl=number(position.get("unrealizedPnl"), f"{where}.unrealizedPnl"),
        maintenance_margin=number(position.get("maintenanceMargin"), f"{where}.maintenanceMargin"),
        margin_mode=mode,
        collateral=collateral,
        liquidation_price=price_or_none(position.get("liquidationPrice"), f"{where}.liquidationPrice"),
        initial_margin=optional_number(position.get("initialMargin"), f"{where}.initialMargin"),
        maintenance_rate=optional_number(position.get("maintenanceMarginPercentage"), f"{where}.maintenanceMarginPercentage"),
    )


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    parsed = [p for p in (parse_position(raw, markets, exchange_id) for raw in positions) if p is not None]
    settles = sorted({(markets.get(p.symbol) or {}).get("settle") for p in parsed} - {None})
    if len(settles) > 1:
        raise SourceError("data", f"{exchange_id}: positions settle in several currencies ({', '.join(settles)}); no single cross account")
    settle = settles[0] if settles else "USDT"
    cross = [p for p in parsed if not p.isolated]
    account = balance.get(settle)
    if account is None or account.get("total") is None:
        if cross:
            raise SourceError("data", f"{exchange_id} balance: no total for the settle currency {settle}")
        wallet = 0.0
    else:
        wallet = number(account["total"], f"{exchange_id} balance {settle}.total")
    return wallet_snapshot(account=account_name, exchange=exchange_id, wallet=wallet, positions=parsed, currency=settle)
