"""notify.py: routing and rendering (pure), and real apprise to loopback servers."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from alerter.config import ChannelConfig
from alerter.models import AlertKind, Level
from alerter.notify import Notifier, check_url, markdown_for, notify_type, render, route, route_all
from test_store import T0, make_alert

ISO = "isolated:ETH/USDT:USDT:short"


def channel(name, url="json://127.0.0.1:9/x", min_level="warning", accounts=None) -> ChannelConfig:
    return ChannelConfig(name=name, url=url, min_level=min_level, accounts=accounts)


# ---------------------------------------------------------------- routing

CHANNELS = [
    channel("all"),
    channel("calls", min_level="call"),
    channel("pager", min_level="critical"),
    channel("bybit-only", accounts=["bybit-1"]),
]


def heard_by(account: str) -> list[ChannelConfig]:
    """The channels that hear `account`, as the daemon passes them to `route`: its plan's."""
    from alerter.config import build_settings
    from alerter.plan import plans

    settings = build_settings({
        "accounts": [{"name": "binance-main", "exchange": "binanceusdm", "api_key": "k", "secret": "s"},
                     {"name": "bybit-1", "exchange": "bybit", "api_key": "k", "secret": "s"}],
        "channels": [c.model_dump() | {"url": c.url.get_secret_value()} for c in CHANNELS],
    })
    return [c for c in CHANNELS if c.name in plans(settings)[account].channels]


@pytest.mark.parametrize(("kind", "level", "account", "expected"), [
    (AlertKind.RAISED, Level.WARNING, "binance-main", ["all"]),
    (AlertKind.RAISED, Level.CALL, "binance-main", ["all", "calls"]),
    (AlertKind.RAISED, Level.CRITICAL, "binance-main", ["all", "calls", "pager"]),
    (AlertKind.REPEAT, Level.CRITICAL, "binance-main", ["all", "calls", "pager"]),
    (AlertKind.REPEAT, Level.WARNING, "bybit-1", ["all", "bybit-only"]),
    # resolved carries the episode's peak: whoever heard the escalation hears the resolution
    (AlertKind.RESOLVED, Level.CRITICAL, "binance-main", ["all", "calls", "pager"]),
    (AlertKind.RESOLVED, Level.WARNING, "binance-main", ["all"]),
    # blind / restored go everywhere, the accounts filter still holds
    (AlertKind.BLIND, Level.OK, "binance-main", ["all", "calls", "pager"]),
    (AlertKind.RESTORED, Level.OK, "bybit-1", ["all", "calls", "pager", "bybit-only"]),
    (AlertKind.RAISED, Level.CRITICAL, "bybit-1", ["all", "calls", "pager", "bybit-only"]),
])
def test_route(kind, level, account, expected):
    assert route(make_alert(kind=kind, level=level, account=account), heard_by(account)) == expected


def test_route_all_keys_by_alert_key():
    a, b = make_alert(level=Level.WARNING, account="bybit-1"), make_alert(level=Level.CRITICAL, account="bybit-1")
    assert route_all([a, b], heard_by("bybit-1")) == {a.key: ["all", "bybit-only"], b.key: ["all", "calls", "pager", "bybit-only"]}


def test_markdown_per_scheme():
    assert not markdown_for("mailto://127.0.0.1?from=a@example.com")
    assert not markdown_for("MAILTOS://smtp.example.com")
    assert markdown_for("tgram://123:abc/456") and markdown_for("json://127.0.0.1/x")


def test_importing_notify_does_not_import_apprise():
    code = "import sys, alerter.notify, alerter.delivery; print('apprise' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---------------------------------------------------------------- rendering

def test_render_raised_call():
    alert = make_alert(deposit_needed=1234.56, equity=10_000.0, maintenance_margin=7_800.0)
    title, body = render([alert], markdown=False)
    assert title == "CALL · binance-main · margin ratio 78 % (call at 70 %)"
    assert body.splitlines() == [
        "Equity 10,000.00 USDT · maintenance margin 7,800.00 USDT",
        "Deposit 1,234.56 USDT to get back to 40 %",
        "Liquidation at a −12.3 % move",
        "Top positions:",
        "- BTC/USDT:USDT long · 50,000.00 USDT · liq. 52,000.50 (−13.3 %)",
    ]
    _, md = render([alert], markdown=True)
    assert "**Deposit 1,234.56 USDT to get back to 40 %**" in md


