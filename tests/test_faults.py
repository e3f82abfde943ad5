"""Faults on loopback: the exchange misbehaves, the database fails, the clock jumps — the
daemon keeps its one job: the user hears about danger, once, and about being blind."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from helpers import SCENARIO, Clock, Harness, harness, price_for, run, settings_for, titles

from alerter.simulator import run_simulator
from alerter.sources import RetryPolicy


def heads(webhook):
    return [t.split(" · ")[0] for t in titles(webhook)]


@pytest.mark.parametrize("kind, seconds", [("http500", None), ("http429", 1), ("html502", None), ("malformed", None), ("hang", 5), ("delay", 5)])
def test_exchange_fault_goes_blind_after_three_and_restores_others_unaffected(tmp_path, webhook, kind, seconds):
    async def scenario():
        async with run_simulator(SCENARIO) as sim:
            settings = settings_for(sim, tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}], request_timeout="1s")
            h = Harness(sim, settings, Clock())
            for source in h.daemon.sources.values():
                # keep it fast: a timed-out request is not tried again within the poll
                source.retry = RetryPolicy(attempts=1 if kind in ("hang", "delay") else 2, base_delay_s=0.01, max_delay_s=0.05, budget_s=3)
            try:
                await h.step(0.3)
                sim.inject(kind, count=None, seconds=seconds, api_key="main-key")
                for _ in range(4):
                    await h.step()
                    # the other account still polls fine while "main" fails
                    assert await h.step(account="second", minutes=0) == []
                sim.clear_faults()
                await h.step(0.3)
                return h.daemon.store.load_states("main")["account"]
            finally:
                await h.close()

    state = run(scenario())
    assert heads(webhook) == ["BLIND", "RESTORED"]
    assert "no data for 3 polls" in titles(webhook)[0]
    assert state.failures == 0 and not state.blind


def test_disk_full_sends_alerts_directly_and_does_not_repeat_them(tmp_path, webhook):
    async def scenario():
        async with harness(tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}]) as h:
            await h.step(0.3)
            # the disk is full: every write of the poll's transaction fails as SQLite reports it
            h.daemon.store.db.execute("CREATE TRIGGER full BEFORE INSERT ON scope_state "
                                      "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
            await h.step(0.8)   # call: must still reach the user, with a database notice
            await h.step(0.8)   # same level: no repeat, no second notice
            h.daemon.store.db.execute("DROP TRIGGER full")  # space again
            await h.step(0.8)   # recorded now, still no duplicate
            await h.step(0.3)   # resolved, through the outbox as usual
            return h.daemon.store.load_states("main")["account"]

    state = run(scenario())
    first = webhook.bodies[0]
    assert first["title"].startswith("2 alerts")
    assert "database failing" in first["message"] and "CALL" in first["message"]
    assert heads(webhook)[1:] == ["RESOLVED"]
    assert state.level.label == "ok"


def test_corrupt_database_at_start_is_one_line_and_announced(tmp_path, webhook):
    db = tmp_path / "alerter.db"
    db.write_bytes(b"this is not a database" * 100)
    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\ndatabase = "{db}"\n[[channels]]\nname = "hook"\nurl = "json://{webhook.url}/x"\n')
    out = subprocess.run([sys.executable, "-m", "alerter", "run", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == f"error: {db}: cannot open: not a SQLite database (corrupt, or some other file)"
    assert "Traceback" not in out.stderr
    assert heads(webhook) == ["BLIND"] and "cannot start" in titles(webhook)[0]


def test_journald_lines_carry_priorities_and_no_timestamps(tmp_path):
    code = ("import logging; from alerter.logs import setup_logging; setup_logging('info', ['hunter2-secret']);"
            "logging.getLogger('alerter.x').warning('key hunter2-secret\\nsecond line'); logging.getLogger('alerter.y').info('fine')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "JOURNAL_STREAM": "8:1"}, timeout=30)
    assert out.stderr.splitlines() == ["<4>alerter.x: key *** ⏎ second line", "<6>alerter.y: fine"]


def test_smtp_down_is_retried_until_it_comes_back_and_the_webhook_is_not_delayed(tmp_path, webhook, closed_port):
    from conftest import _Collector, _PortZeroController

    collector = _Collector()

    async def scenario():
        mail = f"mailto://127.0.0.1:{closed_port}?from=alerter@example.com&to=trader@example.com"
        channels = [{"name": "hook", "url": f"json://{webhook.url}/hook"}, {"name": "mail", "url": mail}]
        async with harness(tmp_path, channels) as h:
            await h.step(0.8)                       # CALL: the webhook gets it, the mail server is down
            assert heads(webhook) == ["CALL"] and collector.messages == []
            failed = h.daemon.store.deliveries(channel="mail")
            assert [(d.status, d.attempts) for d in failed] == [("pending", 1)] and failed[0].last_error
            controller = _PortZeroController(collector, hostname="127.0.0.1", port=closed_port)
            controller.start()                      # the mail server comes back
            try:
                h.clock.advance(minutes=30)
                await h.daemon.delivery.deliver_once()
            finally:
                controller.stop()
            return h.daemon.store.deliveries(channel="mail")

    deliveries = run(scenario())
    assert [d.status for d in deliveries] == ["sent"]
    assert [m["subject"].split(" · ")[0] for m in collector.messages] == ["CALL"]
    assert heads(webhook) == ["CALL"]  # not sent twice to the channel that worked


def test_systemd_ready_watchdog_and_stopping(tmp_path):
    """The daemon speaks systemd's notify protocol to a real datagram socket."""
    import signal
    import socket
    import time

    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(10)
    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\ndatabase = "{tmp_path / "a.db"}"\n')
    env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
    process = subprocess.Popen([sys.executable, "-m", "alerter", "run", "--config", str(config)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    received = []
    try:
        while received.count("WATCHDOG=1") < 2:
            received.append(sock.recv(256).decode())
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        received.append(sock.recv(256).decode())
        assert process.wait(10) == 0
        assert time.monotonic() - started < 5
    finally:
        process.kill()
        sock.close()
    assert received[0] == "READY=1"
    assert received[-1] == "STOPPING=1"


def test_watchdog_is_fed_only_while_the_scheduler_and_delivery_loop_are_alive():
    from datetime import timedelta
    from types import SimpleNamespace

    from alerter.config import build_settings
    from alerter.daemon import Daemon

    clock = Clock()
    daemon = Daemon(build_settings({}), store=None, notifier=None, sources={}, clock=clock)
    scheduler = SimpleNamespace(running=True)
    assert daemon.alive(scheduler, clock.now)
    assert not daemon.alive(scheduler, clock.now + timedelta(seconds=31))  # delivery loop hung
    scheduler.running = False
    assert not daemon.alive(scheduler, clock.now)


def test_price_checks_never_restore_a_blind_account(tmp_path, webhook):
    """Between failing full polls, re-pricing the last snapshot would look like data flowing
    again: a failed full poll stops the estimates until a full poll succeeds."""
    async def scenario():
        async with harness(tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}]) as h:
            sim = h.sim
            await h.step(0.3)
            sim.inject("http401", count=None, api_key="main-key")
            for _ in range(3):
                await h.step()
                assert await h.daemon.pipeline.check_prices(["main"]) == 0
                await h.daemon.delivery.deliver_once()
            sim.clear_faults()
            await h.step()
            assert await h.daemon.pipeline.check_prices(["main"]) == 1
            await h.daemon.delivery.deliver_once()

    run(scenario())
    assert heads(webhook) == ["BLIND", "RESTORED"]


