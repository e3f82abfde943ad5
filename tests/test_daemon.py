"""The daemon end to end: the simulator (real ccxt) → daemon → SQLite → apprise → a real
webhook receiver and a real SMTP server, all on loopback. Time is a test clock; prices are
stepped by hand so every alert is exact."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import pytest

from helpers import SCENARIO, T0, Clock, Harness, harness, price_for, run, settings_for, titles  # noqa: F401 (others import them from here)

from alerter.simulator import run_simulator


def test_crash_produces_exactly_the_expected_alerts(tmp_path, webhook, smtp_server):
    async def scenario():
        channels = [
            {"name": "hook", "url": f"json://{webhook.url}/hook"},
            {"name": "mail", "url": smtp_server.url(), "min_level": "critical", "accounts": ["main"]},
        ]
        async with harness(tmp_path, channels) as h:
            sim = h.sim
            await h.step(0.30)               # ok
            await h.step(0.55)               # warning
            await h.step(0.58)               # still warning: no repeat for 6 h
            await h.step(0.78)               # call
            await h.step(0.92)               # critical
            for _ in range(4):
                await h.step(0.92)           # minutes 6..9: nothing
            await h.step(0.93)               # minute 10: 5 min after critical → repeat
            await h.step(0.84)               # 84 % > 85 % − 5: still critical, quiet
            await h.step(0.50)               # quiet de-escalation to warning
            await h.step(0.30)               # resolved
            await h.step(0.30)               # nothing more
            risk = sim.state.risk("main-key")
            await h.step(account="second")   # the other account: ok, silent
            return risk

    risk = run(scenario())
    assert titles(webhook) == [
        "WARNING · main · margin ratio 55 % (warning at 50 %)",
        "CALL · main · margin ratio 78 % (call at 70 %)",
        "CRITICAL · main · margin ratio 92 % (critical at 85 %)",
        "CRITICAL still active · main · margin ratio 93 % (critical at 85 %) since 12:05 UTC",
        "RESOLVED · main · margin ratio 30 % (was CRITICAL)",
    ]
    # the critical-only e-mail channel: the critical alert, its repeat and the resolution
    subjects = [m["subject"] for m in smtp_server.messages]
    assert subjects == titles(webhook)[2:]
    # the numbers in the critical message are the simulator's own
    critical = webhook.bodies[2]["message"]
    assert "Deposit" in critical and "to get back to 40 %" in critical
    assert "BTC/USDT:USDT long" in critical
    body = smtp_server.messages[0].get_body(("plain",)).get_content()
    assert "BTC/USDT:USDT" in body
    # the final recorded sample matches the simulator's account figures
    from alerter.store import Store

    with Store(tmp_path / "alerter.db") as store:
        last = [s for s in store.samples(account="main")][-1]
        assert last.equity == pytest.approx(risk.cross_margin_balance, rel=1e-9)
        assert last.maintenance_margin == pytest.approx(risk.cross_maint_margin, rel=1e-9)
        assert store.pending_count() == 0


def test_accounts_filter_and_min_level_route(tmp_path, webhook, smtp_server):
    async def scenario():
        channels = [
            {"name": "hook", "url": f"json://{webhook.url}/hook", "min_level": "call", "accounts": ["second"]},
            {"name": "mail", "url": smtp_server.url(), "min_level": "warning", "accounts": ["main"]},
        ]
        async with harness(tmp_path, channels) as h:
            await h.step(0.55)
            await h.step(0.80)
            await h.step(0.20)

    run(scenario())
    assert webhook.bodies == []  # only "second" goes there, and it never moved
    assert [m["subject"].split(" · ")[0] for m in smtp_server.messages] == ["WARNING", "CALL", "RESOLVED"]


def test_refusing_channel_gets_its_alerts_later_and_the_other_is_not_delayed(tmp_path, webhook, closed_port, smtp_server):
    async def scenario():
        channels = [
            {"name": "hook", "url": f"json://{webhook.url}/hook"},
            {"name": "mail", "url": smtp_server.url()},
        ]
        async with harness(tmp_path, channels) as h:
            webhook.stop()                   # the webhook refuses connections
            await h.step(0.55)
            await h.step(0.80)
            assert len(smtp_server.messages) == 2 and webhook.bodies == []
            webhook.start()                  # back on the same port
            h.clock.advance(minutes=30)      # past the backoff
            await h.daemon.delivery.deliver_once()

    run(scenario())
    # both alerts arrive in one message, headed by the current state, the superseded one folded
    (folded,) = webhook.bodies
    assert folded["title"] == "CALL · main · margin ratio 80 % (call at 70 %) (earlier: WARNING at 12:01 UTC, not delivered in time)"


def test_restart_mid_scenario_neither_repeats_nor_loses(tmp_path, webhook):
    async def scenario(restart):
        async with run_simulator(SCENARIO) as sim:
            h = Harness(sim, settings_for(sim, tmp_path / ("r" if restart else "s"), [{"name": "hook", "url": f"json://{webhook.url}/hook"}]), Clock())
            try:
                for i, ratio in enumerate([0.3, 0.55, 0.8, 0.92, 0.92, 0.92, 0.92, 0.92, 0.92, 0.6, 0.3]):
                    if restart and i in (2, 4, 7, 10):
                        await h.restart()
                    await h.step(ratio)
            finally:
                await h.close()
        sent = titles(webhook)
        webhook.requests.clear()
        return sent

    (tmp_path / "r").mkdir()
    (tmp_path / "s").mkdir()
    straight = run(scenario(restart=False))
    restarted = run(scenario(restart=True))
    assert restarted == straight
    assert [t.split(" · ")[0] for t in straight] == ["WARNING", "CALL", "CRITICAL", "CRITICAL still active", "RESOLVED"]


def test_credentials_rejected_is_blind_at_once_and_restored(tmp_path, webhook):
    async def scenario():
        async with harness(tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}]) as h:
            sim = h.sim
            await h.step(0.3)
            sim.inject("http401", count=None, api_key="main-key")
            await h.step()
            await h.step()
            sim.clear_faults()
            await h.step(0.3)

    run(scenario())
    assert [t.split(" · ")[0] for t in titles(webhook)] == ["BLIND", "RESTORED"]
    assert "credentials" in webhook.bodies[0]["title"] + webhook.bodies[0]["message"]
    assert "main-secret" not in str(webhook.bodies)


def test_demo_command_shows_every_level():
    out = subprocess.run([sys.executable, "-m", "alerter", "demo", "--speed", "40"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = out.stdout.split("demo over:")[1]
    heads = [line.split("·")[0].strip().split()[-1] for line in summary.splitlines()[1:] if "·" in line]
    for tag in ("WARNING", "CALL", "CRITICAL", "RESOLVED"):
        assert tag in heads, summary
    assert heads.index("WARNING") < heads.index("CALL") < heads.index("CRITICAL") < heads.index("RESOLVED")
    assert "sent" in summary and "pending" not in summary
    # each level of the crash is raised once: the mark-price stream's estimates agree with the
    # polls that confirm them (a hedged pair re-priced with one leg a tick behind flapped here)
    raised = [line.split("·")[0].strip().split()[-1] for line in summary.splitlines() if "· demo ·" in line and "still active" not in line]
    assert raised == ["WARNING", "CALL", "CRITICAL", "RESOLVED"], summary


def test_a_stop_ends_a_task_that_let_the_first_cancel_pass():
    """What hung a demo on a busy machine: a stream task on Python 3.11's wait_for lost the stop's
    cancel (its awaitable completed at that moment) and went on; the stop waited for it forever."""
    from alerter.streams import cancel_all

    async def scenario():
        swallowed = []

        async def stubborn():
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    if swallowed:
                        raise
                    swallowed.append(True)

        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        async with asyncio.timeout(5):
            await cancel_all([task], "test", patience=0.05)
        return task.cancelled(), swallowed

    assert asyncio.run(scenario()) == (True, [True])


def test_no_wait_for_in_the_daemon():
    """asyncio.wait_for loses a cancel on Python 3.11 when its awaitable completes at the same
    moment; asyncio.timeout does not. The daemon must run on 3.11, so it uses timeout only."""
    from pathlib import Path

    import alerter

    users = [str(p) for p in Path(alerter.__file__).parent.rglob("*.py") if "asyncio.wait_for(" in p.read_text()]
    assert users == []


def test_the_daemon_parts_import_in_one_direction():
    """runtime → daemon → streams/digest/delivery → pipeline (and check → pipeline): the parts
    the daemon composes never import it, nor the pipeline the parts that use it (imports under
    TYPE_CHECKING are types only)."""
    import ast
    from pathlib import Path

    import alerter

    parts = ("daemon", "runtime", "check", "streams", "digest", "delivery", "pipeline")
    root = Path(alerter.__file__).parent

    def imports(name: str) -> set[str]:
        tree = ast.parse((root / f"{name}.py").read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                       for stmt in node.body for n in ast.walk(stmt)}
        found = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        return {p for p in parts if f"alerter.{p}" in found}

    graph = {p: imports(p) for p in parts}
    assert graph["pipeline"] == set()
    assert [p for p in parts if "daemon" in graph[p]] == ["runtime"]
    assert "runtime" not in graph["daemon"] | graph["streams"] | graph["digest"] | graph["delivery"]
