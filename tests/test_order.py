"""Messages in the order of the truth: the pending alerts of one scope go out together, headed by
the newest, with what it superseded folded in ("earlier: CRITICAL at 14:02 UTC, not delivered in
time"). Pure tests of `fold` / `earlier_note` / `plan`, then the real daemon (a subprocess) with
a webhook that refuses connections during an escalation and comes back before the resolution."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import DaemonRuns, query, simulator_thread, to_toml, wait_until
from helpers import SCENARIO, price_for
from test_store import T0, make_alert

from alerter.delivery import plan
from alerter.models import AlertKind, Level
from alerter.notify import GOOD_NEWS, Folded, earlier_note, entry_headline, fold, headline, render, tag
from alerter.outbox import Delivery

ISO = "isolated:ETH/USDT:USDT:short"
RAISED, REPEAT, RESOLVED, BLIND, RESTORED = AlertKind.RAISED, AlertKind.REPEAT, AlertKind.RESOLVED, AlertKind.BLIND, AlertKind.RESTORED
W, C, X, OK = Level.WARNING, Level.CALL, Level.CRITICAL, Level.OK


def story(*steps, scope="account", account="binance-main"):
    """Alerts of one scope, a minute apart from 12:00: (kind, level) or (kind, level, minute)."""
    alerts = []
    for i, step in enumerate(steps):
        kind, level, minute = (*step, i) if len(step) == 2 else step
        extra = {"margin_ratio": 0.30, "threshold": None} if kind == RESOLVED else {}
        alerts.append(make_alert(kind=kind, level=level, scope=scope, account=account, at=T0 + timedelta(minutes=minute), **extra))
    return alerts


# ---------------------------------------------------------------- fold and its note (pure)

@pytest.mark.parametrize(("steps", "head", "note"), [
    # the issue's case: the whole escalation was pending when the account recovered
    ([(RAISED, W), (RAISED, C), (RAISED, X), (RESOLVED, X)], "RESOLVED",
     "earlier: WARNING at 12:00 UTC, CALL at 12:01 UTC, CRITICAL at 12:02 UTC, not delivered in time"),
    # a repeat says "still active since": the alert it repeats needs no second mention
    ([(RAISED, X), (REPEAT, X)], "CRITICAL still active", None),
    ([(RAISED, C), (RAISED, X), (REPEAT, X), (REPEAT, X)], "CRITICAL still active", "earlier: CALL at 12:00 UTC, not delivered in time"),
    ([(BLIND, OK), (RESTORED, OK)], "RESTORED", "earlier: BLIND at 12:00 UTC, not delivered in time"),
    ([(BLIND, OK), (BLIND, OK)], "BLIND", None),
    ([(RAISED, X), (BLIND, X)], "BLIND", "earlier: CRITICAL at 12:00 UTC, not delivered in time"),
    ([(RAISED, X), (REPEAT, X), (REPEAT, X), (REPEAT, X), (RESOLVED, X)], "RESOLVED",
     "earlier: CRITICAL at 12:00 UTC (and 3 repeats), not delivered in time"),
    # a new episode after an undelivered one: both are told, in order
    ([(RAISED, X), (RESOLVED, X), (RAISED, W)], "WARNING", "earlier: CRITICAL at 12:00 UTC, RESOLVED at 12:01 UTC, not delivered in time"),
    # a long story keeps its worst step and its latest ones, and says how many it leaves out
    ([(RAISED, W), (RAISED, C), (RAISED, X), (RESOLVED, X), (RAISED, W), (RAISED, C), (RESOLVED, C), (RAISED, W)], "WARNING",
     "earlier: 2 more, CRITICAL at 12:02 UTC, 1 more, WARNING at 12:04 UTC, CALL at 12:05 UTC, RESOLVED at 12:06 UTC, not delivered in time"),
])
def test_a_scope_folds_into_its_newest_alert(steps, head, note):
    alerts = story(*steps)
    [entry] = fold(alerts)
    assert entry == Folded(alerts[-1], tuple(alerts[:-1]))
    assert earlier_note(entry) == note
    title, _ = render([entry], markdown=False)
    assert title.startswith(f"{head} · binance-main")
    assert title == headline(alerts[-1]) + (f" ({note})" if note else "")


def test_the_issue_example_reads_as_one_resolved_message():
    title, body = render(fold(story((RAISED, W), (RAISED, C), (RAISED, X), (RESOLVED, X))), markdown=False)
    assert title == ("RESOLVED · binance-main · margin ratio 30 % (was CRITICAL) "
                     "(earlier: WARNING at 12:00 UTC, CALL at 12:01 UTC, CRITICAL at 12:02 UTC, not delivered in time)")
    assert "Deposit" not in body  # the figures are those of the current state, not of the stale critical


def test_one_poll_restored_and_critical_are_both_current_and_fold_what_came_before():
    blind = story((BLIND, OK))[0]
    restored, critical = story((RESTORED, C, 5), (RAISED, X, 5))  # one poll: data back, and worse
    entries = fold([blind, restored, critical])
    assert entries == [Folded(restored), Folded(critical, (blind,))]
    title, body = render(entries, markdown=False)
    assert title == "2 alerts: CRITICAL binance-main, RESTORED binance-main"
    assert body.splitlines()[0] == ("CRITICAL · binance-main · margin ratio 78 % (critical at 70 %) "
                                    "(earlier: BLIND at 12:00 UTC, not delivered in time)")


def test_scopes_are_folded_apart_and_kept_whole():
    iso = story((RAISED, X), (RESOLVED, X), scope=ISO)
    account = story((RAISED, W, 1), (RAISED, C, 3))
    other = story((RAISED, X, 2), account="bybit-1")
    entries = fold([iso[0], account[0], other[0], iso[1], account[1]])  # recording order
    assert entries == [Folded(iso[1], (iso[0],)), Folded(account[1], (account[0],)), Folded(other[0])]
    title, body = render(entries, markdown=True)
    assert title == "3 alerts: CRITICAL bybit-1, CALL binance-main, …"
    heads = [line for line in body.splitlines() if line.startswith("### ")]
    assert heads == [
        "### " + headline(other[0]),
        "### " + headline(account[1]) + " (earlier: WARNING at 12:01 UTC, not delivered in time)",
        "### " + headline(iso[1]) + " (earlier: CRITICAL at 12:00 UTC, not delivered in time)",
    ]


def test_an_earlier_alert_of_another_day_shows_its_date():
    alerts = story((RAISED, X, 0), (RESOLVED, X, 13 * 60))
    assert earlier_note(fold(alerts)[0]) == "earlier: CRITICAL at 2024-05-01 12:00 UTC, not delivered in time"


def test_fold_orders_by_time_whatever_the_input_order():
    alerts = story((RAISED, W), (RAISED, C), (RESOLVED, C))
    assert fold(reversed(alerts)) == [Folded(alerts[2], tuple(alerts[:2]))]


def test_plan_settles_every_pending_row_as_sent_or_folded():
    alerts = story((RAISED, W), (RAISED, X), (RESOLVED, X)) + story((RAISED, C, 1), account="bybit-1")
    rows = [Delivery(alert_id=10 + i, channel="hook", alert=a, status="pending", attempts=i, next_attempt_at=T0, last_error=None, sent_at=None)
            for i, a in enumerate(sorted(alerts, key=lambda a: a.created_at))]
    ids = {row.alert.key: row.alert_id for row in rows}
    p = plan("hook", rows, [], T0 + timedelta(minutes=3), markdown=False)
    assert sorted(p.sent) == sorted([ids[alerts[2].key], ids[alerts[3].key]])
    assert sorted(p.folded) == sorted([ids[alerts[0].key], ids[alerts[1].key]])
    assert p.title == "2 alerts: CALL bybit-1, RESOLVED binance-main" and p.notify_type == "failure"
    assert p.reported == ()


# ---------------------------------------------------------------- properties

SCOPES = [("binance-main", "account"), ("binance-main", ISO), ("bybit-1", "account")]
KINDS = st.sampled_from([(RAISED, W), (RAISED, C), (RAISED, X), (REPEAT, W), (REPEAT, X), (RESOLVED, X), (RESOLVED, W), (BLIND, OK), (BLIND, X), (RESTORED, C)])
pending_alerts = st.lists(st.tuples(st.sampled_from(SCOPES), KINDS, st.integers(0, 30)), max_size=25).map(
    lambda rows: sorted(
        (make_alert(kind=kind, level=level, account=account, scope=scope, at=T0 + timedelta(minutes=minute), reason=f"#{i}")
         for i, ((account, scope), (kind, level), minute) in enumerate(rows)),
        key=lambda a: a.created_at,  # recording order; `reason` keeps equal alerts apart
    ))


@settings(max_examples=300, deadline=None)
@given(pending_alerts)
def test_fold_headlines_each_scope_by_its_newest_and_drops_nothing(alerts):
    entries = fold(alerts)
    # nothing pending is silently dropped, nothing is told twice
    told = [e.alert for e in entries] + [a for e in entries for a in e.earlier]
    assert Counter(a.reason for a in told) == Counter(a.reason for a in alerts)
    for account, scope in SCOPES:
        mine = [a for a in alerts if (a.account, a.scope) == (account, scope)]
        ours = [e for e in entries if (e.alert.account, e.alert.scope) == (account, scope)]
        if not mine:
            assert ours == []
            continue
        newest = max(a.created_at for a in mine)
        # the headlines of a scope are its newest alerts, in recording order, and only they
        assert [e.alert for e in ours] == [a for a in mine if a.created_at == newest]
        # everything older is folded into the last of them, oldest first
        assert all(e.earlier == () for e in ours[:-1])
        assert list(ours[-1].earlier) == [a for a in mine if a.created_at < newest]
    for entry in entries:
        note = earlier_note(entry)
        line = entry_headline(entry)
        assert line.startswith(headline(entry.alert))  # headed by the current state, never by an older one
        if not entry.earlier:
            assert note is None
        elif note is None:  # only a repeat / blind headline continuing the same state says nothing more
            assert entry.alert.kind in (REPEAT, BLIND) and {tag(a) for a in entry.earlier} == {tag(entry.alert)}
        else:
            assert note.startswith("earlier: ") and note.endswith(", not delivered in time") and note in line
            worst = max(entry.earlier, key=lambda a: (a.kind not in GOOD_NEWS, a.severity))
            assert f"{tag(worst)} at " in note or tag(worst) == tag(entry.alert)  # the undelivered peak is named


@settings(max_examples=150, deadline=None)
@given(pending_alerts.filter(bool))
def test_a_message_never_headlines_a_superseded_alert(alerts):
    title, body = render(fold(alerts), markdown=True)
    superseded = {headline(a) for e in fold(alerts) for a in e.earlier} - {headline(e.alert) for e in fold(alerts)}
    heads = [title] if not re.match(r"\d+ alerts: ", title) else [
        line.removeprefix("### ").removeprefix("- ") for line in body.splitlines() if line.startswith(("### ", "- "))]
    for line in heads:
        assert not any(line == h or line.startswith(h + " (earlier: ") for h in superseded), line


# ---------------------------------------------------------------- the real daemon

def test_channel_back_mid_episode_hears_the_current_state_first_with_the_missed_peak(tmp_path, webhook):
    """warning → call → critical while the webhook refuses connections; it comes back; then the
    account recovers. The first message is RESOLVED naming the undelivered CRITICAL, it arrives
    at once (not after the rows' backoff), and nothing is left to arrive after it."""
    db = tmp_path / "alerter.db"
    with simulator_thread(SCENARIO) as running:
        sim = running.sim

        def move(ratio):
            running.call(lambda: sim.set_prices({"BTCUSDT": price_for(sim, ratio)}))

        move(0.30)
        config = {
            "daemon": {"database": str(db), "poll_interval": "0.2s", "price_interval": "never", "request_timeout": "2s"},
            "repeat": {"warning": "never", "call": "never", "critical": "never"},
            "accounts": [{"name": "main", "exchange": "binanceusdm", "api_key": "main-key", "secret": "main-secret", "ccxt": sim.ccxt_config()}],
            "channels": [{"name": "hook", "url": f"json://{webhook.url}/hook"}],
        }
        path = tmp_path / "alerter.toml"
        path.write_text(to_toml(config))
        daemons = DaemonRuns(path, tmp_path / "logs")
        proc = daemons.start()
        try:
            daemons.wait_ready(proc)
            wait_until(lambda: query(db, "SELECT count(*) FROM samples")[0][0], 10, daemons.tail)
            webhook.stop()  # the channel refuses connections
            for ratio, level in ((0.55, "warning"), (0.78, "call"), (0.92, "critical")):
                move(ratio)
                wait_until(lambda: query(db, "SELECT d.attempts FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
                                             "WHERE a.kind = 'raised' AND a.level = ? AND d.attempts > 0", (level,)), 10,
                           lambda: f"no failed attempt for {level}\n{daemons.tail()}")
            # the backoff belongs to the channel: all its pending alerts wait for one next attempt
            pending = query(db, "SELECT DISTINCT next_attempt_at FROM deliveries WHERE status = 'pending'")
            assert len(pending) == 1 and query(db, "SELECT count(*) FROM deliveries WHERE status = 'pending'")[0][0] == 3
            assert pending[0][0] > datetime.now(UTC).isoformat()  # ≥ 30 s away: the old per-row wait

            webhook.start()  # back on the same port
            move(0.30)
            wait_until(lambda: webhook.bodies, 10, lambda: f"nothing arrived\n{daemons.tail()}")
            arrived = datetime.now(UTC)
            wait_until(lambda: query(db, "SELECT count(*) FROM deliveries WHERE status = 'pending'")[0][0] == 0, 5, daemons.tail)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    # one message, headed by the current state, naming the undelivered peak
    [first] = webhook.bodies
    assert re.fullmatch(r"RESOLVED · main · margin ratio 30 % \(was CRITICAL\) \(earlier: WARNING at \d\d:\d\d UTC, "
                        r"CALL at \d\d:\d\d UTC, CRITICAL at \d\d:\d\d UTC, not delivered in time\)", first["title"]), first["title"]
    assert first["type"] == "success"
    # in the round the resolution was recorded in, not after the rows' own backoff
    [(resolved_at,)] = query(db, "SELECT created_at FROM alerts WHERE kind = 'resolved'")
    assert arrived - datetime.fromisoformat(resolved_at) < timedelta(seconds=3)
    # nothing is left that could arrive later headlined CRITICAL, and history says what happened
    out = subprocess.run([sys.executable, "-m", "alerter", "history", "--config", str(path), "--json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    [series] = json.loads(out.stdout)["series"]
    assert [(a["kind"], a["level"], a["deliveries"]) for a in series["alerts"]] == [
        ("raised", "warning", {"hook": "folded"}),
        ("raised", "call", {"hook": "folded"}),
        ("raised", "critical", {"hook": "folded"}),
        ("resolved", "critical", {"hook": "sent"}),
    ]