def test_a_slow_channel_never_holds_up_another_channels_next_alert(tmp_path, webhook):
    """apprise spaces e-mails 5.5 s apart and a dead server takes its timeout: the fast channel's
    next alert must not wait for the slow channel's round to end."""
    import time

    from conftest import WebhookReceiver

    from alerter.pipeline import utcnow

    slow = WebhookReceiver()
    slow.delay = 3.0

    async def wait_for(predicate, seconds):
        deadline = time.monotonic() + seconds
        while not predicate() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return predicate()

    async def scenario():
        async with run_simulator(SCENARIO) as sim:
            channels = [{"name": "fast", "url": f"json://{webhook.url}/hook"}, {"name": "slow", "url": f"json://{slow.url}/hook"}]
            h = Harness(sim, settings_for(sim, tmp_path, channels), Clock())
            h.daemon.clock = utcnow
            workers = asyncio.create_task(h.daemon.delivery.run(idle=0.2))
            try:
                await asyncio.sleep(0.1)
                sim.set_prices({"BTCUSDT": price_for(sim, 0.55)})
                await h.daemon.pipeline.poll_account("main")           # WARNING → both channels, by the workers
                assert await wait_for(lambda: len(webhook.bodies) == 1, 2)
                await asyncio.sleep(0.3)                      # the slow channel is mid-send
                started = time.monotonic()
                sim.set_prices({"BTCUSDT": price_for(sim, 0.80)})
                await h.daemon.pipeline.poll_account("main")           # CALL
                assert await wait_for(lambda: len(webhook.bodies) == 2, 2.5)
                return time.monotonic() - started
            finally:
                h.daemon.stop()
                await asyncio.wait_for(workers, 15)
                await h.close()

    try:
        elapsed = run(scenario())
    finally:
        slow.stop()
    assert heads(webhook) == ["WARNING", "CALL"]
    assert elapsed < 1.5, f"the fast channel waited {elapsed:.1f} s for the slow one"


def test_dns_failure_is_retried_and_the_other_channel_is_not_affected(tmp_path, webhook, monkeypatch):
    """A channel whose host does not resolve. The only mock in these tests: the resolver, since
    no DNS may be asked from here — getaddrinfo fails for that one name, as a resolver would."""
    import socket

    real = socket.getaddrinfo

    def resolver(host, *args, **kwargs):
        if host == "hooks.alerter-test.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)

    async def scenario():
        channels = [{"name": "hook", "url": f"json://{webhook.url}/hook"},
                    {"name": "unresolvable", "url": "json://hooks.alerter-test.invalid/hook"}]
        async with harness(tmp_path, channels) as h:
            await h.step(0.8)
            first = h.daemon.store.deliveries(channel="unresolvable")
            h.clock.advance(minutes=1)
            await h.daemon.delivery.deliver_once()  # retried after its backoff, fails again
            return first, h.daemon.store.deliveries(channel="unresolvable")

    first, later = run(scenario())
    assert heads(webhook) == ["CALL"]
    assert [(d.status, d.attempts) for d in first] == [("pending", 1)]
    assert [(d.status, d.attempts) for d in later] == [("pending", 2)]
    assert later[0].last_error
