"""A partial answer never reads as an all-clear (issue 10, part 1).

The exchange answers HTTP 200 but the positions endpoint sends a cut body, an empty list, or a
list without one position that the account answer still lists. ccxt raises nothing and hands
on fewer positions; the user must hear BLIND (after `blind_after` polls), never "RESOLVED ·
position closed" for a position that is still open and critical, and no second CRITICAL when
the data returns.

- Binance USDⓈ-M: the real daemon (in-process, test clock) → real ccxt → the simulator's fault
  controls → SQLite → apprise → a webhook; and `alerter check` as a subprocess.
- OKX and Bybit (no simulator): their documented payloads, altered the same ways, served to
  ccxt's real request and parse code by the loopback host of test_sources.
"""

from __future__ import annotations

import asyncio
import copy
import json
import signal
import subprocess
import sys
import time
from contextlib import asynccontextmanager

import pytest

from helpers import DaemonRuns, query, simulator_thread, to_toml, wait_until
from helpers import Clock, run, titles
from test_sources import FAST, FixtureHost, account, binance_account, bybit_routes, load, okx_routes, serve

from alerter.config import build_settings
from alerter.runtime import build_daemon
from alerter.simulator import run_simulator
from alerter.simulator.scenario import parse_positions
from alerter.sources import SourceError, build_source

SCENARIO = {
    "name": "partial",
    "prices": {"BTCUSDT": 60_000, "ETHUSDT": 3_000},
    "accounts": [
        {"name": "iso", "api_key": "iso-key", "wallet_balance": 20_000, "positions": [
            {"symbol": "BTCUSDT", "side": "long", "size": 0.5, "entry_price": 60_000, "margin_type": "cross", "leverage": 10},
            {"symbol": "ETHUSDT", "side": "short", "size": 10, "entry_price": 3_000, "margin_type": "isolated",
             "isolated_wallet": 1_500, "leverage": 20},
        ]},
        {"name": "flat", "api_key": "flat-key", "wallet_balance": 5_000, "positions": []},
    ],
}
ETH_SCOPE = "isolated:ETH/USDT:USDT:short"
POSITIONS = "/fapi/v3/positionRisk"
# each way the positions endpoint can answer 200 with less than the account holds
FAULTS = {
    "truncated": dict(kind="malformed", path=POSITIONS),
    "empty list": dict(kind="empty_list", path=POSITIONS),
    "missing position": dict(kind="drop_position", symbol="ETHUSDT", path=POSITIONS),
}


def eth_price_for(sim, ratio: float) -> float:
    """The ETH mark at which the isolated short's own ratio (maintenance ÷ isolated margin) is `ratio`."""
    lo, hi = 3_000.0, 3_200.0  # a short: the ratio rises with the price
    for _ in range(100):
        mid = (lo + hi) / 2
        risk = sim.state.risk("iso-key", {**sim.state.prices(), "ETHUSDT": mid})
        (eth,) = [r for r in risk.positions if r.position.symbol == "ETHUSDT"]
        lo, hi = (mid, hi) if eth.margin_ratio < ratio else (lo, mid)
    return hi


def settings_for(sim, tmp_path, webhook):
    return build_settings({
        "daemon": {"database": str(tmp_path / "alerter.db"), "request_timeout": "3s", "blind_after": 3},
        "repeat": {"warning": "6h", "call": "1h", "critical": "1h", "blind": "1h"},
        "accounts": [{"name": "iso", "exchange": "binanceusdm", "api_key": "iso-key", "secret": "iso-secret", "ccxt": sim.ccxt_config()}],
        "channels": [{"name": "hook", "url": f"json://{webhook.url}/hook"}],
    })


class Polls:
    """The daemon's real parts, polled by hand on a test clock, one minute apart."""

    def __init__(self, sim, settings):
        self.sim, self.clock = sim, Clock()
        self.daemon = build_daemon(settings, clock=self.clock)
        for source in self.daemon.sources.values():
            source.exchange.timeout_on_exit = 0

    async def poll(self):
        self.clock.advance(minutes=1)
        alerts = await self.daemon.pipeline.poll_account("iso")
        await self.daemon.delivery.deliver_once()
        return alerts

    async def close(self):
        await asyncio.gather(*(s.close() for s in self.daemon.sources.values()))
        self.daemon.store.close()


