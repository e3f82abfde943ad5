"""OKX v5: GET /api/v5/account/balance (`balance['info']['data'][0]`) + GET /api/v5/account/positions.

https://www.okx.com/docs-v5/en/#trading-account-rest-api-get-balance
OKX's `mgnRatio` = adjusted equity ÷ (maintenance margin + fees): higher is safer, liquidation at
≤ 1 (the field's description on the page above). Normalised
ratio = 1 / mgnRatio, so equity = the cross equity and maintenance = equity / mgnRatio (which is
OKX's maintenance plus the fee buffer).

Where the ratio is depends on the account mode:
- multi-currency / portfolio margin: account-level `adjEq` and `mgnRatio` (USD);
- single-currency margin: those are "" and the ratio is per currency in `details[]`: `mgnRatio`
  and `eq` of the settle currency. `eq` includes the currency's isolated equity (`isoEq`), which
  is not part of the cross ratio, so the cross equity is taken as `eq` − `isoEq` (an assumption:
  the docs define `mgnRatio` per currency but not its denominator field by field). If several
  currencies carry cross positions, the one with the worst ratio is the account's.
Empty strings are never read as zero; with no cross position both places are empty.

Positions (https://www.okx.com/docs-v5/en/#trading-account-rest-api-get-positions): `pos`
counts contracts (× `ctVal`, ccxt's contractSize), `mgnMode`, `mmr` (maintenance), isolated
`margin` excludes unrealised PnL so collateral = `margin` + `upl`, `liqPx` ("" = none), `markPx`,
`avgPx`, and the position's own `mgnRatio` = (margin + upl) ÷ (mmr + the estimated fee to close):
higher is safer, liquidation at ≤ 1. An isolated scope takes that figure as it is: maintenance =
collateral ÷ `mgnRatio` (OKX's `mmr` plus its close-fee buffer), so the scope's ratio is exactly
1 ÷ `mgnRatio` (the recorded BTC-USD-SWAP reads 1 ÷ 74.32 = 1.35 %, where `mmr` ÷ collateral
would say 1.20 %). Both `mmr` and the fee grow in proportion to the notional (a tier's rate, the
taker rate), so re-pricing the fee-inclusive maintenance with the notional stays faithful.
When OKX leaves `mgnRatio` "" the maintenance falls back to `mmr` (the ratio then omits the fee
and reads a little low); "" is never read as 0.

Linear SWAP/FUTURES positions are in the settle currency. Inverse (coin-margined) ones, e.g.
BTC-USD-SWAP margined in BTC, state `margin`, `upl` and `mmr` in the coin (`ccy`); their
`contracts` are the face value in USD (`pos` × `ctVal`), their notional is face ÷ `markPx` in the
coin, and their liquidation distance is OKX's own `liqPx` (health.py applies no linear model to
them). A cross position of another kind (spot margin, option) is still inside the account ratio
and is skipped with a warning; an isolated one cannot be evaluated: it is returned in
`AccountSnapshot.unreadable` with the reason, so only its own scope goes blind.

Completeness: every raw v5 answer must be `{"code": "0", "data": [...]}` (`check_body`; the
balance with a data[0], the positions a list of objects with `instId`): ccxt reads a cut body as
text and that text as "no positions". And the balance states the isolated side a second time:
`details[].isoEq` is the currency's isolated margin equity, so `check_isolated_agree` requires an
isolated position margined in a currency exactly when that currency's `isoEq` is materially
above zero (more than a millionth of the currency's `eq`, so float dust is no position). Only
presence is compared: `isoEq` moves with the marks between the two requests, and a position near
liquidation has almost no isolated equity, so amounts cannot be matched without false alarms.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NamedTuple

from alerter.models import AccountSnapshot, OwnFigure, Position, isolated_scope
from alerter.sources.errors import SourceError
from alerter.sources.fields import (
    base_quantity,
    is_blank,
    make_position,
    make_snapshot,
    mapping,
    number,
    optional_number,
    price_or_none,
    shape_error,
)
from alerter.sources import okx_loans
from alerter.sources.profile import Profile
from alerter.sources.streamspec import Notice, StreamSpec, message_number, watch_balance, watch_positions

logger = logging.getLogger(__name__)

ISO_EQ_DUST = 1e-6  # isoEq at or below this share of the currency's eq is no isolated position


def check_body(path: str, data: Any) -> None:
    """Every v5 answer is {"code": "0", "data": [...]}; the balance has a data[0], the positions
    are objects with an instId."""
    if "/api/v5/" not in path:
        return
    if not isinstance(data, Mapping) or str(data.get("code")) != "0" or not isinstance(data.get("data"), list):
        raise shape_error("okx", path, 'an object {"code": "0", "data": [...]}', data)
    rows = data["data"]
    if path.endswith("/account/balance") and not (rows and isinstance(rows[0], Mapping)):
        raise shape_error("okx", path, "a balance in data[0]", rows)
    if path.endswith("/account/positions") and not all(isinstance(row, Mapping) and "instId" in row for row in rows):
        raise shape_error("okx", path, "a list of positions (instId) in data", rows)


def check_isolated_agree(data: Mapping, positions: list) -> None:
    """Per currency: an isolated position margined in it is listed ⇔ `details[ccy].isoEq` is
    materially above zero. Either half alone means one of the two answers is partial.
    Raises SourceError("data") naming the position or the currency."""
    details = {d.get("ccy"): d for d in data.get("details") or [] if isinstance(d, Mapping)}
    listed: dict[str, str] = {}  # margin currency → the first isolated position in it
    for raw in positions:
        info = mapping(raw.get("info"), "okx position info")
        if info.get("mgnMode") != "isolated" or not optional_number(info.get("pos"), f"okx position {info.get('instId')}.pos"):
            continue
        listed.setdefault(str(info.get("ccy") or ""), f"{info.get('instId')} {raw.get('side') or info.get('posSide')}")
    for ccy in sorted(set(listed) | {c for c in details if isinstance(c, str)}):
        detail = details.get(ccy) or {}
        iso = optional_number(detail.get("isoEq"), f"okx account.details[{ccy}].isoEq") or 0.0
        eq = optional_number(detail.get("eq"), f"okx account.details[{ccy}].eq") or 0.0
        material = iso > ISO_EQ_DUST * max(abs(eq), abs(iso))
        if ccy in listed and not material:
            raise SourceError("data", f"okx position {listed[ccy]} (isolated) is listed, but the balance shows no isolated {ccy} equity "
                                      f"(details[{ccy}].isoEq {detail.get('isoEq')!r}): the balance answer is partial")
        if material and ccy not in listed:
            raise SourceError("data", f"okx balance shows isolated {ccy} equity {iso:g} (details[{ccy}].isoEq) "
                                      f"but the positions answer lists no isolated {ccy} position: positions missing")


class Unreadable(NamedTuple):
    """An isolated position this profile cannot evaluate: its scope and why."""

    scope: str
    reason: str


def isolated_maintenance(info: Mapping, collateral: float, where: str) -> float:
    """collateral ÷ OKX's own `mgnRatio` (mmr + the fee to close), so the scope reads 1 ÷ mgnRatio.

    OKX leaves `mgnRatio` "" in some cases (seen with no maintenance to state); then `mmr` alone
    is the best figure there is. A collateral at or below zero has no finite ratio either way."""
    mmr = number(info.get("mmr"), f"{where}.mmr")
    stated = optional_number(info.get("mgnRatio"), f"{where}.mgnRatio")
    if stated is None or stated <= 0 or collateral <= 0:
        return mmr  # "" is not 0: fall back to OKX's maintenance without the fee buffer
    return collateral / stated


def parse_position(position: Mapping, markets: Mapping) -> tuple[Position | Unreadable | None, str | None]:
    """The position (or why its isolated scope cannot be evaluated) and its margin currency, or
    (None, None) when it is empty or skipped."""
    info = mapping(position.get("info"), "okx position info")
    symbol = position.get("symbol") or info.get("instId")
    where = f"okx position {symbol}"
    pos = optional_number(info.get("pos"), f"{where}.pos")
    if not pos:
        return None, None
    mode = info.get("mgnMode")
    if mode not in ("cross", "isolated"):
        raise SourceError("data", f"{where}.mgnMode: expected cross or isolated, got {mode!r}")
    side = position.get("side")
    if side not in ("long", "short"):
        side = "long" if pos > 0 else "short"
    market = markets.get(symbol) or {}
    kind = info.get("instType")
    inverse = market.get("inverse") is True and market.get("linear") is not True
    if kind not in ("SWAP", "FUTURES") or not (market.get("linear") is True or inverse):
        if mode == "isolated":
            what = f"{kind} contract" if kind in ("SWAP", "FUTURES") else f"{kind} position"
            return Unreadable(isolated_scope(symbol, side), f"{where} {side} (isolated {what}): alerter cannot evaluate this kind "
                                                            "(isolated linear and inverse swaps/futures only); check it on OKX"), None
        logger.warning("%s: %s position skipped (only swaps/futures are listed; it still counts in the account ratio)", where, kind)
        return None, None
    contracts = base_quantity(position, markets, where, require_size=True)  # inverse: the face value in USD
    mark = number(info.get("markPx"), f"{where}.markPx")
    pnl = number(info.get("upl"), f"{where}.upl")
    settle = market.get("settle") or info.get("ccy")
    collateral = None
    maintenance = number(info.get("mmr"), f"{where}.mmr")
    if mode == "isolated":
        collateral = number(info.get("margin"), f"{where}.margin (isolated)") + pnl
        maintenance = isolated_maintenance(info, collateral, where)
    initial = optional_number(info.get("imr"), f"{where}.imr") if mode == "cross" else optional_number(info.get("margin"), f"{where}.margin")
    return (
        make_position(
            where=where,
            symbol=symbol,
            side=side,
            contracts=contracts,
            entry_price=number(info.get("avgPx"), f"{where}.avgPx"),
            mark_price=mark,
            notional=contracts / mark if inverse else contracts * mark,
            unrealized_pnl=pnl,
            maintenance_margin=maintenance,
            margin_mode=mode,
            collateral=collateral,
            liquidation_price=price_or_none(info.get("liqPx"), f"{where}.liqPx"),
            initial_margin=initial,
            inverse=inverse,
            currency=settle,
        ),
        settle,
    )


def account_data(balance: Mapping) -> dict:
    data = mapping(balance.get("info"), "okx account/balance answer").get("data") or []
    if not data:
        raise SourceError("data", "okx account/balance answer has no data[0]")
    return mapping(data[0], "okx account/balance data[0]")


def cross_figures(equity: float, margin_ratio: float, fallback_maintenance: object, where: str) -> tuple[float, float]:
    """(equity, maintenance) from OKX's margin ratio; at or below zero equity use OKX's `mmr`."""
    if margin_ratio > 0 and equity > 0:
        return equity, equity / margin_ratio
    return equity, number(fallback_maintenance, f"{where}.mmr")


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    data = account_data(balance)
    parsed: list[Position] = []
    unreadable: list[Unreadable] = []
    cross_settles: set[str] = set()
    for raw in positions:
        position, settle = parse_position(raw, markets)
        if isinstance(position, Unreadable):
            unreadable.append(position)
            continue
        if position is None:
            continue
        parsed.append(position)
        if not position.isolated and settle:
            cross_settles.add(settle)
    check_isolated_agree(data, positions)
    snapshot = account_snapshot(data, account_name, exchange_id, parsed, cross_settles)
    return replace(snapshot, unreadable=tuple(sorted({(u.scope, u.reason) for u in unreadable}))) if unreadable else snapshot


def account_snapshot(data: Mapping, account_name: str, exchange_id: str, parsed: list[Position], cross_settles: set[str]) -> AccountSnapshot:
    where = f"{exchange_id} account"
    common = dict(account=account_name, exchange=exchange_id, positions=parsed)

    if not is_blank(data.get("mgnRatio")):  # multi-currency or portfolio margin
        equity, maintenance = cross_figures(
            number(data.get("adjEq"), f"{where}.adjEq"), number(data["mgnRatio"], f"{where}.mgnRatio"), data.get("mmr"), where
        )
        total = optional_number(data.get("totalEq"), f"{where}.totalEq")
        return make_snapshot(
            equity=equity,
            maintenance_margin=maintenance,
            wallet_balance=equity if total is None else total,
            initial_margin=optional_number(data.get("imr"), f"{where}.imr") or 0.0,
            currency="USD",
            **common,
        )

    details = {d.get("ccy"): d for d in data.get("details") or []}
    candidates = []
    for ccy in sorted(cross_settles):
        detail = details.get(ccy)
        at = f"{where}.details[{ccy}]"
        if detail is None or is_blank(detail.get("mgnRatio")):
            raise SourceError("data", f"{at}.mgnRatio: missing, but there are cross {ccy} positions (neither account-level nor currency margin ratio)")
        eq = number(detail.get("eq"), f"{at}.eq")
        iso = optional_number(detail.get("isoEq"), f"{at}.isoEq") or 0.0
        equity, maintenance = cross_figures(eq - iso, number(detail["mgnRatio"], f"{at}.mgnRatio"), detail.get("mmr"), at)
        wallet = optional_number(detail.get("cashBal"), f"{at}.cashBal")
        initial = optional_number(detail.get("imr"), f"{at}.imr") or 0.0
        ratio = maintenance / equity if equity > 0 else float("inf")
        candidates.append((ratio, ccy, equity, maintenance, eq if wallet is None else wallet, initial))
    if candidates:
        _, ccy, equity, maintenance, wallet, initial = max(candidates)
        return make_snapshot(equity=equity, maintenance_margin=maintenance, wallet_balance=wallet, initial_margin=initial, currency=ccy, **common)

    # no cross position: nothing is maintained at account level
    total = optional_number(data.get("totalEq"), f"{where}.totalEq")
    if total is None:
        raise SourceError("data", f"{where}.totalEq: missing")
    return make_snapshot(equity=total, maintenance_margin=0.0, wallet_balance=total, currency="USD", **common)


# ---------------------------------------------------------------- profile

def okx_liquidation_warning(message: Mapping[str, Any]) -> Notice | None:
    """A push of OKX's private `liquidation-warning` channel as one line, or None for any other
    message: "OKX liquidation warning: BTC-USDT-SWAP cross, margin ratio 108 % (liquidation at 100 %)".
    The ratio is OKX's `mgnRatio` as OKX shows it: adjusted equity ÷ maintenance (plus the fee to
    close) in percent, higher is safer, liquidation at 100 % or below (alerter's own margin ratio
    is its inverse).
    https://www.okx.com/docs-v5/en/#trading-account-websocket-position-risk-warning"""
    if not isinstance(message, Mapping) or not isinstance(message.get("arg"), Mapping):
        return None
    if message["arg"].get("channel") != "liquidation-warning":
        return None
    parts, keys = [], []
    for row in message.get("data") or []:
        if not isinstance(row, Mapping):
            continue
        side = str(row.get("posSide") or "net").lower()
        text = f"{row.get('instId') or '?'}{'' if side == 'net' else ' ' + side} {row.get('mgnMode') or '?'}"
        ratio = message_number(row.get("mgnRatio"))
        parts.append(text + (f", margin ratio {ratio * 100:,.0f} % (liquidation at 100 %)" if ratio is not None else ""))
        keys.append(text)
    if not parts:
        return None  # the channel's subscription answer, or a push naming no position
    return Notice("OKX liquidation warning: " + "; ".join(parts), "liquidation-warning:" + ",".join(sorted(keys)))


