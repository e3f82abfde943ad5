"""The Binance USDⓈ-M websocket API that ccxt.pro's binanceusdm uses, answered from SimState.

Market streams (https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams):
  /ws, /market/ws, /public/ws (and anything under them, such as ccxt's `/market/ws/0`):
      raw streams; `/ws/<stream>` opens with that stream subscribed
  /stream, /market/stream, /public/stream `?streams=a/b`: combined streams, each message wrapped
      as {"stream": name, "data": payload}
  Both take {"method": "SUBSCRIBE" | "UNSUBSCRIBE", "params": [...], "id": N} and answer
  {"result": null, "id": N}; LIST_SUBSCRIPTIONS answers the list. `<symbol>@markPrice@1s` (and
  `@markPrice`, and `!markPrice@arr[@1s]`) push a markPriceUpdate every `cadence` seconds from
  the simulator's live prices.
User data stream (https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams):
  POST /fapi/v1/listenKey (X-MBX-APIKEY only) → {"listenKey": …}; PUT keeps it alive, DELETE ends it.
  /private/ws?listenKey=K, /ws/K: ACCOUNT_UPDATE when the account's positions or balance change
  (Simulator.set_account), MARGIN_CALL when asked (Simulator.margin_call).

Faults (`WsFaults`), per kind of stream ("public", "private" or both):
  drop    close the open sockets now (the client sees the connection closed)
  stall   sockets stay open but send nothing and answer no ping, until cleared or `seconds`
          pass; new connections stall too
  refuse  new connections are rejected (HTTP 503 instead of the upgrade), until cleared or
          `seconds` pass
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from alerter.simulator.market import CROSS, AccountRisk
from alerter.simulator.state import SimState

logger = logging.getLogger(__name__)

KINDS = ("drop", "stall", "refuse")
STREAMS = ("public", "private")
MARKET_PREFIXES = ("/ws", "/market/ws", "/public/ws")
COMBINED_PREFIXES = ("/stream", "/market/stream", "/public/stream")
PRIVATE_PREFIX = "/private/ws"


def num(value: float, places: int = 8) -> str:
    text = f"{value:.{places}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------- payloads (pure)

def mark_price_update(symbol: str, price: float, at_ms: int) -> dict[str, Any]:
    """One markPriceUpdate event, as Binance documents it."""
    next_funding = (at_ms // 28_800_000 + 1) * 28_800_000
    return {"e": "markPriceUpdate", "E": at_ms, "s": symbol, "p": num(price), "ap": num(price), "P": num(price),
            "i": num(price), "r": "0.00010000", "T": next_funding}


def account_update(risk: AccountRisk, reason: str, at_ms: int, closed: Iterable[str] = ()) -> dict[str, Any]:
    """ACCOUNT_UPDATE for an account: its USDT balance and every position (closed ones with
    amount 0), `reason` being Binance's event reason type (ORDER, DEPOSIT, WITHDRAW, …)."""
    rows = []
    for r in risk.positions:
        p = r.position
        rows.append({"s": p.symbol, "pa": num(p.size, 3), "ep": num(p.entry_price), "bep": num(p.entry_price),
                     "cr": "0", "up": num(r.unrealized_pnl), "mt": p.margin_type,
                     "iw": num(p.isolated_wallet if p.margin_type != CROSS else 0.0), "ps": "BOTH", "ma": "USDT"})
    for symbol in closed:
        rows.append({"s": symbol, "pa": "0", "ep": "0.00000", "bep": "0", "cr": "0", "up": "0", "mt": "cross",
                     "iw": "0", "ps": "BOTH", "ma": "USDT"})
    return {"e": "ACCOUNT_UPDATE", "E": at_ms, "T": at_ms - 1, "a": {
        "m": reason,
        "B": [{"a": "USDT", "wb": num(risk.total_wallet_balance), "cw": num(risk.cross_wallet_balance), "bc": "0"}],
        "P": rows,
    }}


def margin_call(risk: AccountRisk, at_ms: int, symbols: Iterable[str] | None = None) -> dict[str, Any]:
    """MARGIN_CALL for the account's positions (or those of `symbols`), Binance's payload:
    `cw` (cross wallet balance) only when a cross position is among them."""
    wanted = set(symbols) if symbols is not None else None
    rows = []
    for r in risk.positions:
        p = r.position
        if wanted is not None and p.symbol not in wanted:
            continue
        rows.append({"s": p.symbol, "ps": "BOTH", "pa": num(p.size, 3), "mt": "CROSSED" if p.margin_type == CROSS else "ISOLATED",
                     "iw": num(p.isolated_wallet if p.margin_type != CROSS else 0.0), "mp": num(r.mark_price),
                     "up": num(r.unrealized_pnl), "mm": num(r.maint_margin)})
    message: dict[str, Any] = {"e": "MARGIN_CALL", "E": at_ms}
    if any(row["mt"] == "CROSSED" for row in rows):
        message["cw"] = num(risk.cross_wallet_balance)
    message["p"] = rows
    return message


