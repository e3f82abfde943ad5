"""The simulator server: aiohttp app, fault/latency middleware, request counters, ccxt config.

    async with run_simulator("demo") as sim:
        ex = ccxt.async_support.binanceusdm({"apiKey": "demo-key", "secret": "x", **sim.ccxt_config()})

`sim.ccxt_config()` points every API URL of ccxt's binanceusdm at the simulator (also the
spot/sapi/dapi/eapi/papi ones, so nothing can reach the real exchange: calls the simulator
does not implement get a logged 404 with Binance's error JSON).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from alerter.simulator import binance_api, control, loans, websocket
from alerter.simulator.faults import BODY_KINDS, HTML_502, MSG_429, MSG_500, Fault, FaultBook, alter_body, make_fault
from alerter.simulator.market import Account, Position
from alerter.simulator.scenario import Scenario, load_scenario, parse_scenario
from alerter.simulator.state import SimState

logger = logging.getLogger(__name__)

# ccxt binanceusdm urls['api'] key → path on the simulator (same layout as Binance's hosts)
API_PATHS = {
    "fapiPublic": "/fapi/v1", "fapiPublicV2": "/fapi/v2", "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1", "fapiPrivateV2": "/fapi/v2", "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "public": "/api/v3", "private": "/api/v3", "v1": "/api/v1",
    "sapi": "/sapi/v1", "sapiV2": "/sapi/v2", "sapiV3": "/sapi/v3", "sapiV4": "/sapi/v4",
    "dapiPublic": "/dapi/v1", "dapiPrivate": "/dapi/v1", "dapiPrivateV2": "/dapi/v2", "dapiData": "/dapi/futures/data",
    "eapiPublic": "/eapi/v1", "eapiPrivate": "/eapi/v1", "papi": "/papi/v1", "papiV2": "/papi/v2",
}
# load_markets with keys set would also call sapi capital/config/getall and margin/allPairs
CCXT_OPTIONS = {"fetchCurrencies": False, "fetchMargins": False, "fetchMarkets": {"types": ["linear"]}}


# ccxt.pro binance urls['api']['ws'] keys; ccxt turns ".../ws" into ".../market/ws/<n>" (mark
# prices) and ".../private/ws?listenKey=…" (user data) for linear contracts
WS_KEYS = ("spot", "margin", "linear", "inverse", "papi")


def ccxt_config_for(base_url: str) -> dict[str, Any]:
    """Config to deep-merge into ccxt.binanceusdm(...) (and ccxt.pro.binanceusdm) so it talks to
    the simulator at base_url, over HTTP and websockets."""
    base = base_url.rstrip("/")
    ws = "ws" + base.removeprefix("http") + "/ws"
    return {
        "urls": {"api": {**{key: base + path for key, path in API_PATHS.items()}, "ws": dict.fromkeys(WS_KEYS, ws)}},
        "options": {k: (dict(v) if isinstance(v, dict) else v) for k, v in CCXT_OPTIONS.items()},
    }


def as_scenario(source: Scenario | str | Path | dict[str, Any] | None) -> Scenario:
    if source is None:
        return Scenario()
    if isinstance(source, Scenario):
        return source
    if isinstance(source, dict):
        return parse_scenario(source)
    return load_scenario(source)


async def listen(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, str]:
    """Serve `app` on host:port (0: any free port); the runner (to clean up) and its base URL.
    The simulators' servers (this one, the replay host, the OKX/Bybit websocket fake) start so."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_host, bound_port = runner.addresses[0][:2]
    return runner, f"http://{bound_host}:{bound_port}"


