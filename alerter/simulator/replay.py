"""Replay recorded exchange answers, byte for byte, to the real ccxt classes.

    bodies = {"/api/v5/account/balance": REAL / "okx/multicurrency-balance.json",
              "/api/v5/account/positions": REAL / "okx/inverse-isolated-positions.json"}
    async with run_replay("okx", bodies, [Contract("BTC-USD-SWAP", "BTC", "USD", "BTC", "inverse", "100")]) as replay:
        source = build_source(replay.account("okx-replay"))   # keys + replay.ccxt_config()
        snapshot = await source.fetch_snapshot()
    replay.requests   # [(method, path, query)], every request ccxt made
    replay.unknown    # paths no body was given for (answered 404)

`bodies` maps a request path to what it answers with. A key may carry one query condition,
``"/v5/position/list?settleCoin=USDC"``, which wins over the bare path when the request has that
parameter with that value. A JSON POST with a "type" (Hyperliquid: every call is POST /info) is
answered by the key ``"/info#<type>"`` only, e.g. ``"/info#clearinghouseState"``; its type is
recorded in `requests` as the query parameter "type". A `Path` value is read once and served exactly as stored
(Content-Type application/json): that is how recorded answers (tests/fixtures/real/) are served.
A dict or list value is serialised with json.dumps: that is for synthetic bodies, and a test
that uses one must say so.

What ccxt needs on the way to the recorded endpoints is synthetic (`support_bodies`), built from
the `contracts` given: the market list (Binance exchangeInfo, OKX public/instruments, Bybit
instruments-info, Deribit public/get_instruments, Hyperliquid metaAndAssetCtxs with the coins as
`symbol`, KuCoin futures contracts/active with empty spot margin-pair lists, Kraken Futures
instruments, Gate futures/usdt/contracts, Bitget mix/market/contracts per product type), Binance's
leverage brackets, Bybit's API-key and account-info answers. None
of them carries a figure of the account: markets give the contract size and type (taken from the
exchange's published contract specifications, or from the recording itself), a bracket gives
the maintenance rate a position's maintenance margin grows at (used only to extrapolate a price
move, never for the ratio, the equity or the maintenance shown). Recorded bodies given in
`bodies` win over them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from alerter.simulator.server import API_PATHS as BINANCE_API_PATHS
from alerter.simulator.server import listen

logger = logging.getLogger(__name__)

Body = Path | bytes | dict | list


@dataclass(frozen=True)
class Contract:
    """One contract the replayed account holds, in the exchange's own naming: `symbol` as the
    exchange spells it (BTCUSDT, BTC-USD-SWAP), `size` the contract value (in `base` for linear,
    in `quote` for inverse contracts), `maint_rate` the first maintenance tier (Binance brackets)."""

    symbol: str
    base: str
    quote: str
    settle: str
    kind: str = "linear"  # "linear" | "inverse"
    size: str = "1"
    maint_rate: float = 0.004


# ccxt urls['api'] keys of each exchange: every one points at the replay server
URL_KEYS = {
    "binanceusdm": tuple(BINANCE_API_PATHS),
    "binancecoinm": tuple(BINANCE_API_PATHS),
    "binance": tuple(BINANCE_API_PATHS),
    "okx": ("rest",),
    "bybit": ("spot", "futures", "v2", "public", "private"),
    "deribit": ("rest",),
    "hyperliquid": ("public",),
    "kucoinfutures": ("public", "private", "futuresPrivate", "futuresPublic", "webExchange", "broker", "earn", "uta", "utaV2", "utaPrivate"),
    "krakenfutures": ("public", "private", "charts", "history", "feeschedules"),
    "bitget": ("spot", "mix", "user", "p2p", "broker", "margin", "common", "tax", "convert", "copy", "earn", "uta"),
    "gate": ("public", "private"),  # each a dict of sections (GATE_SECTIONS), every one at base + /api/v4
}
# ccxt 4.5.90 gate urls['api']: the sections of its public and private APIs
GATE_SECTIONS = {
    "public": ("wallet", "futures", "margin", "delivery", "spot", "options", "sub_accounts", "earn"),
    "private": ("withdrawals", "wallet", "futures", "margin", "delivery", "spot", "options", "subAccounts", "unified",
                "rebate", "earn", "account", "loan", "otc"),
}


def ccxt_urls(exchange_id: str, base_url: str) -> dict[str, Any]:
    """ccxt `urls` override that sends every API call of the exchange to `base_url`."""
    base = base_url.rstrip("/")
    if exchange_id not in URL_KEYS:
        raise ValueError(f"no replay URL layout for exchange {exchange_id!r} (known: {', '.join(sorted(URL_KEYS))})")
    if exchange_id in ("binanceusdm", "binancecoinm", "binance"):
        return {"api": {key: base + path for key, path in BINANCE_API_PATHS.items()}}
    if exchange_id == "krakenfutures":  # ccxt appends "v3/accounts" and the like to these
        return {"api": {key: base + ("/derivatives/api/" if key in ("public", "private") else f"/api/{key}/")
                        for key in URL_KEYS[exchange_id]}}
    if exchange_id == "gate":
        return {"api": {kind: {name: base + "/api/v4" for name in names} for kind, names in GATE_SECTIONS.items()}}
    return {"api": {key: base for key in URL_KEYS[exchange_id]}}


# ------------------------------------------------------------------ synthetic support bodies

def _binance_exchange_info(contracts: list[Contract]) -> dict:
    return {
        "timezone": "UTC", "serverTime": 0, "futuresType": "U_MARGINED", "rateLimits": [], "exchangeFilters": [],
        "assets": [{"asset": c.settle, "marginAvailable": True, "autoAssetExchange": "-10000"} for c in contracts],
        "symbols": [
            {
                "symbol": c.symbol, "pair": c.symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000, "status": "TRADING", "baseAsset": c.base, "quoteAsset": c.quote,
                "marginAsset": c.settle, "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
                "quotePrecision": 8, "underlyingType": "COIN", "settlePlan": 0, "triggerProtect": "0.0500",
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764", "tickSize": "0.10"},
                    {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
                ],
                "orderTypes": ["LIMIT", "MARKET"], "timeInForce": ["GTC"],
            }
            for c in contracts
        ],
    }


def _binance_coinm_exchange_info(contracts: list[Contract]) -> dict:
    """/dapi/v1/exchangeInfo: COIN-M symbols (BTCUSD_PERP, BCHUSD_241227), `contractSize` the face
    value in USD (Binance's published sizes: BTCUSD 100, the others 10)."""
    info = _binance_exchange_info(contracts)
    for row, c in zip(info["symbols"], contracts):
        pair, _, tail = c.symbol.partition("_")
        row.update(pair=pair, contractType="PERPETUAL" if tail == "PERP" else "CURRENT_QUARTER", contractSize=int(c.size),
                   contractStatus="TRADING", status=None, equalQtyPrecision=4, quantityPrecision=0, maintMarginPercent="2.5000",
                   requiredMarginPercent="5.0000")
    info.pop("futuresType", None)
    return info


def _binance_brackets(contracts: list[Contract]) -> list:
    return [
        {"symbol": c.symbol, "notionalCoef": 1.0, "brackets": [
            {"bracket": 1, "initialLeverage": 125, "notionalCap": 50000, "notionalFloor": 0, "maintMarginRatio": c.maint_rate, "cum": 0.0},
        ]}
        for c in contracts
    ]


def _binance_spot_exchange_info(contracts: list[Contract]) -> dict:
    """/api/v3/exchangeInfo: spot pairs (`symbol` BTCUSDT, `base`, `quote`). The binance profile
    reads no figure from the markets; ccxt only needs a non-empty list."""
    return {
        "timezone": "UTC", "serverTime": 0, "rateLimits": [], "exchangeFilters": [],
        "symbols": [
            {
                "symbol": c.symbol, "status": "TRADING", "baseAsset": c.base, "baseAssetPrecision": 8, "quoteAsset": c.quote,
                "quotePrecision": 8, "quoteAssetPrecision": 8, "orderTypes": ["LIMIT", "MARKET"], "icebergAllowed": True,
                "ocoAllowed": True, "isSpotTradingAllowed": True, "isMarginTradingAllowed": True, "permissions": [],
                "permissionSets": [["SPOT", "MARGIN"]],
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
                    {"filterType": "LOT_SIZE", "minQty": "0.00001000", "maxQty": "9000.00000000", "stepSize": "0.00001000"},
                ],
            }
            for c in contracts
        ],
    }


