"""A loopback JSON-RPC chain: answers eth_call from recorded result hex, serves blocks with
timestamps, re-encodes Aave positions along a scripted ETH price, and breaks on request.

    async with run_chain(CHAINS["base"]) as chain:
        chain.answer(POOL, calldata, REAL / "aave/base-getUserAccountData-hf-below-1.json")
        chain.aave(POOL, AavePosition(USER, collateral_eth=1.0, eth_price=3000.0, debt_usd=2000.0))
        chain.set_price(2400.0)            # the ETH fall: a new block, every position re-encoded
        chain.fault("revert", method="eth_call")
        RpcClient(chain.url, CHAINS["base"])   # the client under test, over 127.0.0.1

Blocks are pushed to websocket subscribers of `eth_subscribe("newHeads")` at ws://…/ws (or
ws://…/ws/<key>, as providers put their key in the path) as they are mined. `heads_fault` breaks
that side alone: "refuse" answers a subscription with an error, "stall" keeps the sockets open
but pushes no block (the HTTP side keeps serving them). A recorded answer is served byte for byte: the `result` string of a recorded JSON-RPC answer
(a .json file, its envelope dropped since each request has its own id) or a .txt holding the
result hex, put into the answer unchanged. The state behind it is not simulated: the recorded
answer is the Pool's answer at every block.

Synthetic positions (`AavePosition`) are encoded by Aave V3.3's own arithmetic
(GenericLogic.calculateUserAccountData with one collateral and one debt asset: percentMul and
wadDiv, half-up), so their health factor is what the Pool would state for those amounts. Given
the deployment's data provider and oracle, the chain also serves the per-asset reads
(getAllReservesTokens, getUserReserveData, getReserveConfigurationData, getAssetPrice) of a
market of WETH (the collateral) and USDC (the debt). `CometPosition` does the same for a
Compound V3 USDC market, its isLiquidatable by Comet's integer arithmetic, and `MorphoPosition`
for a Morpho Blue WETH/USDC market.

Faults (`fault(kind, count=1, method=None, seconds=None)`; `method` limits it to requests of that
JSON-RPC method, in a batch or alone):
  error       the request's item answers the JSON-RPC error -32603 "internal error"
  revert      eth_call answers error 3 "execution reverted"
  empty       eth_call answers "0x"
  truncated   eth_call answers the first half of its result
  partial     the batch answer leaves out its last item
  lag         the latest block's timestamp is `seconds` (default 120) old
  wrong_chain eth_chainId answers 1 more than the chain's id
  http500 / http401 / http429   the whole HTTP request answers that status
  garbage     the whole HTTP request answers 200 with an HTML page
  timeout     the whole HTTP request is held `seconds` (default 30) without an answer
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from alerter.simulator.faults import take_first
from alerter.simulator.server import listen
from alerter.sources.chains import Chain

KINDS = ("error", "revert", "empty", "truncated", "partial", "lag", "wrong_chain", "http500", "http401", "http429", "garbage", "timeout")
HTTP_KINDS = ("http500", "http401", "http429", "garbage", "timeout")
WAD = 10**18
MAX_UINT256 = 2**256 - 1
GET_USER_ACCOUNT_DATA = "0xbf92857c"
GET_ALL_RESERVES_TOKENS = "0xb316ff89"
GET_USER_RESERVE_DATA = "0x28dd2d01"
GET_RESERVE_CONFIGURATION_DATA = "0x3e150141"
GET_ASSET_PRICE = "0xb3596f07"
BASE_TOKEN_PRICE_FEED, BASE_SCALE, NUM_ASSETS, GET_ASSET_INFO = "0xe7dad6bd", "0x44c1e5eb", "0xa46fe83b", "0xc8c7fe6b"
COLLATERAL_BALANCE_OF, GET_PRICE, BORROW_BALANCE_OF, IS_LIQUIDATABLE = "0x5c2549ee", "0x41976e09", "0x374c49b4", "0x042e02cf"
SYMBOL = "0x95d89b41"
WETH_FEED = "0x71041dddad3595F9CEd3DcCFBe3D1F4b0a16Bb70"  # Base's ETH/USD Chainlink feed (nothing is read from it)
USDC_FEED = "0x7e860098F58bBFC8648a4311b374B1D669a2bc6B"  # Base's USDC/USD Chainlink feed
POSITION, MARKET, ID_TO_MARKET_PARAMS, ORACLE_PRICE, DECIMALS = "0x93c52062", "0x5c60e39a", "0x2c3c9157", "0xa035b1fe", "0x313ce567"
BORROW_RATE_VIEW = "0x8c00bf6b"
MORPHO_BLUE = "0xBBBBBbbBBb9cC5e90e3b3Af64bdAF62C37EEFFCb"
# the synthetic market's tokens (Base's WETH and USDC addresses, for realism; nothing is read from them)
WETH = "0x4200000000000000000000000000000000000006"
USDC = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"


@dataclass
class ChainFault:
    kind: str
    count: int | None = 1  # remaining; None: until cleared
    method: str | None = None
    seconds: float | None = None


@dataclass
class AavePosition:
    """One wallet on an Aave Pool: ETH collateral (at the chain's scripted price, 8-decimal USD)
    against a USD stablecoin debt."""

    user: str
    collateral_eth: float
    eth_price: float
    debt_usd: float
    liquidation_threshold_bps: int = 8300
    ltv_bps: int = 8000

    def account_data(self) -> str:
        """getUserAccountData's answer for these amounts, as a V3.3 Pool computes it."""
        collateral = round(self.collateral_eth * self.eth_price * 1e8)
        debt = round(self.debt_usd * 1e8)
        lt, ltv = (self.liquidation_threshold_bps, self.ltv_bps) if collateral else (0, 0)

        def percent_mul(value: int, bps: int) -> int:
            return (value * bps + 5_000) // 10_000

        available = max(0, percent_mul(collateral, ltv) - debt)
        hf = MAX_UINT256 if debt == 0 else (percent_mul(collateral, lt) * WAD + debt // 2) // debt
        return "0x" + "".join(f"{w:064x}" for w in (collateral, debt, available, lt, ltv, hf))


@dataclass
class CometPosition:
    """One wallet on a Compound V3 USDC market: WETH collateral (at the chain's ETH price)
    against a USDC borrow; isLiquidatable computed by Comet's own integer arithmetic."""

    user: str
    collateral_eth: float
    debt_usdc: float
    liquidate_factor: float = 0.83
    borrow_factor: float = 0.80

    def answers(self, eth_price: float) -> dict[str, str]:
        """The Comet's answers for this wallet at this ETH price, by calldata."""
        balance, debt = round(self.collateral_eth * 1e18), round(self.debt_usdc * 1e6)
        weth_price, usdc_price = round(eth_price * 1e8), 100_000_000
        liquidity = -(debt * usdc_price // 10**6) + (balance * weth_price // 10**18) * round(self.liquidate_factor * 1e18) // 10**18
        user = _word_hex(self.user)
        return {
            BORROW_BALANCE_OF + user: _words(debt),
            IS_LIQUIDATABLE + user: _words(1 if debt and liquidity < 0 else 0),
            COLLATERAL_BALANCE_OF + user + _word_hex(WETH): _words(balance),
            GET_PRICE + _word_hex(WETH_FEED): _words(weth_price),
            GET_PRICE + _word_hex(USDC_FEED): _words(usdc_price),
            BASE_TOKEN_PRICE_FEED: _words(int(USDC_FEED, 16)),
            BASE_SCALE: _words(10**6),
            NUM_ASSETS: _words(1),
            GET_ASSET_INFO + f"{0:064x}": _words(0, int(WETH, 16), int(WETH_FEED, 16), 10**18, round(self.borrow_factor * 1e18),
                                                 round(self.liquidate_factor * 1e18), round(0.95e18), 10**24),
        }


@dataclass
class MorphoPosition:
    """One wallet in one Morpho Blue market: WETH collateral (18 decimals, at the chain's ETH
    price) against USDC (6 decimals); shares at Morpho's virtual-share rate (1e6 per asset)."""

    user: str
    market_id: str
    collateral_eth: float
    debt_usdc: float
    lltv: float = 0.86
    oracle: str = "0x" + "0a" * 20
    # an interest rate model (its borrowRateView answers `rate`, per second, WAD) and how long ago
    # the market was last touched; no IRM: no interest since the last update
    irm: str = "0x" + "00" * 20
    rate: int = 0
    idle_s: int = 0

    def answers(self, eth_price: float, now: int) -> dict[tuple[str, str], str]:
        """(to, calldata) → answer for this position at this ETH price, at time `now`."""
        debt = round(self.debt_usdc * 1e6)
        market = self.market_id[2:].lower()
        totals = _words(10**15, 10**21, 10**13, 10**19, now - self.idle_s if int(self.irm, 16) else 0, 0)
        params = _words(int(USDC, 16), int(WETH, 16), int(self.oracle, 16), int(self.irm, 16), round(self.lltv * 1e18))
        return {
            (MORPHO_BLUE, POSITION + market + _word_hex(self.user)): _words(0, debt * 10**6, round(self.collateral_eth * 1e18)),
            (MORPHO_BLUE, MARKET + market): totals,
            (MORPHO_BLUE, ID_TO_MARKET_PARAMS + market): params,
            # loan units per collateral unit × 1e36: 1e-18 WETH → 1e-6 USDC at eth_price
            (self.oracle, ORACLE_PRICE): _words(round(eth_price * 10**6) * 10**18),
            (self.irm, BORROW_RATE_VIEW + params[2:] + totals[2:]): _words(self.rate),
        }


def _words(*values: int) -> str:
    return "0x" + "".join(f"{v:064x}" for v in values)


def _word_hex(address: str) -> str:
    return "0" * 24 + address[2:].lower()


def encode_text(value: str) -> str:
    """An ABI `string` return value."""
    raw = value.encode()
    return "0x" + ((32).to_bytes(32, "big") + len(raw).to_bytes(32, "big") + raw.ljust(32 * ((len(raw) + 31) // 32), b"\0")).hex()


def encode_reserves(reserves: list[tuple[str, str]]) -> str:
    """`(string symbol, address tokenAddress)[]` in the ABI's layout (getAllReservesTokens)."""
    heads, tails, at = [], [], 32 * len(reserves)
    for symbol, address in reserves:
        text = symbol.encode()
        item = (64).to_bytes(32, "big") + int(address, 16).to_bytes(32, "big") + len(text).to_bytes(32, "big") + text.ljust(32 * ((len(text) + 31) // 32), b"\0")
        heads.append(at.to_bytes(32, "big"))
        tails.append(item)
        at += len(item)
    raw = (32).to_bytes(32, "big") + len(reserves).to_bytes(32, "big") + b"".join(heads) + b"".join(tails)
    return "0x" + raw.hex()


def recorded_result(path: Path) -> str:
    """The result hex of a recorded answer, exactly as stored."""
    text = path.read_text()
    return json.loads(text)["result"] if path.suffix == ".json" else text.strip()


class ChainSim:
    def __init__(self, chain: Chain, *, clock: Callable[[], float] = time.time, block: int = 30_000_000) -> None:
        self.chain = chain
        self.clock = clock
        self.head = block
        self.head_timestamp = int(clock())
        self.eth_price = 3000.0
        self.answers: dict[tuple[str, str], str | Callable[[], str]] = {}
        self.positions_morpho: list[MorphoPosition] = []
        self.faults: list[ChainFault] = []
        self.requests: list[tuple[str, list]] = []  # every JSON-RPC request, in order (batches flattened)
        self.posts = 0  # HTTP requests
        self.unknown: list[tuple[str, str]] = []  # eth_calls with no answer set (answered "0x")
        self.url = ""
        self.subscribers: dict[web.WebSocketResponse, str] = {}  # newHeads sockets and their subscription ids
        self.heads_fault: str | None = None  # "refuse" | "stall" | None
        self._pushes: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    # ------------------------------------------------------------ the chain's state

    def answer(self, to: str, data: str, result: str | Path | Callable[[], str]) -> None:
        """What eth_call(to, data) returns at every block: result hex, a recorded answer's file, or
        a function giving the hex at the moment of the call."""
        self.answers[(to.lower(), data.lower())] = recorded_result(result) if isinstance(result, Path) else result

    def aave(self, pool: str, position: AavePosition, *, data_provider: str | None = None, oracle: str | None = None) -> None:
        """Serve `position` on `pool`, re-encoded at the chain's ETH price at each call; with
        `data_provider` and `oracle`, also its per-asset detail (a market of WETH and USDC)."""
        data = GET_USER_ACCOUNT_DATA + "0" * 24 + position.user[2:].lower()

        def encoded() -> str:
            position.eth_price = self.eth_price
            return position.account_data()

        self.answer(pool, data, encoded)
        if data_provider is None or oracle is None:
            return
        user = _word_hex(position.user)
        self.answer(data_provider, GET_ALL_RESERVES_TOKENS, encode_reserves([("WETH", WETH), ("USDC", USDC)]))
        self.answer(data_provider, GET_USER_RESERVE_DATA + _word_hex(WETH) + user,
                    _words(round(position.collateral_eth * 1e18), 0, 0, 0, 0, 0, 0, 0, 1))
        self.answer(data_provider, GET_USER_RESERVE_DATA + _word_hex(USDC) + user,
                    _words(0, 0, round(position.debt_usd * 1e6), 0, 0, 0, 0, 0, 0))
        self.answer(data_provider, GET_RESERVE_CONFIGURATION_DATA + _word_hex(WETH),
                    _words(18, position.ltv_bps, position.liquidation_threshold_bps, 10500, 1500, 1, 1, 0, 1, 0))
        self.answer(data_provider, GET_RESERVE_CONFIGURATION_DATA + _word_hex(USDC), _words(6, 7500, 7800, 10500, 1000, 1, 1, 0, 1, 0))
        self.answer(oracle, GET_ASSET_PRICE + _word_hex(WETH), lambda: _words(round(self.eth_price * 1e8)))
        self.answer(oracle, GET_ASSET_PRICE + _word_hex(USDC), _words(100_000_000))

    def comet(self, comet: str, position: CometPosition) -> None:
        """Serve `position` on the Comet at `comet`, at the chain's ETH price at each call."""
        for data in position.answers(self.eth_price):
            self.answer(comet, data, lambda data=data: position.answers(self.eth_price)[data])
        self.answer(WETH, SYMBOL, encode_text("WETH"))

    def morpho(self, position: MorphoPosition) -> None:
        """Serve `position` on Morpho Blue (its Ethereum/Base address), at the chain's ETH price and
        head time at each call (the IRM's answer is keyed by the market's state at the head)."""
        self.positions_morpho.append(position)
        for token, symbol, decimals in ((WETH, "WETH", 18), (USDC, "USDC", 6)):
            self.answer(token, SYMBOL, encode_text(symbol))
            self.answer(token, DECIMALS, _words(decimals))

    def mine(self, count: int = 1) -> int:
        """`count` new blocks, the newest stamped now (and pushed to the newHeads subscribers); the
        new head's number."""
        self.head += count
        self.head_timestamp = int(self.clock())
        header = {"number": hex(self.head), "timestamp": hex(self.head_timestamp), "hash": "0x" + f"{self.head:064x}"}
        for ws, subscription in list(self.subscribers.items()) if self.heads_fault != "stall" else ():
            message = {"jsonrpc": "2.0", "method": "eth_subscription", "params": {"subscription": subscription, "result": header}}
            task = asyncio.get_running_loop().create_task(ws.send_str(json.dumps(message)))
            self._pushes.add(task)
            task.add_done_callback(self._pushes.discard)
        return self.head

    async def drop_subscribers(self) -> None:
        """Close every newHeads socket (the endpoint lost them)."""
        for ws in list(self.subscribers):
            await ws.close()
        self.subscribers.clear()

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            try:
                body = json.loads(message.data)
            except ValueError:
                continue
            if body.get("method") == "eth_subscribe" and body.get("params") == ["newHeads"] and self.heads_fault != "refuse":
                subscription = f"0x{len(self.subscribers) + 1:032x}"
                self.subscribers[ws] = subscription
                await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": body.get("id"), "result": subscription}))
            else:
                await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": body.get("id"), "error": {"code": -32601, "message": "not supported"}}))
        self.subscribers.pop(ws, None)
        return ws

    def set_price(self, eth_price: float) -> int:
        """The scripted ETH price moves (an oracle update): in a new block."""
        self.eth_price = eth_price
        return self.mine()

    def fault(self, kind: str, count: int | None = 1, method: str | None = None, seconds: float | None = None) -> ChainFault:
        if kind not in KINDS:
            raise ValueError(f"unknown chain fault {kind!r} (one of {', '.join(KINDS)})")
        fault = ChainFault(kind, count, method, seconds)
        self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.faults.clear()

    def _take(self, kinds: tuple[str, ...], methods: list[str]) -> ChainFault | None:
        """The first fault of `kinds` for a request of these methods, counted as used."""
        return take_first(self.faults, lambda f: f.kind in kinds and (f.method is None or f.method in methods))

    # ------------------------------------------------------------ JSON-RPC

    def _result(self, method: str, params: list) -> Any:
        """The result of one request (a dict with "error" for an error)."""
        fault = self._take(("error",), [method])
        if fault:
            return {"error": {"code": -32603, "message": "internal error"}}
        if method == "eth_chainId":
            wrong = self._take(("wrong_chain",), [method])
            return hex(self.chain.chain_id + (1 if wrong else 0))
        if method == "eth_blockNumber":
            return hex(self.head)
        if method == "eth_getBlockByNumber":
            tag = params[0] if params else "latest"
            number = self.head if tag == "latest" else int(tag, 16)
            if number > self.head:
                return None
            lag = self._take(("lag",), [method])
            stamp = int(self.clock() - (lag.seconds or 120.0)) if lag else self.head_timestamp - (self.head - number) * max(1, int(self.chain.block_time_s))
            return {"number": hex(number), "timestamp": hex(stamp), "hash": "0x" + f"{number:064x}", "transactions": []}
        if method == "eth_call":
            call, tag = params[0], params[1] if len(params) > 1 else "latest"
            if tag != "latest" and int(tag, 16) > self.head:
                return {"error": {"code": -32000, "message": "header not found"}}
            if self._take(("revert",), [method]):
                return {"error": {"code": 3, "message": "execution reverted", "data": "0x"}}
            key = (str(call.get("to", "")).lower(), str(call.get("data", "")).lower())
            answer = self.answers.get(key)
            for position in self.positions_morpho if answer is None else ():
                answer = {(to.lower(), data.lower()): value for (to, data), value in
                          position.answers(self.eth_price, self.head_timestamp).items()}.get(key)
                if answer is not None:
                    break
            if answer is None:
                self.unknown.append(key)
                return "0x"
            result = answer() if callable(answer) else answer
            if self._take(("empty",), [method]):
                return "0x"
            if self._take(("truncated",), [method]):
                return result[: 2 + (len(result) - 2) // 2]
            return result
        return {"error": {"code": -32601, "message": f"the method {method} does not exist/is not available"}}

    def _item(self, request: Any) -> dict:
        if not isinstance(request, dict) or "method" not in request:
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid request"}}
        method, params = request["method"], request.get("params") or []
        self.requests.append((method, params))
        result = self._result(method, params)
        out: dict[str, Any] = {"jsonrpc": "2.0", "id": request.get("id")}
        if isinstance(result, dict) and "error" in result:
            out["error"] = result["error"]
        else:
            out["result"] = result
        return out

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.posts += 1
        try:
            body = json.loads(await request.read())
        except ValueError:
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}})
        items = body if isinstance(body, list) else [body]
        methods = [item.get("method") for item in items if isinstance(item, dict)]
        fault = self._take(HTTP_KINDS, methods)
        if fault and fault.kind == "timeout":
            try:
                async with asyncio.timeout(fault.seconds or 30.0):
                    await self._closing.wait()
            except TimeoutError:
                pass
            raise ConnectionResetError("held without an answer")
        if fault and fault.kind == "garbage":
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if fault:
            status = int(fault.kind[4:])
            headers = {"Retry-After": "1"} if status == 429 else {}
            return web.json_response({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": f"HTTP {status}"}},
                                     status=status, headers=headers)
        answers = [self._item(item) for item in items]
        if isinstance(body, list):
            if self._take(("partial",), methods):
                answers = answers[:-1]
            return web.Response(text=json.dumps(answers), content_type="application/json")
        return web.Response(text=json.dumps(answers[0]), content_type="application/json")

    # ------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/ws", self._websocket)  # newHeads, as ws://host:port/ws
        app.router.add_get("/ws/{tail:.*}", self._websocket)
        app.router.add_post("/", self._handle)
        app.router.add_post("/{tail:.*}", self._handle)  # providers put the API key in the path
        self._runner, self.url = await listen(app, host, port)

    async def stop(self) -> None:
        self._closing.set()
        await self.drop_subscribers()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def run_chain(chain: Chain, *, clock: Callable[[], float] = time.time, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[ChainSim]:
    """Start a loopback chain on host:port (0: any free port); yields it running."""
    sim = ChainSim(chain, clock=clock)
    await sim.start(host, port)
    try:
        yield sim
    finally:
        await sim.stop()
