"""Living with it: acknowledgements and the daily digest, against the real daemon and the test
sinks. In-process on a test clock where the time matters (`helpers.harness`); `alerter run` as a
process, with `alerter ack` beside it, where the daemon must pick up what a command wrote."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from helpers import DaemonRuns, harness, query, run, simulator_thread, titles, to_toml, wait_until

from alerter import acks, digest
from alerter.errors import ConfigError


# ---------------------------------------------------------------- in-process, on a test clock

ISOLATED = {
    "name": "living",
    "prices": {"BTCUSDT": 60_000, "ETHUSDT": 3_000},
    "accounts": [
        {"name": "main", "api_key": "main-key", "wallet_balance": 10_000,
         "positions": [{"symbol": "BTCUSDT", "side": "long", "size": 2, "entry_price": 60_000, "margin_type": "cross", "leverage": 20},
                       {"symbol": "ETHUSDT", "side": "short", "size": 1, "entry_price": 3_000, "margin_type": "isolated",
                        "leverage": 10, "isolated_wallet": 300}]},
        {"name": "second", "api_key": "second-key", "wallet_balance": 50_000,
         "positions": [{"symbol": "ETHUSDT", "side": "long", "size": 10, "entry_price": 3_000, "margin_type": "cross", "leverage": 5}]},
    ],
}


def test_ack_holds_back_repeats_is_announced_where_the_level_was_heard_and_an_escalation_breaks_through(tmp_path, webhook, smtp_server):
    async def scenario():
        channels = [
            {"name": "hook", "url": f"json://{webhook.url}/hook"},
            {"name": "mail", "url": smtp_server.url(), "min_level": "critical"},
        ]
        async with harness(tmp_path, channels, scenario=ISOLATED) as h:
            await h.step(0.78)                                   # CALL
            # the short name status prints is accepted; an unknown one is one line
            with pytest.raises(ConfigError, match=r"main: no scope 'BTC/USDT short' \(scopes: account, ETH/USDT short\)"):
                acks.acknowledge_scope(h.settings, "main", "BTC/USDT short", duration=None, note="", now=h.clock())
            with pytest.raises(ValueError, match="main · ETH/USDT short is ok: nothing to acknowledge"):
                acks.acknowledge_scope(h.settings, "main", "eth/usdt  SHORT", duration=None, note="", now=h.clock())
            with pytest.raises(ConfigError, match="no account named 'nope'"):
                acks.acknowledge_scope(h.settings, "nope", None, duration=None, note="", now=h.clock())
            done = await ack(h, "main", None, duration=timedelta(hours=2), note="adding margin", now=h.clock())
            assert done.channels == ("hook",) and done.sent == {"hook": None} and not done.daemon
            for _ in range(4):
                await h.step(0.78, minutes=15)                   # a CALL repeat is due at 30 and 60 min: held back
            assert "alerter_acknowledged{account=\"main\",scope=\"account\"} 1.0" in metrics_text()
            await h.step(0.92)                                   # CRITICAL breaks through ...
            await h.step(0.92, minutes=6)                        # ... and repeats: the ack ended with the raise
            assert acks.listing(h.settings, h.clock()) == []
            assert "alerter_acknowledged{" not in metrics_text()

    run(scenario())
    assert titles(webhook) == [
        "CALL · main · margin ratio 78 % (call at 70 %)",
        "CALL acknowledged · main · margin ratio 78 % (call at 70 %) · repeats held back until 14:01 UTC or the resolution",
        "CRITICAL · main · margin ratio 92 % (critical at 85 %)",
        "CRITICAL still active · main · margin ratio 92 % (critical at 85 %) since 13:02 UTC",
    ]
    assert "Note: adding margin" in webhook.bodies[1]["message"]
    # the critical-only channel never heard CALL: no acknowledgement for it
    assert [m["subject"].split(" · ")[0] for m in smtp_server.messages] == ["CRITICAL", "CRITICAL still active"]


async def ack(h, account, scope, **kwargs):
    """`alerter ack`'s work (it sends the announcement itself: no daemon holds the database), off
    the harness's event loop as the command would be."""
    return await asyncio.to_thread(acks.acknowledge_scope, h.settings, account, scope, **kwargs)