class Simulator:
    """The running simulator; Python equivalents of the control API for in-process tests."""

    def __init__(
        self,
        scenario: Scenario | str | Path | dict[str, Any] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        speed: float = 1.0,
        auto_accounts: bool = False,
        mark_cadence: float = 1.0,
    ) -> None:
        self.state = SimState(as_scenario(scenario), clock=clock, speed=speed, auto_accounts=auto_accounts)
        self.ws = websocket.WsHub(self.state, mark_cadence)  # websockets: mark prices every `mark_cadence` s, user data
        self.faults = FaultBook()
        self.latency = 0.0
        self.counts: Counter[tuple[str | None, str]] = Counter()
        self.url = ""
        self._tasks: set[asyncio.Task] = set()
        self._closing: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None

    # --- lifecycle ----------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app[binance_api.STATE_KEY] = self.state
        app[control.SIM_KEY] = self
        binance_api.add_routes(app)
        loans.add_routes(app, binance_api.signed, binance_api.STATE_KEY)
        websocket.add_routes(app, self.ws)
        control.add_routes(app)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._closing = asyncio.Event()
        self._runner, self.url = await listen(self.make_app(), host, port)
        logger.info("simulator listening on %s", self.url)

    async def stop(self) -> None:
        if self._closing is not None:
            self._closing.set()  # releases hanging and delayed requests
        await self.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def pause(self, seconds: float | None) -> None:
        """Sleep `seconds` (None: forever), cut short when the simulator stops."""
        closing = self._closing or asyncio.Event()
        try:
            async with asyncio.timeout(seconds):  # not wait_for: it can lose a cancel on 3.11
                await closing.wait()
        except TimeoutError:
            pass

    # --- ccxt ---------------------------------------------------------------------------
    def ccxt_config(self) -> dict[str, Any]:
        return ccxt_config_for(self.url)

    # --- market and accounts ------------------------------------------------------------
    def prices(self) -> dict[str, float]:
        return self.state.prices()

    def set_prices(self, prices: dict[str, float]) -> None:
        """Pin these marks (they stop following the path until unpin/reset)."""
        self.state.set_prices(prices)

    def unpin(self, symbols: Iterable[str] | None = None) -> None:
        self.state.unpin(symbols)

    def set_elapsed(self, seconds: float) -> None:
        """Jump the price path to `seconds` after the scenario start."""
        self.state.set_elapsed(seconds)

    def load(self, scenario: Scenario | str | Path | dict[str, Any]) -> None:
        """Replace the scenario (accounts, prices, path) and restart its clock."""
        self.state.load(as_scenario(scenario))

    def reset(self) -> None:
        """Reload the current scenario from scratch (pins cleared, clock restarted)."""
        self.state.reset()

    def set_account(
        self,
        api_key: str,
        *,
        name: str | None = None,
        wallet_balance: float | None = None,
        positions: Iterable[Position] | None = None,
    ) -> Account:
        """Create or update an account; its user-data sockets get an ACCOUNT_UPDATE."""
        before = self.state.accounts.get(api_key)
        old = (before.wallet_balance, list(before.positions)) if before is not None else (0.0, [])
        account = self.state.set_account(api_key, name=name, wallet_balance=wallet_balance, positions=positions)
        if (account.wallet_balance, account.positions) != old:
            closed = {p.symbol for p in old[1]} - {p.symbol for p in account.positions}
            if account.positions != old[1]:
                reason = "ORDER"
            else:
                reason = "DEPOSIT" if account.wallet_balance > old[0] else "WITHDRAW"
            message = websocket.account_update(self.state.risk(api_key), reason, websocket.now_ms(), sorted(closed))
            self._spawn(self.ws.push_account(api_key, message))
        return account

    async def margin_call(self, api_key: str, symbols: Iterable[str] | None = None) -> dict[str, Any]:
        """Push Binance's MARGIN_CALL for the account's positions (or those of `symbols`) to its
        user-data sockets, at the current prices; returns the message."""
        message = websocket.margin_call(self.state.risk(api_key), websocket.now_ms(), symbols)
        await self.ws.push_account(api_key, message)
        return message

    async def ws_fault(self, kind: str, stream: str | None = None, seconds: float | None = None) -> None:
        """A websocket fault (alerter.simulator.websocket): "drop" closes the open sockets of
        `stream` ("public", "private", None: both) now; "stall" and "refuse" hold until
        `clear_ws_faults()` or for `seconds`."""
        self.ws.faults.add(kind, stream, seconds)
        if kind == "drop":
            await self.ws.drop(stream)

    def clear_ws_faults(self) -> None:
        self.ws.faults.clear()

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- faults, latency, counters ------------------------------------------------------
    def inject(
        self,
        kind: str,
        count: int | None = 1,
        seconds: float | None = None,
        api_key: str | None = None,
        path: str | None = None,
        symbol: str | None = None,
    ) -> Fault:
        return self.faults.add(make_fault(kind, count, seconds, api_key, path, symbol))

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        self.latency = float(seconds)

    def request_counts(self) -> dict[tuple[str | None, str], int]:
        """Exchange-API requests received, per (X-MBX-APIKEY or None, path)."""
        return dict(self.counts)

    def request_total(self) -> int:
        return sum(self.counts.values())

    def reset_counts(self) -> None:
        self.counts.clear()

    # --- the exchange-API middleware ----------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/control/") or websocket.is_websocket_path(request.path):
            return await handler(request)  # websockets have faults of their own (Simulator.ws_fault)
        api_key = request.headers.get("X-MBX-APIKEY")
        self.counts[(api_key, request.path)] += 1
        if self.latency:
            await self.pause(self.latency)
        fault = self.faults.take(request.path, api_key)
        if fault is not None:
            logger.info("fault %s on %s %s", fault.kind, request.method, request.path)
            early = await self._apply_fault(fault, request)
            if early is not None:
                return early
        try:
            response = await handler(request)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            logger.warning("simulator: no such endpoint %s %s", request.method, request.path)
            return binance_api.binance_error(
                404, -5000, f"Path {request.path}, Method {request.method} is invalid"
            )
        if fault is not None and fault.kind in BODY_KINDS and isinstance(response, web.Response) and response.status == 200:
            body = response.body if isinstance(response.body, bytes) else b"{}"
            return web.Response(body=alter_body(fault, body), content_type="application/json")
        return response

    async def _apply_fault(self, fault: Fault, request: web.Request) -> web.StreamResponse | None:
        kind = fault.kind
        if kind == "http500":
            return binance_api.binance_error(500, -1001, MSG_500)
        if kind == "http429":
            retry = f"{fault.seconds:g}" if fault.seconds is not None else "1"
            return binance_api.binance_error(429, -1003, MSG_429, headers={"Retry-After": retry})
        if kind == "http401":
            return binance_api.invalid_key()
        if kind == "html502":
            return web.Response(status=502, text=HTML_502, content_type="text/html")
        if kind == "delay":
            await self.pause(fault.seconds)
        elif kind == "hang":
            await self.pause(fault.seconds)
            if request.transport is not None:
                request.transport.close()
            return web.Response()  # never sent: aiohttp drops it quietly on the closed transport
        return None  # delay and the BODY_KINDS: go on to the real handler


@asynccontextmanager
async def run_simulator(
    scenario: Scenario | str | Path | dict[str, Any] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    clock: Callable[[], float] = time.monotonic,
    speed: float = 1.0,
    auto_accounts: bool = False,
    mark_cadence: float = 1.0,
) -> AsyncIterator[Simulator]:
    """Start the simulator on host:port (0 = any free port); yields the running Simulator.
    Its websockets push mark prices every `mark_cadence` seconds (Binance: 1)."""
    sim = Simulator(scenario, clock=clock, speed=speed, auto_accounts=auto_accounts, mark_cadence=mark_cadence)
    await sim.start(host, port)
    try:
        yield sim
    finally:
        await sim.stop()