def stream_symbol(stream: str) -> str | None:
    """"btcusdt@markPrice@1s" → "BTCUSDT"; None for streams that are not one symbol's mark price."""
    name, _, rest = stream.partition("@")
    if rest in ("markPrice", "markPrice@1s") and name and not name.startswith("!"):
        return name.upper()
    return None


async def end_pusher(pusher: asyncio.Task | None) -> None:
    """Stop a socket's mark-price pusher when the socket ends (this server's and venue_ws's)."""
    if pusher is not None:
        pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pusher


# ---------------------------------------------------------------- faults

@dataclass
class WsFault:
    kind: str
    stream: str | None = None  # "public" | "private" | None (both)
    until: float | None = None  # monotonic; None = until cleared

    def active(self, stream: str, now: float) -> bool:
        return (self.stream is None or self.stream == stream) and (self.until is None or now < self.until)


@dataclass
class WsFaults:
    faults: list[WsFault] = field(default_factory=list)

    def add(self, kind: str, stream: str | None, seconds: float | None) -> WsFault:
        if kind not in KINDS:
            raise ValueError(f"unknown websocket fault {kind!r} (known: {', '.join(KINDS)})")
        if stream is not None and stream not in STREAMS:
            raise ValueError(f"stream must be one of {', '.join(STREAMS)} (or null for both), not {stream!r}")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0):
            raise ValueError("seconds must be a number >= 0")
        fault = WsFault(kind, stream, None if seconds is None else time.monotonic() + seconds)
        if kind != "drop":
            self.faults.append(fault)
        return fault

    def has(self, kind: str, stream: str) -> bool:
        now = time.monotonic()
        self.faults = [f for f in self.faults if f.until is None or now < f.until]
        return any(f.kind == kind and f.active(stream, now) for f in self.faults)

    def clear(self) -> None:
        self.faults.clear()

    def as_list(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [{"kind": f.kind, "stream": f.stream, "seconds_left": None if f.until is None else max(0.0, f.until - now)}
                for f in self.faults if f.until is None or now < f.until]


# ---------------------------------------------------------------- connections

@dataclass(eq=False)
class Connection:
    ws: web.WebSocketResponse
    stream: str  # "public" | "private"
    combined: bool = False
    subscriptions: set[str] = field(default_factory=set)
    api_key: str | None = None  # private: the listen key's account
    listen_key: str | None = None

    async def send(self, payload: Any, stream_name: str | None = None) -> None:
        if self.ws.closed:
            return
        if self.combined and stream_name is not None:
            payload = {"stream": stream_name, "data": payload}
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(json.dumps(payload, separators=(",", ":")))


class WsHub:
    """Every open websocket, the listen keys, the pushers; owned by the Simulator."""

    def __init__(self, state: SimState, cadence: float) -> None:
        self.state = state
        self.cadence = cadence
        self.faults = WsFaults()
        self.connections: set[Connection] = set()
        self.listen_keys: dict[str, str] = {}  # listen key → API key
        self.counts: Counter[str] = Counter()  # "public" / "private" connections accepted, "refused"
        self._tick_prices: tuple[int, dict[str, float], int] | None = None  # (tick, prices, time stamp ms)

    def stalled(self, stream: str) -> bool:
        return self.faults.has("stall", stream)

    # --- listen keys (REST) ------------------------------------------------------------
    def listen_key_for(self, api_key: str) -> str:
        for key, owner in self.listen_keys.items():
            if owner == api_key:
                return key
        key = secrets.token_hex(32)
        self.listen_keys[key] = api_key
        return key

    def end_listen_key(self, api_key: str) -> None:
        for key in [k for k, owner in self.listen_keys.items() if owner == api_key]:
            del self.listen_keys[key]

    # --- pushes --------------------------------------------------------------------------
    async def push_account(self, api_key: str, message: dict[str, Any]) -> int:
        """Send a user-data event to the account's open, non-stalled sockets; returns how many."""
        sent = 0
        for conn in list(self.connections):
            if conn.stream == "private" and conn.api_key == api_key and not self.stalled("private"):
                await conn.send(message)
                sent += 1
        return sent

    async def drop(self, stream: str | None) -> int:
        victims = [c for c in self.connections if stream is None or c.stream == stream]
        for conn in victims:
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1001, message=b"going away")
        return len(victims)

    async def close(self) -> None:
        await self.drop(None)

    # --- the handler -----------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        private = path.startswith(PRIVATE_PREFIX) or any(
            path.startswith(p + "/") and path.rsplit("/", 1)[-1] in self.listen_keys for p in MARKET_PREFIXES)
        stream = "private" if private else "public"
        if self.faults.has("refuse", stream):
            self.counts["refused"] += 1
            return web.Response(status=503, text="websocket connections refused (simulated)")
        conn = Connection(web.WebSocketResponse(autoping=False, max_msg_size=1 << 20), stream,
                          combined=any(path.startswith(p) for p in COMBINED_PREFIXES))
        if private:
            key = request.query.get("listenKey") or path.rsplit("/", 1)[-1]
            api_key = self.listen_keys.get(key)
            if api_key is None:
                return web.json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)
            conn.api_key, conn.listen_key = api_key, key
        else:
            names = request.query.get("streams", "").split("/") if conn.combined else [path.rsplit("/", 1)[-1]]
            conn.subscriptions.update(n for n in names if "@" in n)
        await conn.ws.prepare(request)
        self.counts[stream] += 1
        self.connections.add(conn)
        pusher = asyncio.create_task(self._push_marks(conn)) if not private else None
        try:
            await self._read(conn)
        finally:
            self.connections.discard(conn)
            await end_pusher(pusher)
        return conn.ws

    async def _read(self, conn: Connection) -> None:
        async for msg in conn.ws:
            if self.stalled(conn.stream):
                continue  # a stalled socket answers nothing, not even a ping
            if msg.type == WSMsgType.PING:
                await conn.ws.pong(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await self._request(conn, msg.data)
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                break

    async def _request(self, conn: Connection, text: str) -> None:
        try:
            data = json.loads(text)
        except ValueError:
            await conn.send({"error": {"code": 3, "msg": "Invalid JSON"}})
            return
        method, params, request_id = data.get("method"), data.get("params") or [], data.get("id")
        if method == "SUBSCRIBE":
            conn.subscriptions.update(str(p) for p in params)
            await conn.send({"result": None, "id": request_id})
        elif method == "UNSUBSCRIBE":
            conn.subscriptions.difference_update(str(p) for p in params)
            await conn.send({"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            await conn.send({"result": sorted(conn.subscriptions), "id": request_id})
        else:
            await conn.send({"error": {"code": 2, "msg": f"Invalid request: unknown method {method!r}"}, "id": request_id})

    def _tick(self, index: int) -> tuple[dict[str, float], int]:
        """The prices of tick `index` and their time stamp, the same for every connection: the
        exchange computes its mark prices once a tick (Binance: each second) for every symbol."""
        if self._tick_prices is None or self._tick_prices[0] != index:
            self._tick_prices = (index, self.state.prices(), now_ms())
        return self._tick_prices[1], self._tick_prices[2]

    async def _push_marks(self, conn: Connection) -> None:
        """Every `cadence` seconds, on one tick grid for all connections, one markPriceUpdate per
        subscribed symbol (an array for `!markPrice@arr`), unless the public streams are stalled."""
        loop = asyncio.get_running_loop()
        while not conn.ws.closed:
            await asyncio.sleep(self.cadence - loop.time() % self.cadence)
            index = round(loop.time() / self.cadence)
            if self.stalled("public") or not conn.subscriptions:
                continue
            prices, at = self._tick(index)
            for name in sorted(conn.subscriptions):
                if name.startswith("!markPrice@arr"):
                    await conn.send([mark_price_update(s, p, at) for s, p in sorted(prices.items())], name)
                    continue
                symbol = stream_symbol(name)
                if symbol is not None and symbol in prices:
                    await conn.send(mark_price_update(symbol, prices[symbol], at), name)


# ---------------------------------------------------------------- REST: listen keys

def listen_key_routes(hub: WsHub) -> list[web.RouteDef]:
    """POST/PUT/DELETE /fapi/v1/listenKey: USER_STREAM security (the API key header, no signature)."""

    def owner(request: web.Request) -> str | web.Response:
        api_key = request.headers.get("X-MBX-APIKEY")
        if not api_key:
            return web.json_response({"code": -2014, "msg": "API-key format invalid."}, status=401)
        if hub.state.account(api_key) is None:
            return web.json_response({"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}, status=401)
        return api_key

    async def create(request: web.Request) -> web.Response:
        api_key = owner(request)
        if isinstance(api_key, web.Response):
            return api_key
        return web.json_response({"listenKey": hub.listen_key_for(api_key)})

    async def keepalive(request: web.Request) -> web.Response:
        api_key = owner(request)
        if isinstance(api_key, web.Response):
            return api_key
        if api_key not in hub.listen_keys.values():
            return web.json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)
        return web.json_response({"listenKey": hub.listen_key_for(api_key)})

    async def delete(request: web.Request) -> web.Response:
        api_key = owner(request)
        if isinstance(api_key, web.Response):
            return api_key
        hub.end_listen_key(api_key)
        return web.json_response({})

    return [web.post("/fapi/v1/listenKey", create), web.put("/fapi/v1/listenKey", keepalive),
            web.delete("/fapi/v1/listenKey", delete)]


def is_websocket_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in (*MARKET_PREFIXES, *COMBINED_PREFIXES, PRIVATE_PREFIX))


def add_routes(app: web.Application, hub: WsHub) -> None:
    for prefix in (*MARKET_PREFIXES, *COMBINED_PREFIXES, PRIVATE_PREFIX):
        app.router.add_get(prefix, hub.handle)
        app.router.add_get(prefix + "/{tail:.*}", hub.handle)
    app.router.add_routes(listen_key_routes(hub))
