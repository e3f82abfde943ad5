"""The exchanges' websocket streams through ccxt.pro: mark prices (public) and account events
(private, per account), and the exchange's own margin-call notices read from the raw messages.

    feed = PriceFeed(account, markets, keepalive_s=1)
    marks = await feed.next(["BTC/USDT:USDT"])   # the latest mark of every watched symbol
    feed = AccountFeed(account, on_event, source.exchange, timeout_s=10, keepalive_s=1)  # on the Source's instance where it can
    await feed.next()                            # returns when the account changed; raises when the socket is lost
    await feed.close()                           # the connection (the Source closes a shared instance)

Which exchanges stream, and how each one's events read, is the explicit registry `STREAMS`
(binanceusdm, okx, bybit). Like the rest of alerter.sources this is the only place that imports
ccxt (ccxt.pro here), inside functions; the parsers are pure.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    """An exchange's own margin-call event, quoted: `text` as the alert says it, `key` the
    positions it is about (repeats of one notice share it)."""

    text: str
    key: str


def _number(text: Any) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


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
        maint = _number(row.get("mm"))
        text = f"{symbol}{'' if side == 'BOTH' else ' ' + side.lower()} {mode}"
        parts.append(text + (f", maint {maint:,.2f}" if maint is not None else ""))
        keys.append(text)
    if not parts:
        return Notice("Binance margin call (no positions named)", "margin-call")
    return Notice("Binance margin call: " + "; ".join(parts), "margin-call:" + ",".join(sorted(keys)))


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
        ratio = _number(row.get("mgnRatio"))
        parts.append(text + (f", margin ratio {ratio * 100:,.0f} % (liquidation at 100 %)" if ratio is not None else ""))
        keys.append(text)
    if not parts:
        return None  # the channel's subscription answer, or a push naming no position
    return Notice("OKX liquidation warning: " + "; ".join(parts), "liquidation-warning:" + ",".join(sorted(keys)))


def _no_notice(message: Mapping[str, Any]) -> Notice | None:
    return None


def binance_event(message: Mapping[str, Any]) -> str | None:
    """"ACCOUNT_UPDATE" when Binance's user-data stream says positions or balances changed."""
    return "ACCOUNT_UPDATE" if message.get("e") == "ACCOUNT_UPDATE" else None


def okx_event(message: Mapping[str, Any]) -> str | None:
    """A push (not a subscription answer) of OKX's `account` or `positions` channel."""
    arg = message.get("arg")
    if "event" in message or not isinstance(arg, Mapping) or "data" not in message:
        return None
    channel = arg.get("channel")
    return f"{channel} push" if channel in ("account", "positions") else None


def bybit_event(message: Mapping[str, Any]) -> str | None:
    """A push of Bybit's private `wallet` or `position` topic."""
    topic = message.get("topic")
    return f"{topic} push" if topic in ("wallet", "position") and "data" in message else None


def binance_listen_key_expired(message: Mapping[str, Any]) -> bool:
    return message.get("e") == "listenKeyExpired"


def forget_listen_keys(exchange: Any) -> None:
    """Drop the listen keys ccxt.pro's binance keeps in its options (one per market type), so
    that the next connection asks the exchange for one (it answers with the live key, or a new
    one when that has expired)."""
    for kind, bucket in list(exchange.options.items()):
        if isinstance(bucket, dict) and bucket.get("listenKey"):
            exchange.options[kind] = {**bucket, "listenKey": None, "lastAuthenticatedTime": 0}


def _never(message: Mapping[str, Any]) -> bool:
    return False


def _nothing(exchange: Any) -> None:
    return None


def _watch_balance(exchange: Any) -> Awaitable[Any]:
    return exchange.watch_balance()


def _watch_positions(exchange: Any) -> Awaitable[Any]:
    return exchange.watch_positions()


async def _okx_watch_liquidation_warnings(exchange: Any) -> Any:
    """Subscribe OKX's `liquidation-warning` channel on the private connection (ccxt.pro has no
    method for it and parses none of its pushes: they are read raw, by the message hook). The
    future never resolves; it fails with the connection."""
    await exchange.authenticate()
    url = exchange.get_url("liquidation-warning", "private")
    request = {"op": "subscribe", "args": [{"channel": "liquidation-warning", "instType": "ANY"}]}
    return await exchange.watch(url, "liquidation-warning", request, "liquidation-warning")


