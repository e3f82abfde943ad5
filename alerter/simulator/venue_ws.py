"""A minimal OKX or Bybit websocket exchange: what ccxt.pro's okx and bybit classes send and expect.

    async with run_venue_ws("okx", keys={"okx-key": ("secret", "passphrase")}, cadence=0.1) as ws:
        account.ccxt = deep_merge(account.ccxt, ws.ccxt_config())
        ws.set_marks({"BTC-USDT-SWAP": 61_000})            # pushed every `cadence` seconds
        await ws.push("okx-key", "positions", [row, ...])   # to the key's logged-in sockets that subscribed it

OKX (https://www.okx.com/docs-v5/en/#overview-websocket):
  /ws/v5/public   {"op": "subscribe", "args": [{"channel": "mark-price", "instId": …}]} → the answer
                  {"event": "subscribe", "arg": …, "connId": …}, then every `cadence` a push
                  {"arg": {"channel": "mark-price", "instId": …}, "data": [{"instType", "instId", "markPx", "ts"}]}
  /ws/v5/private  {"op": "login", "args": [{"apiKey", "passphrase", "timestamp", "sign"}]}, sign =
                  base64(HMAC-SHA256(secret, timestamp + "GET" + "/users/self/verify")) →
                  {"event": "login", "code": "0", …} or {"event": "error", "code": "60009", …};
                  then subscribe `account`, `positions`, `liquidation-warning` (60011 before login)
  The text "ping" is answered "pong".
Bybit (https://bybit-exchange.github.io/docs/v5/ws/connect):
  /v5/public/linear  {"op": "subscribe", "req_id": …, "args": ["tickers.BTCUSDT"]} → {"success": true,
                     "op": "subscribe", "req_id": …}, a ticker snapshot at once, then every `cadence`
                     a delta {"topic", "type": "delta", "data": {"symbol", "markPrice", "indexPrice"}, "cs", "ts"}
  /v5/private        {"op": "auth", "args": [apiKey, expires, sign]}, sign = hex(HMAC-SHA256(secret,
                     "GET/realtime" + expires)) → {"success": true|false, "op": "auth", …}; then
                     subscribe `wallet`, `position`
  {"op": "ping"} is answered {"success": true, "ret_msg": "pong", "op": "ping", …}.

Faults: `drop()` closes every open socket (or one kind's: "public", "private"); `stalled` (a set of
kinds) holds every push and answer (pings included) on the sockets of those kinds; `refuse` answers new connections with HTTP 503.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from alerter.simulator.server import listen
from alerter.simulator.websocket import end_pusher

EXCHANGES = ("okx", "bybit")
OKX_PUBLIC, OKX_PRIVATE = "/ws/v5/public", "/ws/v5/private"
BYBIT_PUBLIC, BYBIT_PRIVATE = "/v5/public/linear", "/v5/private"


def now_ms() -> int:
    return int(time.time() * 1000)


def okx_sign(secret: str, timestamp: str) -> str:
    return base64.b64encode(hmac.new(secret.encode(), f"{timestamp}GET/users/self/verify".encode(), hashlib.sha256).digest()).decode()


def bybit_sign(secret: str, expires: str) -> str:
    return hmac.new(secret.encode(), f"GET/realtime{expires}".encode(), hashlib.sha256).hexdigest()


def okx_mark_price(inst_id: str, price: float, at_ms: int) -> dict[str, Any]:
    """One push of OKX's mark-price channel, as OKX documents it."""
    inst_type = "SWAP" if inst_id.endswith("-SWAP") else "FUTURES"
    return {"arg": {"channel": "mark-price", "instId": inst_id},
            "data": [{"instType": inst_type, "instId": inst_id, "markPx": repr(float(price)), "ts": str(at_ms)}]}


def bybit_ticker(symbol: str, price: float, at_ms: int, *, snapshot: bool) -> dict[str, Any]:
    """A linear `tickers` push: the snapshot carries the full ticker, later deltas what changed."""
    mark = f"{price:.2f}"
    data: dict[str, Any] = {"symbol": symbol, "markPrice": mark, "indexPrice": mark}
    if snapshot:
        data.update(lastPrice=mark, prevPrice24h=mark, price24hPcnt="0", highPrice24h=mark, lowPrice24h=mark,
                    prevPrice1h=mark, openInterest="0", openInterestValue="0", turnover24h="0", volume24h="0",
                    fundingRate="0.0001", nextFundingTime=str((at_ms // 28_800_000 + 1) * 28_800_000),
                    bid1Price=mark, bid1Size="1", ask1Price=mark, ask1Size="1")
    return {"topic": f"tickers.{symbol}", "type": "snapshot" if snapshot else "delta", "data": data,
            "cs": at_ms, "ts": at_ms}


@dataclass(eq=False)
class Socket:
    ws: web.WebSocketResponse
    kind: str  # "public" | "private"
    conn_id: str = field(default_factory=lambda: secrets.token_hex(4))
    api_key: str | None = None  # private: once logged in
    channels: set[str] = field(default_factory=set)  # OKX channel / Bybit topic names subscribed
    marks: set[str] = field(default_factory=set)  # exchange symbols whose mark price it watches
    snapshotted: set[str] = field(default_factory=set)  # Bybit: tickers whose snapshot went out

    async def send(self, payload: Any) -> None:
        if self.ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":")))


