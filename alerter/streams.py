"""Stream mode: the daemon's websocket side (I/O only; the decisions stay in policy.py).

Per exchange (per market key: one exchange reached one way), ONE public connection watches the
mark prices of the symbols that its streaming accounts hold, following that set as full polls
change it; each update re-prices those accounts with the fast path's code
(`Pipeline.reprice_from`) and runs the policy on the estimate. Per account, one private
connection: a position or balance event triggers a full poll at once; the exchange's own
margin-call event triggers a full poll and an alert quoting it (when `Pipeline.notices_due`).

An on-chain account whose endpoint's websocket is given (`ws_url`) follows its chain's new
blocks instead: per endpoint and chain, ONE newHeads subscription (`HeadStream`), and each new
block reads every account on that endpoint at once (their reads share one batch,
alerter.sources.blockreader), at most once per block: a block that comes during the reads makes
one more round, at the newest block. While it is down (refused, dropped, or no block for the
chain's stale-head limit), the accounts are read at their full polls as before, the first one at
once, and again at once when it is back.

The full poll stays the source of truth. While a price stream is down (refused, dropped, or
stalled: silent for `stream_timeout`), the REST mark-price checks run for its accounts
(`Streams.prices_live`), the first one at once; while it is up they are skipped. A stream
reconnects with backoff (0.5 s doubling to 30 s). Every up/down transition is logged once and
shown as `alerter_stream_up`; a stream being down never makes an account blind.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from alerter import metrics, secrets
from alerter.pipeline import price_groups
from alerter.sources.streamspec import HeadSpec

if TYPE_CHECKING:
    from alerter.pipeline import Pipeline
    from alerter.sources.stream import Notice

TICK_SPREAD_S = 0.5  # the longest wait for the rest of a tick's marks (a sixth of stream_timeout when shorter)
TICK_WAITS = 5  # looks at the marks within that wait
logger = logging.getLogger(__name__)

BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.5, 30.0


def backoff(attempt: int) -> float:
    """Seconds before reconnection attempt `attempt` (1, 2, …): 0.5 s doubling, capped at 30 s."""
    return min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** max(0, attempt - 1))


# ---------------------------------------------------------------- state of one stream

class Link:
    """The up/down state of one stream: one log line and one metric update per transition."""

    def __init__(self, what: str, exchange: str, kind: str, account: str = "") -> None:
        self.what, self.labels = what, (exchange, kind, account)
        self.up: bool | None = None  # None: not connected yet
        self.last_message_at = time.monotonic()
        self.failures = 0
        metrics.observe_stream(*self.labels, False, self.age)

    def age(self) -> float:
        return time.monotonic() - self.last_message_at

    def message(self) -> None:
        self.last_message_at = time.monotonic()

    def set_up(self, detail: str = "") -> bool:
        """True when this is a transition (it was down or not yet connected)."""
        self.failures = 0
        self.message()
        if self.up:
            return False
        self.up = True
        logger.info("%s stream up%s", self.what, f" ({detail})" if detail else "")
        metrics.observe_stream(*self.labels, True)
        return True

    def set_down(self, why: str, fallback: str) -> bool:
        self.failures += 1
        if self.up is False:
            logger.debug("%s stream still down: %s", self.what, why)
            return False
        was = self.up
        self.up = False
        logger.warning("%s stream %s: %s; %s", self.what, "down" if was else "not connected", why, fallback)
        metrics.observe_stream(*self.labels, False)
        return True

    def end(self) -> None:
        metrics.observe_stream(*self.labels, None)


# ---------------------------------------------------------------- the streams of one daemon

class Streams:
    """Owns every stream task of the pipeline's streaming accounts; `start()` after the
    scheduler, `close()` at the end, `restart()` on reload. `spawn(job, *args)` runs a job now,
    tracked like a scheduled one (the REST fallback of a price stream that went down)."""

    def __init__(self, pipeline: Pipeline, spawn: Callable[..., None]) -> None:
        self.pipeline = pipeline
        self.spawn = spawn
        self.tasks: set[asyncio.Task] = set()
        self.prices: dict[str, PriceStream] = {}  # market key → its stream
        self.accounts: dict[str, AccountStream] = {}
        self.heads: dict[tuple[str, str], HeadStream] = {}  # (ws_url, chain) → its stream

    @property
    def timeout_s(self) -> float:
        return self.pipeline.settings.daemon.stream_timeout.total_seconds()

    @property
    def connect_timeout_s(self) -> float:
        """How long a stream may take to connect: the stall timeout, or a request's if longer."""
        return max(self.timeout_s, self.pipeline.settings.daemon.request_timeout.total_seconds())

    def start(self) -> None:
        streaming = [plan for plan in self.pipeline.plans.values() if plan.streams and not isinstance(plan.profile.stream, HeadSpec)]
        for plan in streaming:
            self.accounts[plan.name] = AccountStream(self, plan.name)
        for key, names in price_groups(streaming).items():
            self.prices[key] = PriceStream(self, names)
        for key, names in self.endpoints().items():
            self.heads[key] = HeadStream(self, key, names)
        for stream in self.all():
            for coro in stream.tasks():
                task = asyncio.create_task(coro, name=f"stream {stream.link.what}")
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
        if self.prices or self.accounts or self.heads:
            logger.info("streams: %d mark-price stream(s), %d account stream(s), %d new-block stream(s)",
                        len(self.prices), len(self.accounts), len(self.heads))

    def all(self) -> tuple:
        return (*self.prices.values(), *self.accounts.values(), *self.heads.values())

    def endpoints(self) -> dict[tuple[str, str], list[str]]:
        """The streaming on-chain accounts by their endpoint's websocket and chain."""
        groups: dict[tuple[str, str], list[str]] = {}
        for plan in self.pipeline.plans.values():
            if plan.streams and isinstance(plan.profile.stream, HeadSpec):
                account = self.pipeline.account_config(plan.name)
                groups.setdefault((account.credentials()["ws_url"], account.chain), []).append(plan.name)
        return groups

    async def close(self) -> None:
        await cancel_all(self.tasks, "stream")
        streams = self.all()
        await asyncio.gather(*(s.close() for s in streams), return_exceptions=True)
        for stream in streams:
            stream.link.end()
        self.prices.clear()
        self.accounts.clear()
        self.heads.clear()

    async def restart(self) -> None:
        await self.close()
        self.start()

    def prices_live(self, name: str) -> bool:
        """The account's mark prices arrive by stream now: no REST price check for it."""
        plan = self.pipeline.plans.get(name)
        stream = self.prices.get(plan.market_key) if plan is not None else None
        return stream is not None and name in stream.names and bool(stream.link.up)

    def polled(self, name: str) -> None:
        """A full poll of the account succeeded: the symbols to watch may have changed."""
        plan = self.pipeline.plans.get(name)
        stream = self.prices.get(plan.market_key) if plan is not None else None
        if stream is not None:
            stream.changed.set()


