"""The Binance USDⓈ-M futures REST endpoints that ccxt's binanceusdm calls, answered from SimState.

Field names and types follow Binance's docs
(https://developers.binance.com/docs/derivatives/usds-margined-futures): amounts and prices
are strings, times are integer milliseconds, leverageBracket numbers are JSON numbers.
/fapi/v3/positionRisk and /fapi/v3/account list only open positions and carry no
`leverage`/`marginType` (as on Binance; ccxt infers cross/isolated from isolatedMargin);
the v2 variants list every symbol and carry them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from alerter.simulator.market import ISOLATED, Account, AccountRisk, PositionRisk
from alerter.simulator.state import SimState

STATE_KEY: web.AppKey[SimState] = web.AppKey("state", SimState)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SignedHandler = Callable[[web.Request, Account], Awaitable[web.StreamResponse]]


def binance_error(status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"code": code, "msg": msg}, status=status, headers=headers)


def invalid_key() -> web.Response:
    return binance_error(401, -2015, "Invalid API-key, IP, or permissions for action.")


def now_ms() -> int:
    return int(time.time() * 1000)


def num(value: float, places: int = 8) -> str:
    text = f"{value:.{places}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def signed(handler: SignedHandler) -> Handler:
    """Binance USER_DATA checks: API key header, timestamp and signature (any value) present."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        api_key = request.headers.get("X-MBX-APIKEY")
        if not api_key:
            return binance_error(401, -2014, "API-key format invalid.")
        for param in ("timestamp", "signature"):
            if not request.query.get(param):
                return binance_error(
                    400, -1102, f"Mandatory parameter '{param}' was not sent, was empty/null, or malformed."
                )
        account = request.app[STATE_KEY].account(api_key)
        if account is None:
            return invalid_key()
        return await handler(request, account)

    return wrapper


# --- public -----------------------------------------------------------------------------
async def ping(request: web.Request) -> web.Response:
    return web.json_response({})


async def server_time(request: web.Request) -> web.Response:
    return web.json_response({"serverTime": now_ms()})


async def exchange_info(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    symbols = []
    for spec in state.symbols.values():
        symbols.append(
            {
                "symbol": spec.symbol, "pair": spec.symbol, "contractType": "PERPETUAL",
                "deliveryDate": 4133404800000, "onboardDate": 1569398400000, "status": "TRADING",
                "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
                "baseAsset": spec.base, "quoteAsset": spec.quote, "marginAsset": spec.quote,
                "pricePrecision": spec.price_precision, "quantityPrecision": spec.quantity_precision,
                "baseAssetPrecision": 8, "quotePrecision": 8, "underlyingType": "COIN",
                "underlyingSubType": ["PoW"] if spec.base == "BTC" else ["Layer-1"], "settlePlan": 0,
                "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
                "maxMoveOrderLimit": 10000,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": spec.tick_size, "maxPrice": "4529764",
                     "tickSize": spec.tick_size},
                    {"filterType": "LOT_SIZE", "minQty": spec.min_qty, "maxQty": spec.max_qty,
                     "stepSize": spec.step_size},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": spec.min_qty, "maxQty": spec.max_qty,
                     "stepSize": spec.step_size},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
                    {"filterType": "MIN_NOTIONAL", "notional": spec.min_notional},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                     "multiplierDecimal": "4"},
                ],
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT",
                               "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
            }
        )
    return web.json_response(
        {
            "timezone": "UTC",
            "serverTime": now_ms(),
            "futuresType": "U_MARGINED",
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
                {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
            ],
            "exchangeFilters": [],
            "assets": [{"asset": "USDT", "marginAvailable": True, "autoAssetExchange": "-10000"}],
            "symbols": symbols,
        }
    )


def _one_or_all(request: web.Request, rows: list[dict[str, Any]]) -> web.Response:
    """Binance answers `?symbol=X` with one object, without it with a list."""
    symbol = request.query.get("symbol")
    if symbol is None:
        return web.json_response(rows)
    for row in rows:
        if row["symbol"] == symbol:
            return web.json_response(row)
    return binance_error(400, -1121, "Invalid symbol.")


