"""The outbox worker: each round, every channel with something due gets ONE message with all
that is pending for it, and each outcome is recorded. The backoff belongs to the channel, not to
the row: a failed round puts all of the channel's pending alerts to the same next attempt
(deterministic: base × 2^(attempts−1), at most `backoff_max`; a service's own "retry after" wins
when apprise shows it), and a new alert makes the channel due at once. So the pending alerts of
one scope always go out together, in order: an alert superseded before it could be delivered is
folded into the newest one of its scope (`notify.fold`), never told after it. Nothing is dropped
until the alert expires.

`deliver_due` reads the store at the top, plans without I/O (`plan`), sends, and records the
outcomes at the bottom. `Workers` runs it for every channel of the daemon."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from alerter.display import time_of_day
from alerter.models import AlertKind, Level
from alerter.metrics import observe_delivery
from alerter.notify import Notifier, Outcome, fold, message_level, notify_type, render

if TYPE_CHECKING:
    from alerter.outbox import Delivery
    from alerter.storethread import StoreThread

logger = logging.getLogger(__name__)

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=30)
ALERT_EXPIRY = timedelta(hours=24)


@dataclass
class DeliverySummary:
    sent: dict[str, int] = field(default_factory=dict)  # channel → alerts delivered (folded ones included)
    failed: dict[str, str] = field(default_factory=dict)  # channel → error (secrets removed)
    retry_at: dict[str, datetime] = field(default_factory=dict)  # channel → next attempt
    expired: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def backoff(attempts: int, base: timedelta = BACKOFF_BASE, cap: timedelta = BACKOFF_MAX) -> timedelta:
    """Delay after the `attempts`-th failed attempt (1 → base, 2 → 2 × base, …, at most cap)."""
    return min(base * 2 ** max(attempts - 1, 0), cap)


def undelivered_note(expired: Sequence[Delivery], channel: str, now: datetime) -> str | None:
    """The line that tells a channel what it missed, when a CRITICAL alert of it expired."""
    if not any(d.alert.level == Level.CRITICAL for d in expired):
        return None
    first = min(d.alert.created_at for d in expired)
    count = len(expired)
    return f"{count} alert{'s' if count != 1 else ''} could not be delivered to {channel} since {time_of_day(first, now)}"


@dataclass(frozen=True)
class Plan:
    """One round's message to one channel, and the outbox rows it settles."""

    title: str
    body: str
    notify_type: str
    level: Level  # picks the channel's URL (`url_by_level`): notify.message_level
    sent: tuple[int, ...]  # alert ids told in full
    folded: tuple[int, ...]  # alert ids only mentioned ("earlier: …"), under a newer alert of their scope
    reported: tuple[int, ...]  # expired alert ids, now reported (the note names them when one was critical)
    ackable: tuple[tuple[str, str], ...] = ()  # (account, scope) of its CALL/CRITICAL alerts: the Telegram bot's buttons

    @property
    def alert_ids(self) -> tuple[int, ...]:
        return self.sent + self.folded


def plan(channel: str, pending: Sequence[Delivery], expired: Sequence[Delivery], now: datetime,
         *, markdown: bool | Callable[[Level], bool]) -> Plan:
    """Pure: all of a channel's pending deliveries (in recording order) as one message, folded
    per scope, with the note about its expired ones. The message goes to the URL of its most
    urgent level (a CRITICAL with a warning goes to the critical URL, the warning with it);
    `markdown` may depend on that URL: a function of the level."""
    entries = fold(d.alert for d in pending)
    ids = {d.alert.key: d.alert_id for d in pending}
    level = message_level(entries)
    title, body = render(entries, markdown=markdown(level) if callable(markdown) else markdown,
                         undelivered_note=undelivered_note(expired, channel, now))
    return Plan(
        title, body, notify_type(entries), level,
        sent=tuple(ids[e.alert.key] for e in entries),
        folded=tuple(ids[a.key] for e in entries for a in e.earlier),
        reported=tuple(d.alert_id for d in expired),
        ackable=tuple(dict.fromkeys((e.alert.account, e.alert.scope) for e in entries
                                    if e.alert.kind in (AlertKind.RAISED, AlertKind.REPEAT) and e.alert.level >= Level.CALL)),
    )


async def deliver_due(
    store: StoreThread,
    notifier: Notifier,
    channels: Iterable,
    now: datetime,
    *,
    expiry: timedelta = ALERT_EXPIRY,
    backoff_base: timedelta = BACKOFF_BASE,
    backoff_max: timedelta = BACKOFF_MAX,
    channel: str | None = None,
) -> DeliverySummary:
    """Expire stale deliveries, then send to every channel that has one due everything pending
    for it: one message per channel, channels concurrently, and record sent / folded / failed
    (retry later) in the store. With `channel`, only that channel's (the daemon runs one such
    worker per channel, so a slow one — apprise spaces e-mails 5.5 s apart, a timeout takes
    30 s — never holds up another's next round)."""
    # 1. read
    summary = DeliverySummary()
    summary.expired = len(await store.expire(now, expiry))
    configured = {c.name for c in channels}
    pending: dict[str, list[Delivery]] = {}
    for delivery in await store.pending_deliveries(now, channel):
        pending.setdefault(delivery.channel, []).append(delivery)
    expired = {name: await store.expired_unreported(name) for name in pending if name in configured}

    # 2. plan
    plans = {name: plan(name, rows, expired[name], now, markdown=lambda level, name=name: notifier.markdown(name, level))
             for name, rows in pending.items() if name in configured}

    # 3. send
    async def send(name: str) -> Outcome:
        if name not in plans:
            return Outcome(False, f"channel {name!r} is no longer configured")
        p = plans[name]
        return await notifier.send(name, p.title, p.body, notify_type=p.notify_type, level=p.level, ackable=p.ackable)

    names = list(pending)
    outcomes = await asyncio.gather(*(send(name) for name in names))

    # 4. record
    for name, outcome in zip(names, outcomes, strict=True):
        observe_delivery(name, outcome.ok)
        rows = pending[name]
        if outcome.ok:
            p = plans[name]
            await store.mark_sent(p.sent, name, now, folded=p.folded)
            await store.mark_reported(p.reported, name)
            summary.sent[name] = len(p.alert_ids)
            logger.info("delivered %d alert(s) to %s%s", len(p.alert_ids), name,
                        f" ({len(p.folded)} folded into newer ones)" if p.folded else "")
            continue
        attempts = max(d.attempts for d in rows) + 1
        delay = timedelta(seconds=outcome.retry_after) if outcome.retry_after else backoff(attempts, backoff_base, backoff_max)
        retry_at = now + delay
        error = outcome.error or "unknown error"
        await store.mark_failed([d.alert_id for d in rows], name, error, retry_at)
        summary.failed[name] = error
        summary.retry_at[name] = retry_at
        logger.warning("could not deliver %d alert(s) to %s (attempt %d, retrying at %s): %s",
                       len(rows), name, attempts, retry_at.strftime("%H:%M:%S"), error)
    return summary