def test_render_isolated_estimated_and_infinite():
    alert = make_alert(level=Level.CRITICAL, scope=ISO, margin_ratio=math.inf, threshold=0.85, estimated=True,
                       equity=-12.0, deposit_needed=math.inf, liquidation_move=None, top_positions=())
    title, body = render([alert], markdown=False)
    assert title == "CRITICAL · binance-main · ETH/USDT:USDT short (isolated) · margin ratio ∞ (critical at 85 %) (estimated)"
    assert "Equity −12.00 USDT" in body and "Deposit ∞ USDT to get back to 40 %" in body
    assert "Liquidation" not in body


def test_render_repeat_resolved_blind_restored():
    since = datetime(2024, 5, 1, 9, 5, tzinfo=UTC)
    repeat = make_alert(kind=AlertKind.REPEAT, since_at=since)
    assert render([repeat], markdown=False)[0] == "CALL still active · binance-main · margin ratio 78 % (call at 70 %) since 09:05 UTC"
    resolved = make_alert(kind=AlertKind.RESOLVED, level=Level.CRITICAL, margin_ratio=0.38, threshold=None)
    assert render([resolved], markdown=False)[0] == "RESOLVED · binance-main · margin ratio 38 % (was CRITICAL)"
    closed = make_alert(kind=AlertKind.RESOLVED, level=Level.CALL, scope=ISO, reason="position closed")
    assert render([closed], markdown=False)[0] == "RESOLVED · binance-main · ETH/USDT:USDT short (isolated) · position closed (was CALL)"
    blind = make_alert(kind=AlertKind.BLIND, level=Level.OK, failures=3, reason="timeout after 10 s", since_at=since)
    title, body = render([blind], markdown=False)
    assert title == "BLIND · binance-main · no data for 3 polls: timeout after 10 s"
    assert "09:05 UTC" in body
    restored = make_alert(kind=AlertKind.RESTORED, level=Level.OK, margin_ratio=0.2)
    assert render([restored], markdown=False)[0] == "RESTORED · binance-main · data flowing again"


def test_an_approximate_accounts_alerts_say_so():
    """A `profile = "generic"` account: the flag travels from the snapshot through health, the
    policy and the outbox's JSON to every alert, whose headline and figures say "approximate"."""
    from alerter.health import evaluate
    from alerter.models import RepeatSchedule, Thresholds
    from alerter.policy import decide
    from alerter.sources import generic
    from alerter.codec import alert_from_json, alert_to_json

    position = {"symbol": "BTC/USD:BTC", "contracts": 1, "contractSize": 1, "side": "long", "markPrice": 60_000, "entryPrice": 61_000,
                "unrealizedPnl": -0.02, "maintenanceMargin": 0.06, "notional": 1.0}
    snapshot = generic.normalise("deribit-1", "deribit", {"BTC": {"total": 0.1}}, [position], {"BTC/USD:BTC": {"settle": "BTC"}},
                                 balance_includes_pnl=True)
    _, (alert,) = decide(None, evaluate(snapshot, 0.4)[0], Thresholds(), RepeatSchedule(), T0)
    alert = alert_from_json(alert_to_json(alert))  # as the outbox hands it to delivery
    title, body = render([alert], markdown=False)
    assert title == "WARNING · deribit-1 · margin ratio 60 % (warning at 50 %) (approximate)"
    assert body.splitlines()[:2] == [
        "Approximate: ccxt's unified figures for deribit (profile = \"generic\"), not the exchange's own margin figures",
        "Equity 0.10 BTC · maintenance margin 0.06 BTC",
    ]
    resolved = make_alert(kind=AlertKind.RESOLVED, level=Level.WARNING, margin_ratio=0.3, approximate=True, estimated=True)
    assert render([resolved], markdown=False)[0] == "RESOLVED · binance-main · margin ratio 30 % (estimated, approximate) (was WARNING)"
    exact = make_alert()  # an account with a profile says nothing of the kind
    assert "approximate" not in " ".join(render([exact], markdown=False)).lower()


def test_render_small_ratio_keeps_a_decimal():
    assert "margin ratio 4.2 % (warning at 50 %)" in render([make_alert(level=Level.WARNING, margin_ratio=0.042, threshold=0.5)], markdown=False)[0]