async def cancel_all(tasks, what: str, *, patience: float = 2.0) -> None:
    """Cancel `tasks` and wait for them to end. A task that lets a cancel pass (a library that
    catches it; Python 3.11's wait_for when its awaitable completes at the same moment) is
    cancelled again, and one still running after that is logged and left: a stop must end."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(3):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=patience)
    if pending:
        logger.warning("stopping: %d %s task(s) did not end when cancelled; left behind", len(pending), what)


async def close_feed(feed, what: str) -> None:
    """Close a stream's feed (ccxt.pro's, or a chain's newHeads; None: none open); a failure to
    close is only logged."""
    if feed is not None:
        try:
            await feed.close()
        except Exception as e:
            logger.debug("closing the %s stream: %s", what, e)


class PriceStream:
    """The one public mark-price connection of a group of accounts on one exchange."""

    def __init__(self, streams: Streams, names: list[str]) -> None:
        self.streams, self.pipeline, self.names = streams, streams.pipeline, names
        self.exchange = self.pipeline.plans[names[0]].exchange
        self.link = Link(f"mark-price ({self.exchange})", self.exchange, "prices")
        self.changed = asyncio.Event()
        self.dirty = asyncio.Event()
        self.marks: dict[str, float] = {}
        self.marks_at = 0.0  # loop time the marks arrived (Pipeline.reprice_from's as_of)
        self.stamps: dict[str, float] = {}  # the exchange's time of each symbol's last mark seen
        self.cadence = math.inf  # the shortest gap seen between two marks of one symbol
        self.sent: dict[str, tuple] = {}  # account → (its basis, its marks) last re-priced
        self.feed = None

    def tasks(self):
        return (self.run(), self.flush())

    def wanted(self) -> list[str]:
        """Symbols of the open positions in the group's fresh confirmed snapshots."""
        symbols = set()
        for snapshot in self.pipeline.fresh_snapshots(self.names).values():
            symbols.update(p.symbol for p in snapshot.positions)
        return sorted(symbols)

    def markets(self) -> dict | None:
        """The group's markets table, from the first of its sources that has loaded one."""
        sources = (self.pipeline.sources.get(name) for name in self.names)
        return next((markets for source in sources if source is not None and (markets := source.markets)), None)

    async def run(self) -> None:
        from alerter.sources.stream import PriceFeed, describe

        timeout = self.streams.timeout_s
        settings = self.pipeline.settings.daemon
        connect_timeout = self.streams.connect_timeout_s
        fallback = f"mark prices by REST every {settings.price_interval.total_seconds():g} s until it is back"
        while True:
            symbols = self.wanted()
            if not symbols:  # nothing to watch: no connection, nothing to fall back from
                await self.close()
                self.changed.clear()
                try:
                    async with asyncio.timeout(1.0):
                        await self.changed.wait()
                except TimeoutError:
                    pass
                continue
            if self.feed is None:
                account = self.pipeline.account_config(self.names[0])
                self.feed = PriceFeed(account, self.markets(), timeout_s=connect_timeout, keepalive_s=timeout)
            try:
                wait = timeout if self.link.up else connect_timeout
                # asyncio.timeout, never wait_for: on Python 3.11 wait_for loses a cancel that lands
                # as its awaitable completes (a mark arrives just as the daemon stops), and the
                # stream would outlive the stop
                async with asyncio.timeout(wait):
                    marks = await self.feed.next(symbols)
            except TimeoutError:
                why = f"no mark price for {timeout:g} s (stalled)" if self.link.up else f"no mark price within {wait:g} s of connecting"
                await self.fail(why, fallback)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as e:  # ccxt's: refused, dropped, cut
                await self.fail(describe(e), fallback)
                continue
            self.link.set_up(f"{len(symbols)} symbol{'s' if len(symbols) != 1 else ''}")
            self.marks = await self.one_tick(marks, symbols)
            self.marks_at = asyncio.get_running_loop().time()
            self.dirty.set()

    async def one_tick(self, marks: dict[str, float], symbols: list[str]) -> dict[str, float]:
        """The marks of one tick, to be re-priced together. Each symbol's mark comes in a message
        of its own: re-pricing a hedged book with one leg at this tick's mark and the other at the
        last one's makes a leveraged pair look far worse (or better) than it is. So while the
        exchange's time stamps of the marks lie further apart than half a tick, or a symbol has no
        mark yet, the rest of the tick is waited for (a symbol whose mark is late holds the others
        up for that long at most; an account is re-priced only when all its symbols have one)."""
        spread = min(TICK_SPREAD_S, self.streams.timeout_s / 6)
        for _ in range(TICK_WAITS):
            stamps = self.feed.stamped
            self.learn_cadence(stamps)
            tolerance = min(spread, self.cadence) / 2  # marks of one tick lie closer than half a tick apart
            if len(marks) == len(symbols) and (len(stamps) < len(symbols)  # no time stamps to compare: as they come
                                               or max(stamps.values()) - min(stamps.values()) <= tolerance):
                break
            await asyncio.sleep(spread / TICK_WAITS)
            marks = self.feed.latest(symbols)
        return marks

    def learn_cadence(self, stamps: dict[str, float]) -> None:
        """The exchange's cadence, from the gap between two marks of one symbol (the shortest seen)."""
        for symbol, stamp in stamps.items():
            last = self.stamps.get(symbol)
            if last is not None and stamp > last:
                self.cadence = min(self.cadence, stamp - last)
            self.stamps[symbol] = stamp

    async def fail(self, why: str, fallback: str) -> None:
        if self.link.set_down(why, fallback):
            self.streams.spawn(self.pipeline.check_prices, self.names)  # fall back at once, not at the next tick
        await self.close()
        await asyncio.sleep(backoff(self.link.failures))

    async def flush(self) -> None:
        """Re-price the accounts whose marks moved; updates that arrive meanwhile are taken
        together by the next round."""
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            marks, marks_at, names = self.marks, self.marks_at, []
            for name, snapshot in self.pipeline.fresh_snapshots(self.names).items():
                key = (id(snapshot), tuple(marks.get(p.symbol) for p in snapshot.positions))
                # every position at this tick's mark, or none: one leg at a fresh mark and another
                # at the poll's older one is the mixed tick one_tick keeps out
                if self.sent.get(name) != key and snapshot.positions and all(p.symbol in marks for p in snapshot.positions):
                    self.sent[name] = key
                    names.append(name)
            if names:
                try:
                    await self.pipeline.reprice_from(names, marks, marks_at)
                except Exception:  # a bug here must not end the stream
                    logger.exception("re-pricing from the mark-price stream failed")

    async def close(self) -> None:
        feed, self.feed = self.feed, None
        await close_feed(feed, self.link.what)


