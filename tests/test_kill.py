"""Crash safety: the real daemon (`python -m alerter run`) is killed with SIGKILL at random
moments while the demo crash plays, and restarted at once on the same database. In the end
every alert it decided reached every channel it was routed to, at least once, recorded as
sent; a kill can cost at most one repeated message per channel (it landed between sending and
recording); and the escalation of the demo account reads as if nothing had happened.

The simulator's scenario clock only runs while a daemon is up (it is frozen from a kill until
the next daemon is ready), so every phase of the crash is seen by some daemon and the expected
escalation does not depend on where the kills land."""

from __future__ import annotations

import random
import re
import signal
import time
from collections import Counter


from helpers import DaemonRuns, query, simulator_thread, to_toml

from alerter.config import build_settings
from alerter.models import ACCOUNT_SCOPE, AlertKind, Level
from alerter.notify import headline, route
from alerter.codec import alert_from_json

SEED = 20260301
MIN_KILLS = 12  # each at a random moment: while starting (1 in 5), or while polling, recording, delivering
SPEED = 8.0  # the crash (scenario t = 60 s … 150 s) takes 11 s of daemon uptime; its CALL band
# (t = 90 … 97.5 s) lasts 0.94 s, a few polls 0.3 s apart even on a loaded machine
START_AT = 60.0  # scenario seconds: skip most of the calm before the crash
END_AT = 150.0  # the last keyframe: prices hold from here on (ratio ≈ 32 %)
GROUPED = re.compile(r"^\d+ alerts: ")
EARLIER = re.compile(r" \(earlier: .*, not delivered in time\)$")  # what a headline folds (alerts superseded while pending)


def received(title: str, message: str, known: set[str]) -> tuple[Counter, list[str]]:
    """(headline → times it is in this message, texts that match no alert). A single alert's
    message is titled by its headline; a grouped one has each headline on a line of its own
    ("### " or "- " in front), matched whole (one headline can be the start of another's)."""
    if not GROUPED.match(title):
        title = EARLIER.sub("", title)
        return (Counter({title: 1}), []) if title in known else (Counter(), [title])
    lines = (EARLIER.sub("", line.strip().removeprefix("### ").removeprefix("- ")) for line in message.splitlines())
    found = Counter(line for line in lines if line in known)
    return found, ([] if found else [title])


def tally(messages: list[tuple[str, str]], expected: Counter, known: set[str]) -> dict:
    """Match one channel's messages (in arrival order) with the headlines it should have got
    (`known`: every alert routed to it, folded ones included, which it may have got in full
    before a kill)."""
    got: Counter = Counter()
    unexpected: list[str] = []
    duplicate_messages = 0
    for title, message in messages:
        found, unknown = received(title, message, known)
        unexpected += unknown
        got.update(found)
        if any(got[h] > expected[h] for h in found):
            duplicate_messages += 1
    return {
        "missing": sorted(h for h in expected if got[h] < expected[h]),
        "duplicate_receipts": sum(max(0, got[h] - expected[h]) for h in expected),
        "duplicate_messages": duplicate_messages,
        "unexpected": unexpected,
    }