def test_render_groups_most_severe_first():
    warning = make_alert(level=Level.WARNING, account="okx-2", margin_ratio=0.55, threshold=0.5)
    critical = make_alert(level=Level.CRITICAL, margin_ratio=0.9, threshold=0.85)
    call = make_alert(level=Level.CALL, account="bybit-1")
    resolved = make_alert(kind=AlertKind.RESOLVED, level=Level.CALL, account="okx-3")
    blind = make_alert(kind=AlertKind.BLIND, level=Level.OK, account="kraken", failures=3)
    title, body = render([warning, resolved, call, critical], markdown=False)
    assert title == "4 alerts: CRITICAL binance-main, CALL bybit-1, …"
    heads = [line for line in body.splitlines() if " · " in line and line.split(" ")[0].isupper()]
    assert [h.split(" · ")[0] for h in heads] == ["CRITICAL", "CALL", "WARNING", "RESOLVED"]
    title, body = render([warning, blind, critical], markdown=True)
    assert title.startswith("3 alerts: BLIND kraken, CRITICAL binance-main")
    assert body.startswith("### BLIND · kraken")
    assert render([call, warning], markdown=False)[0] == "2 alerts: CALL bybit-1, WARNING okx-2"
    assert notify_type([warning, critical]) == "failure" and notify_type([resolved]) == "success"


def test_render_bounds_a_long_group():
    alerts = [make_alert(level=Level.CALL, account=f"acct-{i:02d}", at=T0 + timedelta(seconds=i)) for i in range(40)]
    title, body = render(alerts, markdown=True)
    assert title == "40 alerts: CALL acct-00, CALL acct-01, …"
    assert body.count("### CALL") == 4 and body.count("\n- CALL · acct-") == 15
    assert body.endswith("… and 21 more (alerter history shows them all)")
    assert len(body) < 4096


def test_render_undelivered_note_first():
    title, body = render([make_alert()], markdown=False, undelivered_note="3 alerts could not be delivered to tg since 09:05 UTC")
    assert body.startswith("⚠ 3 alerts could not be delivered to tg since 09:05 UTC\n\n")
    _, body = render([make_alert(), make_alert(level=Level.WARNING)], markdown=False, undelivered_note="N")
    assert body.startswith("⚠ N\n\nCALL")


def test_render_needs_an_alert():
    with pytest.raises(ValueError):
        render([], markdown=True)


# ---------------------------------------------------------------- real delivery

def send(notifier, name, title="t", body="b"):
    return asyncio.run(notifier.send(name, title, body))


def test_json_delivery(webhook):
    notifier = Notifier([channel("hook", f"json://{webhook.url}/alerts")], timeout=5)
    title, body = render([make_alert(level=Level.CRITICAL, margin_ratio=math.inf)], markdown=notifier.markdown("hook"))
    outcome = asyncio.run(notifier.send("hook", title, body, notify_type="failure"))
    assert outcome.ok and outcome.error is None
    [request] = webhook.requests
    assert request["path"] == "/alerts"
    assert request["body"]["title"] == title and "∞" in title
    assert request["body"]["message"] == body  # json:// passes Markdown through untouched
    assert request["body"]["type"] == "failure"


def test_email_delivery_is_plain_text(smtp_server):
    notifier = Notifier([channel("mail", smtp_server.url())], timeout=5)
    assert not notifier.markdown("mail")
    title, body = render([make_alert(deposit_needed=1234.56)], markdown=notifier.markdown("mail"))
    assert send(notifier, "mail", title, body).ok
    [message] = smtp_server.messages
    assert message["Subject"] == title
    assert message["To"].endswith("trader@example.com")
    assert smtp_server.envelopes == [("alerter@example.com", ["trader@example.com"])]
    text = message.get_body(("plain",)).get_content()
    assert message.get_content_type() == "text/plain"
    assert "Deposit 1,234.56 USDT to get back to 40 %" in text and "**" not in text


def test_http_500_is_a_failed_outcome(webhook):
    notifier = Notifier([channel("hook", f"json://{webhook.url}/x")], timeout=5)
    webhook.fail_next(1, 500)
    outcome = send(notifier, "hook")
    assert not outcome.ok and "500" in outcome.error and outcome.retry_after is None
    assert send(notifier, "hook").ok


