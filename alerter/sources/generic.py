"""The explicit fallback for an exchange without a profile: ccxt's unified fields, approximate.

Only an account that asks for it gets it: `profile = "generic"`, with `balance_includes_pnl`
declaring the exchange module's balance convention. Every snapshot it makes is `approximate`, and
`validate`, every alert and every `status` row say so: these figures are ccxt's reading of the
exchange, not the exchange's own margin figures, and were never checked against its real answers.

Read from ccxt's unified structures (https://docs.ccxt.com/?id=position-structure):
- positions: `contracts` × `contractSize` (else the market's), `side`, `entryPrice`, `markPrice`,
  `unrealizedPnl`, `maintenanceMargin`, `marginMode`, `collateral` (isolated: ccxt defines it as
  the position's margin including its unrealised PnL), `notional` (else quantity × mark),
  `initialMargin`, and `liquidationPrice` (shown, and used for an isolated position's distance);
- balance: `balance[settle]["total"]`, the settle currency's total.

Figures that ccxt's exchange modules may derive rather than take from the exchange — the reason the
whole account is approximate, never silently exact:
- `maintenanceMargin`, `collateral`, `notional`, `liquidationPrice`: computed by some modules (ccxt's
  hyperliquid computes an isolated position's maintenance margin at its liquidation price, about
  4 % above the exchange's own);
- `maintenanceMarginPercentage` is NOT read: ccxt's deribit hands it on ×100 (2.15 for 2.15 %),
  which turns the liquidation distance's sign; the distance uses maintenance ÷ notional instead;
- `total`: whether it already holds the unrealised PnL differs per module (binance's margin
  balance does, bybit's wallet balance does not). The account states it: equity = `total` when
  `balance_includes_pnl`, else `total` + Σ cross unrealised PnL. Guessing wrong counts the PnL
  twice (a real account at 9 % read 51 %), so there is no default.

The settle currency is the one of the positions' markets; with no position, the balance's only
currency with a non-zero total (USDT among several, else the first by name), so a coin-margined
account's equity is not read from an empty USDT line. A position without `maintenanceMargin` is a
SourceError(kind="data"), never 0 %.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from alerter.models import AccountSnapshot, Position
from alerter.sources.errors import SourceError
from alerter.sources.fields import base_quantity, make_position, number, optional_number, price_or_none, wallet_snapshot
from alerter.sources.profile import Profile


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
            "(this exchange needs its own profile)",
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
    )


def idle_currency(balance: Mapping) -> str:
    """The currency of an account without positions: its only non-zero total, else USDT."""
    totals = balance.get("total")
    held = sorted(
        c for c, v in (totals.items() if isinstance(totals, Mapping) else ())
        if isinstance(v, int | float) and not isinstance(v, bool) and v != 0
    )
    if len(held) == 1 or (held and "USDT" not in held):
        return held[0]
    return "USDT"


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping, *,
              balance_includes_pnl: bool) -> AccountSnapshot:
    parsed = [p for p in (parse_position(raw, markets, exchange_id) for raw in positions) if p is not None]
    settles = sorted({(markets.get(p.symbol) or {}).get("settle") for p in parsed} - {None})
    if len(settles) > 1:
        raise SourceError("data", f"{exchange_id}: positions settle in several currencies ({', '.join(settles)}); no single cross account")
    settle = settles[0] if settles else idle_currency(balance)
    cross = [p for p in parsed if not p.isolated]
    account = balance.get(settle)
    if account is None or account.get("total") is None:
        if cross:
            raise SourceError("data", f"{exchange_id} balance: no total for the settle currency {settle}")
        total = 0.0
    else:
        total = number(account["total"], f"{exchange_id} balance {settle}.total")
    wallet = total - sum(p.unrealized_pnl for p in cross) if balance_includes_pnl else total
    snapshot = wallet_snapshot(account=account_name, exchange=exchange_id, wallet=wallet, positions=parsed, currency=settle)
    return replace(snapshot, approximate=True)


PROFILE = Profile(
    name="any other ccxt exchange",
    ids=(),  # never chosen by exchange id: only by `profile = "generic"` in the account
    modes='any account ccxt reports positions for, with `profile = "generic"` and `balance_includes_pnl`',
    figure="Σ cross positions' `maintenanceMargin` ÷ (the settle currency's balance `total`, plus Σ cross "
           "`unrealizedPnl` unless `balance_includes_pnl`); isolated: `maintenanceMargin` ÷ `collateral` — ccxt's "
           "unified fields, **approximate**",
    currency="the settle currency of the positions' markets (without positions: the balance's only non-zero currency)",
    liquidation="Not known to alerter: it assumes liquidation where the maintenance margin reaches the equity, as on "
                "the exchanges with a profile; ccxt's unified position structure is the only source.",
    liquidation_url="https://docs.ccxt.com/?id=position-structure",
    normalise=normalise,  # its balance_includes_pnl is the account's (build_source binds it)
)