def metrics_text() -> str:
    from alerter.metrics import METRICS

    return METRICS.exposition().decode()


def test_an_ack_that_runs_out_lets_the_overdue_repeat_through_and_unack_lets_them_resume(tmp_path, webhook):
    async def scenario():
        async with harness(tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}], scenario=ISOLATED) as h:
            await h.step(0.78)                                   # 12:01 CALL
            await ack(h, "main", "account", duration=timedelta(minutes=40), note="", now=h.clock())
            await h.step(0.78, minutes=35)                       # 12:36: due, held back
            await h.step(0.78, minutes=10)                       # 12:46: the ack ran out: the repeat at once
            assert acks.listing(h.settings, h.clock()) == []
            await ack(h, "main", None, duration=None, note="", now=h.clock())
            await h.step(0.78, minutes=35)                       # held back
            done = await asyncio.to_thread(acks.remove, h.settings, "main", None, h.clock())  # announced like the ack
            assert done.ack.until_at is None and done.channels == ("hook",) and done.sent == {"hook": None}
            with pytest.raises(ConfigError, match="main · account is not acknowledged"):
                acks.remove(h.settings, "main", None, h.clock())
            await h.step(0.78)                                   # repeats resume at once
            await h.step(0.20)                                   # resolved

    run(scenario())
    assert [t.split(" · ")[0] for t in titles(webhook)] == [
        "CALL", "CALL acknowledged", "CALL still active", "CALL acknowledged", "CALL acknowledgement removed", "CALL still active", "RESOLVED"]
    assert titles(webhook)[1].endswith("repeats held back until 12:41 UTC or the resolution")
    assert titles(webhook)[3].endswith("repeats held back until the resolution")
    assert titles(webhook)[4] == "CALL acknowledgement removed · main · margin ratio 78 % (call at 70 %) · repeats resume"
    assert webhook.bodies[4]["message"] == "Acknowledged at 12:46 UTC, removed at 13:21 UTC: call is repeated again on its schedule."


