"""delivery.py: the outbox worker with a real store, real apprise and loopback receivers."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest

from alerter import delivery
from alerter.config import ChannelConfig
from alerter.models import AlertKind, Level
from alerter.notify import Notifier, route_all
from alerter.store import Store
from alerter.storethread import StoreThread
from conftest import WebhookReceiver
from test_store import T0, make_alert

BASE = timedelta(seconds=30)


def channel(name, url, min_level="warning") -> ChannelConfig:
    return ChannelConfig(name=name, url=url, min_level=min_level)


@pytest.fixture
def store(db_path):
    s = Store(db_path)
    yield s
    s.close()


@pytest.fixture
def second_webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.stop()


def record(store, channels, *alerts, at=T0):
    store.commit_poll(alerts[0].account, {}, [], list(alerts), route_all(alerts, channels), at)


def deliver(store, channels, now, timeout=5.0, **kw):
    notifier = Notifier(channels, timeout=timeout)
    return asyncio.run(delivery.deliver_due(StoreThread(store), notifier, channels, now, backoff_base=BASE, **kw))


def test_backoff_is_exponential_and_capped():
    assert [delivery.backoff(n, BASE, timedelta(minutes=5)).total_seconds() for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]


def test_failing_channel_gets_its_alert_later_and_the_other_at_once(store, webhook, second_webhook):
    channels = [channel("flaky", f"json://{webhook.url}/a"), channel("good", f"json://{second_webhook.url}/b")]
    alert = make_alert(level=Level.CRITICAL)
    record(store, channels, alert)
    webhook.fail_next(2, 500)

    summary = deliver(store, channels, T0)
    assert summary.sent == {"good": 1}
    assert "500" in summary.failed["flaky"] and summary.retry_at["flaky"] == T0 + BASE
    assert len(second_webhook.requests) == 1 and second_webhook.bodies[0]["title"].startswith("CRITICAL · binance-main")

    assert deliver(store, channels, T0 + BASE - timedelta(seconds=1)).sent == {}  # not due yet
    summary = deliver(store, channels, T0 + BASE)  # second failure: the delay doubles
    assert summary.retry_at["flaky"] == T0 + 3 * BASE
    [pending] = store.deliveries(channel="flaky")
    assert (pending.status, pending.attempts, pending.alert) == ("pending", 2, alert)

    summary = deliver(store, channels, T0 + 3 * BASE)  # the channel recovered
    assert summary.sent == {"flaky": 1} and summary.ok
    assert [r["body"]["title"] for r in webhook.requests] == [second_webhook.bodies[0]["title"]] * 3
    assert len(second_webhook.requests) == 1  # never sent twice
    assert store.pending_count() == 0
    assert store.history()[0].deliveries == {"flaky": "sent", "good": "sent"}


def test_refusing_or_slow_channel_does_not_delay_the_other(store, webhook, second_webhook, closed_port):
    second_webhook.delay = 1.5
    channels = [
        channel("refused", f"json://127.0.0.1:{closed_port}/x"),
        channel("slow", f"json://{second_webhook.url}/x"),
        channel("good", f"json://{webhook.url}/x"),
    ]
    record(store, channels, make_alert())
    arrived: dict[str, float] = {}

    async def run():
        notifier = Notifier(channels, timeout=5)
        started = time.monotonic()
        task = asyncio.create_task(delivery.deliver_due(StoreThread(store), notifier, channels, T0, backoff_base=BASE))
        while not webhook.requests:
            await asyncio.sleep(0.01)
        arrived["good"] = time.monotonic() - started
        summary = await task
        arrived["all"] = time.monotonic() - started
        return summary

    summary = asyncio.run(run())
    assert arrived["good"] < 0.5 <= 1.5 <= arrived["all"]
    assert summary.sent == {"slow": 1, "good": 1}
    assert "connection error" in summary.failed["refused"].lower()


def test_slow_channel_beyond_the_timeout_is_retried(store, webhook):
    webhook.delay = 1.0
    channels = [channel("slow", f"json://{webhook.url}/x")]
    record(store, channels, make_alert())
    summary = deliver(store, channels, T0, timeout=0.3)
    assert "timed out" in summary.failed["slow"]
    assert store.pending_count() == 1


def test_several_pending_alerts_become_one_message(store, webhook):
    channels = [channel("hook", f"json://{webhook.url}/x")]
    record(store, channels, make_alert(level=Level.WARNING, margin_ratio=0.55, threshold=0.5))
    record(store, channels, make_alert(level=Level.CRITICAL, account="bybit-1", at=T0 + timedelta(seconds=1)))
    record(store, channels, make_alert(kind=AlertKind.BLIND, level=Level.OK, account="okx-1", failures=3, reason="timeout"))
    assert deliver(store, channels, T0 + timedelta(seconds=1)).sent == {"hook": 3}
    [message] = webhook.bodies
    assert message["title"] == "3 alerts: BLIND okx-1, CRITICAL bybit-1, …"
    assert message["message"].index("### CRITICAL · bybit-1") < message["message"].index("### WARNING · binance-main")
    assert message["type"] == "warning"
    assert deliver(store, channels, T0 + timedelta(hours=1)).sent == {}


def test_the_backoff_belongs_to_the_channel_and_its_return_brings_everything_headed_by_the_present(store, webhook):
    """warning, call, critical fail (HTTP 500); the channel is back when the resolution comes:
    one message, headed RESOLVED, names the missed CRITICAL; nothing is left to arrive after it."""
    channels = [channel("hook", f"json://{webhook.url}/x")]
    webhook.fail_next(3, 500)
    story = [make_alert(level=Level.WARNING, at=T0), make_alert(level=Level.CALL, at=T0 + timedelta(seconds=10)),
             make_alert(level=Level.CRITICAL, at=T0 + timedelta(seconds=20))]
    for alert in story:  # each new alert makes the channel due at once, and all of it is tried again
        record(store, channels, alert, at=alert.created_at)
        summary = deliver(store, channels, alert.created_at)
        assert "500" in summary.failed["hook"]
        rows = store.deliveries(channel="hook")
        assert {d.next_attempt_at for d in rows} == {summary.retry_at["hook"]}  # one next attempt for the channel
    assert summary.retry_at["hook"] == T0 + timedelta(seconds=20) + 4 * BASE  # its third failure
    assert [r["body"]["title"].split(" · ")[0] for r in webhook.requests] == ["WARNING", "CALL", "CRITICAL"]  # each try: the newest first
    webhook.requests.clear()

    resolved = make_alert(kind=AlertKind.RESOLVED, level=Level.CRITICAL, margin_ratio=0.3, threshold=None, at=T0 + timedelta(seconds=40))
    record(store, channels, resolved, at=resolved.created_at)
    assert deliver(store, channels, resolved.created_at).sent == {"hook": 4}
    [message] = webhook.bodies
    assert message["title"] == ("RESOLVED · binance-main · margin ratio 30 % (was CRITICAL) "
                                "(earlier: WARNING at 12:00 UTC, CALL at 12:00 UTC, CRITICAL at 12:00 UTC, not delivered in time)")
    assert message["type"] == "success"
    assert store.pending_count() == 0
    assert [e.deliveries for e in store.history()] == [{"hook": "folded"}] * 3 + [{"hook": "sent"}]
    assert deliver(store, channels, T0 + timedelta(hours=1)).sent == {}


def test_a_channel_that_delivers_again_takes_its_older_alerts_along_at_once(store, webhook):
    """The CRITICAL failed and waits 30 s; 5 s later the channel takes another account's alert:
    the CRITICAL goes with it, not 25 s later on its own backoff."""
    channels = [channel("hook", f"json://{webhook.url}/x")]
    webhook.fail_next(1, 500)
    record(store, channels, make_alert(level=Level.CRITICAL))
    assert deliver(store, channels, T0).retry_at["hook"] == T0 + BASE
    later = T0 + timedelta(seconds=5)
    record(store, channels, make_alert(level=Level.WARNING, account="bybit-1", margin_ratio=0.55, threshold=0.5, at=later), at=later)
    assert deliver(store, channels, later).sent == {"hook": 2}
    assert webhook.bodies[-1]["title"] == "2 alerts: CRITICAL binance-main, WARNING bybit-1"
    assert [e.deliveries for e in store.history()] == [{"hook": "sent"}] * 2


def test_a_channel_not_due_sends_nothing_even_with_several_pending(store, webhook):
    channels = [channel("hook", f"json://{webhook.url}/x")]
    webhook.fail_next(1, 500)
    record(store, channels, make_alert(level=Level.CALL), make_alert(level=Level.CALL, account="bybit-1"))
    assert deliver(store, channels, T0).failed
    assert deliver(store, channels, T0 + BASE - timedelta(seconds=1)).sent == {}
    assert len(webhook.requests) == 1
    assert deliver(store, channels, T0 + BASE).sent == {"hook": 2}


def test_expired_critical_alert_is_mentioned_in_the_next_message(store, webhook):
    channels = [channel("hook", f"json://{webhook.url}/x")]
    webhook.stop()  # the channel refuses connections for a day
    record(store, channels, make_alert(level=Level.CRITICAL), make_alert(level=Level.CALL, at=T0 + timedelta(minutes=5)))
    for hours in range(0, 24, 6):
        assert deliver(store, channels, T0 + timedelta(hours=hours), backoff_max=timedelta(hours=1)).failed
    later = T0 + timedelta(hours=25)
    summary = deliver(store, channels, later)
    assert summary.expired == 2 and store.pending_count() == 0

    webhook.start()  # back on the same port
    record(store, channels, make_alert(level=Level.WARNING, at=later), at=later)
    assert deliver(store, channels, later).sent == {"hook": 1}
    [message] = webhook.bodies
    assert message["title"].startswith("WARNING · binance-main")
    assert message["message"].startswith("⚠ 2 alerts could not be delivered to hook since 2024-05-01 12:00 UTC\n\n")
    assert store.expired_unreported("hook") == []

    record(store, channels, make_alert(level=Level.CALL, at=later + timedelta(minutes=1)), at=later)
    deliver(store, channels, later + timedelta(minutes=1))
    assert "could not be delivered" not in webhook.bodies[-1]["message"]


def test_expired_non_critical_alerts_are_not_announced(store, webhook):
    channels = [channel("hook", f"json://{webhook.url}/x")]
    record(store, channels, make_alert(level=Level.WARNING))
    store.expire(T0 + timedelta(days=2), timedelta(hours=24))
    record(store, channels, make_alert(level=Level.CALL, at=T0 + timedelta(days=2)), at=T0 + timedelta(days=2))
    deliver(store, channels, T0 + timedelta(days=2))
    assert "could not be delivered" not in webhook.bodies[0]["message"]


def test_telegram_retry_hint_sets_the_next_attempt(store, webhook):
    channels = [channel("tg", "tgram://123456789:AAHsecretTokenValue42/987654")]
    record(store, channels, make_alert())
    reply = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7"}
    webhook.fail_next(1, 429, body=json.dumps(reply).encode())
    notifier = Notifier(channels, timeout=5)
    notifier._targets["tg"].apprise[0].notify_url = f"http://{webhook.url}/bot"
    summary = asyncio.run(delivery.deliver_due(StoreThread(store), notifier, channels, T0, backoff_base=BASE))
    assert summary.retry_at["tg"] == T0 + timedelta(seconds=7)


def test_deliveries_to_a_removed_channel_wait_for_expiry(store, webhook):
    old = [channel("gone", f"json://{webhook.url}/x")]
    record(store, old, make_alert())
    summary = deliver(store, [], T0)
    assert "no longer configured" in summary.failed["gone"]
    assert webhook.requests == []


def test_no_secret_reaches_the_store(store, db_path, webhook, closed_port):
    token, password = "SecretPathToken987", "pa55word-xyz"
    channels = [
        channel("down", f"json://user:{password}@127.0.0.1:{closed_port}/hooks/{token}"),
        channel("err", f"json://user:{password}@{webhook.url}/hooks/{token}"),
    ]
    webhook.fail_next(1, 500, body=token.encode())
    record(store, channels, make_alert())
    summary = deliver(store, channels, T0)
    assert set(summary.failed) == {"down", "err"}
    dump = "\n".join(store.db.conn.iterdump())
    assert "json://" not in dump and "last_error" in dump
    for secret in (token, password):
        assert secret not in dump
        assert not any(secret in error for error in summary.failed.values())
    store.close()
    for path in db_path.parent.glob(db_path.name + "*"):  # the file, and its WAL
        assert token.encode() not in path.read_bytes()


def test_test_notify_reports_each_channel(webhook, closed_port):
    channels = [channel("ok", f"json://{webhook.url}/x"), channel("down", f"json://127.0.0.1:{closed_port}/x")]
    outcomes = asyncio.run(delivery.test_notify(Notifier(channels, timeout=5), ["ok", "down", "missing"]))
    assert outcomes["ok"].ok and not outcomes["down"].ok and not outcomes["missing"].ok
    assert webhook.bodies[0]["title"] == "alerter test message"