def okx_event(message: Mapping[str, Any]) -> str | None:
    """A push (not a subscription answer) of OKX's `account` or `positions` channel."""
    arg = message.get("arg")
    if "event" in message or not isinstance(arg, Mapping) or "data" not in message:
        return None
    channel = arg.get("channel")
    return f"{channel} push" if channel in ("account", "positions") else None


async def watch_liquidation_warnings(exchange: Any) -> Any:
    """Subscribe OKX's `liquidation-warning` channel on the private connection (ccxt.pro has no
    method for it and parses none of its pushes: they are read raw, by the message hook). The
    future never resolves; it fails with the connection."""
    await exchange.authenticate()
    url = exchange.get_url("liquidation-warning", "private")
    request = {"op": "subscribe", "args": [{"channel": "liquidation-warning", "instType": "ANY"}]}
    return await exchange.watch(url, "liquidation-warning", request, "liquidation-warning")


# the `mark-price` channel on /ws/v5/public; on /ws/v5/private (after `login`) the `account` and
# `positions` channels, and `liquidation-warning`, OKX's own notice
STREAM = StreamSpec(
    name="OKX",
    event=okx_event,
    notice=okx_liquidation_warning,
    options={},
    prices="`mark-price` channel (`/ws/v5/public`)",
    events="`account` and `positions` pushes (`/ws/v5/private`, after `login`)",
    notices="`liquidation-warning`: `OKX liquidation warning: BTC-USDT-SWAP cross, margin ratio 105 % (liquidation at 100 %)` "
            "— OKX's `mgnRatio` as OKX shows it (higher is safer)",
    # ccxt.pro okx's un_watch_tickers would wait for an answer it only matches for `tickers`:
    # a symbol no longer held stays subscribed (its pushes ignored) until the next connection
    unwatch_prices=None,
    account_watches=(watch_balance, watch_positions, watch_liquidation_warnings),
)