class Workers:
    """The channel workers of a daemon: one per configured channel, so a slow or failing channel
    never holds up another, each woken at once when a poll records alerts (`wake`); and a tick
    that shows the event loop turns (`last_loop_at`, the watchdog's proof of life). `live` holds
    the running configuration (alerter.pipeline.Pipeline: `settings`, `notifier`, `store`,
    `clock`), which a reload swaps."""

    def __init__(self, live, stopping: asyncio.Event) -> None:
        self.live = live
        self.stopping = stopping
        self.wakes: dict[str, asyncio.Event] = {}  # channel → its worker's wake
        self.tasks: dict[str, asyncio.Task] = {}  # channel → its worker
        self.last_loop_at = live.clock()

    async def deliver_once(self, channel: str | None = None) -> DeliverySummary:
        live = self.live
        return await deliver_due(live.store, live.notifier, live.settings.channels, live.clock(),
                                 expiry=live.settings.daemon.alert_expiry, channel=channel)

    async def run(self, idle: float = 1.0) -> None:
        """Every configured channel's worker, and the tick, until the stop."""
        await asyncio.gather(self.tick(idle), *(self.channel_worker(c.name, idle) for c in self.live.settings.channels))

    async def tick(self, idle: float) -> None:
        while not self.stopping.is_set():
            self.last_loop_at = self.live.clock()
            await asyncio.sleep(idle)

    async def channel_worker(self, channel: str, idle: float) -> None:
        """Deliver what is due to one channel; wake at once when a poll records alerts."""
        from alerter.errors import StoreError

        wake = self.wakes.setdefault(channel, asyncio.Event())
        self.tasks[channel] = asyncio.current_task()
        while not self.stopping.is_set() and self.wakes.get(channel) is wake:  # `sync` removes a channel's wake
            try:
                await self.deliver_once(channel)
            except StoreError as e:
                logger.error("cannot read the outbox: %s", e)
            except Exception:  # a delivery bug must not stop polling; the outbox keeps the alerts
                logger.exception("delivery to %s failed; the alerts stay in the outbox", channel)
            wake.clear()
            try:
                async with asyncio.timeout(idle):  # not wait_for (see streams.PriceStream.run)
                    await wake.wait()
            except TimeoutError:
                pass

    def wake(self) -> None:
        for event in self.wakes.values():
            event.set()

    async def sync(self, previous: Iterable[str]) -> None:
        """One worker per configured channel after a reload (`previous`: the channels before): a
        removed channel's worker ends after its current round; an added channel gets one (after
        the old one, if it was removed and added back, has ended: never two workers sending one
        channel's alerts)."""
        names = [c.name for c in self.live.settings.channels]
        previous = set(previous)
        for name in previous - set(names):
            wake = self.wakes.pop(name, None)
            if wake is not None:
                wake.set()
        for name in names:
            if name in previous:
                continue
            worker = self.tasks.get(name)
            if worker is not None and not worker.done():
                await asyncio.wait({worker}, timeout=60)
            if self.stopping.is_set():
                return
            self.wakes[name] = asyncio.Event()
            self.tasks[name] = asyncio.create_task(self.channel_worker(name, 1.0), name=f"deliver {name}")


async def test_notify(notifier: Notifier, channel_names: Iterable[str], level: Level = Level.OK) -> dict[str, Outcome]:
    """Send a test message to each named channel at once, by the URL a `level` alert takes
    (`url` for ok); nothing is recorded."""
    names = list(channel_names)
    title = "alerter test message" + (f" ({level.name} path)" if level != Level.OK else "")

    def body(name: str) -> str:
        path = f" by its {level.label} URL ({notifier.via(name, level)})" if level != Level.OK else ""
        return f"This is a test message from alerter to the channel {name!r}{path}. It works."

    outcomes = await asyncio.gather(*(notifier.send(name, title, body(name), notify_type=_TEST_TYPE[level], level=level) for name in names))
    return dict(zip(names, outcomes, strict=True))


# a test of the critical path looks like a critical alert (apprise's type: colour and icon)
_TEST_TYPE = {Level.OK: "info", Level.WARNING: "warning", Level.CALL: "failure", Level.CRITICAL: "failure"}

test_notify.__test__ = False  # type: ignore[attr-defined]  # keep pytest from collecting it when imported