def test_status_shows_the_ack(tmp_path, webhook):
    async def scenario():
        async with harness(tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}], scenario=ISOLATED) as h:
            await h.step(0.78)
            await ack(h, "main", None, duration=timedelta(hours=1), note="adding margin", now=datetime.now(UTC))
            return h.settings

    settings = run(scenario())
    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\ndatabase = "{settings.daemon.database}"\n')
    out = alerter("status", "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert re.search(r"call \S+ acked ", out.stdout), out.stdout
    assert re.search(r"^main · account: acked \d\d:\d\d, (59m|1h00m) left, adding margin$", out.stdout, re.M), out.stdout
    listed = alerter("ack", "--list", "--config", str(config))
    assert re.search(r"main · account\s+call\s+call\s+acked \d\d:\d\d, (59m|1h00m) left, adding margin", listed.stdout), listed.stdout
    listed = alerter("ack", "--list", "--json", "--config", str(config))
    [row] = json.loads(listed.stdout)["acks"]
    held = datetime.fromisoformat(row.pop("until_at")) - datetime.fromisoformat(row.pop("acked_at"))
    assert row == {"account": "main", "scope": "account", "level": "call", "note": "adding margin", "level_now": "call"}
    assert held == timedelta(hours=1)


def alerter(*args):
    return subprocess.run([sys.executable, "-m", "alerter", *args], capture_output=True, text=True, timeout=60)


def test_the_digest_sums_up_the_day_once_per_local_day(tmp_path, webhook):
    async def scenario():
        channels = [{"name": "hook", "url": f"json://{webhook.url}/hook", "digest": "08:00", "timezone": "Europe/Berlin"},
                    {"name": "quiet", "url": f"json://{webhook.url}/quiet", "accounts": ["second"], "digest": "07:00"}]
        async with harness(tmp_path, channels, scenario=ISOLATED) as h:
            await h.step(0.30)                                   # 12:01
            await h.step(0.78)                                   # CALL
            await h.step(0.60, minutes=5)                        # quietly back to warning
            h.sim.inject("http401", count=None, api_key="main-key")
            await h.step(minutes=1)                              # keys refused: blind at once
            await h.step(minutes=1)                              # failing: 2 in a row
            h.sim.clear_faults()
            await h.step(account="second")
            webhook.requests.clear()
            assert await h.daemon.digests.send("hook")
            assert not await h.daemon.digests.send("hook")        # once a day (the channel's day)
            h.clock.advance(hours=10)                            # 22:10 UTC: still 2026-03-01 in Berlin? 23:10 — yes
            assert not await h.daemon.digests.send("hook")
            h.clock.advance(hours=1)                             # 00:10 in Berlin: a new day
            assert await h.daemon.digests.send("quiet") is True
            assert await h.daemon.digests.send("hook") is True

    run(scenario())
    first, quiet, again = webhook.bodies
    assert first["title"] == "alerter daily digest · 2026-03-01 13:10 Europe/Berlin · 2 accounts, worst: WARNING (main) · 2 alerts in 24 h"
    text = first["message"]
    assert "**main**: margin ratio 60 % · warning since 12:07 UTC · 24 h: 30 % – 78 %" in text
    assert "- ETH/USDT short" not in text                          # an isolated position at ok is only counted
    assert "- +1 more isolated (1 ok)" in text
    assert "last good poll 3m ago · 2 failed polls in 24 h (credentials 2) · failing now (2 in a row) · BLIND" in text
    assert "**second**: margin ratio" in text and "no failed polls in 24 h" in text
    assert "- 12:02 UTC CALL · main · margin ratio 78 % (call at 70 %)\n- 12:08 UTC BLIND · main · no data for 1 poll: credentials: " in text
    assert max(len(line) for line in text.splitlines()) < 180 and text.endswith("…")  # a long reason is cut
    assert quiet["title"].startswith("alerter daily digest · 2026-03-01 23:10 UTC · 1 account, all ok · 0 alerts in 24 h")
    assert "No alerts in the last 24 h." in quiet["message"] and "main" not in quiet["message"]
    assert again["title"].startswith("alerter daily digest · 2026-03-02 00:10 Europe/Berlin")


def test_a_digest_that_cannot_be_delivered_is_tried_again_that_day(tmp_path, webhook):
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    async def scenario():
        channels = [{"name": "hook", "url": f"json://{webhook.url}/hook", "digest": "08:00"}]
        async with harness(tmp_path, channels) as h:
            await h.step(0.30)
            h.daemon.digests.scheduler = AsyncIOScheduler(timezone=UTC)  # not started: it only keeps the job
            webhook.fail_next(1, 500)
            before = datetime.now(UTC)
            assert not await h.daemon.digests.send("hook")
            (job,) = h.daemon.digests.scheduler.get_jobs()
            assert job.id == "digest-retry:hook" and job.args[1:] == ("hook",)
            assert timedelta(minutes=4, seconds=59) < job.trigger.run_date - before < timedelta(minutes=5, seconds=5)
            assert await h.daemon.digests.send("hook")            # the retry: sent, and recorded
            assert not await h.daemon.digests.send("hook")

    run(scenario())
    assert len(webhook.bodies) == 2 and webhook.bodies[0]["title"] == webhook.bodies[1]["title"]


def test_a_digest_of_many_accounts_fits_a_chat_message_worst_first():
    from alerter.models import Alert, AlertKind, Level, ScopeState
    from alerter.samples import Sample

    now = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    names = [f"acct-{i:03d}" for i in range(300)]
    latest = [Sample(n, "account", now - timedelta(seconds=30), 0.1 + i / 1000, 1000.0, 100.0, -0.5, Level.OK, False) for i, n in enumerate(names)]
    states = {n: {"account": ScopeState(n, "account", Level.CALL if n == "acct-250" else Level.OK, now - timedelta(hours=2))} for n in names}
    alerts = [Alert(kind=AlertKind.REPEAT, level=Level.CALL, account="acct-250", scope="account", created_at=now - timedelta(minutes=30 * k),
                    margin_ratio=0.75, threshold=0.7) for k in range(40)]
    d = digest.build("hook", "UTC", names, latest, {}, states, {}, alerts, {}, now)
    title, body = digest.render(d, markdown=False)
    assert len(body) <= digest.MAX_BODY
    assert body.startswith("acct-250: margin ratio 35 % · call since 05:00 UTC")   # the worst account first
    assert "… and " in body and "more accounts (alerter status shows them): " in body
    assert "Alerts in the last 24 h (40):" in body and title.endswith("worst: CALL (acct-250) · 40 alerts in 24 h")


def test_digest_days_follow_the_channels_time_zone():
    at = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)
    assert digest.local_day(at, "UTC").isoformat() == "2026-03-28"
    assert digest.local_day(at, "Europe/Berlin").isoformat() == "2026-03-29"
    assert digest.local_day(at, "America/New_York").isoformat() == "2026-03-28"