@asynccontextmanager
async def critical_isolated_position(tmp_path, webhook):
    """The simulator with account "iso" whose isolated ETH short sits at 90 % (CRITICAL), polled
    once so the CRITICAL alert is out."""
    async with run_simulator(SCENARIO) as sim:
        sim.set_prices({"ETHUSDT": eth_price_for(sim, 0.90)})
        polls = Polls(sim, settings_for(sim, tmp_path, webhook))
        try:
            await polls.poll()
            assert heads(webhook) == ["CRITICAL"] and "ETH/USDT:USDT short (isolated)" in titles(webhook)[0]
            yield polls
        finally:
            await polls.close()


def heads(webhook) -> list[str]:
    return [t.split(" · ")[0] for t in titles(webhook)]


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_partial_positions_answer_goes_blind_never_resolved(tmp_path, webhook, fault):
    async def scenario():
        async with critical_isolated_position(tmp_path, webhook) as polls:
            polls.sim.inject(count=None, api_key="iso-key", **FAULTS[fault])
            for _ in range(2):
                assert await polls.poll() == []  # failures 1 and 2 of blind_after 3: silent
            assert heads(webhook) == ["CRITICAL"]  # above all: no "RESOLVED · position closed"
            await polls.poll()                     # the third: BLIND
            await polls.poll()                     # still blind: not repeated within the hour
            polls.sim.clear_faults()
            await polls.poll()                     # data again: RESTORED, and the level held
            states = polls.daemon.store.load_states("iso")
            return states

    states = run(scenario())
    assert heads(webhook) == ["CRITICAL", "BLIND", "RESTORED"]
    blind = webhook.bodies[1]
    assert "no data for 3 polls" in blind["title"]
    reason = {
        "truncated": "binanceusdm /fapi/v3/positionRisk: the answer is not complete JSON",
        "empty list": "binanceusdm positions BTCUSDT long (0.5), ETHUSDT short (-10) are in the account answer but missing from the positions answer",
        "missing position": "binanceusdm position ETHUSDT short (-10) is in the account answer but missing from the positions answer",
    }[fault]
    assert reason in blind["title"] + blind["message"]
    assert states[ETH_SCOPE].level.label == "critical" and states[ETH_SCOPE].absent == 0
    assert not states["account"].blind and states["account"].failures == 0


def test_a_position_missing_from_both_answers_for_one_poll_is_not_resolved(tmp_path, webhook):
    """Defence in depth: an answer the source cannot fault (the position is missing from the
    account answer too, so the two agree) keeps the scope's level for one poll; it is resolved
    only when a second full poll confirms it gone."""

    async def scenario():
        async with critical_isolated_position(tmp_path, webhook) as polls:
            polls.sim.inject("drop_position", count=2, api_key="iso-key", symbol="ETHUSDT")  # both endpoints, one poll
            assert await polls.poll() == []
            assert polls.daemon.store.load_states("iso")[ETH_SCOPE].absent == 1
            assert await polls.poll() == []  # listed again, still critical: no second CRITICAL
            assert polls.daemon.store.load_states("iso")[ETH_SCOPE].absent == 0
            btc_only = parse_positions(SCENARIO["accounts"][0]["positions"][:1])
            polls.sim.set_account("iso-key", positions=btc_only)  # really closed: gone from both, twice
            assert await polls.poll() == []
            return [(a.kind.value, a.scope, a.reason) for a in await polls.poll()]

    assert run(scenario()) == [("resolved", ETH_SCOPE, "position closed")]
    assert heads(webhook) == ["CRITICAL", "RESOLVED"]


def test_a_flat_account_is_not_a_partial_answer():
    """No position anywhere: the empty lists are the truth, not a data error."""

    async def fetch():
        async with run_simulator(SCENARIO) as sim:
            async with build_source(binance_account(sim, "flat-key"), retry=FAST) as source:
                return await source.fetch_snapshot()

    snapshot = run(fetch())
    assert snapshot.positions == () and snapshot.maintenance_margin == 0 and snapshot.equity == 5_000


