"""SIGHUP, other signals and the database lock, against the real daemon (`python -m alerter run`)
polling the simulator through the real ccxt class and delivering to real webhook receivers."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import timedelta

import pytest

from conftest import WebhookReceiver
from helpers import DaemonRuns, query, simulator_thread, to_toml, wait_until

# two identical accounts: one BTC price sets both margin ratios
POSITION = {"symbol": "BTCUSDT", "side": "long", "size": 2, "entry_price": 60_000, "margin_type": "cross", "leverage": 20}
SCENARIO = {
    "name": "reload",
    "prices": {"BTCUSDT": 60_000},
    "accounts": [{"name": name, "api_key": f"{name}-key", "wallet_balance": 10_000, "positions": [POSITION]} for name in ("a", "b")],
}


@pytest.fixture(scope="module")
def running():
    with simulator_thread(SCENARIO) as sim:
        yield sim


def set_ratio(running, ratio: float) -> None:
    """Move BTC so that both accounts' cross margin ratio is `ratio` (bisection on the simulator's
    own formulas, on its own thread)."""
    def price() -> float:
        state, lo, hi = running.sim.state, 1_000.0, 60_000.0
        for _ in range(100):
            mid = (lo + hi) / 2
            if state.risk("a-key", {**state.prices(), "BTCUSDT": mid}).cross_margin_ratio > ratio:
                lo = mid
            else:
                hi = mid
        return hi

    running.call(lambda: running.sim.set_prices({"BTCUSDT": price()}))


def account(running, name: str, **extra) -> dict:
    return {"name": name, "exchange": "binanceusdm", "api_key": f"{name}-key", "secret": f"{name}-secret-value",
            "ccxt": running.sim.ccxt_config(), **extra}


def config(tmp_path, accounts: list[dict], channels: list[dict], **daemon) -> dict:
    return {
        "daemon": {"database": str(tmp_path / "alerter.db"), "poll_interval": "0.3s", "price_interval": "0",
                   "request_timeout": "2s", **daemon},
        "repeat": {"warning": "never", "call": "never", "critical": "never", "blind": "never"},
        "accounts": accounts,
        "channels": channels,
    }


def write(path, data: dict | str) -> None:
    path.write_text(data if isinstance(data, str) else to_toml(data))
    path.chmod(0o600)


def texts(receiver) -> list[str]:
    """Each message as one text (a grouped message lists every headline in its body)."""
    return [f"{b['title']}\n{b['message']}" for b in receiver.bodies if isinstance(b, dict)]


def count(receiver, headline: str) -> int:
    return sum(headline in text for text in texts(receiver))


def log_lines(daemons: DaemonRuns, needle: str) -> list[str]:
    return [line for line in daemons.stderr().read_text(errors="replace").splitlines() if needle in line]


@pytest.fixture
def stopped():
    """Daemons started by a test, killed on the way out whatever happened."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(10)