@dataclass(frozen=True)
class StreamSpec:
    """How one exchange streams through ccxt.pro."""

    name: str  # as the exchange calls itself in a notice
    event: Callable[[Mapping[str, Any]], str | None]  # a raw message that means "positions or balance changed": its name
    notice: Callable[[Mapping[str, Any]], Notice | None]  # the exchange's own margin-call event, parsed
    options: Mapping[str, Any]  # ccxt.pro options over the account's
    watch_prices: str = "watch_mark_prices"  # the ccxt.pro method whose tickers carry `markPrice`
    unwatch_prices: str | None = "un_watch_mark_prices"  # None: ccxt.pro cannot unsubscribe them
    # what keeps the private connection subscribed; each resolves on its events, fails with the socket
    account_watches: tuple[Callable[[Any], Awaitable[Any]], ...] = (_watch_balance,)
    # the private connection opens on the account's Source's instance (built from ccxt.pro's class
    # with `options`): one HTTP session, TLS context and rate limiter. False where `options` would
    # change what the REST calls do: the stream then has an instance of its own (~1 MB more).
    shares_source: bool = True
    session_expired: Callable[[Mapping[str, Any]], bool] = _never  # a raw message that ends the private session
    forget_session: Callable[[Any], None] = _nothing  # so that the next connection starts a new one


STREAMS: dict[str, StreamSpec] = {
    "binanceusdm": StreamSpec(
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
        session_expired=binance_listen_key_expired,
        forget_session=forget_listen_keys,
    ),
    # OKX: the `mark-price` channel on /ws/v5/public; on /ws/v5/private (after `login`) the
    # `account` and `positions` channels, and `liquidation-warning`, OKX's own notice
    "okx": StreamSpec(
        name="OKX",
        event=okx_event,
        notice=okx_liquidation_warning,
        options={},
        # ccxt.pro okx's un_watch_tickers would wait for an answer it only matches for `tickers`:
        # a symbol no longer held stays subscribed (its pushes ignored) until the next connection
        unwatch_prices=None,
        account_watches=(_watch_balance, _watch_positions, _okx_watch_liquidation_warnings),
    ),
    # Bybit: linear `tickers.<symbol>` on /v5/public/linear carry markPrice (ccxt.pro bybit has no
    # watch_mark_prices); `wallet` and `position` on /v5/private after `auth`. No margin-call push.
    "bybit": StreamSpec(
        name="Bybit",
        event=bybit_event,
        notice=_no_notice,
        options={
            # a unified trading account (as the bybit source reads it): no REST look-up of the
            # account type before subscribing, no REST positions snapshot behind the stream
            "enableUnifiedAccount": True,
            "enableUnifiedMargin": False,
            "watchPositions": {"fetchPositionsSnapshot": False, "awaitPositionsSnapshot": False},
        },
        # enableUnifiedAccount would make the REST balance read a classic account as unified
        shares_source=False,
        watch_prices="watch_tickers",
        unwatch_prices="un_watch_tickers",
        account_watches=(_watch_balance, _watch_positions),
    ),
}


def supports(exchange_id: str) -> bool:
    return exchange_id in STREAMS


def shares_source(exchange_id: str) -> bool:
    """Whether an account of this exchange that streams has its Source built from ccxt.pro's
    class (`build_source(streaming=True)`), its private stream opening on that instance."""
    return exchange_id in STREAMS and STREAMS[exchange_id].shares_source


_LISTEN_KEY = re.compile(r"(listenKey=)[^&\s'\"]+")


def describe(error: BaseException, hidden: Iterable[str] = ()) -> str:
    """A ccxt websocket error in one line, without the listen key (it reads the account's
    stream) or the account's secrets."""
    text = _LISTEN_KEY.sub(r"\1***", f"{type(error).__name__}: {error}".strip())
    text = re.sub(r"/ws/[0-9A-Za-z]{40,}", "/ws/***", text)
    for secret in hidden:
        if secret:
            text = text.replace(secret, "***")
    return text.splitlines()[0][:300] if text else type(error).__name__


def _pro_exchange(account, timeout_s: float, keepalive_s: float, *, keys: bool) -> Any:
    import ccxt.pro

    from alerter.sources.exchange import ccxt_config, deep_merge

    config = ccxt_config(account, timeout_s)
    if not keys:
        for key in ("apiKey", "secret", "password", "uid", "walletAddress"):
            config.pop(key, None)
    spec = STREAMS[account.exchange]
    config = deep_merge(config, {"options": dict(spec.options), "streaming": {"keepAlive": int(keepalive_s * 1000)}})
    return getattr(ccxt.pro, account.exchange)(config)