def test_check_exits_3_and_says_why_instead_of_account_ok(tmp_path):
    """`alerter check` during the partial answer: blind (exit 3) with the reason, never "ok"."""
    with simulator_thread(SCENARIO) as running:
        sim = running.sim
        config = tmp_path / "alerter.toml"
        config.write_text(to_toml({
            "daemon": {"database": str(tmp_path / "alerter.db")},
            "accounts": [{"name": "iso", "exchange": "binanceusdm", "api_key": "iso-key", "secret": "iso-secret", "ccxt": sim.ccxt_config()}],
        }))

        def check(*extra):
            return subprocess.run([sys.executable, "-m", "alerter", "check", "--config", str(config), *extra],
                                  capture_output=True, text=True, timeout=60)

        running.call(sim.inject, "drop_position", count=None, symbol="ETHUSDT", path=POSITIONS)
        out = check()
        assert out.returncode == 3, out.stdout + out.stderr
        assert "blind" in out.stdout and " ok " not in out.stdout and "Traceback" not in out.stderr
        assert "iso: data: binanceusdm position ETHUSDT short (-10) is in the account answer but missing from the positions answer" in out.stdout
        running.call(sim.clear_faults)
        out = check("--json")
        assert out.returncode == 0 and {r["scope"] for r in json.loads(out.stdout)} == {"account", ETH_SCOPE}


def test_the_daemon_process_goes_blind_not_resolved_and_restores(tmp_path, webhook):
    """The same through `alerter run` as a process, polling every 0.3 s: a position missing from
    the positions answer only; then the data returns."""
    with simulator_thread(SCENARIO) as running:
        sim = running.sim
        running.call(sim.set_prices, {"ETHUSDT": running.call(eth_price_for, sim, 0.90)})
        config = tmp_path / "alerter.toml"
        config.write_text(to_toml({
            "daemon": {"database": str(tmp_path / "alerter.db"), "poll_interval": "0.3s", "request_timeout": "2s", "blind_after": 3},
            "repeat": {"warning": "6h", "call": "1h", "critical": "1h", "blind": "1h"},
            "accounts": [{"name": "iso", "exchange": "binanceusdm", "api_key": "iso-key", "secret": "iso-secret", "ccxt": sim.ccxt_config()}],
            "channels": [{"name": "hook", "url": f"json://{webhook.url}/hook"}],
        }))
        daemons = DaemonRuns(config, tmp_path / "logs")
        proc = daemons.start()
        try:
            wait_until(lambda: heads(webhook) == ["CRITICAL"], 30, lambda: f"{heads(webhook)}\n{daemons.tail()}")
            running.call(sim.inject, "drop_position", count=None, api_key="iso-key", symbol="ETHUSDT", path=POSITIONS)
            wait_until(lambda: len(heads(webhook)) > 1, 10, daemons.tail)
            assert heads(webhook) == ["CRITICAL", "BLIND"]
            running.call(sim.clear_faults)
            wait_until(lambda: len(heads(webhook)) > 2, 10, daemons.tail)
            polls = lambda: query(tmp_path / "alerter.db", "SELECT count(*) FROM samples WHERE scope = 'account'")[0][0]  # noqa: E731
            after = polls()
            wait_until(lambda: polls() >= after + 2, 10, daemons.tail)  # two more full polls: nothing else may come
            time.sleep(0.1)  # their delivery round
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert heads(webhook) == ["CRITICAL", "BLIND", "RESTORED"], daemons.tail()
    assert "ETHUSDT short (-10) is in the account answer but missing from the positions answer" in webhook.bodies[1]["title"]


# ---------------------------------------------------------------- OKX and Bybit payloads

def okx_positions_without(inst_id: str | None) -> dict:
    answer = load("okx/positions.json")
    answer["data"] = [row for row in answer["data"] if inst_id is not None and row["instId"] != inst_id]
    return answer