def test_json_429_retry_after_is_not_visible_through_apprise(webhook):
    """Pinned apprise 2.3.0 behaviour: json:// logs "error=429" but never exposes the
    Retry-After header, so the caller falls back to its own backoff."""
    notifier = Notifier([channel("hook", f"json://{webhook.url}/x")], timeout=5)
    webhook.fail_next(1, 429, retry_after="120")
    outcome = send(notifier, "hook")
    assert not outcome.ok and "429" in outcome.error
    assert outcome.retry_after is None


TG_TOKEN = "123456789:AAHsecretTokenValue42"


def telegram_notifier(webhook) -> Notifier:
    """A real tgram:// plugin whose API base is pointed at the loopback receiver."""
    notifier = Notifier([channel("tg", f"tgram://{TG_TOKEN}/987654")], timeout=5)
    notifier._targets["tg"].apprise[0].notify_url = f"http://{webhook.url}/bot"
    return notifier


def test_telegram_429_retry_hint_is_read(webhook):
    notifier = telegram_notifier(webhook)
    reply = {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}}
    webhook.fail_next(1, 429, body=json.dumps(reply).encode())
    outcome = send(notifier, "tg", "CALL · x", "**bold**")
    assert not outcome.ok and outcome.retry_after == 7
    assert send(notifier, "tg", "CALL · x", "**bold**").ok
    sent = webhook.requests[-1]
    assert sent["path"] == f"/bot{TG_TOKEN}/sendMessage"
    assert sent["body"]["chat_id"] == 987654 and "CALL · x" in sent["body"]["text"]


def test_refused_connection_is_a_fast_failed_outcome(closed_port):
    notifier = Notifier([channel("down", f"json://127.0.0.1:{closed_port}/x")], timeout=5)
    started = time.monotonic()
    outcome = send(notifier, "down")
    assert not outcome.ok and "connection error" in outcome.error.lower()
    assert time.monotonic() - started < 2


def test_slow_channel_times_out(webhook):
    webhook.delay = 2.0
    notifier = Notifier([channel("slow", f"json://{webhook.url}/x")], timeout=0.5)
    started = time.monotonic()
    outcome = send(notifier, "slow")
    assert not outcome.ok and "timed out" in outcome.error
    assert time.monotonic() - started < 1.5


def test_unknown_and_broken_channels_are_outcomes():
    notifier = Notifier([channel("broken", "tgram://notatoken/123")])
    outcome = send(notifier, "broken")
    assert not outcome.ok and outcome.error.startswith("channel broken: apprise cannot use this tgram:// URL")
    assert "notatoken" not in outcome.error
    assert "no channel named 'nope'" in send(notifier, "nope").error


def test_check_url():
    assert check_url("json://127.0.0.1:8080/hook") is None
    assert check_url("mailto://127.0.0.1:25?from=alerter@example.com&to=trader@example.com") is None
    assert check_url("josn://host/x") == "unknown apprise scheme josn:// (did you mean json://, join://, jsons://?)"
    assert check_url("no-scheme").startswith("not an apprise URL")
    error = check_url("tgram://notAtokenSecret77/123")
    assert error == "apprise cannot use this tgram:// URL: Unparseable Telegram URL"


def test_no_secret_in_errors_or_logs(webhook, closed_port, caplog):
    caplog.set_level(1)  # everything, including apprise's TRACE
    for name in ("apprise", "urllib3"):
        caplog.set_level(1, logger=name)
    path_token, password = "PathTokenAbc123xyz", "hunter2pw"
    notifier = Notifier([
        channel("hook", f"json://user:{password}@{webhook.url}/hooks/{path_token}"),
        channel("down", f"json://user:{password}@127.0.0.1:{closed_port}/hooks/{path_token}"),
        channel("tg", f"tgram://{TG_TOKEN}/987654"),
    ], timeout=5)
    notifier._targets["tg"].apprise[0].notify_url = f"http://{webhook.url}/bot"
    webhook.fail_next(2, 500, body=f'{{"echo": "{path_token}"}}'.encode())
    outcomes = [send(notifier, "hook"), send(notifier, "down"), send(notifier, "tg")]
    assert not any(o.ok for o in outcomes)
    assert send(notifier, "tg").ok
    assert webhook.requests[0]["path"] == f"/hooks/{path_token}"  # the real request used the secret
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "JSON POST URL" in logged and "Telegram POST URL" in logged  # debug output was captured…
    for secret in (path_token, password, "AAHsecretTokenValue42", TG_TOKEN):  # …without secrets
        assert secret not in logged
        assert not any(secret in (o.error or "") for o in outcomes)