class PriceFeed:
    """One public connection to an exchange, watching the mark prices of a set of symbols that
    may change between calls (subscribed and unsubscribed as it does)."""

    def __init__(self, account, markets: dict | None, *, timeout_s: float, keepalive_s: float) -> None:
        self.exchange = _pro_exchange(account, timeout_s, keepalive_s, keys=False)
        self.spec = STREAMS[account.exchange]
        if markets:
            self.exchange.set_markets(markets)
        self.watched: tuple[str, ...] = ()
        self.stamped: dict[str, float] = {}  # the exchange's time (s) of each mark `next` returned, where it states one

    async def next(self, symbols: Iterable[str]) -> dict[str, float]:
        """Wait for the next mark-price message of any of `symbols`; returns the latest mark of
        every one of them known so far. Raises ccxt's errors (the connection lost, refused…)."""
        wanted = tuple(sorted(set(symbols)))
        gone = [s for s in self.watched if s not in wanted]
        if gone and self.spec.unwatch_prices is not None:
            try:
                await getattr(self.exchange, self.spec.unwatch_prices)(gone)
            except Exception as e:  # not fatal: their messages are ignored below
                logger.debug("unsubscribing %s: %s", ", ".join(gone), describe(e))
        self.watched = wanted
        await getattr(self.exchange, self.spec.watch_prices)(list(wanted))
        return self.latest(wanted)

    def latest(self, symbols: Iterable[str]) -> dict[str, float]:
        """The latest mark of each of `symbols` known so far (no wait); their time stamps, read
        at the same moment, in `stamped`."""
        marks, self.stamped = {}, {}
        for symbol in symbols:
            ticker = self.exchange.tickers.get(symbol) or {}
            mark, stamp = _number(ticker.get("markPrice")), _number(ticker.get("timestamp"))
            if mark is not None and mark > 0:
                marks[symbol] = mark
                if stamp is not None:
                    self.stamped[symbol] = stamp / 1000.0
        return marks

    async def close(self) -> None:
        await self.exchange.close()


class AccountFeed:
    """One private connection for one account (Binance: the listen-key user-data stream).
    Where the exchange's spec `shares_source`, it opens on the account's own Source's instance
    (`source_exchange`, built from ccxt.pro's class): the polls and the stream share one HTTP
    session, TLS context and rate limiter; a listen key lives as long as ccxt keeps it alive
    (reconnections reuse it; a failed keepalive or the exchange's expiry event drops it), and
    `close()` ends the connection only. Elsewhere it builds an instance of its own and closes it.
    `on_message(event)` sees every raw message first: the account-change events and the
    exchange's notices that ccxt.pro does not parse."""

    def __init__(self, account, on_message: Callable[[Mapping[str, Any]], None], source_exchange: Any = None, *,
                 timeout_s: float, keepalive_s: float) -> None:
        spec = STREAMS[account.exchange]
        self.own = not spec.shares_source
        if self.own:
            exchange = _pro_exchange(account, timeout_s, keepalive_s, keys=True)
        elif source_exchange is None or not source_exchange.has.get("watchBalance"):
            raise TypeError(f"{account.name}: the source's exchange cannot stream (build it with streaming=True)")
        else:
            exchange = source_exchange
            # read when a connection is made: the ping cadence that finds a silent socket
            exchange.streaming = {**exchange.streaming, "keepAlive": int(keepalive_s * 1000)}
        if exchange.markets is None:
            # a Source loads (or shares) the markets at its first poll; an empty table keeps
            # ccxt.pro from downloading a copy of its own first (the events are read raw)
            exchange.markets = {}
        self.exchange = exchange
        self.watches = spec.account_watches
        self.pending: dict[int, asyncio.Future] = {}  # watch → its call under way (kept across next())
        self.connected = asyncio.Event()
        handle, connected = type(exchange).handle_message, type(exchange).on_connected

        def handle_message(client, message):
            if isinstance(message, Mapping):
                if spec.session_expired(message):
                    spec.forget_session(exchange)  # the next connection starts a new session
                try:
                    on_message(message)
                except Exception:  # a bug here must not cut the connection
                    logger.exception("%s: stream message hook failed", account.name)
            return handle(exchange, client, message)

        def on_connected(client, message=None):
            self.connected.set()
            return connected(exchange, client, message)

        exchange.handle_message = handle_message  # the Client is built with these bound callbacks
        exchange.on_connected = on_connected

    async def next(self) -> None:
        """Return after the next balance/position event; raise when the connection is lost."""
        for n, watch in enumerate(self.watches):
            if n not in self.pending:
                self.pending[n] = asyncio.ensure_future(watch(self.exchange))
        done, _ = await asyncio.wait(self.pending.values(), return_when=asyncio.FIRST_COMPLETED)
        for n, task in list(self.pending.items()):
            if task in done:
                del self.pending[n]
        for task in done:
            task.result()

    async def close(self) -> None:
        """Close the connection; a shared instance's session stays open for the polls."""
        for task in self.pending.values():
            task.cancel()
        await asyncio.gather(*self.pending.values(), return_exceptions=True)
        self.pending.clear()
        if self.own:
            await self.exchange.close()
            return
        try:
            await self.exchange.close_ws_clients()
        finally:
            for hook in ("handle_message", "on_connected"):
                self.exchange.__dict__.pop(hook, None)
