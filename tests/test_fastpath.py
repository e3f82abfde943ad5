"""The mark-price fast path and concurrency: an alert from a re-priced estimate, confirmed by the
next full poll without a duplicate; one hanging account never delays another's alert."""

from __future__ import annotations

import asyncio
import time

import pytest

from pydantic import SecretStr

from helpers import SCENARIO, Clock, Harness, harness, price_for, run, settings_for, titles

from alerter.pipeline import utcnow
from alerter.simulator import run_simulator


def test_estimate_alerts_first_and_the_full_poll_confirms_without_duplicate(tmp_path, webhook):
    async def scenario():
        async with harness(tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}]) as h:
            sim = h.sim
            await h.step(0.30)                                   # full polls: positions known
            await h.step(account="second", minutes=0)
            before = sim.request_counts()
            sim.set_prices({"BTCUSDT": price_for(sim, 0.78)})    # the market moves
            h.clock.advance(seconds=5)
            assert await h.daemon.pipeline.check_prices(["main", "second"]) == 2
            await h.daemon.delivery.deliver_once()
            estimated = list(titles(webhook))
            requests = {path: n - before.get(key, 0) for key, n in sim.request_counts().items() for path in [key[1]] if n > before.get(key, 0)}
            await h.step(minutes=1)                              # the full poll confirms: quiet
            return estimated, requests, sim.state.risk("main-key").cross_margin_ratio

    estimated, requests, ratio = run(scenario())
    assert estimated == [f"CALL · main · margin ratio {round(ratio * 100)} % (call at 70 %) (estimated)"]
    assert titles(webhook) == estimated  # confirmed by the full poll: no second CALL
    # one public mark-price request served both accounts; no private request
    assert requests == {"/fapi/v1/premiumIndex": 1}


def test_marks_older_than_the_last_estimates_are_dropped(tmp_path, webhook):
    """A REST price check asked for just before a stream tick arrived, answered just after it:
    its marks are the market before the move. Taken last, they would announce a RESOLVED that is
    not true (and the CALL again at the next tick)."""
    async def scenario():
        async with harness(tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}]) as h:
            sim, loop = h.sim, asyncio.get_running_loop()
            await h.step(0.30)
            source = h.daemon.sources["main"]
            symbols = sorted({p.symbol for p in h.daemon.pipeline.confirmed["main"][1].positions})
            stale_at = loop.time()
            stale = await source.fetch_marks(symbols)                # asked for before the move
            sim.set_prices({"BTCUSDT": price_for(sim, 0.78)})
            tick_at = loop.time()
            tick = await source.fetch_marks(symbols)                 # the stream's tick after it
            assert await h.daemon.pipeline.reprice_from(["main"], tick, tick_at) == 1
            assert await h.daemon.pipeline.reprice_from(["main"], stale, stale_at) == 0  # arrives last, is older
            await h.daemon.delivery.deliver_once()
            return sim.state.risk("main-key").cross_margin_ratio

    ratio = run(scenario())
    assert titles(webhook) == [f"CALL · main · margin ratio {round(ratio * 100)} % (call at 70 %) (estimated)"]


def test_marks_older_than_the_last_full_poll_are_dropped(tmp_path, webhook):
    """A price check asked for before a full poll started and answered after it: the poll's
    figures are the newer; re-pricing its positions at the older marks would read a RESOLVED."""
    async def scenario():
        async with harness(tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}]) as h:
            loop = asyncio.get_running_loop()
            await h.step(0.30)
            symbols = sorted({p.symbol for p in h.daemon.pipeline.confirmed["main"][1].positions})
            stale_at = loop.time()
            stale = await h.daemon.sources["main"].fetch_marks(symbols)  # asked for before the move and the poll
            await h.step(0.78)                                          # the full poll sees the CALL
            assert await h.daemon.pipeline.reprice_from(["main"], stale, stale_at) == 0
            await h.daemon.delivery.deliver_once()
            return h.sim.state.risk("main-key").cross_margin_ratio

    ratio = run(scenario())
    assert titles(webhook) == [f"CALL · main · margin ratio {round(ratio * 100)} % (call at 70 %)"]


def test_estimate_uses_the_same_numbers_as_a_full_poll(tmp_path, webhook):
    async def scenario():
        async with harness(tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}]) as h:
            sim = h.sim
            await h.step(0.30)
            sim.set_prices({"BTCUSDT": price_for(sim, 0.60)})
            await h.daemon.pipeline.check_prices(["main"])
            est = h.daemon.store.samples(account="main")[-1]
            await h.step(minutes=1)
            full = h.daemon.store.samples(account="main")[-1]
            return est, full

    est, full = run(scenario())
    assert est.estimated and not full.estimated
    assert abs(est.margin_ratio - full.margin_ratio) < 1e-9
    assert abs(est.equity - full.equity) < 1e-6