# ---------------------------------------------------------------- the daemon as a process

POSITION = {"symbol": "BTCUSDT", "side": "long", "size": 2, "entry_price": 60_000, "margin_type": "cross", "leverage": 20}
PROCESS = {"name": "living-run", "prices": {"BTCUSDT": 60_000},
           "accounts": [{"name": "main", "api_key": "main-key", "wallet_balance": 10_000, "positions": [POSITION]}]}


def set_ratio(running, ratio: float) -> None:
    def price() -> float:
        state, lo, hi = running.sim.state, 1_000.0, 60_000.0
        for _ in range(100):
            mid = (lo + hi) / 2
            if state.risk("main-key", {**state.prices(), "BTCUSDT": mid}).cross_margin_ratio > ratio:
                lo = mid
            else:
                hi = mid
        return hi

    running.call(lambda: running.sim.set_prices({"BTCUSDT": price()}))


@pytest.fixture
def daemon_config(tmp_path):
    """Writes the config of a daemon polling the simulator every 0.2 s; yields (write, runs, procs)."""
    procs: list[subprocess.Popen] = []
    with simulator_thread(PROCESS) as running:
        def write(channels, **repeat):
            path = tmp_path / "alerter.toml"
            path.write_text(to_toml({
                "daemon": {"database": str(tmp_path / "alerter.db"), "poll_interval": "0.2s", "price_interval": "0",
                           "request_timeout": "2s", "metrics": "127.0.0.1:0"},
                "repeat": {"warning": "never", "call": "never", "critical": "never", "blind": "never", **repeat},
                "accounts": [{"name": "main", "exchange": "binanceusdm", "api_key": "main-key", "secret": "main-secret",
                              "ccxt": running.sim.ccxt_config()}],
                "channels": channels,
            }))
            path.chmod(0o600)
            return path

        yield running, write, procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start(daemons: DaemonRuns, procs: list) -> subprocess.Popen:
    proc = daemons.start()
    procs.append(proc)
    daemons.wait_ready(proc)
    return proc


def count(receiver, prefix: str) -> int:
    return sum(t.startswith(prefix) for t in titles(receiver))


def test_the_running_daemon_holds_back_repeats_of_an_ack_written_beside_it(tmp_path, daemon_config, webhook):
    running, write, procs = daemon_config
    config = write([{"name": "hook", "url": f"json://{webhook.url}/hook"}], call="0.5s", critical="0.5s")
    set_ratio(running, 0.78)
    daemons = DaemonRuns(config, tmp_path / "logs")
    start(daemons, procs)
    wait_until(lambda: count(webhook, "CALL still active") >= 2, 15, lambda: f"{titles(webhook)} {daemons.tail(1)}")

    out = alerter("ack", "main", "--note", "on it", "--config", str(config))
    assert out.returncode == 0, out.stderr
    assert "acknowledged main · account at CALL" in out.stdout and "the running daemon sends it" in out.stdout
    wait_until(lambda: count(webhook, "CALL acknowledged · main"), 10, lambda: f"{titles(webhook)} {daemons.tail(1)}")
    repeats = count(webhook, "CALL still active")
    time.sleep(2.0)                                              # four repeat intervals
    assert count(webhook, "CALL still active") <= repeats + 1    # one poll may have decided before the ack was written
    port = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", daemons.stderr().read_text()).group(1)
    scraped = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'alerter_acknowledged{account="main",scope="account"} 1.0' in scraped

    set_ratio(running, 0.92)                                     # the escalation breaks through and ends the ack
    wait_until(lambda: count(webhook, "CRITICAL · main") and count(webhook, "CRITICAL still active"), 10,
               lambda: f"{titles(webhook)} {daemons.tail(1)}")
    assert query(tmp_path / "alerter.db", "SELECT count(*) FROM acks") == [(0,)]
    listed = alerter("ack", "--list", "--config", str(config))
    assert listed.stdout.strip() == "no acknowledgements in force"



