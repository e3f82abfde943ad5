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

Isolated scope, Binance's own rule: an isolated position's margin ratio = its maintenance margin
÷ its margin balance, and it is liquidated at 100 % (https://www.binance.com/en/support/faq/360033162192;
the liquidation price formula of
https://www.binance.com/en/support/faq/how-to-calculate-liquidation-price-of-usd%E2%93%A2-m-contracts-b3c689c1f50a44cabb3a84e663b81d93
with WB = the isolated wallet, TMM1 = UPNL1 = 0, solves isolated wallet + PnL = notional × the
bracket's rate − its `cum`). Both figures are stated: ratio = `maintMargin` ÷ `isolatedMargin`
(`maintMargin` is notional × rate − `cum` of the position's bracket), exactly Binance's.

Completeness: the raw positionRisk answer must be a JSON list of positions and the account
answer a JSON object with a `positions` list (`check_body`): ccxt reads a cut body as text and
that text as "no positions". The account answer lists the open positions a second time
(`symbol`, `positionSide`, `positionAmt`, `maintMargin`, ...; v3 lists only symbols with a
position or open orders, v2 every symbol), so `check_positions_agree` requires the two lists to
name the same non-zero positions, and an account with maintenance margin to list some.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alerter.models import AccountSnapshot, Position
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
from alerter.sources.profile import FetchContext, Profile, Raw, Redirect, fetch_account
from alerter.sources.streamspec import Notice, StreamSpec, message_number

# totalMaintMargin above this (USDT, or USD in multi-assets mode) needs an open position
MAINTENANCE_WITHOUT_POSITIONS = 0.01


def is_position_row(row: Any) -> bool:
    """A row of Binance's positionRisk or account `positions` (USDⓈ-M and COIN-M alike)."""
    return isinstance(row, Mapping) and "symbol" in row and "positionAmt" in row


def check_body(path: str, data: Any) -> None:
    """/fapi/v2|v3/positionRisk: a JSON list of positions; /fapi/v2|v3/account: an object with a
    `positions` list. Other answers (leverage brackets, ...) only need to be JSON."""
    if "/fapi/" not in path:
        return
    if path.endswith("/positionRisk"):
        if not isinstance(data, list) or not all(is_position_row(row) for row in data):
            raise shape_error("binanceusdm", path, "a list of positions (symbol, positionAmt)", data)
    elif path.endswith("/account"):
        rows = data.get("positions") if isinstance(data, Mapping) else None
        if not isinstance(rows, list) or not all(is_position_row(row) for row in rows):
            raise shape_error("binanceusdm", path, "an account object with a positions list", data)


def _open_positions(rows: list, where: str) -> dict[tuple[str, str], float]:
    """(symbol, positionSide) → positionAmt of the rows with a non-zero amount."""
    found = {}
    for row in rows:
        row = mapping(row, where)
        amount = number(row.get("positionAmt"), f"{where} {row.get('symbol')}.positionAmt")
        if amount != 0:
            found[(str(row.get("symbol")), str(row.get("positionSide") or "BOTH"))] = amount
    return found


def _named(key: tuple[str, str], amount: float) -> str:
    symbol, side = key
    return f"{symbol} {side.lower() if side in ('LONG', 'SHORT') else ('long' if amount > 0 else 'short')} ({amount:g})"


def check_positions_agree(account: Mapping, positions: list) -> None:
    """The account answer and the positions answer must name the same open positions (same
    `symbol` and `positionSide`, non-zero `positionAmt`): one missing from either is a partial
    answer, never a closed position. Only presence is compared (amounts may move between the two
    requests). An account whose `totalMaintMargin` is above a cent holds positions, so both lists
    empty is no answer either. Raises SourceError("data") naming the positions in doubt."""
    rows = account.get("positions")
    if not isinstance(rows, list):
        raise SourceError("data", "binanceusdm account answer has no positions list (cannot confirm the positions)")
    stated = _open_positions(rows, "binanceusdm account positions")
    listed = _open_positions([mapping(p.get("info"), "binanceusdm position info") for p in positions], "binanceusdm position")
    for found, where, other in ((stated, "account", "positions"), (listed, "positions", "account")):
        missing = [_named(key, found[key]) for key in sorted(found.keys() - (listed if found is stated else stated).keys())]
        if missing:
            what = f"position {missing[0]} is" if len(missing) == 1 else f"positions {', '.join(missing)} are"
            raise SourceError("data", f"binanceusdm {what} in the {where} answer but missing from the {other} answer")
    maintenance = optional_number(account.get("totalMaintMargin"), "binanceusdm account.totalMaintMargin")
    if not stated and maintenance is not None and maintenance > MAINTENANCE_WITHOUT_POSITIONS:
        raise SourceError("data", f"binanceusdm account shows maintenance margin {maintenance:g} (totalMaintMargin) but lists no open position")


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


def totals_currency(info: Mapping, where: str) -> str:
    """The currency of the account's totals. In single-asset mode they are the USDT asset's own
    ("only for USDT asset", https://developers.binance.com/docs/derivatives/usds-margined-futures/account/rest-api/Account-Information-V3);
    in multi-assets mode they sum every margin asset at its USD value. v2 states the mode
    (`multiAssetsMargin`); v3 does not, so there a total wallet that is not the USDT asset's
    wallet shows the totals are USD values (a real v3 account with 22 USDC and 3.73 USDT has a
    totalWalletBalance of 25.726)."""
    flag = info.get("multiAssetsMargin")
    if isinstance(flag, bool):
        return "USD" if flag else "USDT"
    usdt = next((a for a in info.get("assets") or [] if isinstance(a, Mapping) and a.get("asset") == "USDT"), None)
    total = optional_number(info.get("totalWalletBalance"), f"{where}.totalWalletBalance")
    if usdt is None or total is None:
        return "USDT"
    wallet = number(usdt.get("walletBalance"), f"{where}.assets[USDT].walletBalance")
    return "USD" if abs(total - wallet) > 1e-8 * max(1.0, abs(total)) else "USDT"


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    where = f"{exchange_id} account"
    info = mapping(balance.get("info"), f"{where} (/fapi/v3/account)")
    check_positions_agree(info, positions)
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
        currency=totals_currency(info, where),
    )


# ---------------------------------------------------------------- profile

async def fetch(ctx: FetchContext) -> Raw:
    """The default fetch; ccxt's binance keeps the leverage brackets it read with the first
    positions in its options: dropped when the markets are reloaded, so that the next positions
    read them again (binancecoinm's too)."""
    if ctx.markets_reloaded:
        ctx.exchange.options.pop("leverageBrackets", None)
    return await fetch_account(ctx)


def binance_margin_call(message: Mapping[str, Any]) -> Notice | None:
    """Binance USDⓈ-M's MARGIN_CALL user-data event as one line, or None for any other message:
    "Binance margin call: ETHUSDT cross, maint 1.61" (several positions: "; "-separated).
    https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams/Event-Margin-Call"""
    if not isinstance(message, Mapping) or message.get("e") != "MARGIN_CALL":
        return None
    parts, keys = [], []
    for row in message.get("p") or []:
        if not isinstance(row, Mapping):
            continue
        symbol = str(row.get("s") or "?")
        mode = "cross" if str(row.get("mt", "")).upper().startswith("CROSS") else "isolated"
        side = str(row.get("ps") or "BOTH").upper()
        maint = message_number(row.get("mm"))
        text = f"{symbol}{'' if side == 'BOTH' else ' ' + side.lower()} {mode}"
        parts.append(text + (f", maint {maint:,.2f}" if maint is not None else ""))
        keys.append(text)
    if not parts:
        return Notice("Binance margin call (no positions named)", "margin-call")
    return Notice("Binance margin call: " + "; ".join(parts), "margin-call:" + ",".join(sorted(keys)))


def binance_event(message: Mapping[str, Any]) -> str | None:
    """"ACCOUNT_UPDATE" when Binance's user-data stream says positions or balances changed."""
    return "ACCOUNT_UPDATE" if message.get("e") == "ACCOUNT_UPDATE" else None


def binance_listen_key_expired(message: Mapping[str, Any]) -> bool:
    return message.get("e") == "listenKeyExpired"


def forget_listen_keys(exchange: Any) -> None:
    """Drop the listen keys ccxt.pro's binance keeps in its options (one per market type), so
    that the next connection asks the exchange for one (it answers with the live key, or a new
    one when that has expired)."""
    for kind, bucket in list(exchange.options.items()):
        if isinstance(bucket, dict) and bucket.get("listenKey"):
            exchange.options[kind] = {**bucket, "listenKey": None, "lastAuthenticatedTime": 0}


STREAM = StreamSpec(
    name="Binance",
    event=binance_event,
    notice=binance_margin_call,
    options={
        # every mark-price subscription on one connection (ccxt opens one per symbol set otherwise)
        "streamLimits": {"linear": 1},
        # no REST snapshot behind the user-data stream: a full poll follows every event anyway
        "watchBalance": {"fetchBalanceSnapshot": False},
        "watchPositions": {"fetchPositionsSnapshot": False},
        "listenKeyRefreshRate": 30 * 60 * 1000,  # Binance keeps a listen key 60 min after a keepalive
    },
    prices="`<symbol>@markPrice@1s` (every 1 s)",
    events="`ACCOUNT_UPDATE` (listen-key user-data stream)",
    notices="`MARGIN_CALL`: `Binance margin call: ETHUSDT cross, maint 1.61`",
    session_expired=binance_listen_key_expired,
    forget_session=forget_listen_keys,
)


PROFILE = Profile(
    name="Binance USDⓈ-M",
    ids=("binanceusdm",),
    modes="USDⓈ-M futures: cross and isolated positions, one-way and hedge mode, single- and multi-assets mode",
    figure="cross: (`totalMaintMargin` − isolated `maintMargin`) ÷ (`totalCrossWalletBalance` + `totalCrossUnPnl`) "
           "of /fapi/v3/account; isolated: `maintMargin` ÷ `isolatedMargin` of /fapi/v3/positionRisk",
    currency="USDT (USD in multi-assets mode)",
    liquidation="A scope is liquidated when its margin ratio, maintenance margin ÷ margin balance (cross: the cross "
                "wallet balance plus the cross positions' unrealised PnL; isolated: the position's margin), reaches 100 %.",
    liquidation_url="https://www.binance.com/en/support/faq/360033162192",
    normalise=normalise,
    check_body=check_body,
    # load_markets() reads /fapi/v1/exchangeInfo only: fetchCurrencies would add the signed spot-wallet
    # /sapi/v1/capital/config/getall (every coin, and a permission a futures read key need not have),
    # fetchMargins the /sapi margin pair lists; neither matters for futures margin.
    ccxt_defaults={"options": {"fetchCurrencies": False, "fetchMargins": False}},
    reprice=True,  # linear contracts in one settle currency: maintenance and PnL follow the mark
    fetch=fetch,
    stream=STREAM,
    permissions='"Enable Reading" only (no trading, no withdrawals); futures must be enabled on the account',
    options={"defaultType": ("swap", "future"), "defaultSubType": ("linear",), "portfolioMargin": (False,)},
    redirects=(
        # ccxt's binance reaches the USDⓈ-M endpoints (/fapi) with defaultType "future" or "swap";
        # the generic path would add the unrealised PnL to a balance total that already holds it
        # (a portfolio margin account is the binance profile's, whatever its defaultType)
        Redirect("binance", {"defaultType": ("future", "swap"), "defaultSubType": (None, "linear"), "portfolioMargin": (None, False)},
                 'these are Binance USDⓈ-M futures: use exchange = "binanceusdm"'),
    ),
)
