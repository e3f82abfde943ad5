"""Stream mode end to end: the simulator's Binance websockets → the real ccxt.pro class → the real
daemon (scheduler, SQLite, apprise) → a loopback webhook. Mark prices are pushed every 0.1 s and
a stream silent for 0.8 s counts as stalled (short enough for a test of a few seconds, long
enough that a busy CI machine starving the loop for a moment is no stall), so each test runs in
a few seconds."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from helpers import SCENARIO, Clock, Harness, price_for, run, settings_for, titles, until

from alerter import display
from alerter.config import ConfigError, build_settings
from alerter.pipeline import utcnow
from alerter.metrics import METRICS
from alerter.simulator import run_simulator
from alerter.simulator.market import Position
from alerter.sources.binanceusdm import binance_margin_call
from alerter.streams import backoff

CADENCE = 0.1
STREAM_TIMEOUT = "0.8s"


@asynccontextmanager
async def streaming(tmp_path, webhook, *, before=None, **daemon):
    """The simulator pushing every 0.1 s and a running daemon with streams on (full polls every
    60 s unless told), its first full polls done; `before(sim)` runs before the daemon starts."""
    options = {"poll_interval": "60s", "price_interval": "0.5s", "stream_timeout": STREAM_TIMEOUT, **daemon}
    async with run_simulator(SCENARIO, mark_cadence=CADENCE) as sim:
        if before is not None:
            await before(sim)
        h = Harness(sim, settings_for(sim, tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}], **options), Clock())
        h.daemon.clock = utcnow  # the scheduler and the streams run in real time
        runner = asyncio.create_task(h.daemon.run())
        try:
            await until(lambda: {"main", "second"} <= h.daemon.pipeline.confirmed.keys(), 10)
            yield sim, h.daemon
        finally:
            h.daemon.stop()
            await asyncio.wait_for(runner, 10)



def up(kind: str = "prices", account: str = "") -> float:
    return METRICS.stream_up.labels("binanceusdm", kind, account)._value.get()


def public_rest(sim) -> int:
    return sum(n for (key, path), n in sim.request_counts().items() if key is None and path.endswith("premiumIndex"))


# ---------------------------------------------------------------- the simulator, to real ccxt.pro

def test_simulator_speaks_binance_websockets_to_ccxt_pro():
    import aiohttp
    import ccxt.pro

    async def scenario():
        async with run_simulator(SCENARIO, mark_cadence=CADENCE) as sim:
            public = ccxt.pro.binanceusdm(sim.ccxt_config())
            private = ccxt.pro.binanceusdm({"apiKey": "main-key", "secret": "x", **sim.ccxt_config(),
                                            "options": {**sim.ccxt_config()["options"], "watchBalance": {"fetchBalanceSnapshot": False},
                                                        "watchPositions": {"fetchPositionsSnapshot": False}}})
            raw = []
            handle = private.handle_message
            private.handle_message = lambda client, message: (raw.append(message), handle(client, message))[1]
            try:
                sim.set_prices({"ETHUSDT": 2_500})
                marks = await public.watch_mark_prices(["ETH/USDT:USDT"])
                watching = asyncio.ensure_future(private.watch_balance())
                await until(lambda: any(c.isConnected for u, c in private.clients.items() if "listenKey" in u), 5)
                sim.set_account("main-key", wallet_balance=12_000)
                balance = await asyncio.wait_for(watching, 5)
                call = await sim.margin_call("main-key")
                await until(lambda: any(m.get("e") == "MARGIN_CALL" for m in raw), 5)
                async with aiohttp.ClientSession() as session:  # a combined stream, as Binance wraps it
                    async with session.ws_connect(sim.url.replace("http", "ws") + "/stream?streams=btcusdt@markPrice@1s") as ws:
                        combined = json.loads((await ws.receive(timeout=5)).data)
                    await sim.ws_fault("refuse", "public")
                    with pytest.raises(aiohttp.WSServerHandshakeError):
                        await session.ws_connect(sim.url.replace("http", "ws") + "/market/ws/0")
                return marks, balance, call, combined, [m.get("e") for m in raw], sim.request_counts()
            finally:
                await public.close()
                await private.close()

    marks, balance, call, combined, events, counts = run(scenario())
    assert marks["ETH/USDT:USDT"]["markPrice"] == 2_500
    assert balance["USDT"]["total"] == 12_000  # ACCOUNT_UPDATE, reason DEPOSIT, parsed by ccxt.pro
    assert events == ["ACCOUNT_UPDATE", "MARGIN_CALL"]
    assert call["e"] == "MARGIN_CALL" and call["p"][0]["s"] == "BTCUSDT" and call["p"][0]["mt"] == "CROSSED" and "cw" in call
    assert combined["stream"] == "btcusdt@markPrice@1s" and combined["data"]["e"] == "markPriceUpdate"
    assert counts[("main-key", "/fapi/v1/listenKey")] == 1  # the listen key; websockets are not REST requests
    assert not [path for (_, path) in counts if "ws" in path]


# ---------------------------------------------------------------- the daemon

def test_price_step_alerted_from_the_stream_and_confirmed_by_the_poll_without_duplicate(tmp_path, webhook):
    async def scenario():
        async with streaming(tmp_path, webhook) as (sim, daemon):
            await until(lambda: up() == 1, 5)
            await until(lambda: not daemon.jobs, 5)  # a REST price check asked for before the stream was up
            sim.reset_counts()
            sim.set_prices({"BTCUSDT": price_for(sim, 0.78)})
            latency = await until(lambda: webhook.bodies, 5)
            rest = public_rest(sim)
            await daemon.pipeline.poll_account("main")  # the full poll that confirms the estimate
            await asyncio.sleep(0.3)  # more stream updates at the same price: nothing new either
            return latency, rest, sim.state.risk("main-key").cross_margin_ratio

    latency, rest, ratio = run(scenario())
    assert titles(webhook) == [f"CALL · main · margin ratio {round(ratio * 100)} % (call at 70 %) (estimated)"]  # once
    assert latency < 1.0
    assert rest == 0  # no REST mark price while the stream is up


def test_position_change_alerted_from_the_stream_before_the_next_poll(tmp_path, webhook):
    async def scenario():
        async with streaming(tmp_path, webhook) as (sim, daemon):
            await until(lambda: up("account", "second") == 1, 5)
            # "second" opens a large BTC position: its ratio jumps from 0.4 % to critical
            sim.set_account("second-key", positions=[*sim.state.accounts["second-key"].positions,
                                                     Position("BTCUSDT", 80, 60_000, leverage=125)])
            latency = await until(lambda: webhook.bodies, 5)
            return latency, sim.state.risk("second-key").cross_margin_ratio

    latency, ratio = run(scenario())
    assert ratio > 0.85
    assert titles(webhook) == [f"CRITICAL · second · margin ratio {display.ratio(ratio)} (critical at 85 %)"]  # a full poll's figures
    assert latency < 2.0  # the next scheduled poll is a minute away


def test_exchange_margin_call_is_forwarded_once_and_polls_at_once(tmp_path, webhook):
    async def scenario():
        async with streaming(tmp_path, webhook) as (sim, daemon):
            await until(lambda: up("account", "main") == 1, 5)
            polled = daemon.pipeline.confirmed["main"][0]
            call = await sim.margin_call("main-key")
            latency = await until(lambda: webhook.bodies, 5)
            await until(lambda: daemon.pipeline.confirmed["main"][0] > polled, 5)
            await sim.margin_call("main-key")  # Binance repeats it: not another message before the call repeat
            await until(lambda: daemon.pipeline.confirmed["main"][0] > polled + timedelta(seconds=0.01), 5)
            await asyncio.sleep(0.3)
            return latency, call

    latency, call = run(scenario())
    maint = float(call["p"][0]["mm"])
    assert titles(webhook) == [f"EXCHANGE · main · Binance margin call: BTCUSDT cross, maint {maint:,.2f}"]
    assert "Pushed by Binance at" in webhook.bodies[0]["message"]
    assert latency < 1.0


def test_account_stream_shares_the_polls_instance_and_reconnects_on_it(tmp_path, webhook, caplog):
    """The private stream runs on the instance the account's polls use (one session, one TLS
    context, one rate limiter): a dropped connection comes back with the same listen key, the
    exchange's expiry event makes the next connection ask for a new one, events after each still
    poll at once, and stopping leaves no session open."""
    caplog.set_level(logging.WARNING)

    def listen_key_requests(sim) -> int:
        return sim.request_counts().get(("main-key", "/fapi/v1/listenKey"), 0)

    async def reconnect(sim, daemon) -> None:
        await sim.ws_fault("drop", "private")
        await until(lambda: up("account", "main") == 0, 2)
        polled = daemon.pipeline.confirmed["main"][0]
        await until(lambda: up("account", "main") == 1, 5)
        await until(lambda: daemon.pipeline.confirmed["main"][0] > polled, 5)  # the catch-up poll for events missed meanwhile

    async def event_polls(sim, daemon, wallet: float) -> float:
        polled = daemon.pipeline.confirmed["main"][0]
        sim.set_account("main-key", wallet_balance=wallet)  # ACCOUNT_UPDATE
        return await until(lambda: daemon.pipeline.confirmed["main"][0] > polled, 5)

    async def scenario():
        async with streaming(tmp_path, webhook) as (sim, daemon):
            await until(lambda: up("account", "main") == 1, 5)
            exchange = daemon.sources["main"].exchange
            shared = [url for url in exchange.clients if "listenKey=" in url]
            keys = [listen_key_requests(sim)]
            await reconnect(sim, daemon)
            keys.append(listen_key_requests(sim))
            latencies = [await event_polls(sim, daemon, 15_000)]
            (key,) = [k for k, owner in sim.ws.listen_keys.items() if owner == "main-key"]
            await sim.ws.push_account("main-key", {"e": "listenKeyExpired", "E": 1, "listenKey": key})
            await until(lambda: not any(isinstance(b, dict) and b.get("listenKey") for b in exchange.options.values()), 2)
            sim.ws.end_listen_key("main-key")  # expired at the exchange: the old key is refused from now on
            await reconnect(sim, daemon)
            keys.append(listen_key_requests(sim))
            latencies.append(await event_polls(sim, daemon, 16_000))
            return shared, keys, latencies, exchange

    shared, keys, latencies, exchange = run(scenario())
    assert shared  # the account's websocket was the source's own instance's
    assert keys == [1, 1, 2]  # reused after a drop; asked again after the exchange expired it
    assert all(latency < 1.0 for latency in latencies)
    assert exchange.session is None and not exchange.clients  # closed with its source
    import gc

    gc.collect()
    leaks = [r.getMessage() for r in caplog.records if "nclosed" in r.getMessage() or "release all resources" in r.getMessage()]
    assert leaks == []


def test_streams_turned_off_and_on_by_reload_rebuild_the_accounts_sources(tmp_path, webhook):
    """A streaming account's source is ccxt.pro's class (its stream opens on it); turned off by
    a reload, the account gets a plain REST source and no socket, and back on, a streaming one."""
    def settings(streams: bool):
        return settings_for(sim, tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}], poll_interval="60s",
                            price_interval="0.5s", stream_timeout=STREAM_TIMEOUT, streams=streams)

    async def scenario():
        nonlocal sim
        async with streaming(tmp_path, webhook) as (sim, daemon):
            await until(lambda: up("account", "main") == 1, 5)
            first = daemon.sources["main"].exchange
            assert await daemon.reload(settings(False))
            off = daemon.sources["main"].exchange
            accounts_off = dict(daemon.streams.accounts)
            assert await daemon.reload(settings(True))
            await until(lambda: up("account", "main") == 1, 5)
            on = daemon.sources["main"].exchange
            return first, off, accounts_off, on, [url for url in on.clients if "listenKey=" in url]

    sim = None
    first, off, accounts_off, on, sockets = run(scenario())
    assert first.has["watchBalance"] and first.session is None  # closed when retired
    assert not off.has.get("watchBalance") and accounts_off == {}
    assert on.has["watchBalance"] and sockets


@pytest.mark.parametrize("fault", ["drop", "stall", "refuse"])
def test_prices_fall_back_to_rest_while_the_stream_is_down(tmp_path, webhook, caplog, fault):
    caplog.set_level(logging.INFO, logger="alerter.streams")

    async def refuse(sim):
        await sim.ws_fault("refuse", "public")

    async def scenario():
        async with streaming(tmp_path, webhook, before=refuse if fault == "refuse" else None) as (sim, daemon):
            if fault != "refuse":
                await until(lambda: up() == 1, 5)
                await sim.ws_fault("refuse" if fault == "drop" else "stall", "public")  # and stays down
                if fault == "drop":
                    await sim.ws_fault("drop", "public")
                await until(lambda: up() == 0, 2)
            sim.reset_counts()
            sim.set_prices({"BTCUSDT": price_for(sim, 0.78)})
            latency = await until(lambda: webhook.bodies, 5)  # from REST mark prices, within a price_interval or so
            rest = public_rest(sim)
            sim.clear_ws_faults()  # the stream comes back; REST price checks stop
            await until(lambda: up() == 1, 10)
            await until(lambda: not daemon.jobs, 5)  # a REST price check asked for while it was down
            sim.reset_counts()
            await asyncio.sleep(1.2)
            states = daemon.store.load_states("main")
            return latency, rest, public_rest(sim), states["account"]

    latency, rest_down, rest_up, state = run(scenario())
    assert titles(webhook) == ["CALL · main · margin ratio 78 % (call at 70 %) (estimated)"]
    assert latency < 1.5 and rest_down >= 1
    assert rest_up == 0
    assert state.failures == 0 and not state.blind  # a stream being down is not blindness
    lines = [r.getMessage() for r in caplog.records if r.name == "alerter.streams" and "mark-price" in r.getMessage()]
    down = [line for line in lines if "down" in line or "not connected" in line]
    assert down and "REST every 0.5 s" in down[0]
    if fault == "stall":
        assert "no mark price for 0.8 s (stalled)" in down[0]
    assert lines[-1].startswith("mark-price (binanceusdm) stream up")


def test_streams_off_polls_prices_by_rest_and_opens_no_socket(tmp_path, webhook):
    async def scenario():
        async with streaming(tmp_path, webhook, streams=False) as (sim, daemon):
            await asyncio.sleep(1.2)
            return public_rest(sim), dict(sim.ws.counts), daemon.streams.accounts

    rest, sockets, accounts = run(scenario())
    assert rest >= 2 and sockets == {} and accounts == {}


# ---------------------------------------------------------------- config and pure parts

def test_streams_on_an_exchange_that_does_not_stream_is_refused():
    with pytest.raises(ConfigError) as e:
        build_settings({"accounts": [{"name": "b", "exchange": "gate", "api_key": "k", "secret": "s", "streams": True}]})
    assert e.value.problems == ["accounts[0].streams: alerter does not stream gate (streams: aave, binanceusdm, bybit, compound, morpho, okx, spark); remove the key or set it to false"]


def test_plans_stream_where_supported_unless_turned_off():
    from alerter.plan import plans

    def settings(**daemon):
        return build_settings({"daemon": daemon, "accounts": [
            {"name": "a", "exchange": "binanceusdm", "api_key": "k", "secret": "s"},
            {"name": "b", "exchange": "binanceusdm", "api_key": "k", "secret": "s", "streams": False},
            {"name": "c", "exchange": "gate", "api_key": "k", "secret": "s"},
        ]})

    assert {n: p.streams for n, p in plans(settings()).items()} == {"a": True, "b": False, "c": False}
    assert not any(p.streams for p in plans(settings(streams=False)).values())


@pytest.mark.parametrize("message, text", [
    ({"e": "MARGIN_CALL", "E": 1, "cw": "3.16812045", "p": [{"s": "ETHUSDT", "ps": "LONG", "pa": "1.327", "mt": "CROSSED", "iw": "0",
                                                          "mp": "187.17127", "up": "-1.166074", "mm": "1.614445"}]},
     "Binance margin call: ETHUSDT long cross, maint 1.61"),  # Binance's documented example
    ({"e": "MARGIN_CALL", "p": [{"s": "BTCUSDT", "ps": "BOTH", "mt": "ISOLATED", "mm": "1234.5"},
                                {"s": "ETHUSDT", "ps": "BOTH", "mt": "CROSSED", "mm": "x"}]},
     "Binance margin call: BTCUSDT isolated, maint 1,234.50; ETHUSDT cross"),
    ({"e": "MARGIN_CALL", "p": []}, "Binance margin call (no positions named)"),
])
def test_binance_margin_call_reads_as_one_line(message, text):
    assert binance_margin_call(message).text == text


def test_other_messages_are_not_margin_calls():
    assert binance_margin_call({"e": "ACCOUNT_UPDATE"}) is None
    assert binance_margin_call({"result": None, "id": 1}) is None



def test_backoff_doubles_to_a_cap():
    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1, 2, 4]
    assert backoff(50) == 30


def test_a_restarted_daemon_does_not_tell_a_notice_again_before_its_repeat(tmp_path, webhook):
    """The exchange's margin call is told once per call repeat (30 min here), also across a
    restart: when it was told is read back from the alerts in the database."""
    from helpers import harness

    from alerter.sources.stream import Notice

    notice = Notice("Binance margin call: BTCUSDT cross, maint 1.61", "margin-call:BTCUSDT cross")

    async def told(h) -> list[str]:
        alerts = await h.daemon.pipeline.notices_due("main", "Binance", [notice])
        await h.daemon.pipeline.poll_account("main", notices=alerts)
        await h.daemon.delivery.deliver_once()
        return [a.reason for a in alerts]

    async def scenario():
        async with harness(tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}]) as h:
            first = await told(h)
            h.clock.advance(minutes=1)
            again = await told(h)                 # the same run: held back
            await h.restart()
            h.clock.advance(minutes=1)
            restarted = await told(h)             # a new daemon: still held back
            h.clock.advance(minutes=30)
            due = await told(h)                   # the call repeat has passed
            return first, again, restarted, due

    first, again, restarted, due = run(scenario())
    assert first == due == [notice.text] and again == restarted == []
    assert [t for t in titles(webhook) if t.startswith("EXCHANGE")] == [f"EXCHANGE · main · {notice.text}"] * 2