def test_sigkill_at_random_moments_loses_nothing_and_repeats_little(tmp_path, webhook, smtp_server):
    rng = random.Random(SEED)
    db = tmp_path / "alerter.db"
    with simulator_thread("demo", speed=SPEED) as running:
        sim = running.sim
        running.call(sim.state.set_speed, 0)  # frozen until the first daemon is up
        running.call(sim.set_elapsed, START_AT)
        config = {
            "daemon": {"database": str(db), "poll_interval": "0.3s", "request_timeout": "2s", "log_level": "info"},
            "repeat": {"warning": "never", "call": "3s", "critical": "1s", "blind": "1h"},
            "accounts": [
                {"name": name, "exchange": "binanceusdm", "api_key": key, "secret": "demo-secret", "ccxt": sim.ccxt_config()}
                for name, key in (("demo", "demo-key"), ("demo-iso", "demo-iso-key"))
            ],
            "channels": [
                {"name": "hook", "url": f"json://{webhook.url}/hook"},
                {"name": "mail", "url": smtp_server.url()},
            ],
        }
        path = tmp_path / "alerter.toml"
        path.write_text(to_toml(config))
        path.chmod(0o600)
        settings = build_settings(config)
        daemons = DaemonRuns(path, tmp_path / "logs")

        def elapsed() -> float:
            return running.call(lambda: sim.state.elapsed)

        def wait_ready(proc) -> None:
            daemons.wait_ready(proc)
            running.call(sim.state.set_speed, SPEED)  # the market moves while a daemon watches

        # ---- the crash, with kills
        kills = 0
        began = time.monotonic()
        while kills < MIN_KILLS or elapsed() < END_AT:
            assert time.monotonic() - began < 180, f"{kills} kills in 180 s, scenario at {elapsed():.0f} s\n{daemons.tail()}"
            proc = daemons.start()
            if rng.random() < 0.2:  # while it starts: imports, schema migration, first poll
                time.sleep(rng.uniform(0.05, 0.7))
                if daemons.ready():
                    running.call(sim.state.set_speed, SPEED)
            else:  # while it works: polls, records, delivers
                wait_ready(proc)
                time.sleep(rng.uniform(0.0, 1.2))
            assert proc.poll() is None, f"the daemon exited by itself ({proc.returncode})\n{daemons.tail()}"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            running.call(sim.state.set_speed, 0)
            kills += 1

        # ---- the last daemon plays out the scenario, empties the outbox and stops on SIGTERM
        proc = daemons.start()
        try:
            wait_ready(proc)
            settled = time.monotonic() + 1.0  # a few polls of its own at least
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, f"the daemon exited by itself ({proc.returncode})\n{daemons.tail()}"
                assert time.monotonic() < deadline, f"outbox not emptied in 30 s\n{query(db, 'SELECT * FROM deliveries')}\n{daemons.tail()}"
                resolved = query(db, f"SELECT count(*) FROM alerts WHERE account = 'demo' AND scope = '{ACCOUNT_SCOPE}' AND kind = '{AlertKind.RESOLVED}'")[0][0]
                pending = query(db, "SELECT count(*) FROM deliveries WHERE status = 'pending'")[0][0]
                if elapsed() >= END_AT and resolved and not pending and time.monotonic() > settled:
                    break
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert code == 0, f"exit code {code} after SIGTERM\n{daemons.tail(1)}"

    # ---- what was decided, and that every routed channel has it as sent
    rows = query(db, "SELECT id, payload FROM alerts ORDER BY created_at, id")
    alerts = {alert_id: alert_from_json(payload) for alert_id, payload in rows}
    deliveries: dict[int, dict[str, str]] = {}
    for alert_id, channel, status in query(db, "SELECT alert_id, channel, status FROM deliveries"):
        deliveries.setdefault(alert_id, {})[channel] = status
    for alert_id, alert in alerts.items():
        routed = route(alert, settings.channels)
        statuses = deliveries.get(alert_id, {})
        assert set(statuses) == set(routed) and set(statuses.values()) <= {"sent", "folded"}, (headline(alert), statuses)
        for channel in (c for c, status in statuses.items() if status == "folded"):  # only under a newer alert of its scope
            assert any(other.scope == alert.scope and other.account == alert.account and other.created_at > alert.created_at
                       and deliveries[other_id].get(channel) == "sent" for other_id, other in alerts.items()), (headline(alert), channel)

    # ---- what each channel received: every alert at least once, few repeats
    messages = {
        "hook": [(b["title"], b["message"]) for b in webhook.bodies if isinstance(b, dict)],  # a torn request (killed mid-POST) is no message
        "mail": [(m["subject"], m.get_body(("plain",)).get_content()) for m in smtp_server.messages],
    }
    report = {}
    for channel, received_messages in messages.items():
        routed = {i: a for i, a in alerts.items() if channel in route(a, settings.channels)}
        expected = Counter(headline(a) for i, a in routed.items() if deliveries[i][channel] == "sent")
        report[channel] = tally(received_messages, expected, {headline(a) for a in routed.values()})
    dup_messages = {c: r["duplicate_messages"] for c, r in report.items()}
    dup_receipts = sum(r["duplicate_receipts"] for r in report.values())
    landed = max(dup_messages.values())  # each kill between send and record repeats ≤ 1 message per channel
    print(f"\nkills={kills} landed_between_send_and_record~={landed} duplicates={sum(dup_messages.values())} "
          f"(messages: {', '.join(f'{c} {n}' for c, n in dup_messages.items())}; alert receipts {dup_receipts}) "
          f"alerts={len(alerts)} restarts={daemons.count} webhook_posts={len(webhook.bodies)} mails={len(smtp_server.messages)}")
    for channel, r in report.items():
        assert not r["missing"], f"{channel} never received: {r['missing']}"
        assert not r["unexpected"], f"{channel} received messages matching no alert: {r['unexpected']}"
        assert r["duplicate_messages"] <= kills, f"{channel}: {r['duplicate_messages']} repeated messages for {kills} kills"
    assert kills >= MIN_KILLS and landed <= kills

    # ---- the demo account's story: warning → call → critical (→ repeats) → resolved, once each
    story = [(a.kind, a.level) for a in alerts.values() if a.account == "demo" and a.scope == ACCOUNT_SCOPE]
    raised = [level for kind, level in story if kind == AlertKind.RAISED]
    assert raised == [Level.WARNING, Level.CALL, Level.CRITICAL], story
    assert story[:2] == [(AlertKind.RAISED, Level.WARNING), (AlertKind.RAISED, Level.CALL)], story
    assert story[-1] == (AlertKind.RESOLVED, Level.CRITICAL), story
    assert [kind for kind, _ in story].count(AlertKind.RESOLVED) == 1, story
    assert {kind for kind, _ in story} <= {AlertKind.RAISED, AlertKind.REPEAT, AlertKind.RESOLVED}, story
    peak = Level.OK
    for kind, level in story[:-1]:  # a repeat only of a level announced in this episode
        if kind == AlertKind.RAISED:
            assert level > peak, story
            peak = level
        else:
            assert level <= peak, story
    assert not [a for a in alerts.values() if a.kind == AlertKind.BLIND], "a kill must not look like a failed poll"


def test_sigterm_during_a_poll_stops_cleanly_without_a_traceback(tmp_path):
    with simulator_thread("demo") as running:
        running.call(running.sim.inject, "delay", count=None, seconds=5)  # every request in flight for 5 s
        config = {
            "daemon": {"database": str(tmp_path / "alerter.db"), "poll_interval": "1s", "request_timeout": "10s"},
            "accounts": [{"name": "demo", "exchange": "binanceusdm", "api_key": "demo-key", "secret": "demo-secret",
                          "ccxt": running.sim.ccxt_config()}],
        }
        path = tmp_path / "alerter.toml"
        path.write_text(to_toml(config))
        daemons = DaemonRuns(path, tmp_path / "logs")
        proc = daemons.start()
        try:
            daemons.wait_ready(proc)
            time.sleep(0.5)  # the first poll waits for the exchange
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    log = daemons.stderr().read_text()
    assert code == 0, daemons.tail(1)
    assert "Traceback" not in log and " ERROR " not in log, daemons.tail(1)
