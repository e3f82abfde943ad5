"""The outbox worker: send what the store says is due, one grouped message per channel, all
channels at once, and record each outcome. A failed channel is retried later with capped
exponential backoff (deterministic: base × 2^(attempts−1), at most `backoff_max`; a service's
own "retry after" wins when apprise shows it); nothing is dropped until the alert expires."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from alerter.models import Level
from alerter.metrics import observe_delivery
from alerter.notify import Notifier, Outcome, format_time, notify_type, render
from alerter.store import Delivery
from alerter.storethread import StoreThread

logger = logging.getLogger(__name__)

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(minutes=30)
ALERT_EXPIRY = timedelta(hours=24)


@dataclass
class DeliverySummary:
    sent: dict[str, int] = field(default_factory=dict)  # channel → alerts delivered
    failed: dict[str, str] = field(default_factory=dict)  # channel → error (secrets removed)
    retry_at: dict[str, datetime] = field(default_factory=dict)  # channel → next attempt
    expired: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def backoff(attempts: int, base: timedelta = BACKOFF_BASE, cap: timedelta = BACKOFF_MAX) -> timedelta:
    """Delay after the `attempts`-th failed attempt (1 → base, 2 → 2 × base, …, at most cap)."""
    return min(base * 2 ** max(attempts - 1, 0), cap)


def undelivered_note(expired: list[Delivery], channel: str, now: datetime) -> str | None:
    """The line that tells a channel what it missed, when a CRITICAL alert of it expired."""
    if not any(d.alert.level == Level.CRITICAL for d in expired):
        return None
    first = min(d.alert.created_at for d in expired)
    count = len(expired)
    return f"{count} alert{'s' if count != 1 else ''} could not be delivered to {channel} since {format_time(first, now)}"


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
    """Expire stale deliveries, then send every due one: one message per channel, channels
    concurrently, and record sent / failed (retry later) in the store. With `channel`, only
    that channel's (the daemon runs one such worker per channel, so a slow one — apprise
    spaces e-mails 5.5 s apart, a timeout takes 30 s — never holds up another's next round)."""
    summary = DeliverySummary()
    summary.expired = len(await store.expire(now, expiry))
    configured = {channel.name for channel in channels}
    by_channel: dict[str, list[Delivery]] = {}
    for delivery in await store.due_deliveries(now):
        if channel is None or delivery.channel == channel:
            by_channel.setdefault(delivery.channel, []).append(delivery)

    async def deliver(name: str, deliveries: list[Delivery]) -> tuple[Outcome, list[Delivery]]:
        if name not in configured:
            return Outcome(False, f"channel {name!r} is no longer configured"), []
        expired = await store.expired_unreported(name)
        note = undelivered_note(expired, name, now)
        alerts = [d.alert for d in deliveries]
        title, body = render(alerts, markdown=notifier.markdown(name), undelivered_note=note)
        outcome = await notifier.send(name, title, body, notify_type=notify_type(alerts))
        return outcome, expired

    channel_names = list(by_channel)
    results = await asyncio.gather(*(deliver(name, by_channel[name]) for name in channel_names))
    for name, (outcome, expired) in zip(channel_names, results, strict=True):
        observe_delivery(name, outcome.ok)
        deliveries = by_channel[name]
        ids = [d.alert_id for d in deliveries]
        if outcome.ok:
            await store.mark_sent(ids, name, now)
            await store.mark_reported([d.alert_id for d in expired], name)
            summary.sent[name] = len(ids)
            logger.info("delivered %d alert(s) to %s", len(ids), name)
            continue
        attempts = max(d.attempts for d in deliveries) + 1
        delay = timedelta(seconds=outcome.retry_after) if outcome.retry_after else backoff(attempts, backoff_base, backoff_max)
        retry_at = now + delay
        error = outcome.error or "unknown error"
        await store.mark_failed(ids, name, error, retry_at)
        summary.failed[name] = error
        summary.retry_at[name] = retry_at
        logger.warning("could not deliver %d alert(s) to %s (attempt %d, retrying at %s): %s",
                       len(ids), name, attempts, retry_at.strftime("%H:%M:%S"), error)
    return summary


async def test_notify(notifier: Notifier, channel_names: Iterable[str]) -> dict[str, Outcome]:
    """Send a test message to each named channel at once; nothing is recorded."""
    names = list(channel_names)
    title = "alerter test message"
    outcomes = await asyncio.gather(*(
        notifier.send(name, title, f"This is a test message from alerter to the channel {name!r}. It works.")
        for name in names
    ))
    return dict(zip(names, outcomes, strict=True))


test_notify.__test__ = False  # type: ignore[attr-defined]  # keep pytest from collecting it when imported
