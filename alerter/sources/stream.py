"""The exchanges' websocket streams through ccxt.pro: mark prices (public) and account events
(private, per account), and the exchange's own margin-call notices read from the raw messages.

    feed = PriceFeed(account, markets, keepalive_s=1)
    marks = await feed.next(["BTC/USDT:USDT"])   # the latest mark of every watched symbol
    feed = AccountFeed(account, on_event, source.exchange, timeout_s=10, keepalive_s=1)  # on the Source's instance where it can
    await feed.next()                            # returns when the account changed; raises when the socket is lost
    await feed.close()                           # the connection (the Source closes a shared instance)

Which exchanges stream, and how each one's messages read, is each venue's `StreamSpec`
(alerter.sources.streamspec: its profile's `stream`, with its parsers, in its module:
binanceusdm, okx, bybit); `STREAMS` reads them by exchange id. This module runs the feeds. Like the rest of alerter.sources
it imports ccxt (ccxt.pro here) only inside functions.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from alerter import secrets
from alerter.sources.registry import PROFILES, streaming_ids, streams
from alerter.sources.streamspec import Notice, StreamSpec, message_number

__all__ = ["STREAMS", "AccountFeed", "Notice", "PriceFeed", "StreamSpec", "describe", "shares_source", "supports"]

logger = logging.getLogger(__name__)


class _Streams(Mapping[str, StreamSpec]):
    """The stream specs by exchange id, read from the profiles (each venue's module imported
    when asked for)."""

    def __getitem__(self, exchange_id: str) -> StreamSpec:
        spec = PROFILES[exchange_id].stream if exchange_id in PROFILES else None
        if spec is None:
            raise KeyError(exchange_id)
        return spec

    def __iter__(self) -> Iterator[str]:
        return iter(streaming_ids())

    def __len__(self) -> int:
        return len(list(iter(self)))


STREAMS: Mapping[str, StreamSpec] = _Streams()


def supports(exchange_id: str) -> bool:
    return streams(exchange_id)


def shares_source(exchange_id: str) -> bool:
    """Whether an account of this exchange that streams has its Source built from ccxt.pro's
    class (`build_source(streaming=True)`), its private stream opening on that instance."""
    return supports(exchange_id) and STREAMS[exchange_id].shares_source


_LISTEN_KEY = re.compile(r"(listenKey=)[^&\s'\"]+")


def describe(error: BaseException, hidden: Iterable[str] = ()) -> str:
    """A ccxt websocket error in one line, without the listen key (it reads the account's
    stream) or the account's secrets."""
    text = _LISTEN_KEY.sub(r"\1***", f"{type(error).__name__}: {error}".strip())
    text = re.sub(r"/ws/[0-9A-Za-z]{40,}", "/ws/***", text)
    text = secrets.mask(text, hidden)  # before the cut: a secret cut in two would slip through
    return text.splitlines()[0][:300] if text else type(error).__name__


def _pro_exchange(account, timeout_s: float, keepalive_s: float, *, keys: bool) -> Any:
    from alerter.lazy import load_pro_exchange
    from alerter.sources.exchange import ccxt_config, deep_merge

    config = ccxt_config(account, timeout_s, keys=keys)
    spec = STREAMS[account.exchange]
    config = deep_merge(config, {"options": dict(spec.options), "streaming": {"keepAlive": int(keepalive_s * 1000)}})
    return load_pro_exchange(account.exchange)(config)


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
            mark, stamp = message_number(ticker.get("markPrice")), message_number(ticker.get("timestamp"))
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