OKX_BALANCE, OKX_POSITIONS = "/api/v5/account/balance", "/api/v5/account/positions"
OKX_PARTIAL = {
    "truncated": ("okx/positions.json", "okx /api/v5/account/positions: the answer is not complete JSON"),
    "empty list": (okx_positions_without(None), "okx balance shows isolated USDT equity 405 (details[USDT].isoEq) but the positions answer lists no isolated USDT position"),
    "missing position": (okx_positions_without("ETH-USDT-SWAP"), "okx balance shows isolated USDT equity 405"),
}


def cut(name: str):
    """A reply with the fixture's body cut in half, as a dropped proxy connection leaves it."""
    from aiohttp import web

    async def reply(request):
        text = (FixtureHost.respond(name).text or "")
        return web.Response(text=text[: len(text) // 2], content_type="application/json")

    return reply


@pytest.mark.parametrize("balance", ["multi", "single"])
@pytest.mark.parametrize("fault", sorted(OKX_PARTIAL))
def test_okx_partial_positions_answer_is_a_data_error(fault, balance):
    payload, message = OKX_PARTIAL[fault]
    routes = okx_routes(balance)
    host = FixtureHost(routes)
    if fault == "truncated":
        host.fail(OKX_POSITIONS, cut(payload))
    else:
        host.routes[OKX_POSITIONS] = payload

    async def fetch():
        async with serve(host), build_source(account("okx", host.url), retry=FAST) as source:
            return await source.fetch_snapshot()

    with pytest.raises(SourceError) as caught:
        run(fetch())
    assert caught.value.kind == "data" and caught.value.message.startswith(message), caught.value.message


def test_okx_balance_without_isolated_equity_while_positions_list_one_is_a_data_error():
    balance = load("okx/balance-multi.json")
    balance["data"][0]["details"][0]["isoEq"] = "0"  # the balance answer lost its isolated part
    host = FixtureHost({**okx_routes("multi"), OKX_BALANCE: balance})

    async def fetch():
        async with serve(host), build_source(account("okx", host.url), retry=FAST) as source:
            return await source.fetch_snapshot()

    with pytest.raises(SourceError) as caught:
        run(fetch())
    assert caught.value.message.startswith("okx position ETH-USDT-SWAP short (isolated) is listed, but the balance shows no isolated USDT equity")


def test_okx_flat_account_is_not_a_data_error():
    balance = load("okx/balance-multi.json")
    data = balance["data"][0]
    data.update(isoEq="0", imr="0", mmr="0", mgnRatio="", adjEq="10400")
    data["details"][0].update(isoEq="0", isoUpl="0", upl="0", eq="10400")
    host = FixtureHost({**okx_routes("multi"), OKX_BALANCE: balance, OKX_POSITIONS: okx_positions_without(None)})

    async def fetch():
        async with serve(host), build_source(account("okx", host.url), retry=FAST) as source:
            return await source.fetch_snapshot()

    snapshot = run(fetch())
    assert snapshot.positions == () and snapshot.maintenance_margin == 0 and snapshot.equity == 10400


BYBIT_POSITIONS = "/v5/position/list?settleCoin=USDT"


@pytest.mark.parametrize("mode", ["cross", "isolated"])
@pytest.mark.parametrize("fault", ["truncated", "empty list"])
def test_bybit_partial_position_list_is_a_data_error(mode, fault):
    routes = bybit_routes(mode)
    host = FixtureHost(routes)
    if fault == "truncated":
        host.fail("/v5/position/list", cut(routes[BYBIT_POSITIONS]))  # the USDT list is asked first or second
        host.fail("/v5/position/list", cut(routes[BYBIT_POSITIONS]))
    else:
        empty = copy.deepcopy(load(routes[BYBIT_POSITIONS]))
        empty["result"]["list"] = []
        host.routes[BYBIT_POSITIONS] = empty

    async def fetch():
        async with serve(host), build_source(account("bybit", host.url), retry=FAST) as source:
            return await source.fetch_snapshot()

    with pytest.raises(SourceError) as caught:
        run(fetch())
    expected = ("bybit /v5/position/list: the answer is not complete JSON" if fault == "truncated"
                else "bybit account: the wallet shows")
    assert caught.value.kind == "data" and caught.value.message.startswith(expected), caught.value.message