PROFILE = Profile(
    name="OKX",
    ids=("okx",),
    modes="trading account in single-currency, multi-currency and portfolio margin mode; linear and inverse "
          "(coin-margined) swaps and futures, cross and isolated; an isolated position of another kind (spot margin, "
          "options) is blind on its own scope",
    figure="account: 1 ÷ `mgnRatio` of /api/v5/account/balance (account level, or the settle currency's in "
           "`details[]`); isolated: 1 ÷ the position's `mgnRatio` of /api/v5/account/positions (its maintenance "
           "plus the fee to close)",
    currency="USD (multi-currency and portfolio margin, and accounts without cross positions); the settle "
             "currency, e.g. USDT, in single-currency margin; the coin (BTC) for inverse positions",
    liquidation="Positions are liquidated when the margin ratio `mgnRatio`, adjusted equity ÷ (maintenance margin + "
                "the fee to close), falls to 100 % or below (alerter shows 1 ÷ `mgnRatio`: 100 % is liquidation here too).",
    liquidation_url="https://www.okx.com/docs-v5/en/#trading-account-rest-api-get-balance",
    normalise=normalise,
    check_body=check_body,
    # load_markets() lists swaps and futures only (not spot, margin and options); fetchCurrencies
    # would add the signed /api/v5/asset/currencies
    ccxt_defaults={"options": {"fetchMarkets": {"types": ["swap", "future"]}}, "has": {"fetchCurrencies": False}},
    credentials=("api_key", "secret", "password"),
    stream=STREAM,
    permissions='"Read" permission only; the API passphrase goes in `password`',
    reprice=True,  # linear contracts: maintenance and PnL follow the mark
    # OKX states `mgnRatio` (the app shows it as a percentage): 1 ÷ alerter's ratio, 100 % at liquidation
    own_figure=OwnFigure("OKX margin ratio", 1.0, inverse=True, percent=True),
    # fetch_balance() reads the trading account for every defaultType but "funding" (the funding account)
    options={"defaultType": ("spot", "margin", "swap", "future", "option", "loan")},
    mode_profiles=(("defaultType", "loan", okx_loans.PROFILE),),
)