def test_sighup_applies_accounts_channels_and_thresholds_and_keeps_the_state(tmp_path, running, webhook, stopped):
    other = WebhookReceiver()
    try:
        hook = {"name": "hook", "url": f"json://{webhook.url}/hook"}
        gone = {"name": "other", "url": f"json://{other.url}/other-token"}
        path = tmp_path / "alerter.toml"
        write(path, config(tmp_path, [account(running, "a")], [hook, gone]))
        set_ratio(running, 0.60)  # a: WARNING at the default thresholds (50/70/85 %)
        daemons = DaemonRuns(path, tmp_path / "logs")
        proc = daemons.start()
        stopped.append(proc)
        daemons.wait_ready(proc)
        warning_a = "WARNING · a · margin ratio 60 % (warning at 50 %)"
        wait_until(lambda: count(webhook, warning_a) and count(other, warning_a), 15, lambda: f"{texts(webhook)} {daemons.tail(1)}")

        # b joins (already at 60 %: its WARNING must arrive), a's call threshold drops below its
        # ratio (CALL at once) and its ccxt options change (its source is rebuilt), "other" goes
        a = account(running, "a", thresholds={"call": 0.55}, ccxt={**running.sim.ccxt_config(), "enableRateLimit": False})
        write(path, config(tmp_path, [a, account(running, "b")], [hook]))
        proc.send_signal(signal.SIGHUP)
        wait_until(lambda: count(webhook, "CALL · a · margin ratio 60 % (call at 55 %)") and count(webhook, "WARNING · b · margin ratio 60 %"),
                   15, lambda: f"{texts(webhook)} {daemons.tail(1)}")
        assert proc.poll() is None
        changed = log_lines(daemons, "reload: ")
        assert any(line.endswith("reload: +1 account (b), −1 channel (other), account a: ccxt changed, thresholds of a changed: call 70 %→55 %") for line in changed), changed

        # the state survived: a's WARNING was not announced again, and exactly once in the database
        assert count(webhook, warning_a) == 1
        assert query(tmp_path / "alerter.db", "SELECT level FROM alerts WHERE account = 'a' AND kind = 'raised' ORDER BY id") == [("warning",), ("call",)]
        # the removed channel got nothing decided after the reload
        assert [t.split("\n")[0] for t in texts(other)] == [warning_a]
        assert stop(proc) == 0
        log = daemons.stderr().read_text()
        assert "Traceback" not in log
        for secret in ("a-secret-value", "b-secret-value", "other-token"):
            assert secret not in log
    finally:
        other.stop()


def test_sighup_with_a_broken_config_keeps_the_running_one(tmp_path, running, webhook, stopped):
    hook = {"name": "hook", "url": f"json://{webhook.url}/hook"}
    path = tmp_path / "alerter.toml"
    good = config(tmp_path, [account(running, "a")], [hook])
    write(path, good)
    set_ratio(running, 0.30)
    daemons = DaemonRuns(path, tmp_path / "logs")
    proc = daemons.start()
    stopped.append(proc)
    daemons.wait_ready(proc)
    wait_until(lambda: log_lines(daemons, "a: account 30 % ok"), 15, lambda: daemons.tail(1))

    # two problems the parser finds, then one that only run's start-up check (apprise) finds
    broken = to_toml(good).replace('poll_interval = "0.3s"', 'pol_interval = "0.3s"').replace("[daemon]", '[thresholds]\ncall = "lots"\n\n[daemon]')
    write(path, broken)
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: log_lines(daemons, "still running the previous configuration"), 15, lambda: daemons.tail(1))
    refused = [line.split("reload refused: ")[1] for line in log_lines(daemons, "reload refused: ")]
    assert sorted(refused) == ["daemon.pol_interval: unknown key (did you mean 'poll_interval'?)",
                               "thresholds.call: expected a fraction like 0.7 or a percentage like '70%', got 'lots'"], refused

    write(path, config(tmp_path, [account(running, "a")], [hook, {"name": "bad", "url": "notascheme://host/x"}]))
    proc.send_signal(signal.SIGHUP)
    wait_until(lambda: len(log_lines(daemons, "still running the previous configuration")) == 2, 15, lambda: daemons.tail(1))
    assert [line.split("reload refused: ")[1] for line in log_lines(daemons, "reload refused: ")][2:] == ["channels[1].url: unknown apprise scheme notascheme://"]

    # still polling, with the old configuration: the next alert arrives
    set_ratio(running, 0.60)
    wait_until(lambda: count(webhook, "WARNING · a · margin ratio 60 %"), 15, lambda: f"{texts(webhook)} {daemons.tail(1)}")
    assert not log_lines(daemons, "reload: +") and not log_lines(daemons, "reload: no changes")
    assert stop(proc) == 0
    assert "Traceback" not in daemons.stderr().read_text()