def _okx_instruments(contracts: list[Contract], inst_type: str) -> dict:
    rows = []
    for c in contracts:
        if c.symbol.endswith("-SWAP") != (inst_type == "SWAP"):
            continue
        family = f"{c.base}-{c.quote}"
        rows.append({
            "alias": "", "baseCcy": "", "category": "1", "ctMult": "1", "ctType": c.kind, "ctVal": c.size,
            "ctValCcy": c.base if c.kind == "linear" else c.quote, "expTime": "", "instFamily": family,
            "instId": c.symbol, "instType": inst_type, "lever": "100", "listTime": "1611916800000", "lotSz": "1",
            "maxLmtSz": "100000000", "maxMktSz": "12000", "minSz": "1", "optType": "", "quoteCcy": "",
            "settleCcy": c.settle, "state": "live", "stk": "", "tickSz": "0.1", "uly": family,
        })
    return {"code": "0", "msg": "", "data": rows}


def _bybit_instruments(contracts: list[Contract]) -> dict:
    rows = [
        {
            "symbol": c.symbol, "contractType": "LinearPerpetual" if c.kind == "linear" else "InversePerpetual",
            "status": "Trading", "baseCoin": c.base, "quoteCoin": c.quote, "launchTime": "1585526400000",
            "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": "2",
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": "0.10", "maxPrice": "1999999.80", "tickSize": "0.10"},
            "lotSizeFilter": {"maxOrderQty": "1000", "minOrderQty": "0.001", "qtyStep": "0.001", "minNotionalValue": "5"},
            "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": c.settle,
        }
        for c in contracts
    ]
    return {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": rows, "nextPageCursor": ""}, "retExtInfo": {}, "time": 0}


def _deribit_instruments(contracts: list[Contract]) -> dict:
    rows = [
        {
            "instrument_name": c.symbol, "kind": "future", "base_currency": c.base, "counter_currency": c.quote,
            "quote_currency": c.quote, "settlement_currency": c.settle, "settlement_period": "perpetual",
            "contract_size": float(c.size), "min_trade_amount": float(c.size), "tick_size": 0.5, "is_active": True,
            "expiration_timestamp": 32503680000000, "creation_timestamp": 1534167754000, "instrument_type": c.kind,
        }
        for c in contracts
    ]
    return {"jsonrpc": "2.0", "result": rows, "usIn": 0, "usOut": 0, "usDiff": 0, "testnet": False}
def _hyperliquid_meta(contracts: list[Contract]) -> list:
    """metaAndAssetCtxs: [{"universe": [...]}, [asset context, ...]], one main-dex perp per contract
    (`symbol` = the coin). Synthetic and minimal: a name, size decimals, max leverage, and a mark
    price of "1" (never read: the figures come from the recorded clearinghouseState)."""
    universe = [{"name": c.symbol, "szDecimals": 2, "maxLeverage": 50, "onlyIsolated": False} for c in contracts]
    contexts = [{"markPx": "1", "midPx": "1", "oraclePx": "1", "prevDayPx": "1", "funding": "0", "openInterest": "0",
                 "dayNtlVlm": "0", "premium": "0", "impactPxs": ["1", "1"]} for _ in contracts]
    return [{"universe": universe}, contexts]


def _kucoin_contracts(contracts: list[Contract]) -> dict:
    """/api/v1/contracts/active: one perpetual per contract, `multiplier` the contract size as KuCoin
    publishes it (XBTUSDTM 0.001 XBT; inverse contracts -1, i.e. 1 USD)."""
    rows = [
        {
            "symbol": c.symbol, "rootSymbol": c.settle, "type": "FFWCSX", "firstOpenDate": 1585555200000, "expireDate": None,
            "settleDate": None, "baseCurrency": c.base, "quoteCurrency": c.quote, "settleCurrency": c.settle,
            "maxOrderQty": 1000000, "maxPrice": 1000000.0, "lotSize": 1, "tickSize": 0.1, "indexPriceTickSize": 0.01,
            "multiplier": -float(c.size) if c.kind == "inverse" else float(c.size), "initialMargin": 0.008, "maintainMargin": 0.004,
            "maxRiskLimit": 100000, "minRiskLimit": 100000, "riskStep": 50000, "makerFeeRate": 0.0002, "takerFeeRate": 0.0006,
            "takerFixFee": 0.0, "makerFixFee": 0.0, "settlementFee": None, "isDeleverage": True, "isQuanto": False,
            "isInverse": c.kind == "inverse", "markMethod": "FairPrice", "fairMethod": "FundingRate", "status": "Open",
            "nextFundingRateTime": 21031525, "maxLeverage": 125,
        }
        for c in contracts
    ]
    return {"code": "200000", "data": rows}


def _kraken_instruments(contracts: list[Contract]) -> dict:
    """GET /derivatives/api/v3/instruments: PF_ (multi-collateral, linear, `size` in the base coin)
    and PI_/FI_ (single-collateral, inverse, 1 USD a contract) rows; a FI_XBTUSD_201225 row gets
    that day as its lastTradingTime. Synthetic: names, kinds and sizes only."""
    rows = []
    for c in contracts:
        row = {"symbol": c.symbol, "type": "futures_inverse" if c.kind == "inverse" else "flexible_futures",
               "tradeable": True, "tickSize": 0.01, "contractSize": float(c.size), "contractValueTradePrecision": 4}
        tail = c.symbol.rsplit("_", 1)[-1]
        if tail.isdigit():
            row["lastTradingTime"] = f"20{tail[:2]}-{tail[2:4]}-{tail[4:]}T16:00:00.000Z"
        rows.append(row)
    return {"result": "success", "instruments": rows, "serverTime": "2026-01-01T00:00:00.000Z"}


def _gate_contracts(contracts: list[Contract]) -> list:
    """GET /api/v4/futures/usdt/contracts: one USDT-settled perpetual per contract, `quanto_multiplier`
    the contract size (taken from the recording itself: `value` ÷ (`size` × `mark_price`))."""
    return [
        {"name": c.symbol, "type": "direct", "quanto_multiplier": c.size, "mark_type": "index", "mark_price": "1",
         "index_price": "1", "last_price": "1", "order_price_deviate": "0.5", "order_price_round": "0.001",
         "mark_price_round": "0.001", "maintenance_rate": str(c.maint_rate), "leverage_min": "1", "leverage_max": "100",
         "order_size_min": 1, "order_size_max": 1000000, "enable_decimal": False, "status": "trading",
         "taker_fee_rate": "0.00075", "maker_fee_rate": "-0.0001", "in_delisting": False}
        for c in contracts
    ]


def _bitget_contracts(contracts: list[Contract], product_type: str) -> dict:
    """GET /api/v2/mix/market/contracts?productType=…: the perpetuals of one product type
    (USDT-FUTURES: settled in USDT, COIN-FUTURES: in the base coin). Bitget's contract size is 1
    (a position's `total` is in the base coin); the fee rates are Bitget's published VIP 0 ones."""
    settle = {"USDT-FUTURES": "USDT", "USDC-FUTURES": "USDC"}.get(product_type)
    rows = [
        {
            "symbol": c.symbol, "baseCoin": c.base, "quoteCoin": c.quote, "buyLimitPriceRatio": "0.05",
            "sellLimitPriceRatio": "0.05", "feeRateUpRatio": "0.005", "makerFeeRate": "0.0002", "takerFeeRate": "0.0006",
            "openCostUpRatio": "0.01", "supportMarginCoins": [c.settle], "minTradeNum": "0.001", "priceEndStep": "1",
            "volumePlace": "3", "pricePlace": "2", "sizeMultiplier": "0.001", "symbolType": "perpetual", "minTradeUSDT": "5",
            "maxSymbolOrderNum": "200", "maxProductOrderNum": "400", "maxPositionNum": "150", "symbolStatus": "normal",
            "offTime": "-1", "limitOpenTime": "-1", "deliveryTime": "", "deliveryStartTime": "", "launchTime": "",
            "fundInterval": "8", "minLever": "1", "maxLever": "125", "posLimit": "0.05", "maintainTime": "",
        }
        for c in contracts
        if (c.settle == settle if settle else c.kind == "inverse" and product_type == "COIN-FUTURES")
    ]
    return {"code": "00000", "msg": "success", "requestTime": 0, "data": rows}


def support_bodies(exchange_id: str, contracts: list[Contract]) -> dict[str, Body]:
    """The synthetic answers ccxt needs before it reaches the recorded endpoints (see the module)."""
    if exchange_id == "binanceusdm":
        return {"/fapi/v1/exchangeInfo": _binance_exchange_info(contracts), "/fapi/v1/leverageBracket": _binance_brackets(contracts)}
    if exchange_id == "okx":
        return {
            "/api/v5/public/instruments?instType=SWAP": _okx_instruments(contracts, "SWAP"),
            "/api/v5/public/instruments?instType=FUTURES": _okx_instruments(contracts, "FUTURES"),
        }
    if exchange_id == "bybit":
        empty = {"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [], "nextPageCursor": ""}, "retExtInfo": {}, "time": 0}
        return {
            "/v5/market/instruments-info": _bybit_instruments(contracts),
            "/v5/market/instruments-info?status=PreLaunch": empty,
            # a read-only key of a unified account (ccxt asks before its first private call)
            "/v5/user/query-api": {"retCode": 0, "retMsg": "", "result": {"readOnly": 1, "unified": 0, "uta": 1, "isMaster": True}, "retExtInfo": {}, "time": 0},
            "/v5/account/info": {"retCode": 0, "retMsg": "OK", "result": {"marginMode": "REGULAR_MARGIN", "unifiedMarginStatus": 5}},
        }
    if exchange_id == "binancecoinm":
        brackets = [{"pair": c.symbol.partition("_")[0], **b} for c, b in zip(contracts, _binance_brackets(contracts))]
        return {"/dapi/v1/exchangeInfo": _binance_coinm_exchange_info(contracts), "/dapi/v2/leverageBracket": brackets}
    if exchange_id == "binance":  # spot pairs only (the profile's fetchMarkets types)
        return {"/api/v3/exchangeInfo": _binance_spot_exchange_info(contracts)}
    if exchange_id == "deribit":  # JSON-RPC over GET: /api/v2/private/get_account_summaries, /api/v2/private/get_positions
        return {"/api/v2/public/get_instruments": _deribit_instruments(contracts)}
    if exchange_id == "krakenfutures":  # GET /derivatives/api/v3/accounts, /openpositions, /tickers
        return {"/derivatives/api/v3/instruments": _kraken_instruments(contracts)}
    if exchange_id == "hyperliquid":  # every call is POST /info; the body's "type" picks the answer
        return {"/info#metaAndAssetCtxs": _hyperliquid_meta(contracts)}
    if exchange_id == "kucoinfutures":  # with keys set, ccxt's load_markets also lists the spot margin pairs
        return {"/api/v1/contracts/active": _kucoin_contracts(contracts),
                "/api/v3/margin/symbols": {"code": "200000", "data": {"timestamp": 0, "items": []}},
                "/api/v1/isolated/symbols": {"code": "200000", "data": []}}
    if exchange_id == "gate":  # the futures or unified account and the positions come from `bodies`
        return {"/api/v4/futures/usdt/contracts": _gate_contracts(contracts)}
    if exchange_id == "bitget":  # one market list per product type (the S…-FUTURES demo ones: empty)
        bodies: dict[str, Body] = {"/api/v2/mix/market/contracts": _bitget_contracts([], "SUSDT-FUTURES")}
        for product_type in ("USDT-FUTURES", "COIN-FUTURES", "USDC-FUTURES"):
            bodies[f"/api/v2/mix/market/contracts?productType={product_type}"] = _bitget_contracts(contracts, product_type)
        return bodies
    raise ValueError(f"no replay support bodies for exchange {exchange_id!r}")


# ------------------------------------------------------------------ the server

def _as_bytes(body: Body) -> bytes:
    if isinstance(body, Path):
        return body.read_bytes()
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


class Replay:
    """The running replay server of one exchange; see the module docstring."""

    def __init__(self, exchange_id: str, bodies: Mapping[str, Body], contracts: list[Contract] | tuple[Contract, ...] = ()):
        self.exchange_id = exchange_id
        routes = {**support_bodies(exchange_id, list(contracts)), **bodies}
        self.routes: dict[str, bytes] = {key: _as_bytes(body) for key, body in routes.items()}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.unknown: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def body_for(self, path: str, query: Mapping[str, str], kind: str | None = None) -> bytes | None:
        if kind is not None:  # a JSON POST body's "type" (Hyperliquid's /info): "/info#clearinghouseState"
            return self.routes.get(f"{path}#{kind}")
        for key, value in query.items():
            conditional = self.routes.get(f"{path}?{key}={value}")
            if conditional is not None:
                return conditional
        return self.routes.get(path)

    async def handle(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        kind = await self._post_type(request)
        if kind is not None:
            query["type"] = kind
        self.requests.append((request.method, request.path, query))
        body = self.body_for(request.path, request.query, kind)
        if body is None:
            self.unknown.append(request.path if kind is None else f"{request.path}#{kind}")
            logger.warning("replay %s: no body for %s %s", self.exchange_id, request.method, request.path)
            return web.Response(status=404, body=json.dumps({"code": "404", "msg": f"no recorded body for {request.path}"}).encode(),
                                content_type="application/json")
        return web.Response(body=body, content_type="application/json")

    @staticmethod
    async def _post_type(request: web.Request) -> str | None:
        """The "type" of a JSON object POSTed (Hyperliquid's /info), else None."""
        if request.method != "POST" or not request.can_read_body:
            return None
        try:
            data = json.loads(await request.read())
        except ValueError:
            return None
        kind = data.get("type") if isinstance(data, dict) else None
        return kind if isinstance(kind, str) else None

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.requests]

    def ccxt_config(self) -> dict[str, Any]:
        """ccxt config that points the account's exchange at this server (no client throttling,
        no pause on close: loopback needs neither)."""
        return {"urls": ccxt_urls(self.exchange_id, self.url), "enableRateLimit": False, "timeout_on_exit": 0}

    def account(self, name: str | None = None, **ccxt: Any):
        """An AccountConfig on this exchange, with throwaway keys, pointed at this server; `ccxt`
        is deep-merged over the URLs (ccxt options a recording needs, e.g. the v2 endpoints)."""
        from alerter.config import AccountConfig
        from alerter.sources import deep_merge

        if self.exchange_id == "hyperliquid":  # read by address, no key
            credentials = {"wallet_address": "0x" + "0123456789" * 4}
        else:
            credentials = {"api_key": "replay-key-0123456789", "secret": "replay-secret-0123456789",
                           "password": "replay-pass-42" if self.exchange_id in ("okx", "kucoinfutures", "bitget") else None}
            if self.exchange_id == "krakenfutures":  # ccxt signs with the base64-decoded secret
                credentials["secret"] = "cmVwbGF5LXNlY3JldC0wMTIzNDU2Nzg5"
        return AccountConfig(
            name=name or f"{self.exchange_id}-replay",
            exchange=self.exchange_id,
            ccxt=deep_merge(self.ccxt_config(), ccxt),
            **credentials,
        )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner, self.url = await listen(app, host, port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def run_replay(
    exchange_id: str, bodies: Mapping[str, Body], contracts: list[Contract] | tuple[Contract, ...] = (), host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Replay]:
    """Start a replay server on host:port (0 = any free port); yields the running Replay."""
    replay = Replay(exchange_id, bodies, contracts)
    await replay.start(host, port)
    try:
        yield replay
    finally:
        await replay.stop()