@pytest.mark.parametrize("args, message", [
    (["ack", "nope"], "error: no account named 'nope' (configured: main)"),
    (["ack", "main", "ETH/USDT long"], "error: main: no scope 'ETH/USDT long' (scopes: account)"),
    (["unack", "main"], "error: main · account is not acknowledged"),
    (["ack", "main", "--for", "soon"], "error: --for: expected a duration like '60s', '2m' or '6h', got 'soon'"),
    (["ack"], "error: name the ACCOUNT to acknowledge (or --list)"),
    (["ack", "main", "--note", "x" * 201], "error: --note: at most 200 characters (it goes into every channel's message), got 201"),
    (["ack", "--list", "main"], "error: --list takes no ACCOUNT, SCOPE, --for or --note"),
    (["ack", "main", "--json"], "error: --json goes with --list"),
])
def test_a_wrong_name_is_one_line_and_exit_2(tmp_path, args, message, capsys):
    """The command's own code path (in-process): one line on stderr, never a traceback."""
    from alerter.cli import main
    from alerter.models import ScopeState
    from alerter.store import Store

    with Store(tmp_path / "alerter.db") as store:
        store.commit_poll("main", {"account": ScopeState("main", "account")}, [], [], {}, datetime.now(UTC))
    config = tmp_path / "c.toml"
    config.write_text(to_toml({"daemon": {"database": str(tmp_path / "alerter.db")},
                               "accounts": [{"name": "main", "exchange": "binanceusdm", "api_key": "k", "secret": "s"}]}))
    assert main([*args, "--config", str(config)]) == 2
    assert capsys.readouterr().err.strip() == message


def test_the_digest_arrives_at_its_time_and_a_restart_does_not_send_it_again(tmp_path, daemon_config, webhook):
    running, write, procs = daemon_config
    set_ratio(running, 0.30)
    hook = {"name": "hook", "url": f"json://{webhook.url}/hook"}
    config = write([hook])
    daemons = DaemonRuns(config, tmp_path / "logs")
    proc = start(daemons, procs)
    wait_until(lambda: query(tmp_path / "alerter.db", "SELECT count(*) FROM samples")[0][0], 10, lambda: daemons.tail(1))
    # a digest two seconds from now, Berlin time, added by a reload (SIGHUP)
    zone = "Europe/Berlin"
    at = (datetime.now(UTC) + timedelta(seconds=2)).astimezone(ZoneInfo(zone)).replace(microsecond=0)
    write([{**hook, "digest": f"{at:%H:%M:%S}", "timezone": zone}])
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "reload: channel hook: digest" in daemons.stderr().read_text(), 10, lambda: daemons.tail(1))
    assert webhook.bodies == [] or datetime.now(UTC) >= at           # not before its time
    wait_until(lambda: webhook.bodies, 10, lambda: daemons.tail(1))
    arrived = datetime.now(UTC)
    assert timedelta(0) <= arrived - at < timedelta(seconds=2), (arrived, at)
    (sent,) = webhook.bodies
    assert sent["title"].startswith(f"alerter daily digest · {at:%Y-%m-%d %H:%M} {zone} · 1 account, all ok · 0 alerts in 24 h")
    assert "**main**: margin ratio 30 % · ok · 24 h: 30 %" in sent["message"] and "last good poll" in sent["message"]

    wait_until(lambda: query(tmp_path / "alerter.db", "SELECT count(*) FROM digests") == [(1,)], 5, lambda: daemons.tail(1))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    start(daemons, procs)  # within the hour after its time, a start runs the digest: it finds today's sent
    wait_until(lambda: "digest for hook: already sent for" in daemons.stderr().read_text(), 10, lambda: daemons.tail(1))
    assert len(webhook.bodies) == 1