@pytest.mark.parametrize("sig, code, line", [
    (signal.SIGUSR1, 128 + signal.SIGUSR1, f"stopping (SIGUSR1: not a signal alerter acts on; exit status {128 + signal.SIGUSR1})"),
    (signal.SIGTERM, 0, "stopping (SIGTERM)"),
])
def test_a_fatal_signal_is_logged_in_one_line_and_stops_cleanly(tmp_path, stopped, sig, code, line):
    path = tmp_path / "alerter.toml"
    write(path, config(tmp_path, [], []))
    daemons = DaemonRuns(path, tmp_path / "logs")
    proc = daemons.start()
    stopped.append(proc)
    daemons.wait_ready(proc)
    proc.send_signal(sig)
    assert proc.wait(10) == code
    log = daemons.stderr().read_text()
    assert [entry.split(": ", 1)[1] for entry in log.splitlines() if "stopping" in entry] == [line]
    assert "Traceback" not in log


def test_a_second_daemon_on_the_same_database_is_refused(tmp_path, stopped):
    db = tmp_path / "alerter.db"
    path = tmp_path / "alerter.toml"
    write(path, config(tmp_path, [], []))
    daemons = DaemonRuns(path, tmp_path / "logs")
    first = daemons.start()
    stopped.append(first)
    daemons.wait_ready(first)

    second = daemons.start()
    stopped.append(second)
    assert second.wait(30) == 1
    assert daemons.stderr().read_text().splitlines() == [
        f"error: {db}: another alerter daemon is running on this database (PID {first.pid}, lock {db}.lock); "
        "stop it first, or give this one its own [daemon] database"
    ]
    # the readers still work while it runs, and the first daemon goes on
    for command in ("status", "history"):
        out = subprocess.run([sys.executable, "-m", "alerter", command, "--config", str(path)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
    assert first.poll() is None

    # killed without a chance to clean up: the lock goes with the process, the next one starts
    first.kill()
    first.wait()
    third = daemons.start()
    stopped.append(third)
    daemons.wait_ready(third)
    assert stop(third) == 0


def test_reload_rebuilds_changed_sources_closes_removed_ones_and_holds_a_removed_channels_alerts(tmp_path, running, webhook, caplog):
    """In process, the parts the subprocess tests cannot see: which sources are kept, rebuilt or
    closed, and what happens to the pending alerts of a channel that is removed and comes back."""
    import asyncio
    import logging

    from alerter.config import build_settings
    from alerter.runtime import build_daemon

    other = WebhookReceiver()
    hook = {"name": "hook", "url": f"json://{webhook.url}/hook"}
    held = {"name": "other", "url": f"json://{other.url}/other"}
    first = config(tmp_path, [account(running, "a"), account(running, "b")], [hook, held])
    second = config(tmp_path, [account(running, "a", ccxt={**running.sim.ccxt_config(), "enableRateLimit": False})], [hook])

    async def scenario():
        daemon = build_daemon(build_settings(first))
        try:
            await daemon.pipeline.poll_account("a")  # WARNING, recorded for both channels, not yet delivered
            await daemon.pipeline.poll_account("b")
            old = dict(daemon.sources)
            assert await daemon.reload(build_settings(second))
            assert daemon.sources["a"] is not old["a"] and "b" not in daemon.sources
            assert old["a"].exchange.session is None and old["b"].exchange.session is None  # closed
            pending = [d.channel for d in daemon.store.deliveries(status="pending")]
            await daemon.delivery.deliver_once("hook")  # as the daemon's workers: one per configured channel
            assert await daemon.pipeline.poll_account("a") == []  # the new source works; the state was kept
            assert other.bodies == [] and len(webhook.bodies) == 1
            assert await daemon.reload(build_settings(first))  # "other" is back: its alerts go out
            await daemon.delivery.deliver_once("other")
            refused = await daemon.reload(build_settings({**first, "daemon": {**first["daemon"], "database": str(tmp_path / "x.db")}}))
            return pending, refused
        finally:
            await asyncio.gather(*(s.close() for s in daemon.sources.values()))
            daemon.store.close()

    set_ratio(running, 0.60)
    caplog.set_level(logging.INFO, logger="alerter")
    try:
        pending, refused = asyncio.run(scenario())
        assert sorted(pending) == ["hook", "hook", "other", "other"]
        assert [b["title"].split(": ")[0] for b in other.bodies] == ["2 alerts"]  # a's and b's WARNING, grouped
    finally:
        other.stop()
    assert refused is False
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reload")]
    assert messages[:2] == [
        "reload: −1 account (b), −1 channel (other), account a: ccxt changed",
        "reload: 2 alert(s) pending for the removed channel other stay in the outbox: sent if it is configured again within 1d (alert_expiry), else they expire",
    ]
    assert messages[2] == "reload: +1 account (b), +1 channel (other), account a: ccxt changed"
    assert messages[3] == f"reload refused: daemon.database: switching from {tmp_path / 'alerter.db'} to {tmp_path / 'x.db'} needs a restart"


def test_a_reload_with_new_thresholds_rebuilds_the_plan_and_the_next_poll_uses_it(tmp_path, running, webhook):
    """In process: only a's thresholds (and the global repeat) change, so its source is kept, and
    its plan is rebuilt: the next poll decides, records and routes by the new plan."""
    import asyncio

    from alerter.config import build_settings
    from alerter.runtime import build_daemon

    hook = {"name": "hook", "url": f"json://{webhook.url}/hook"}
    first = config(tmp_path, [account(running, "a")], [hook])
    second = {**config(tmp_path, [account(running, "a", thresholds={"call": 0.55})], [hook]), "repeat": {"blind": "2h"}}

    async def scenario():
        daemon = build_daemon(build_settings(first))
        try:
            before = await daemon.pipeline.poll_account("a")
            await daemon.delivery.deliver_once()
            source, plan = daemon.sources["a"], daemon.plans["a"]
            assert await daemon.reload(build_settings(second))
            after = await daemon.pipeline.poll_account("a")
            await daemon.delivery.deliver_once()
            return before, after, plan, daemon.plans["a"], daemon.sources["a"] is source
        finally:
            await asyncio.gather(*(s.close() for s in daemon.sources.values()))
            daemon.store.close()

    set_ratio(running, 0.60)
    before, after, old_plan, new_plan, kept = asyncio.run(scenario())
    assert kept
    assert (old_plan.thresholds.call, new_plan.thresholds.call) == (0.70, 0.55)
    assert (old_plan.repeat.blind, new_plan.repeat.blind) == (None, timedelta(hours=2))
    assert [(a.kind, a.level.label, a.threshold) for a in before] == [("raised", "warning", 0.5)]
    assert [(a.kind, a.level.label, a.threshold) for a in after] == [("raised", "call", 0.55)]
    assert [b["title"] for b in webhook.bodies][-2:] == ["WARNING · a · margin ratio 60 % (warning at 50 %)",
                                                         "CALL · a · margin ratio 60 % (call at 55 %)"]


def test_the_change_summary_names_secrets_but_never_shows_them():
    from alerter.changes import describe_changes
    from alerter.config import build_settings
    from alerter.plan import plans

    def settings(key: str, url: str, **daemon) -> object:
        return build_settings({
            "daemon": {"database": "x.db", **daemon},
            "accounts": [{"name": "a", "exchange": "binanceusdm", "api_key": key, "secret": "s-" + key, "thresholds": {"call": 0.6}}],
            "channels": [{"name": "hook", "url": url}],
        })

    old = settings("old-key-1234", "json://old-host/old-token", poll_interval="60s")
    new = settings("new-key-5678", "json://new-host/new-token", poll_interval="30s", heartbeat_url="https://hb/secret-ping")
    text = ", ".join(describe_changes(old, new, plans(old), plans(new)))
    assert text == ("account a: api_key changed, secret changed, channel hook: url changed, "
                    "daemon: poll_interval 1m→30s, heartbeat_url changed")
    assert describe_changes(old, old, plans(old), plans(old)) == []


def test_systemd_hears_reloading_then_ready_around_a_reload(tmp_path, stopped):
    """With Type=notify, `systemctl reload` waits for READY=1 after RELOADING=1 (sd_notify(3))."""
    import socket
    import time

    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)
    path = tmp_path / "alerter.toml"
    write(path, config(tmp_path, [], []))
    daemons = DaemonRuns(path, tmp_path / "logs", env={"NOTIFY_SOCKET": address})
    try:
        proc = daemons.start()
        stopped.append(proc)
        assert sock.recv(256) == b"READY=1"
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        proc.send_signal(signal.SIGHUP)
        reloading = sock.recv(256).decode().split("\n")
        assert sock.recv(256) == b"READY=1"
        assert stop(proc) == 0
    finally:
        sock.close()
    assert reloading[0] == "RELOADING=1"
    usec = int(reloading[1].removeprefix("MONOTONIC_USEC="))
    assert before <= usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert log_lines(daemons, "reload: no changes")


def test_a_reload_that_changes_the_wallet_address_watches_the_new_wallet(tmp_path):
    """In process: a Hyperliquid account is read by its wallet address alone, so a new address is
    a new connection: after the reload, the poll asks for (and records) the new wallet's account.
    The replay serves each wallet its own real recording: the old one an answer Hyperliquid no
    longer gives (refused: the poll fails), the new one today's (three scopes)."""
    import asyncio
    import json
    from pathlib import Path

    from aiohttp import web

    from alerter.config import build_settings
    from alerter.runtime import build_daemon
    from alerter.simulator.replay import Contract, Replay

    real = Path(__file__).parent / "fixtures" / "real" / "hyperliquid"
    old, new = "0x" + "1" * 40, "0x" + "2" * 40
    answers = {old: (real / "cross-clearinghouseState.json").read_bytes(), new: (real / "cross-isolated-clearinghouseState.json").read_bytes()}
    coins = ("BTC", "ETH", "SOL", "LTC", "LDO", "XRP", "WIF", "SAGA", "MOODENG", "PURR", "HYPE", "VIRTUAL", "MORPHO", "IP", "MON", "MET",
             "ATOM", "DYDX", "APE", "OP", "ARB", "MATIC", "GMX", "AVAX")
    asked: list[str] = []

    class ByWallet(Replay):
        """The replay, answering clearinghouseState with the asking wallet's recording (every
        Hyperliquid call is a POST /info whose body's "type" names it)."""

        async def handle(self, request: web.Request) -> web.Response:
            data = json.loads(await request.read())
            if data["type"] == "clearinghouseState":
                asked.append(data["user"])
                return web.Response(body=answers[data["user"]], content_type="application/json")
            return web.Response(body=self.routes[f"/info#{data['type']}"], content_type="application/json")

    def settings(server: Replay, wallet: str):
        account = {"name": "hl", "exchange": "hyperliquid", "wallet_address": wallet, "ccxt": server.ccxt_config()}
        return build_settings(config(tmp_path, [account], []))

    async def scenario():
        server = ByWallet("hyperliquid", {}, [Contract(c, c, "USDC", "USDC") for c in coins])
        await server.start()
        daemon = build_daemon(settings(server, old))
        try:
            await daemon.pipeline.poll_account("hl")
            before = set(daemon.store.load_states("hl"))
            assert await daemon.reload(settings(server, new))
            await daemon.pipeline.poll_account("hl")
            return before, set(daemon.store.load_states("hl")), daemon.sources["hl"].exchange.walletAddress
        finally:
            await asyncio.gather(*(s.close() for s in daemon.sources.values()))
            daemon.store.close()
            await server.stop()

    before, after, watched = asyncio.run(scenario())
    assert asked == [old, new] and watched == new
    assert "isolated:MON/USDC:USDC:short" not in before
    assert after >= {"account", "isolated:MON/USDC:USDC:short", "isolated:MET/USDC:USDC:short"}