def test_a_hanging_account_does_not_delay_another_accounts_alert(tmp_path, webhook):
    scenario_data = {
        **SCENARIO,
        "accounts": SCENARIO["accounts"] + [{"name": "slow", "api_key": "slow-key", "wallet_balance": 10_000, "positions": []}],
    }

    async def scenario():
        async with run_simulator(scenario_data) as sim:
            settings = settings_for(sim, tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}],
                                    poll_interval="0.5s", price_interval="off", request_timeout="30s")
            slow = settings.accounts[0].model_copy(update={"name": "slow", "api_key": SecretStr("slow-key")})
            settings.accounts.append(slow)
            h = Harness(sim, settings, Clock())
            h.daemon.clock = utcnow  # the scheduler runs in real time here
            sim.inject("delay", count=None, seconds=30, api_key="slow-key")
            sim.set_prices({"BTCUSDT": price_for(sim, 0.78)})
            started = time.monotonic()
            runner = asyncio.create_task(h.daemon.run())
            try:
                while not webhook.bodies and time.monotonic() - started < 15:
                    await asyncio.sleep(0.05)
                return time.monotonic() - started
            finally:
                h.daemon.stop()
                await asyncio.wait_for(runner, 10)

    elapsed = run(scenario())
    assert titles(webhook)[:1] == ["CALL · main · margin ratio 78 % (call at 70 %)"]
    assert elapsed < 5, f"main's alert took {elapsed:.1f} s while 'slow' hung"


def test_running_daemon_serves_metrics_and_sends_heartbeats(tmp_path, webhook):
    from aiohttp import ClientSession, web
    from prometheus_client.parser import text_string_to_metric_families

    beats = []

    async def scenario():
        async def beat(request):
            beats.append(request.path)
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/ping/{token}", beat)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        async with run_simulator(SCENARIO) as sim:
            settings = settings_for(sim, tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}],
                                    poll_interval="0.3s", price_interval="off", metrics="127.0.0.1:0",
                                    heartbeat_url=f"http://127.0.0.1:{port}/ping/HB-TOKEN")
            h = Harness(sim, settings, Clock())
            h.daemon.clock = utcnow
            sim.set_prices({"BTCUSDT": price_for(sim, 0.78)})
            task = asyncio.create_task(h.daemon.run())
            try:
                for _ in range(200):
                    await asyncio.sleep(0.05)
                    if len(beats) >= 2 and h.daemon.metrics_server is not None:
                        break
                async with ClientSession() as session:
                    async with session.get(h.daemon.metrics_server.url) as response:
                        text = await response.text()
                return text, sim.state.risk("main-key").cross_margin_ratio
            finally:
                h.daemon.stop()
                await asyncio.wait_for(task, 10)
                await runner.cleanup()

    text, ratio = run(scenario())
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("alerter_margin_ratio", (("account", "main"), ("scope", "account")))] == pytest.approx(ratio, rel=1e-9)
    assert samples[("alerter_level", (("account", "main"), ("scope", "account")))] == 2  # call
    assert samples[("alerter_last_poll_success_timestamp_seconds", (("account", "second"),))] > time.time() - 60
    assert samples[("alerter_deliveries_total", (("channel", "hook"), ("outcome", "sent")))] >= 1
    assert len(beats) >= 2 and beats[0] == "/ping/HB-TOKEN"
    # the first heartbeat was answered (and counted) before the second was sent
    assert samples[("alerter_heartbeats_total", (("outcome", "sent"),))] >= 1
    assert samples[("alerter_last_heartbeat_success_timestamp_seconds", ())] > time.time() - 60


def test_accounts_on_one_exchange_share_one_markets_load(tmp_path):
    async def scenario():
        async with harness(tmp_path, []) as h:
            sim = h.sim
            sim.inject("malformed", count=1, path="exchangeInfo")  # a cut answer is not "no markets" for a day
            assert [a.kind for a in await h.step(account="main")] == []
            assert h.daemon.store.load_states("main")["account"].failures == 1
            await asyncio.gather(h.daemon.pipeline.poll_account("main"), h.daemon.pipeline.poll_account("second"))
            counts = sim.request_counts()
            states = {n: h.daemon.store.load_states(n)["account"].failures for n in ("main", "second")}
            return sum(n for (_, path), n in counts.items() if path.endswith("exchangeInfo")), states

    loads, failures = run(scenario())
    assert loads == 2  # the malformed one, then one load for both accounts
    assert failures == {"main": 0, "second": 0}
