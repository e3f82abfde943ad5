"""Bitget: classic USDT-M futures (GET /api/v2/mix/account/accounts + /api/v2/mix/position/all-position)
and the unified trading account (GET /api/v3/account/assets + /api/v3/position/current-position).

Bitget's rule (https://www.bitget.com/support/articles/360058821652, "Bitget futures: Leverage and
risk management"): "Liquidation in cross margin mode occurs when the total equity of the cross
margin account (excluding isolated margin and unrealized PnL from isolated margin) falls below the
maintenance margin, resulting in a margin ratio of 100%", and "Liquidation in isolated margin mode
occurs when the isolated margin and unrealized PnL fall below the maintenance margin, resulting in
a margin ratio of 100%". The API names the cross figure `crossedRiskRate` ("risk ratio in cross
margin mode"); 100 % is the trigger, so Bitget's own figure is alerter's normalised ratio as it is. Bitget publishes no margin-call
notice level for futures (its "Risk control for opening positions",
https://www.bitget.com/support/articles/12560603775537, only stops new risk-increasing orders
above 90 % in volatile markets), so the profile has no notices.

Classic account (ccxt `options.uta` false, the default here; productType USDT-FUTURES):
- ccxt's fetch_balance() for `defaultType` "swap" asks /api/v2/mix/account/accounts and puts the
  answer's `data` list in `balance['info']`, one row per margin coin
  (https://www.bitget.com/api-doc/contract/account/Get-Account-List). The USDT row's
  `crossedRiskRate` ("risk ratio in cross margin mode") is the account scope's ratio, exactly.
- The cross equity is Bitget's rule above: `accountEquity` (with unrealised PnL, at the mark)
  less the isolated margin and its unrealised PnL, each the row's own figure where stated
  (`isolatedMargin`, "isolated margin occupied"; `isolatedUnrealizedPL`), else the isolated
  positions' `marginSize` and `unrealizedPL` (every isolated row's, also one left blind; a row
  without them makes the poll blind: the cross equity is then not known). The maintenance
  is then `crossedRiskRate` × that equity, so the deposit to the target and the distance are in
  the account's own terms. In multi-asset ("union") mode `accountEquity` is the USDT balance
  alone (it may be negative while other coins back it): the union's equity is read from
  `unionTotalMargin` only where its `unionMm` ÷ `unionTotalMargin` agrees with
  `crossedRiskRate`; otherwise the poll is refused (blind) naming the fields.
- Positions (https://www.bitget.com/api-doc/contract/position/get-all-position): `total` in the
  base coin (Bitget's contract size is 1), `markPrice`, `openPriceAvg`, `unrealizedPL`,
  `keepMarginRate`, `liquidationPrice` ("0" or negative = none), `marginMode` crossed/isolated.
  A cross position's maintenance shown is `keepMarginRate` × position value (Bitget's formula on
  the page above); the account's own figure is `crossedRiskRate`, which also carries the fee to
  close and, for positions opened since 10 Nov 2025, Bitget's tiered maintenance
  (https://www.bitget.com/support/articles/12560603841843).
- Isolated positions are scopes of their own, at Bitget's own `marginRatio`: collateral =
  `marginSize` + `unrealizedPL`, maintenance = `marginRatio` × collateral. Bitget's documented
  example reproduces it: (0.004 + 0.0006 taker fee) × 0.01 × 25100 ÷ (9.6695 + 1) = 0.10821,
  its `marginRatio`, and its `liquidationPrice` 24144.11 is where that ratio reaches 100 %. The
  maintenance grows with the notional at that same rate (keepMarginRate plus the fee, here
  0.46 %), so a re-priced position (`alerter whatif`) reaches 100 % there too. An isolated
  position without a `marginRatio` is left blind on its own (`unreadable`).
- Completeness: a `crossedRiskRate` above 0 with no cross position listed, or cross positions
  with a `crossedRiskRate` of 0, make the poll blind (one of the two answers is partial).

Unified trading account (ccxt `options.uta` true; https://www.bitget.com/api-doc/uta/account/Get-Account):
`effEquity` ("the net value available for margin in spot and perpetual trades under cross-margin
mode", USD) and `mmr` ("the minimum margin required to maintain the position", USD) are the
account scope's equity and maintenance, so the ratio is `mmr` ÷ `effEquity`: the maintenance
margin against the margin that backs it (Bitget's UTA page,
https://www.bitget.com/support/articles/12560603839176, values every coin at its collateral ratio
into that effective equity). That 100 % of it is the UTA's liquidation level is read from these
field definitions and Bitget's futures rule above: no Bitget page stating the UTA trigger in
words was found. Bitget's own `mgnRatio` ("Margin ratio") is that same quotient to 4 decimals
(an answer quoted in a third-party test: `mmr` 186.3, `effEquity` 96513.01171034, `mgnRatio`
"0.0019"; Bitget's own websocket example: 408.08 ÷ 4847952.35 stated as "0"); where it is stated,
`mmr` ÷ `effEquity` must agree with it to that step, else the poll is blind (the figures would
not mean what this profile reads them as). The figure is shown as Bitget's "margin ratio". The positions are asked per category (USDT-FUTURES,
USDC-FUTURES, COIN-FUTURES: one call each, `position_params_for`); they are listed for the alert,
a coin-margined one in its coin, and an isolated one is blind on its own (the UTA position answer
states no margin ratio of its own). No completeness check ties `mmr` to the positions: spot
margin loans in a UTA carry maintenance without any position.

Not covered: coin-margined (COIN-FUTURES) classic accounts, refused at `validate` (ccxt 4.5.90
asks for their positions with marginCoin USDT; Bitget needs the margin coin for them,
https://github.com/ccxt/ccxt/pull/20890, so none would be listed); spot and margin (`defaultType`
other than "swap"), refused at `validate`; USDC-M classic accounts, which no ccxt option reaches
(fetch_balance takes productType USDC-FUTURES only as a per-call parameter).
Re-pricing between polls is off: the account's figure carries the fee to close, Bitget's tiered
maintenance and, in union mode or a UTA, every collateral coin at its own price and ratio; only
a full poll reads them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from alerter.models import AccountSnapshot, OwnFigure, Position, isolated_scope
from alerter.sources.errors import SourceError
from alerter.sources.fields import (
    make_position,
    make_snapshot,
    mapping,
    number,
    optional_number,
    price_or_none,
    shape_error,
)
from alerter.sources.profile import FetchContext, Profile, Raw, Redirect, fetch_account

ID = "bitget"
SETTLE = "USDT"  # classic USDT-FUTURES: every figure in USDT
MGN_RATIO_STEP = 0.0001 + 1e-12  # a UTA's mgnRatio is stated to 4 decimals ("0.0019")
UNION_AGREEMENT = 0.02  # unionMm ÷ unionTotalMargin may differ from crossedRiskRate by 2 % (relative) at most


def _rows(data: Any) -> bool:
    return isinstance(data, list) and all(isinstance(row, Mapping) for row in data)


def check_body(path: str, data: Any) -> None:
    """Every Bitget answer is {"code": "00000", "data": …}: the account list and the classic
    positions a list of objects, the UTA assets an object with `assets`, the UTA positions
    an object with `list`."""
    if "/api/v2/mix/" not in path and "/api/v3/" not in path:
        return
    if not isinstance(data, Mapping) or "data" not in data:
        raise shape_error(ID, path, 'an object {"code": "00000", "data": ...}', data)
    body = data["data"]
    if path.endswith("/mix/account/accounts") and not (_rows(body) and all("marginCoin" in row for row in body)):
        raise shape_error(ID, path, "a list of accounts (marginCoin) in data", body)
    if path.endswith("/mix/position/all-position") and not (_rows(body) and all("symbol" in row for row in body)):
        raise shape_error(ID, path, "a list of positions (symbol) in data", body)
    if path.endswith("/v3/account/assets") and not (isinstance(body, Mapping) and isinstance(body.get("assets"), list)):
        raise shape_error(ID, path, "an account object with assets in data", body)
    if path.endswith("/v3/position/current-position") and not (isinstance(body, Mapping) and _rows(body.get("list"))):
        raise shape_error(ID, path, "a list of positions in data.list", body)


# ---------------------------------------------------------------- positions

def parse_position(raw: Mapping, markets: Mapping) -> tuple[Position | None, tuple[str, str] | None]:
    """A classic or UTA position row (ccxt's `info`): the Position, or (None, (scope, reason)) for
    an isolated position that cannot be evaluated; (None, None) for an empty row. A coin-margined
    one (a UTA's COIN-FUTURES, e.g. BTCUSD margined in BTC) has `total` in the coin and its margin,
    PnL and maintenance in the coin: face value `total` × mark in USD, notional `total` in the coin."""
    info = mapping(raw.get("info"), f"{ID} position info")
    symbol = raw.get("symbol") or info.get("symbol")
    where = f"{ID} position {info.get('symbol')}"
    size = number(info.get("total"), f"{where}.total")  # "" or null is a row without its size, not a closed one
    if size == 0:
        return None, None
    side = info.get("holdSide") or info.get("posSide")
    if side not in ("long", "short"):
        raise SourceError("data", f"{where}.holdSide: expected long or short, got {side!r}")
    mode = info.get("marginMode")
    if mode not in ("crossed", "isolated"):
        raise SourceError("data", f"{where}.marginMode: expected crossed or isolated, got {mode!r}")
    uta = "posSide" in info
    mark = number(info.get("markPrice"), f"{where}.markPrice")
    inverse = (markets.get(symbol) or {}).get("inverse") is True
    contracts = abs(size) * mark if inverse else abs(size)  # inverse: the face value in USD
    notional = abs(size) if inverse else contracts * mark
    pnl_key = "unrealisedPnl" if uta else "unrealizedPL"
    pnl = number(info.get(pnl_key), f"{where}.{pnl_key}")
    rate_key = "mmr" if uta else "keepMarginRate"
    rate = number(info.get(rate_key), f"{where}.{rate_key}")
    margin_key = "positionBalance" if uta else "marginSize"
    margin = optional_number(info.get(margin_key), f"{where}.{margin_key}")
    collateral = None
    maintenance = rate * notional
    if mode == "isolated":
        stated = None if uta else optional_number(info.get("marginRatio"), f"{where}.marginRatio")
        if stated is None or margin is None:
            reason = ("Bitget's unified-account position answer states no margin ratio for an isolated position" if uta
                      else f"{where}: isolated position without marginRatio or marginSize")
            return None, (isolated_scope(symbol, side), reason)
        collateral = margin + pnl
        if collateral > 0:  # Bitget's own figure, with its fee to close (past liquidation: the ratio is ∞ anyway)
            maintenance = stated * collateral
            # it grows with the notional at (keepMarginRate + the taker fee), not at keepMarginRate alone:
            # re-priced at the row's liquidationPrice it then reads 100 % (24144.11 in Bitget's example)
            rate = maintenance / notional if notional > 0 else rate
    entry_key = "avgPrice" if uta else "openPriceAvg"
    return make_position(
        where=where,
        symbol=symbol,
        side=side,
        contracts=contracts,
        entry_price=number(info.get(entry_key), f"{where}.{entry_key}"),
        mark_price=mark,
        notional=notional,
        unrealized_pnl=pnl,
        maintenance_margin=maintenance,
        margin_mode="isolated" if mode == "isolated" else "cross",
        collateral=collateral,
        liquidation_price=price_or_none(info.get("liquidationPrice"), f"{where}.liquidationPrice"),
        initial_margin=margin,
        maintenance_rate=rate,
        inverse=inverse,
        currency=str(info.get("marginCoin") or "") or None,
    ), None


def parse_positions(positions: list, markets: Mapping) -> tuple[list[Position], list[tuple[str, str]]]:
    """The positions, and the isolated ones that cannot be evaluated. A position listed twice (a
    category or margin coin answered for another) makes the poll blind: it would count twice."""
    parsed, unreadable = [], []
    for raw in positions:
        position, blind = parse_position(mapping(raw, f"{ID} position"), markets)
        if position is not None:
            parsed.append(position)
        elif blind is not None:
            unreadable.append(blind)
    listed = Counter([(p.symbol, p.side, p.margin_mode) for p in parsed] + [(scope, "", "isolated") for scope, _ in unreadable])
    for key, count in listed.items():
        if count > 1:
            raise SourceError("data", f"{ID} position {' '.join(k for k in key[:2] if k)} listed {count} times: "
                                      "the positions answers overlap")
    return parsed, unreadable


# ---------------------------------------------------------------- classic USDT-M

def account_row(info: Any) -> Mapping:
    """The USDT row of the account list (ccxt's `balance['info']` is the answer's data list)."""
    if not isinstance(info, list):
        raise SourceError("data", f"{ID} /api/v2/mix/account/accounts: expected a list of accounts, got {type(info).__name__}")
    rows = [mapping(row, f"{ID} account") for row in info]
    for row in rows:
        if row.get("marginCoin") == SETTLE:
            return row
    coins = ", ".join(str(row.get("marginCoin")) for row in rows) or "none"
    raise SourceError("data", f"{ID} account list: no {SETTLE} row (margin coins: {coins})")


def isolated_rows(positions: list) -> list[Mapping]:
    """The raw rows (ccxt's `info`) of the open isolated positions, those left blind included."""
    rows = [mapping(mapping(raw, f"{ID} position").get("info"), f"{ID} position info") for raw in positions]
    return [row for row in rows if row.get("marginMode") == "isolated"
            and number(row.get("total"), f"{ID} position {row.get('symbol')}.total") != 0]


def cross_equity(row: Mapping, positions: list, risk_rate: float) -> float:
    where = f"{ID} account[{SETTLE}]"
    if row.get("assetMode") == "union":
        total = optional_number(row.get("unionTotalMargin"), f"{where}.unionTotalMargin")
        union_mm = optional_number(row.get("unionMm"), f"{where}.unionMm")
        if total is None or union_mm is None or total <= 0:
            raise SourceError("data", f"{where}: multi-asset (union) mode without unionTotalMargin and unionMm: the union's "
                                      f"equity is not stated (crossedRiskRate {risk_rate:g} alone gives no deposit or distance)")
        if abs(union_mm / total - risk_rate) > UNION_AGREEMENT * max(risk_rate, 1e-9):
            raise SourceError("data", f"{where}: unionMm ÷ unionTotalMargin ({union_mm / total:.6g}) does not agree with "
                                      f"crossedRiskRate ({risk_rate:.6g}): cannot tell which is the union's equity")
        return total
    isolated = isolated_rows(positions)  # each isolated position, also one left blind on its own
    isolated_margin = optional_number(row.get("isolatedMargin"), f"{where}.isolatedMargin")
    if isolated_margin is None:
        isolated_margin = sum(number(r.get("marginSize"), f"{ID} position {r.get('symbol')}.marginSize") for r in isolated)
    isolated_pnl = optional_number(row.get("isolatedUnrealizedPL"), f"{where}.isolatedUnrealizedPL")
    if isolated_pnl is None:
        isolated_pnl = sum(number(r.get("unrealizedPL"), f"{ID} position {r.get('symbol')}.unrealizedPL") for r in isolated)
    return number(row.get("accountEquity"), f"{where}.accountEquity") - isolated_margin - isolated_pnl


def normalise_classic(account_name: str, exchange_id: str, info: Any, positions: list, markets: Mapping) -> AccountSnapshot:
    row = account_row(info)
    where = f"{ID} account[{SETTLE}]"
    parsed, unreadable = parse_positions(positions, markets)
    foreign = sorted({p.currency for p in parsed if p.currency not in (None, SETTLE)})
    if foreign:
        raise SourceError("data", f"{ID} positions margined in {', '.join(foreign)} in a {SETTLE}-FUTURES account")
    risk_rate = number(row.get("crossedRiskRate"), f"{where}.crossedRiskRate")
    if risk_rate < 0:
        raise SourceError("data", f"{where}.crossedRiskRate: must not be negative, got {row.get('crossedRiskRate')!r}")
    cross = [p for p in parsed if not p.isolated]
    if risk_rate > 0 and not cross:
        raise SourceError("data", f"{where}.crossedRiskRate {risk_rate:g} but the positions answer lists no cross position: positions missing")
    if risk_rate == 0 and cross:
        raise SourceError("data", f"{where}.crossedRiskRate is 0 but the positions answer lists {len(cross)} cross position(s): "
                                  "the account answer is stale or partial")
    equity = cross_equity(row, positions, risk_rate)
    if risk_rate > 0 and equity <= 0:
        raise SourceError("data", f"{where}: cross equity {equity:g} is not positive while crossedRiskRate is {risk_rate:g}: inconsistent answers")
    unrealized = sum(p.unrealized_pnl for p in cross)
    snapshot = make_snapshot(
        account=account_name,
        exchange=exchange_id,
        equity=equity,
        maintenance_margin=risk_rate * equity,
        wallet_balance=equity - unrealized,
        positions=parsed,
        initial_margin=sum(p.initial_margin or 0.0 for p in cross),
        currency=SETTLE,
    )
    return _with_unreadable(snapshot, unreadable)


# ---------------------------------------------------------------- unified trading account

def normalise_unified(account_name: str, exchange_id: str, info: Mapping, positions: list, markets: Mapping) -> AccountSnapshot:
    data = mapping(info.get("data"), f"{ID} /api/v3/account/assets data")
    where = f"{ID} unified account"
    equity = number(data.get("effEquity"), f"{where}.effEquity")
    maintenance = number(data.get("mmr"), f"{where}.mmr")
    stated = optional_number(data.get("mgnRatio"), f"{where}.mgnRatio")
    if stated is not None and maintenance > 0 and equity > 0 and abs(maintenance / equity - stated) > MGN_RATIO_STEP:
        raise SourceError("data", f"{where}: mmr ÷ effEquity ({maintenance / equity:.6g}) is not Bitget's mgnRatio ({stated:g}): "
                                  "the account's figures cannot be read as documented")
    parsed, unreadable = parse_positions(positions, markets)
    unrealized = optional_number(data.get("unrealisedPnl"), f"{where}.unrealisedPnl") or 0.0
    snapshot = make_snapshot(
        account=account_name,
        exchange=exchange_id,
        equity=equity,
        maintenance_margin=maintenance,
        wallet_balance=equity - unrealized,
        positions=parsed,
        initial_margin=optional_number(data.get("imr"), f"{where}.imr") or 0.0,
        currency="USD",
    )
    return _with_unreadable(snapshot, unreadable)


def _with_unreadable(snapshot: AccountSnapshot, unreadable: list[tuple[str, str]]) -> AccountSnapshot:
    if not unreadable:
        return snapshot
    return replace(snapshot, unreadable=tuple(unreadable))


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    """A UTA balance's info is the whole /api/v3/account/assets answer (an object); a classic
    one's is the account list (a list)."""
    info = balance.get("info")
    if isinstance(info, Mapping):
        return normalise_unified(account_name, exchange_id, info, positions, markets)
    return normalise_classic(account_name, exchange_id, info, positions, markets)


# ---------------------------------------------------------------- profile

UTA_CATEGORIES = ({"productType": "USDT-FUTURES"}, {"productType": "USDC-FUTURES"}, {"productType": "COIN-FUTURES"})


def position_params_for(options: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:
    """A unified account's positions are asked per category (ccxt sends `category` = productType);
    a classic account's once, as ccxt's USDT-FUTURES default."""
    return UTA_CATEGORIES if options.get("uta") is True else ({},)


async def fetch(ctx: FetchContext) -> Raw:
    return await fetch_account(ctx, position_params_for(ctx.options))


# the app's name for the classic cross figure; it is the normalised ratio itself (100 % = liquidation)
RISK_RATE = OwnFigure("risk rate", 1.0, percent=True)


# a unified account's mgnRatio (= mmr ÷ effEquity, checked on every poll where stated)
MARGIN_RATIO = OwnFigure("margin ratio", 1.0, percent=True)


def figure_for(options: Mapping[str, Any]) -> OwnFigure | None:
    """Classic accounts: Bitget's risk rate; unified accounts: Bitget's margin ratio."""
    return MARGIN_RATIO if options.get("uta") is True else RISK_RATE


PROFILE = Profile(
    name="Bitget",
    ids=("bitget",),
    modes="classic USDT-M futures (productType USDT-FUTURES), cross and isolated, single-asset mode (multi-asset only "
          "where its union figures agree); unified trading account with `ccxt.options.uta = true` (USDT-M, USDC-M and "
          "coin-margined positions listed, isolated ones blind); not coin-margined or USDC-M classic accounts",
    figure="classic: the USDT row's `crossedRiskRate` of /api/v2/mix/account/accounts, over the cross equity "
           "(`accountEquity` less the isolated margin and its unrealised PnL); isolated: the position's "
           "`marginRatio` (/api/v2/mix/position/all-position); unified: `mmr` ÷ `effEquity` of /api/v3/account/assets "
           "(checked against its `mgnRatio`)",
    currency="USDT (classic), USD (unified)",
    liquidation="Liquidation when the cross equity (without isolated margin and its PnL), or an isolated position's "
                "margin with its PnL, falls below the maintenance margin: a margin ratio (risk rate) of 100 %.",
    liquidation_url="https://www.bitget.com/support/articles/360058821652",
    normalise=normalise,
    check_body=check_body,
    # swap markets only, no coin list; classic unless the account says uta = true (never the
    # /api/v3/account/settings probe), and the classic market list in both modes
    ccxt_defaults={"options": {"defaultType": "swap", "defaultSubType": "linear", "uta": False,
                               "fetchMarkets": {"types": ["swap"], "uta": False}},
                   "has": {"fetchCurrencies": False}},
    credentials=("api_key", "secret", "password"),
    options={"defaultType": ("swap",), "defaultSubType": ("linear",), "uta": (True, False)},
    redirects=(
        Redirect("bitget", {"defaultSubType": ("inverse",)},
                 "Bitget coin-margined (COIN-FUTURES) accounts are not supported: ccxt 4.5.90 asks for their positions "
                 "with marginCoin USDT, which lists none of them"),
    ),
    permissions='read-only ("Read" for futures, or UTA management read for a unified account); the API passphrase goes in '
                '`password`. A unified trading account needs `ccxt = { options = { uta = true } }` (without it Bitget answers '
                '"You are in Unified Account mode, and the Classic Account API is not supported"); a classic one is read as USDT-M futures',
    reprice=False,  # the fee to close, tiered maintenance and (union, UTA) collateral coins: full polls only
    figure_for=figure_for,
    fetch=fetch,
)
