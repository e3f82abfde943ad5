"""The exchanges' websocket streams through ccxt.pro: mark prices (public) and account events
(private, per account), and the exchange's own margin-call notices read from the raw messages.

    feed = PriceFeed(account, markets, keepalive_s=1)
    marks = await feed.next(["BTC/USDT:USDT"])   # the latest mark of every watched symbol
    feed = AccountFeed(source.exchange, "main", on_event, keepalive_s=1)  # on the account's Source's instance
    await feed.next()                            # returns when the account changed; raises when the socket is lost
    await feed.close()                           # the connection only: the Source closes the instance

Which exchanges stream, and how each one's events read, is the explicit registry `STREAMS`
(binanceusdm for now). Like the rest of alerter.sources this is the only place that imports
ccxt (ccxt.pro here), inside functions; the parsers are pure.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
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


def forget_listen_keys(exchange: Any) -> None:
    """Drop the listen keys ccxt.pro's binance keeps in its options (one per market type), so
    that the next connection asks the exchange for one (it answers with the live key, or a new
    one when that has expired)."""
    for kind, bucket in list(exchange.options.items()):
        if isinstance(bucket, dict) and bucket.get("listenKey"):
            exchange.options[kind] = {**bucket, "listenKey": None, "lastAuthenticatedTime": 0}


@dataclass(frozen=True)
class StreamSpec:
    """How one exchange streams through ccxt.pro."""

    name: str  # as the exchange calls itself in a notice
    account_events: frozenset[str]  # raw event types that mean "positions or balance changed"
    notice: Callable[[Mapping[str, Any]], Notice | None]  # the exchange's own margin-call event, parsed
    options: Mapping[str, Any]  # ccxt.pro options over the account's
    expired_events: frozenset[str] = frozenset()  # raw event types that end the private stream's session
    forget_session: Callable[[Any], None] = lambda exchange: None  # so that the next connection starts a new one


STREAMS: dict[str, StreamSpec] = {
    "binanceusdm": StreamSpec(
        name="Binance",
        account_events=frozenset({"ACCOUNT_UPDATE"}),
        notice=binance_margin_call,
        options={
            # every mark-price subscription on one connection (ccxt opens one per symbol set otherwise)
            "streamLimits": {"linear": 1},
            # no REST snapshot behind the user-data stream: a full poll follows every event anyway
            "watchBalance": {"fetchBalanceSnapshot": False},
            "watchPositions": {"fetchPositionsSnapshot": False},
            "listenKeyRefreshRate": 30 * 60 * 1000,  # Binance keeps a listen key 60 min after a keepalive
        },
        expired_events=frozenset({"listenKeyExpired"}),
        forget_session=forget_listen_keys,
    ),
}


def supports(exchange_id: str) -> bool:
    return exchange_id in STREAMS


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


def _public_exchange(account, timeout_s: float, keepalive_s: float) -> Any:
    """A keyless ccxt.pro instance for an exchange's public streams."""
    import ccxt.pro

    from alerter.sources.exchange import ccxt_config, deep_merge

    config = ccxt_config(account, timeout_s)
    for key in ("apiKey", "secret", "password", "uid", "walletAddress"):
        config.pop(key, None)
    spec = STREAMS[account.exchange]
    config = deep_merge(config, {"options": dict(spec.options), "streaming": {"keepAlive": int(keepalive_s * 1000)}})
    return getattr(ccxt.pro, account.exchange)(config)


class PriceFeed:
    """One public connection to an exchange, watching the mark prices of a set of symbols that
    may change between calls (subscribed and unsubscribed as it does)."""

    def __init__(self, account, markets: dict | None, *, timeout_s: float, keepalive_s: float) -> None:
        self.exchange = _public_exchange(account, timeout_s, keepalive_s)
        if markets:
            self.exchange.set_markets(markets)
        self.watched: tuple[str, ...] = ()
        self.stamped: dict[str, float] = {}  # the exchange's time (s) of each mark `next` returned, where it states one

    async def next(self, symbols: Iterable[str]) -> dict[str, float]:
        """Wait for the next mark-price message of any of `symbols`; returns the latest mark of
        every one of them known so far. Raises ccxt's errors (the connection lost, refused…)."""
        wanted = tuple(sorted(set(symbols)))
        gone = [s for s in self.watched if s not in wanted]
        if gone:
            try:
                await self.exchange.un_watch_mark_prices(gone)
            except Exception as e:  # not fatal: their messages are ignored below
                logger.debug("unsubscribing %s: %s", ", ".join(gone), describe(e))
        self.watched = wanted
        await self.exchange.watch_mark_prices(list(wanted))
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
    """One private connection for one account (Binance: the listen-key user-data stream), opened
    on the account's own exchange instance: its Source's, built from ccxt.pro's class
    (`build_source(streaming=True)`), so the polls and the stream share one HTTP session, TLS
    context and rate limiter, and a listen key lives as long as ccxt keeps it alive (reconnections
    reuse it; a failed keepalive or the exchange's expiry event drops it). `close()` ends the
    connection only: the instance is the Source's to close. `on_message(event)` sees every raw
    message first: the account-change events and the exchange's notices that ccxt.pro does not
    parse."""

    def __init__(self, exchange: Any, name: str, on_message: Callable[[Mapping[str, Any]], None], *,
                 keepalive_s: float) -> None:
        spec = STREAMS.get(exchange.id)
        if spec is None or not exchange.has.get("watchBalance"):
            raise TypeError(f"{name}: the source's exchange ({type(exchange).__module__}) cannot stream; build it with streaming=True")
        self.exchange = exchange
        # read when a connection is made: the ping cadence that finds a silent socket
        exchange.streaming = {**exchange.streaming, "keepAlive": int(keepalive_s * 1000)}
        if exchange.markets is None:
            # the Source loads (or shares) the markets at its first poll; an empty table keeps
            # ccxt.pro from downloading a copy of its own first (the events are read raw)
            exchange.markets = {}
        self.connected = asyncio.Event()
        handle, connected = type(exchange).handle_message, type(exchange).on_connected

        def handle_message(client, message):
            if isinstance(message, Mapping):
                if message.get("e") in spec.expired_events:
                    spec.forget_session(exchange)  # the next connection asks for a new listen key
                try:
                    on_message(message)
                except Exception:  # a bug here must not cut the connection
                    logger.exception("%s: stream message hook failed", name)
            return handle(exchange, client, message)

        def on_connected(client, message=None):
            self.connected.set()
            return connected(exchange, client, message)

        exchange.handle_message = handle_message  # the Client is built with these bound callbacks
        exchange.on_connected = on_connected

    async def next(self) -> None:
        """Return after the next balance/position event; raise when the connection is lost."""
        await self.exchange.watch_balance()

    async def close(self) -> None:
        """Close the connection (and any other websocket of the instance); its session stays open
        for the polls."""
        try:
            await self.exchange.close_ws_clients()
        finally:
            for hook in ("handle_message", "on_connected"):
                self.exchange.__dict__.pop(hook, None)
