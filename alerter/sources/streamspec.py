"""A venue's websocket streams, as its module declares them: the `StreamSpec` of its profile
(`Profile.stream`; an on-chain venue's `HeadSpec`), the `Notice` its parsers make of the exchange's own margin-call events, and the
small parts the specs share. Pure data and functions: alerter.sources.stream runs the feeds.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Notice:
    """An exchange's own margin-call event, quoted: `text` as the alert says it, `key` the
    positions it is about (repeats of one notice share it)."""

    text: str
    key: str


def message_number(text: Any) -> float | None:
    """A finite float from a message's field, else None."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def no_notice(message: Mapping[str, Any]) -> Notice | None:
    return None


def never(message: Mapping[str, Any]) -> bool:
    return False


def nothing(exchange: Any) -> None:
    return None


def watch_balance(exchange: Any) -> Awaitable[Any]:
    return exchange.watch_balance()


def watch_positions(exchange: Any) -> Awaitable[Any]:
    return exchange.watch_positions()


@dataclass(frozen=True)
class StreamSpec:
    """How one exchange streams through ccxt.pro (its profile's `stream`, in its module)."""

    name: str  # as the exchange calls itself in a notice
    event: Callable[[Mapping[str, Any]], str | None]  # a raw message that means "positions or balance changed": its name
    notice: Callable[[Mapping[str, Any]], Notice | None]  # the exchange's own margin-call event, parsed
    options: Mapping[str, Any]  # ccxt.pro options over the account's
    # the docs' streams table: what the public connection carries, what the private one reacts
    # to, and the exchange's own notice it forwards
    prices: str = ""
    events: str = ""
    notices: str = "none"
    watch_prices: str = "watch_mark_prices"  # the ccxt.pro method whose tickers carry `markPrice`
    unwatch_prices: str | None = "un_watch_mark_prices"  # None: ccxt.pro cannot unsubscribe them
    # what keeps the private connection subscribed; each resolves on its events, fails with the socket
    account_watches: tuple[Callable[[Any], Awaitable[Any]], ...] = (watch_balance,)
    # the private connection opens on the account's Source's instance (built from ccxt.pro's class
    # with `options`): one HTTP session, TLS context and rate limiter. False where `options` would
    # change what the REST calls do: the stream then has an instance of its own (~1 MB more).
    shares_source: bool = True
    session_expired: Callable[[Mapping[str, Any]], bool] = never  # a raw message that ends the private session
    forget_session: Callable[[Any], None] = nothing  # so that the next connection starts a new one

    @staticmethod
    def available(account: Any) -> bool:
        """Whether this account can stream (every account of a ccxt.pro venue can)."""
        return True


@dataclass(frozen=True)
class HeadSpec:
    """An on-chain venue's stream: its endpoint's new blocks (`eth_subscribe("newHeads")` over the
    account's `ws_url`, alerter.sources.heads), each one a read of every account on that endpoint
    (alerter.streams.HeadStream). Not ccxt.pro: no private connection, no notices."""

    prices: str = "none: the oracle's prices move with the blocks"
    events: str = ('each new block: `eth_subscribe("newHeads")` over `ws_url`, one per endpoint and chain; '
                   "every account on it read at once, at most once per block")
    notices: str = "none: the protocol liquidates without a notice"
    shares_source: bool = False  # the account's Source is its ChainClient, never a ccxt.pro instance

    @staticmethod
    def available(account: Any) -> bool:
        """Only an account that names its endpoint's websocket streams."""
        return getattr(account, "ws_url", None) is not None