class VenueWs:
    """The running fake of one exchange's websockets; see the module docstring."""

    def __init__(self, exchange: str, keys: Mapping[str, tuple[str, str | None]], cadence: float) -> None:
        if exchange not in EXCHANGES:
            raise ValueError(f"no websocket fake for {exchange!r} (known: {', '.join(EXCHANGES)})")
        self.exchange, self.keys, self.cadence = exchange, dict(keys), cadence
        self.marks: dict[str, float] = {}
        self.sockets: set[Socket] = set()
        self.counts: Counter[str] = Counter()  # connections accepted per kind, "refused", "login failed"
        self.received: list[dict[str, Any]] = []  # every JSON request, in order (login/auth args masked)
        self.stalled: set[str] = set()  # "public", "private"
        self.refuse = False
        self.url = ""
        self._runner: web.AppRunner | None = None

    # --- the test's side ---------------------------------------------------------------
    def ccxt_config(self) -> dict[str, Any]:
        """The `urls` over which ccxt.pro reaches this fake (deep-merged into an account's `ccxt`)."""
        base = "ws" + self.url.removeprefix("http")
        if self.exchange == "okx":
            return {"urls": {"api": {"ws": base + "/ws/v5"}}}
        return {"urls": {"api": {"ws": {"public": {"linear": base + BYBIT_PUBLIC},
                                        "private": {"contract": base + BYBIT_PRIVATE}}}}}

    def set_marks(self, marks: Mapping[str, float]) -> None:
        self.marks.update(marks)

    async def push(self, api_key: str, channel: str, data: Any, **extra: Any) -> int:
        """Send `data` as a push of `channel` (OKX) or topic (Bybit) to the key's logged-in
        sockets that subscribed it, unless stalled; returns how many got it."""
        if self.exchange == "okx":
            message = {"arg": {"channel": channel, "instType": "ANY", "uid": "77982378738415879"}, "data": data, **extra}
        else:
            message = {"id": secrets.token_hex(8), "topic": channel, "creationTime": now_ms(), "data": data, **extra}
        sent = 0
        for sock in list(self.sockets):
            if sock.kind == "private" and sock.api_key == api_key and channel in sock.channels and sock.kind not in self.stalled:
                await sock.send(message)
                sent += 1
        return sent

    async def drop(self, kind: str | None = None) -> int:
        victims = [s for s in self.sockets if kind is None or s.kind == kind]
        for sock in victims:
            with contextlib.suppress(Exception):
                await sock.ws.close(code=1001, message=b"going away")
        return len(victims)

    def subscribed(self, kind: str) -> set[str]:
        return set().union(*(s.channels | s.marks for s in self.sockets if s.kind == kind))

    # --- the server ------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        kind = "private" if request.path in (OKX_PRIVATE, BYBIT_PRIVATE) else "public"
        if self.refuse:
            self.counts["refused"] += 1
            return web.Response(status=503, text="websocket connections refused (simulated)")
        sock = Socket(web.WebSocketResponse(autoping=True, max_msg_size=1 << 20), kind)
        await sock.ws.prepare(request)
        self.counts[kind] += 1
        self.sockets.add(sock)
        pusher = asyncio.create_task(self._push_marks(sock)) if kind == "public" else None
        try:
            async for msg in sock.ws:
                if msg.type != WSMsgType.TEXT or sock.kind in self.stalled:
                    continue  # a stalled exchange answers nothing, not even a ping
                if msg.data == "ping":  # OKX's text ping
                    await sock.send("pong")
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    await sock.send({"event": "error", "code": "60012", "msg": f"Invalid request: {msg.data[:100]}"})
                    continue
                await (self._okx if self.exchange == "okx" else self._bybit)(sock, data)
        finally:
            self.sockets.discard(sock)
            await end_pusher(pusher)
        return sock.ws

    def _note(self, data: dict[str, Any]) -> None:
        self.received.append({**data, "args": "***"} if data.get("op") in ("login", "auth") else data)

    async def _okx(self, sock: Socket, data: dict[str, Any]) -> None:
        self._note(data)
        op, args = data.get("op"), data.get("args") or []
        if op == "login" and sock.kind == "private":
            login = args[0] if args and isinstance(args[0], dict) else {}
            secret, passphrase = self.keys.get(str(login.get("apiKey")), (None, None))
            if secret is None or login.get("passphrase") != passphrase or login.get("sign") != okx_sign(secret, str(login.get("timestamp"))):
                self.counts["login failed"] += 1
                await sock.send({"event": "error", "code": "60009", "msg": "Login failed.", "connId": sock.conn_id})
                return
            sock.api_key = login["apiKey"]
            await sock.send({"event": "login", "code": "0", "msg": "", "connId": sock.conn_id})
        elif op in ("subscribe", "unsubscribe"):
            for arg in args:
                if sock.kind == "private" and sock.api_key is None:
                    await sock.send({"event": "error", "code": "60011", "msg": "Please log in", "connId": sock.conn_id})
                    return
                channel = arg.get("channel")
                target = sock.marks if channel == "mark-price" else sock.channels
                name = arg.get("instId") if channel == "mark-price" else channel
                (target.add if op == "subscribe" else target.discard)(name)
                answer = {"event": op, "arg": arg, "connId": sock.conn_id}
                if "id" in data:
                    answer["id"] = data["id"]
                await sock.send(answer)
        else:
            await sock.send({"event": "error", "code": "60012", "msg": f"Invalid request: {json.dumps(data)[:100]}", "connId": sock.conn_id})

    async def _bybit(self, sock: Socket, data: dict[str, Any]) -> None:
        op, args, req_id = data.get("op"), data.get("args") or [], data.get("req_id")
        answer = {"success": True, "ret_msg": "", "conn_id": sock.conn_id, "req_id": str(req_id) if req_id is not None else "", "op": op}
        if op == "ping":
            await sock.send({**answer, "ret_msg": "pong"})
            return
        self._note(data)
        if op == "auth" and sock.kind == "private":
            key, expires, sign = (list(args) + [None, None, None])[:3]
            secret = self.keys.get(str(key), (None, None))[0]
            if secret is None or sign != bybit_sign(secret, str(expires)):
                self.counts["login failed"] += 1
                await sock.send({**answer, "success": False, "ret_msg": "Invalid apikey or sign"})
                return
            sock.api_key = key
            await sock.send(answer)
        elif op in ("subscribe", "unsubscribe"):
            if sock.kind == "private" and sock.api_key is None:
                await sock.send({**answer, "success": False, "ret_msg": "Request not authorized"})
                return
            for topic in map(str, args):
                if topic.startswith("tickers."):
                    symbol = topic.removeprefix("tickers.")
                    (sock.marks.add if op == "subscribe" else sock.marks.discard)(symbol)
                    sock.snapshotted.discard(symbol)
                else:
                    (sock.channels.add if op == "subscribe" else sock.channels.discard)(topic)
            await sock.send(answer)
            if op == "subscribe":
                await self._send_marks(sock)  # Bybit answers a ticker subscription with its snapshot
        else:
            await sock.send({**answer, "success": False, "ret_msg": f"error:invalid op {op!r}"})

    async def _send_marks(self, sock: Socket) -> None:
        at = now_ms()
        for symbol in sorted(sock.marks):
            price = self.marks.get(symbol)
            if price is None:
                continue
            if self.exchange == "okx":
                await sock.send(okx_mark_price(symbol, price, at))
            else:
                await sock.send(bybit_ticker(symbol, price, at, snapshot=symbol not in sock.snapshotted))
                sock.snapshotted.add(symbol)

    async def _push_marks(self, sock: Socket) -> None:
        while not sock.ws.closed:
            await asyncio.sleep(self.cadence)
            if sock.kind not in self.stalled:
                await self._send_marks(sock)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        app = web.Application()
        for path in (OKX_PUBLIC, OKX_PRIVATE) if self.exchange == "okx" else (BYBIT_PUBLIC, BYBIT_PRIVATE):
            app.router.add_get(path, self.handle)
        self._runner, self.url = await listen(app, host, port)

    async def stop(self) -> None:
        await self.drop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def run_venue_ws(exchange: str, keys: Mapping[str, tuple[str, str | None]], *, cadence: float = 1.0) -> AsyncIterator[VenueWs]:
    """Start the fake on a free loopback port; yields the running VenueWs."""
    fake = VenueWs(exchange, keys, cadence)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