class AccountStream:
    """One account's private connection: its events trigger full polls, its exchange's
    margin-call notices become alerts."""

    def __init__(self, streams: Streams, name: str) -> None:
        from alerter.sources.stream import STREAMS

        self.streams, self.pipeline, self.name = streams, streams.pipeline, name
        plan = self.pipeline.plans[name]
        self.spec = STREAMS[plan.exchange]
        self.link = Link(f"account {name}", plan.exchange, "account", name)
        self.wake = asyncio.Event()
        self.notices: list[Notice] = []
        self.feed = None

    def tasks(self):
        return (self.run(), self.poller())

    def on_message(self, message: Mapping[str, Any]) -> None:
        """Every raw message of the private connection (on the event loop, from ccxt's reader)."""
        self.link.message()
        notice = self.spec.notice(message)
        if notice is not None:
            logger.warning("%s: %s", self.name, notice.text)
            self.notices.append(notice)
            self.wake.set()
        elif (event := self.spec.event(message)) is not None:
            logger.info("%s: %s from the exchange: polling now", self.name, event)
            self.wake.set()

    async def run(self) -> None:
        from alerter.sources.stream import AccountFeed, describe

        connect_timeout = self.streams.connect_timeout_s
        fallback = f"positions and balances at the full polls (every {self.pipeline.plans[self.name].poll_interval.total_seconds():g} s)"
        while True:
            account = self.pipeline.account_config(self.name)
            # on the account's own instance, which its polls use too, where the exchange allows (see AccountFeed)
            self.feed = AccountFeed(account, self.on_message, getattr(self.pipeline.sources.get(self.name), "exchange", None),
                                    timeout_s=connect_timeout, keepalive_s=self.streams.timeout_s)
            watch = asyncio.ensure_future(self.feed.next())
            try:
                connected = asyncio.ensure_future(self.feed.connected.wait())
                done, _ = await asyncio.wait({watch, connected}, timeout=connect_timeout, return_when=asyncio.FIRST_COMPLETED)
                connected.cancel()
                if watch in done:
                    watch.result()  # raises: refused, no listen key …
                if not self.feed.connected.is_set():
                    raise TimeoutError(f"not connected within {connect_timeout:g} s")
                was_down = self.link.up is False
                if self.link.set_up() and was_down:
                    self.wake.set()  # events may have been missed while it was down: catch up with a poll
                while True:
                    await watch  # an account event (the poll was asked for by on_message); raises when the socket is lost
                    watch = asyncio.ensure_future(self.feed.next())
            except asyncio.CancelledError:
                watch.cancel()
                raise
            except Exception as e:
                watch.cancel()
                # OKX's error for a refused login quotes the request: key and passphrase included
                self.link.set_down(describe(e, secrets.of(account)), fallback)
            await self.close()
            await asyncio.sleep(backoff(self.link.failures))

    async def poller(self) -> None:
        """One full poll per burst of events (events during a poll make one more)."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            notices, self.notices = self.notices, []
            if self.name not in self.pipeline.plans:
                return
            try:
                alerts = await self.pipeline.notices_due(self.name, self.spec.name, notices)
                await self.pipeline.poll_account(self.name, notices=alerts)
            except Exception:  # a bug here must not end the stream
                logger.exception("%s: poll after a stream event failed", self.name)

    async def close(self) -> None:
        feed, self.feed = self.feed, None
        await close_feed(feed, self.link.what)


class HeadStream:
    """The one newHeads subscription of an endpoint (its websocket, on one chain): each new block
    reads every account on it, together."""

    def __init__(self, streams: Streams, key: tuple[str, str], names: list[str]) -> None:
        from alerter.sources.chains import CHAINS

        self.streams, self.pipeline, self.names = streams, streams.pipeline, names
        self.url, self.chain = key[0], CHAINS[key[1]]
        accounts = names[0] if len(names) == 1 else f"{len(names)} accounts"
        self.link = Link(f"new blocks ({self.chain.title}, {accounts})", self.chain.name, "heads", ",".join(names))
        self.wake = asyncio.Event()
        self.block = -1  # the newest block number seen
        self.feed = None

    def tasks(self):
        return (self.run(), self.poller())

    async def run(self) -> None:
        from alerter.sources.chains import max_block_age_s
        from alerter.sources.errors import SourceError
        from alerter.sources.heads import HeadFeed

        connect_timeout = self.streams.connect_timeout_s
        every = min(self.pipeline.plans[n].poll_interval.total_seconds() for n in self.names)
        fallback = f"reads at the full polls (every {every:g} s) until it is back"
        while True:
            self.feed = HeadFeed(self.url, self.chain, timeout_s=connect_timeout, silence_s=max_block_age_s(self.chain))
            try:
                await self.feed.connect()
                was_down = self.link.up is False
                if self.link.set_up("subscribed") and was_down:
                    self.wake.set()  # blocks may have been missed while it was down: read now
                while True:
                    head = await self.feed.next()
                    self.link.set_up()
                    if head.number > self.block:
                        self.block = head.number
                        self.wake.set()
            except SourceError as e:  # refused, dropped, silent for the stale-head limit (masked)
                self.down(str(e), fallback)
            except Exception as e:  # a bug must not end the stream; its text may quote the URL
                self.down(secrets.mask(f"{type(e).__name__}: {e}", (self.url,)).splitlines()[0], fallback)
            await self.close()
            await asyncio.sleep(backoff(self.link.failures))

    def down(self, why: str, fallback: str) -> None:
        if self.link.set_down(why, fallback):
            self.wake.set()  # fall back at once, not at the next full poll

    async def poller(self) -> None:
        """One read of every account per wake (blocks during a read make one more, at the newest)."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            names = [name for name in self.names if name in self.pipeline.plans]
            results = await asyncio.gather(*(self.pipeline.poll_account(name) for name in names), return_exceptions=True)
            for name, result in zip(names, results):
                if isinstance(result, Exception):  # a bug here must not end the stream
                    logger.error("%s: read at a new block failed: %s", name, secrets.mask(f"{type(result).__name__}: {result}"))

    async def close(self) -> None:
        feed, self.feed = self.feed, None
        await close_feed(feed, self.link.what)