async def premium_index(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    now = now_ms()
    next_funding = (now // 28_800_000 + 1) * 28_800_000
    rows = [
        {
            "symbol": symbol, "markPrice": num(price), "indexPrice": num(price),
            "estimatedSettlePrice": num(price), "lastFundingRate": "0.00010000",
            "interestRate": "0.00010000", "nextFundingTime": next_funding, "time": now,
        }
        for symbol, price in state.prices().items()
    ]
    return _one_or_all(request, rows)


async def ticker_24hr(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    now = now_ms()
    rows = []
    for symbol, last in state.prices().items():
        spec = state.symbols[symbol]
        places = spec.price_precision
        open_ = state.scenario.prices.get(symbol, last)
        change = last - open_
        rows.append(
            {
                "symbol": symbol, "priceChange": num(change, places),
                "priceChangePercent": num(100 * change / open_, 3), "weightedAvgPrice": num((open_ + last) / 2, places),
                "lastPrice": num(last, places), "lastQty": "0.010", "openPrice": num(open_, places),
                "highPrice": num(max(open_, last), places), "lowPrice": num(min(open_, last), places),
                "volume": "1000.000", "quoteVolume": num(1000 * last, 2),
                "openTime": now - 86_400_000, "closeTime": now, "firstId": 1, "lastId": 1000, "count": 1000,
            }
        )
    return _one_or_all(request, rows)


# --- signed -----------------------------------------------------------------------------
@signed
async def leverage_bracket(request: web.Request, account: Account) -> web.Response:
    state = request.app[STATE_KEY]
    rows = [
        {
            "symbol": spec.symbol,
            "notionalCoef": 1.0,
            "brackets": [
                {
                    "bracket": b.bracket, "initialLeverage": b.max_leverage, "notionalCap": b.notional_cap,
                    "notionalFloor": b.notional_floor, "maintMarginRatio": b.maint_rate, "cum": b.cum,
                }
                for b in spec.brackets
            ],
        }
        for spec in state.symbols.values()
    ]
    return _one_or_all(request, rows)


def _risk_rows(request: web.Request, account: Account, *, all_symbols: bool) -> tuple[AccountRisk, list]:
    """Per-symbol PositionRisk (None for a symbol without a position when all_symbols)."""
    state = request.app[STATE_KEY]
    risk = state.risk(account.api_key)
    by_symbol: dict[str, PositionRisk | None] = {r.position.symbol: r for r in risk.positions if r.position.size}
    if all_symbols:
        by_symbol = {s: by_symbol.get(s) for s in state.symbols}
    return risk, list(by_symbol.items())


def _position_fields(symbol: str, r: PositionRisk | None, mark: float, qty_places: int) -> dict[str, Any]:
    if r is None:
        return {
            "symbol": symbol, "positionSide": "BOTH", "positionAmt": num(0, qty_places), "entryPrice": "0.0",
            "breakEvenPrice": "0.0", "markPrice": num(mark), "unRealizedProfit": num(0), "liquidationPrice": "0",
            "isolatedMargin": num(0), "notional": "0", "isolatedWallet": "0", "initialMargin": "0",
            "maintMargin": "0", "updateTime": 0,
        }
    p = r.position
    return {
        "symbol": symbol, "positionSide": "BOTH", "positionAmt": num(p.size, qty_places),
        "entryPrice": num(p.entry_price), "breakEvenPrice": num(p.entry_price), "markPrice": num(r.mark_price),
        "unRealizedProfit": num(r.unrealized_pnl),
        "liquidationPrice": num(r.liquidation_price) if r.liquidation_price > 0 else "0",
        "isolatedMargin": num(r.isolated_margin), "notional": num(r.notional),
        "isolatedWallet": num(p.isolated_wallet), "initialMargin": num(r.initial_margin),
        "maintMargin": num(r.maint_margin), "updateTime": now_ms(),
    }


async def _position_risk(request: web.Request, account: Account, version: int) -> web.Response:
    state = request.app[STATE_KEY]
    risk, rows = _risk_rows(request, account, all_symbols=version == 2)
    prices = state.prices()
    result = []
    for symbol, r in rows:
        spec = state.symbols[symbol]
        row = _position_fields(symbol, r, prices[symbol], spec.quantity_precision)
        if version == 2:
            margin_type = r.position.margin_type if r else "cross"
            row.update(
                leverage=str(r.position.leverage if r else 20), marginType=margin_type,
                isAutoAddMargin="false", maxNotionalValue=num(_max_notional(spec, r), 0),
            )
            for key in ("initialMargin", "maintMargin"):
                row.pop(key)
        else:
            row.update(
                marginAsset="USDT", positionInitialMargin=row["initialMargin"], openOrderInitialMargin="0",
                adl=2 if r else 0, bidNotional="0", askNotional="0",
            )
        result.append(row)
    symbol = request.query.get("symbol")
    return web.json_response([row for row in result if symbol is None or row["symbol"] == symbol])


def _max_notional(spec: Any, r: PositionRisk | None) -> float:
    leverage = r.position.leverage if r else 20
    eligible = [b.notional_cap for b in spec.brackets if b.max_leverage >= leverage]
    return eligible[-1] if eligible else spec.brackets[0].notional_cap


@signed
async def position_risk_v2(request: web.Request, account: Account) -> web.Response:
    return await _position_risk(request, account, 2)


@signed
async def position_risk_v3(request: web.Request, account: Account) -> web.Response:
    return await _position_risk(request, account, 3)


def _asset_rows(risk: AccountRisk, updated: int) -> list[dict[str, Any]]:
    usdt = {
        "asset": "USDT", "walletBalance": num(risk.total_wallet_balance), "unrealizedProfit": num(risk.total_unrealized_pnl),
        "marginBalance": num(risk.margin_balance), "maintMargin": num(risk.total_maint_margin),
        "initialMargin": num(risk.total_initial_margin), "positionInitialMargin": num(risk.total_initial_margin),
        "openOrderInitialMargin": num(0), "crossWalletBalance": num(risk.cross_wallet_balance),
        "crossUnPnl": num(risk.cross_unrealized_pnl), "availableBalance": num(risk.available_balance),
        "maxWithdrawAmount": num(risk.max_withdraw_amount), "updateTime": updated,
    }
    usdc = {key: (num(0) if isinstance(value, str) else 0) for key, value in usdt.items()}
    usdc["asset"] = "USDC"
    return [usdt, usdc]


async def _account(request: web.Request, account: Account, version: int) -> web.Response:
    state = request.app[STATE_KEY]
    risk, rows = _risk_rows(request, account, all_symbols=version == 2)
    updated = now_ms()
    assets = _asset_rows(risk, updated)
    positions = []
    for symbol, r in rows:
        spec = state.symbols[symbol]
        full = _position_fields(symbol, r, 0.0, spec.quantity_precision)
        row = {k: full[k] for k in ("symbol", "positionSide", "positionAmt", "isolatedMargin", "notional",
                                    "isolatedWallet", "initialMargin", "maintMargin", "updateTime")}
        row["unrealizedProfit"] = full["unRealizedProfit"]
        if version == 2:
            row.update(
                leverage=str(r.position.leverage if r else 20), entryPrice=full["entryPrice"],
                breakEvenPrice=full["breakEvenPrice"], positionInitialMargin=full["initialMargin"],
                openOrderInitialMargin="0", isolated=bool(r and r.position.margin_type == ISOLATED),
                maxNotional=num(_max_notional(spec, r), 0), bidNotional="0", askNotional="0",
            )
        positions.append(row)
    body: dict[str, Any] = {
        "totalInitialMargin": num(risk.total_initial_margin), "totalMaintMargin": num(risk.total_maint_margin),
        "totalWalletBalance": num(risk.total_wallet_balance), "totalUnrealizedProfit": num(risk.total_unrealized_pnl),
        "totalMarginBalance": num(risk.margin_balance), "totalPositionInitialMargin": num(risk.total_initial_margin),
        "totalOpenOrderInitialMargin": num(0), "totalCrossWalletBalance": num(risk.cross_wallet_balance),
        "totalCrossUnPnl": num(risk.cross_unrealized_pnl), "availableBalance": num(risk.available_balance),
        "maxWithdrawAmount": num(risk.max_withdraw_amount),
    }
    if version == 2:
        body.update(feeTier=0, feeBurn=True, canTrade=True, canDeposit=True, canWithdraw=True,
                    updateTime=0, multiAssetsMargin=False, tradeGroupId=-1)
    body["assets"] = assets
    body["positions"] = positions
    return web.json_response(body)


@signed
async def account_v2(request: web.Request, account: Account) -> web.Response:
    return await _account(request, account, 2)


@signed
async def account_v3(request: web.Request, account: Account) -> web.Response:
    return await _account(request, account, 3)


@signed
async def balance(request: web.Request, account: Account) -> web.Response:
    risk = request.app[STATE_KEY].risk(account.api_key)
    return web.json_response(
        [
            {
                "accountAlias": "SgsR", "asset": row["asset"], "balance": row["walletBalance"],
                "crossWalletBalance": row["crossWalletBalance"], "crossUnPnl": row["crossUnPnl"],
                "availableBalance": row["availableBalance"], "maxWithdrawAmount": row["maxWithdrawAmount"],
                "marginAvailable": True, "updateTime": row["updateTime"],
            }
            for row in _asset_rows(risk, now_ms())
        ]
    )


ROUTES: list[tuple[str, Handler]] = [
    ("/fapi/v1/ping", ping),
    ("/fapi/v1/time", server_time),
    ("/fapi/v1/exchangeInfo", exchange_info),
    ("/fapi/v1/premiumIndex", premium_index),
    ("/fapi/v1/ticker/24hr", ticker_24hr),
    ("/fapi/v1/leverageBracket", leverage_bracket),
    ("/fapi/v2/positionRisk", position_risk_v2),
    ("/fapi/v3/positionRisk", position_risk_v3),
    ("/fapi/v2/account", account_v2),
    ("/fapi/v3/account", account_v3),
    ("/fapi/v2/balance", balance),
    ("/fapi/v3/balance", balance),
]


def add_routes(app: web.Application) -> None:
    for path, handler in ROUTES:
        app.router.add_get(path, handler)
