"""The exchange simulator, driven by the REAL ccxt binanceusdm class (no mocks), on port 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tomllib
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import ccxt.async_support as ccxt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerter.simulator import ScenarioError, builtin_scenarios, ccxt_config_for, load_scenario, run_simulator
from alerter.simulator.market import Account, Keyframe, Position, assess_account, interpolate
from alerter.simulator.scenario import parse_scenario
from alerter.simulator.server import API_PATHS, Simulator
from alerter.simulator.standalone import config_snippet
from alerter.simulator.symbols import SYMBOLS

BTC, ETH, SOL = "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"

# Hand-checked numbers (brackets in alerter/simulator/symbols.py):
#   BTC long 0.5 @ 50 000, mark 52 000: notional 26 000, tier 1 (0.4 %, cum 0) → maint 104, PnL +1 000
#   ETH short 10 @ 3 000, mark 2 900: notional 29 000, tier 2 (0.65 %, cum 15) → maint 173.5, PnL +1 000
#   SOL isolated long 100 @ 150, wallet 1 500, mark 140: 14 000, tier 2 (2 %, cum 50) → maint 230,
#     PnL −1 000, isolatedMargin 500; LP = (1500 + 50 − 15000) ÷ (2 − 100) = 137.244898
MIXED = {
    "name": "mixed",
    "prices": {"BTCUSDT": 52000, "ETHUSDT": 2900, "SOLUSDT": 140},
    "accounts": [
        {
            "name": "one",
            "api_key": "k1",
            "wallet_balance": 10000,
            "positions": [
                {"symbol": "BTCUSDT", "size": 0.5, "entry_price": 50000, "leverage": 10},
                {"symbol": "ETHUSDT", "side": "short", "size": 10, "entry_price": 3000, "leverage": 20},
                {"symbol": "SOLUSDT", "size": 100, "entry_price": 150, "margin_type": "isolated",
                 "isolated_wallet": 1500, "leverage": 10},
            ],
        },
        {
            "name": "two",
            "api_key": "k2",
            "wallet_balance": 2000,
            "positions": [
                {"symbol": "ETHUSDT", "size": -5, "entry_price": 3000, "margin_type": "isolated",
                 "isolated_wallet": 1000, "leverage": 20},
            ],
        },
    ],
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def exchange(sim, api_key: str = "k1", **extra):
    ex = ccxt.binanceusdm({"apiKey": api_key, "secret": "s3cret", "enableRateLimit": False, **sim.ccxt_config(), **extra})
    ex.timeout_on_exit = 0  # close() otherwise sleeps 250 ms (for TLS shutdown; none on loopback)
    try:
        yield ex
    finally:
        await ex.close()


def by_symbol(positions):
    return {p["symbol"]: p for p in positions}


def approx(value, rel=1e-9, abs=1e-6):
    return pytest.approx(value, rel=rel, abs=abs)


# --- pure formulas --------------------------------------------------------------------------
def test_brackets_are_continuous_and_chained():
    for spec in SYMBOLS.values():
        tiers = spec.brackets
        assert tiers[0].notional_floor == 0 and tiers[0].cum == 0
        for lower, upper in zip(tiers, tiers[1:]):
            assert upper.notional_floor == lower.notional_cap
            assert upper.maint_rate > lower.maint_rate and upper.max_leverage <= lower.max_leverage
            at = upper.notional_floor
            assert at * lower.maint_rate - lower.cum == approx(at * upper.maint_rate - upper.cum)
    btc = SYMBOLS["BTCUSDT"].brackets
    assert [(b.maint_rate, b.cum) for b in btc[:3]] == [(0.004, 0), (0.005, 50), (0.01, 2550)]


def test_account_numbers_by_hand():
    account = load_mixed().build_accounts()["k1"]
    risk = assess_account(account, {"BTCUSDT": 52000, "ETHUSDT": 2900, "SOLUSDT": 140})
    btc, eth, sol = risk.positions
    assert (btc.notional, btc.unrealized_pnl, btc.maint_margin) == approx((26000, 1000, 104))
    assert (eth.notional, eth.unrealized_pnl, eth.maint_margin) == approx((-29000, 1000, 173.5))
    assert (sol.maint_margin, sol.isolated_margin, sol.margin_ratio) == approx((230, 500, 0.46))
    assert sol.liquidation_price == approx(13450 / 98)
    assert risk.total_wallet_balance == 11500 and risk.margin_balance == approx(12500)
    assert risk.total_maint_margin == approx(507.5) and risk.cross_maint_margin == approx(277.5)
    assert risk.cross_margin_ratio == approx(277.5 / 12000)


def load_mixed():
    return parse_scenario(MIXED)


positions = st.builds(
    lambda symbol, size, entry, iso, wallet_frac: Position(
        symbol, size, entry, "isolated" if iso else "cross", 20, abs(size) * entry * wallet_frac if iso else 0.0
    ),
    st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDT"]),
    st.floats(0.01, 2000).flatmap(lambda q: st.sampled_from([q, -q])),
    st.floats(10, 100_000),
    st.booleans(),
    st.floats(0.01, 0.9),
)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(positions, min_size=1, max_size=3, unique_by=lambda p: p.symbol), st.floats(0, 2e6), st.data())
def test_liquidation_price_puts_the_ratio_at_one(plist, wallet, data):
    """Re-pricing one mark to its reported liquidation price (others unchanged) gives ratio 1."""
    marks = {p.symbol: p.entry_price * data.draw(st.floats(0.8, 1.2)) for p in plist}
    marks.update({s: 1.0 for s in SYMBOLS if s not in marks})
    account = Account("k", "k", wallet, list(plist))
    for r in assess_account(account, marks).positions:
        if r.liquidation_price <= 0:
            continue
        moved = assess_account(account, {**marks, r.position.symbol: r.liquidation_price})
        if r.position.margin_type == "isolated":
            ratio = next(m for m in moved.positions if m.position.symbol == r.position.symbol).margin_ratio
        else:
            ratio = moved.cross_margin_ratio
        assert ratio == pytest.approx(1.0, rel=1e-6)


def test_interpolation_per_symbol_with_base_as_time_zero():
    path = (Keyframe(10, {"BTCUSDT": 100.0}), Keyframe(20, {"BTCUSDT": 200.0, "ETHUSDT": 50.0}))
    base = {"BTCUSDT": 100.0, "ETHUSDT": 10.0, "SOLUSDT": 5.0}
    assert interpolate(path, base, 0) == base
    assert interpolate(path, base, 15)["BTCUSDT"] == 150
    assert interpolate(path, base, 10)["ETHUSDT"] == 30  # 10 → 50 over 0..20 s
    assert interpolate(path, base, 99) == {"BTCUSDT": 200, "ETHUSDT": 50, "SOLUSDT": 5}


def test_demo_ratio_shape_sampled_every_second():
    scenario = load_scenario("demo")
    accounts = scenario.build_accounts()
    start_btc = scenario.prices["BTCUSDT"]
    samples = []
    for t in range(0, 181):
        prices = interpolate(scenario.path, scenario.prices, t)
        samples.append((t, assess_account(accounts["demo-key"], prices).cross_margin_ratio, prices["BTCUSDT"]))
    ratios = [r for _, r, _ in samples]
    assert 0.27 <= ratios[0] <= 0.33  # ≈ 30 % at the start
    peak_t = max(range(len(ratios)), key=ratios.__getitem__)
    assert 0.85 < ratios[peak_t] < 1.0  # critical, but no liquidation
    assert all(r < 1.0 for r in ratios)
    # the climb: non-decreasing up to the peak, crossing 50 → 70 → 85 % in that order
    assert all(a <= b + 1e-12 for a, b in zip(ratios[:peak_t], ratios[1 : peak_t + 1]))
    first = {th: next(t for t, r, _ in samples if r >= th) for th in (0.5, 0.7, 0.85)}
    assert 10 < first[0.5] < first[0.7] < first[0.85] <= 100
    # BTC about −30 % over ~90 s
    low_t = min(samples, key=lambda s: s[2])[0]
    low = min(p for _, _, p in samples)
    assert 0.67 <= low / start_btc <= 0.73 and 80 <= low_t - 10 <= 100
    # partial recovery: below 40 % by t≈150 and staying there, BTC still below its start
    recovered = next(t for t, r, _ in samples if t > peak_t and r < 0.40)
    assert recovered <= 150 and all(r < 0.40 for t, r, _ in samples if t >= recovered)
    assert low < samples[150][2] < start_btc


def test_scenario_errors_list_every_problem_with_its_key_path():
    bad = {
        "acounts": [],
        "prices": {"DOGEUSDT": 1},
        "accounts": [
            {"api_key": "a", "positions": [{"symbol": "BTCUSDT", "size": 1, "entry_price": -1, "margin_type": "cross",
                                            "isolated_wallet": 5}]},
            {"api_key": "a", "wallet_balance": "lots"},
        ],
        "path": [{"at": -1, "prices": {"BTCUSDT": 0}}],
    }
    with pytest.raises(ScenarioError) as err:
        parse_scenario(bad)
    text = str(err.value)
    for expected in [
        "acounts: unknown key", "prices.DOGEUSDT: unknown symbol", "accounts[0].positions[0].entry_price: must be > 0",
        "accounts[0].positions[0].isolated_wallet: only for margin_type = 'isolated'",
        "accounts[1].wallet_balance: required, a number", "api_key 'a' is used more than once",
        "path[0].at: must be >= 0", "path[0].prices.BTCUSDT: must be > 0",
    ]:
        assert expected in text
    with pytest.raises(ScenarioError, match="built-ins: demo"):
        load_scenario("no-such-scenario")


def test_every_builtin_scenario_loads():
    assert "demo" in builtin_scenarios()
    for name in builtin_scenarios():
        assert load_scenario(name).accounts


# --- real ccxt against the server -----------------------------------------------------------
def test_ccxt_reads_the_demo_and_calls_only_these_endpoints():
    async def main():
        async with run_simulator("demo") as sim, exchange(sim, "demo-key") as ex:
            await ex.load_markets()
            assert {BTC, ETH, SOL} <= set(ex.markets) and ex.markets[BTC]["swap"] and ex.markets[BTC]["linear"]
            assert ex.markets[BTC]["precision"]["price"] == 0.1
            calls = {"load_markets": {(None, "/fapi/v1/exchangeInfo")}}
            sim.reset_counts()
            balance = await ex.fetch_balance()
            calls["fetch_balance"] = set(sim.request_counts())
            sim.reset_counts()
            positions = by_symbol(await ex.fetch_positions())
            calls["fetch_positions"] = set(sim.request_counts())
            sim.reset_counts()
            marks = await ex.fetch_mark_prices()
            calls["fetch_mark_prices"] = set(sim.request_counts())
            sim.reset_counts()
            tickers = await ex.fetch_tickers()
            calls["fetch_tickers"] = set(sim.request_counts())
        assert calls == {
            "load_markets": {(None, "/fapi/v1/exchangeInfo")},
            "fetch_balance": {("demo-key", "/fapi/v3/account")},
            "fetch_positions": {("demo-key", "/fapi/v1/leverageBracket"), ("demo-key", "/fapi/v3/positionRisk")},
            "fetch_mark_prices": {(None, "/fapi/v1/premiumIndex")},
            "fetch_tickers": {(None, "/fapi/v1/ticker/24hr")},
        }
        info = balance["info"]
        # 5 BTC × 60 000: 300 000 in tier 2 → 1 450; 106 ETH × 3 000: 318 000 in tier 3 → 2 815
        assert float(info["totalMaintMargin"]) == approx(1450 + 2815)
        assert float(info["totalMarginBalance"]) == approx(13800)
        assert float(info["totalCrossWalletBalance"]) == 13800 and float(info["totalCrossUnPnl"]) == 0
        assert balance["USDT"]["total"] == 13800
        assert positions[BTC]["side"] == "long" and positions[ETH]["side"] == "short"
        assert positions[BTC]["marginMode"] == positions[ETH]["marginMode"] == "cross"
        assert float(positions[BTC]["info"]["maintMargin"]) == approx(1450)
        assert marks[BTC]["markPrice"] == 60000 and tickers[ETH]["last"] == 3000

    asyncio.run(main())


def test_ccxt_cross_and_isolated_long_and_short():
    async def main():
        async with run_simulator(MIXED) as sim, exchange(sim, "k1") as ex, exchange(sim, "k2") as ex2:
            balance = (await ex.fetch_balance())["info"]
            positions = by_symbol(await ex.fetch_positions())
            short_iso = (await ex2.fetch_positions())[0]
        assert float(balance["totalWalletBalance"]) == 11500
        assert float(balance["totalCrossWalletBalance"]) == 10000
        assert float(balance["totalUnrealizedProfit"]) == approx(1000)
        assert float(balance["totalCrossUnPnl"]) == approx(2000)
        assert float(balance["totalMarginBalance"]) == approx(12500)
        assert float(balance["totalMaintMargin"]) == approx(507.5)
        btc, eth, sol = positions[BTC], positions[ETH], positions[SOL]
        assert (btc["side"], btc["contracts"], btc["unrealizedPnl"]) == ("long", 0.5, 1000)
        assert (eth["side"], eth["contracts"], eth["unrealizedPnl"]) == ("short", 10, 1000)
        assert float(eth["info"]["maintMargin"]) == approx(173.5) and float(eth["info"]["notional"]) == -29000
        assert (sol["marginMode"], sol["collateral"]) == ("isolated", 500)
        assert float(sol["info"]["isolatedWallet"]) == 1500 and float(sol["info"]["maintMargin"]) == approx(230)
        assert sol["liquidationPrice"] == pytest.approx(13450 / 98, rel=1e-8)
        assert (short_iso["side"], short_iso["marginMode"], short_iso["collateral"]) == ("short", "isolated", 1500)  # PnL +500 at 2 900
        # an ETH short at 3 000: above entry, in tier 2 at the liquidation notional
        assert short_iso["liquidationPrice"] == pytest.approx(16015 / 5.0325, rel=1e-8)

    asyncio.run(main())


def test_repricing_to_the_reported_liquidation_price_gives_ratio_100_percent():
    def cross_ratio(info, positions):
        cross_maint = sum(float(p["info"]["maintMargin"]) for p in positions if p["marginMode"] == "cross")
        return cross_maint / (float(info["totalCrossWalletBalance"]) + float(info["totalCrossUnPnl"]))

    async def main():
        async with run_simulator(MIXED) as sim, exchange(sim, "k1") as ex, exchange(sim, "k2") as ex2:
            for client, symbol in ((ex, BTC), (ex, ETH), (ex, SOL), (ex2, ETH)):
                sim.reset()
                before = by_symbol(await client.fetch_positions())[symbol]
                sim.set_prices({before["info"]["symbol"]: before["liquidationPrice"]})
                info = (await client.fetch_balance())["info"]
                after = await client.fetch_positions()
                if before["marginMode"] == "isolated":
                    p = by_symbol(after)[symbol]["info"]
                    ratio = float(p["maintMargin"]) / float(p["isolatedMargin"])
                else:
                    ratio = cross_ratio(info, after)
                assert ratio == pytest.approx(1.0, rel=1e-6), symbol

    asyncio.run(main())


def test_price_path_is_interpolated_on_the_injected_clock():
    scenario = {
        "prices": {"BTCUSDT": 40000},
        "path": [{"at": 10, "prices": {"BTCUSDT": 50000}}, {"at": 20, "prices": {"BTCUSDT": 45000}}],
    }
    clock = FakeClock()

    async def main():
        async with run_simulator(scenario, clock=clock) as sim, exchange(sim) as ex:
            seen = []
            for t in (0, 5, 10, 15, 30):
                clock.now = 1000.0 + t
                seen.append((await ex.fetch_mark_prices())[BTC]["markPrice"])
            assert seen == [40000, 45000, 50000, 47500, 45000]
            clock.now = 1005.0
            sim.set_prices({"BTCUSDT": 41000})  # pinned: the path no longer moves BTC
            clock.now = 1010.0
            assert (await ex.fetch_mark_prices())[BTC]["markPrice"] == 41000
            sim.unpin()
            sim.set_elapsed(15)
            assert (await ex.fetch_mark_prices())[BTC]["markPrice"] == 47500

    asyncio.run(main())


def test_v2_endpoints_carry_leverage_and_margin_type():
    async def main():
        async with run_simulator(MIXED) as sim, exchange(sim, "k1") as ex:
            positions = by_symbol(await ex.fetch_positions(None, {"useV2": True}))
            balance = await ex.fetch_balance({"useV2": True})
            assert {p for _, p in sim.request_counts()} >= {"/fapi/v2/positionRisk", "/fapi/v2/account"}
        assert positions[BTC]["leverage"] == 10 and positions[BTC]["info"]["marginType"] == "cross"
        assert positions[SOL]["info"]["marginType"] == "isolated" and positions[SOL]["marginMode"] == "isolated"
        assert set(positions) == {BTC, ETH, SOL}  # v2 lists every symbol; ccxt drops the empty ones
        assert float(balance["info"]["totalMaintMargin"]) == approx(507.5)

    asyncio.run(main())


def test_unknown_api_key_is_rejected_unless_auto_accounts():
    async def main():
        async with run_simulator(MIXED) as sim, exchange(sim, "nobody") as ex:
            with pytest.raises(ccxt.AuthenticationError, match="-2015"):
                await ex.fetch_balance()
        async with run_simulator(MIXED, auto_accounts=True) as sim, exchange(sim, "nobody") as ex:
            balance = await ex.fetch_balance()
            assert float(balance["info"]["totalMarginBalance"]) == 0 and await ex.fetch_positions() == []
            assert "nobody" in sim.state.accounts

    asyncio.run(main())


# What ccxt 4.5.90 really raises for each fault (fetch_balance → GET /fapi/v3/account).
FAULT_ERRORS = [
    ("http500", {}, ccxt.OperationFailed),  # Binance JSON -1001: an OperationFailed, not a NetworkError
    ("http429", {"seconds": 7}, ccxt.DDoSProtection),
    ("http401", {}, ccxt.AuthenticationError),
    ("html502", {}, ccxt.ExchangeNotAvailable),
    ("hang", {"seconds": 0.05, "count": 2}, ccxt.ExchangeNotAvailable),  # dropped twice (aiohttp retries once)
    ("hang", {}, ccxt.RequestTimeout),  # held past ccxt's timeout
    ("delay", {"seconds": 1}, ccxt.RequestTimeout),
]


@pytest.mark.parametrize("kind, options, error", FAULT_ERRORS, ids=[f"{k}-{len(o)}" for k, o, _ in FAULT_ERRORS])
def test_each_fault_kind_raises_this_ccxt_error(kind, options, error):
    async def main():
        async with run_simulator(MIXED) as sim, exchange(sim, "k1", timeout=300) as ex:
            sim.inject(kind, **options)
            with pytest.raises(error) as caught:
                await ex.fetch_balance()
            if kind == "http500":
                assert not isinstance(caught.value, ccxt.NetworkError)
            assert sim.faults.faults == []  # used up
            assert float((await ex.fetch_balance())["info"]["totalWalletBalance"]) == 11500  # and healthy again

    asyncio.run(main())


def test_429_sends_retry_after_and_a_single_dropped_connection_is_invisible():
    async def main():
        async with run_simulator(MIXED) as sim, aiohttp.ClientSession() as http:
            sim.inject("http429", seconds=7)
            async with http.get(sim.url + "/fapi/v1/premiumIndex") as resp:
                assert resp.status == 429 and resp.headers["Retry-After"] == "7"
                assert (await resp.json())["code"] == -1003
            async with exchange(sim) as ex:
                await ex.load_markets()
                sim.reset_counts()
                sim.inject("hang", seconds=0.05)  # one drop: aiohttp retries the GET by itself
                await ex.fetch_mark_prices()
                assert sim.request_counts() == {(None, "/fapi/v1/premiumIndex"): 2}

    asyncio.run(main())


def test_malformed_json_is_not_an_error_in_ccxt():
    """A truncated 200 body: ccxt parses nothing and mostly returns EMPTY results (recorded as is)."""

    async def main():
        async with run_simulator(MIXED) as sim, exchange(sim, "k1") as ex:
            sim.inject("malformed", path="/exchangeInfo")
            assert await ex.load_markets() == {}  # and cached: reload=True is needed afterwards
            await ex.load_markets(reload=True)
            sim.inject("malformed", path="/fapi/v3/account")
            balance = await ex.fetch_balance()
            assert isinstance(balance["info"], str) and "USDT" not in balance
            sim.inject("malformed", path="/positionRisk")
            assert await ex.fetch_positions() == []
            sim.inject("malformed", path="/premiumIndex")
            with pytest.raises(AttributeError):  # not even a ccxt error
                await ex.fetch_mark_prices()

    asyncio.run(main())


def test_partial_answers_on_one_endpoint_only_pass_ccxt_silently():
    """The faults behind a false "position closed": a 200 answer that is cut, empty or missing a
    position on the positions endpoint, while the account endpoint still lists it. ccxt raises
    for none of them (the source's own checks must)."""

    async def main():
        async with run_simulator(MIXED) as sim, exchange(sim, "k1") as ex:
            await ex.load_markets()
            listed = lambda balance: sorted(r["symbol"] for r in balance["info"]["positions"] if float(r["positionAmt"]))  # noqa: E731
            sim.inject("malformed", path="/fapi/v3/positionRisk")
            assert await ex.fetch_positions() == []
            assert listed(await ex.fetch_balance()) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]  # the other endpoint is whole
            sim.inject("empty_list", path="/fapi/v3/positionRisk")
            assert await ex.fetch_positions() == []
            sim.inject("drop_position", symbol="ETHUSDT", path="/fapi/v3/positionRisk")
            assert sorted(by_symbol(await ex.fetch_positions())) == [BTC, SOL]
            assert listed(await ex.fetch_balance()) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
            sim.inject("drop_position", symbol="SOLUSDT", path="/fapi/v3/account")
            assert listed(await ex.fetch_balance()) == ["BTCUSDT", "ETHUSDT"]
            assert sorted(by_symbol(await ex.fetch_positions())) == [BTC, ETH, SOL]
            assert sim.faults.faults == []  # each used up by its one request

    asyncio.run(main())


@pytest.mark.parametrize(
    "kind, options, error",
    [
        ("drop_position", {}, "symbol is required by drop_position"),
        ("http500", {"symbol": "BTCUSDT"}, "only used by it"),
        ("drop_position", {"symbol": ""}, "exchange symbol"),
    ],
)
def test_drop_position_needs_a_symbol(kind, options, error):
    with pytest.raises(ValueError, match=error):
        Simulator(MIXED).inject(kind, **options)


def test_fault_scope_count_and_clearing():
    async def main():
        async with run_simulator(MIXED) as sim, exchange(sim, "k1") as ex1, exchange(sim, "k2") as ex2:
            await ex1.load_markets()
            await ex2.load_markets()
            sim.inject("http401", count=None, api_key="k2")  # until cleared, only k2's requests
            await ex1.fetch_balance()
            await ex2.fetch_mark_prices()  # public: no API key header, not affected
            for _ in range(2):
                with pytest.raises(ccxt.AuthenticationError):
                    await ex2.fetch_balance()
            sim.clear_faults()
            await ex2.fetch_balance()
            sim.inject("http500", count=2, path="positionRisk")
            await ex1.fetch_balance()
            for _ in range(2):
                with pytest.raises(ccxt.OperationFailed):
                    await ex1.fetch_positions()
            assert len(await ex1.fetch_positions()) == 3

    asyncio.run(main())


def test_latency_applies_to_every_request_and_respects_ccxt_timeout():
    async def main():
        async with run_simulator(MIXED) as sim, exchange(sim, "k1", timeout=200) as ex:
            await ex.load_markets()
            sim.set_latency(0.05)
            started = asyncio.get_running_loop().time()
            await ex.fetch_balance()
            assert asyncio.get_running_loop().time() - started >= 0.05
            sim.set_latency(0.4)
            with pytest.raises(ccxt.RequestTimeout):
                await ex.fetch_balance()

    asyncio.run(main())


def test_request_counters_and_404_for_unknown_endpoints():
    async def main():
        async with run_simulator(MIXED) as sim, exchange(sim, "k1") as ex:
            await ex.load_markets()
            await ex.fetch_balance()
            await ex.fetch_balance()
            with pytest.raises(ccxt.ExchangeError, match="-5000"):
                await ex.fetch_funding_rate_history(BTC)  # not simulated: 404 + Binance JSON
            assert sim.request_counts() == {
                (None, "/fapi/v1/exchangeInfo"): 1,
                ("k1", "/fapi/v3/account"): 2,
                (None, "/fapi/v1/fundingRate"): 1,
            }
            assert sim.request_total() == 4
            sim.reset_counts()
            assert sim.request_total() == 0 and sim.request_counts() == {}

    asyncio.run(main())


def test_control_api_over_http():
    async def main():
        async with run_simulator(MIXED) as sim, aiohttp.ClientSession() as http, exchange(sim, "k2") as ex:
            async def call(method, path, body=None, status=200):
                async with http.request(method, sim.url + path, json=body) as resp:
                    assert resp.status == status, await resp.text()
                    return await resp.json()

            state = await call("GET", "/control/state")
            assert state["prices"]["BTCUSDT"] == 52000 and set(state["accounts"]) == {"k1", "k2"}
            assert state["accounts"]["k1"]["cross_margin_ratio"] == approx(277.5 / 12000)
            state = await call("POST", "/control/prices", {"ETHUSDT": 3100})
            assert state["pinned"] == ["ETHUSDT"] and (await ex.fetch_mark_prices())[ETH]["markPrice"] == 3100
            await call("POST", "/control/prices", {"NOPE": 1}, status=400)
            await call("POST", "/control/accounts/k3", {"wallet_balance": 500, "positions": [
                {"symbol": "BTCUSDT", "side": "short", "size": 0.01, "entry_price": 52000}]})
            async with exchange(sim, "k3") as ex3:
                (pos,) = await ex3.fetch_positions()
                assert (pos["side"], pos["contracts"]) == ("short", 0.01)
            await call("POST", "/control/accounts/k3", {"positions": [{"symbol": "BTCUSDT"}]}, status=400)
            fault = await call("POST", "/control/faults", {"kind": "http500", "count": None, "path": "premiumIndex"})
            assert fault["count"] is None and (await call("GET", "/control/faults"))[0]["kind"] == "http500"
            await call("POST", "/control/faults", {"kind": "explode"}, status=400)
            await call("POST", "/control/faults", {"kind": "drop_position"}, status=400)  # which symbol?
            dropped = await call("POST", "/control/faults", {"kind": "drop_position", "symbol": "ETHUSDT", "path": "/fapi/v3/positionRisk", "count": 1})
            assert (dropped["kind"], dropped["symbol"]) == ("drop_position", "ETHUSDT")
            await call("DELETE", "/control/faults")
            await call("POST", "/control/faults", {"kind": "http500", "count": None, "path": "premiumIndex"})
            with pytest.raises(ccxt.OperationFailed):
                await ex.fetch_mark_prices()
            await call("DELETE", "/control/faults")
            await ex.fetch_mark_prices()
            counts = await call("GET", "/control/requests")
            assert counts["total"] == sim.request_total() >= 4
            assert {"api_key": None, "path": "/fapi/v1/premiumIndex", "count": 3} in counts["requests"]
            await call("DELETE", "/control/requests")
            assert (await call("GET", "/control/requests"))["total"] == 0  # control calls are not counted
            assert (await call("POST", "/control/latency", {"seconds": 0.01}))["latency"] == 0.01
            state = await call("POST", "/control/time", {"elapsed": 42, "speed": 0})
            assert state["elapsed"] == approx(42) and state["speed"] == 0
            state = await call("POST", "/control/scenario", {"name": "demo"})
            assert set(state["accounts"]) == {"demo-key", "demo-iso-key"} and state["pinned"] == []
            state = await call("POST", "/control/scenario", {"toml": 'name = "t"\n[prices]\nBTCUSDT = 1\n'})
            assert state["scenario"] == "t" and state["accounts"] == {}
            await call("POST", "/control/scenario", {"toml": "[[accounts]]\n"}, status=400)
            await call("POST", "/control/reset")

    asyncio.run(main())


def test_ccxt_config_covers_every_binanceusdm_api_url():
    ex = ccxt.binanceusdm()
    assert set(API_PATHS) == set(ex.urls["api"]) - {"ws"}
    config = ccxt_config_for("http://127.0.0.1:1234/")
    ex = ccxt.binanceusdm({"apiKey": "k", "secret": "s", **config})
    assert all(url.startswith("http://127.0.0.1:1234/") for key, url in ex.urls["api"].items() if key != "ws")
    assert ex.urls["api"]["ws"]["linear"] == "ws://127.0.0.1:1234/ws"  # ccxt.pro: /market/ws/…, /private/ws?listenKey=…
    assert ex.urls["api"]["fapiPrivateV3"] == "http://127.0.0.1:1234/fapi/v3"
    assert ex.options["fetchCurrencies"] is False and ex.options["fetchMargins"] is False
    assert ex.options["recvWindow"] == 10000  # the rest of the options survive the deep merge


def test_config_snippet_is_toml_with_the_same_ccxt_config():
    snippet = config_snippet("http://127.0.0.1:8765", load_scenario("demo"))
    accounts = tomllib.loads(snippet)["accounts"]
    assert [a["api_key"] for a in accounts] == ["demo-key", "demo-iso-key"]
    assert accounts[0]["exchange"] == "binanceusdm"
    assert accounts[0]["ccxt"] == ccxt_config_for("http://127.0.0.1:8765")


def test_main_simulate_serves_until_interrupted_and_does_not_import_ccxt():
    code = (
        "import sys; from alerter.simulator import main_simulate; "
        "assert 'ccxt' not in sys.modules; sys.exit(main_simulate(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--scenario", "demo", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("simulator: scenario 'demo' on http://127.0.0.1:"), first + proc.stderr.read()
        url = first.rsplit(" ", 1)[1].strip()

        async def ping():
            async with aiohttp.ClientSession() as http, http.get(url + "/fapi/v1/time") as resp:
                return (await resp.json())["serverTime"]

        assert asyncio.run(ping()) > 0
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        out, err = proc.stdout.read(), proc.stderr.read()  # not communicate(): readline() buffered ahead
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert 'exchange = "binanceusdm"' in out and "simulator stopped" in out
    bad = subprocess.run(
        [sys.executable, "-c", code, "--scenario", str(Path("/nonexistent/x.toml"))], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "cannot read scenario" in bad.stderr


def test_demo_through_ccxt_on_a_fast_forwarded_clock():
    async def main():
        async with run_simulator("demo", clock=FakeClock()) as sim, exchange(sim, "demo-key") as ex:
            ratios = []
            for t in (0, 100, 150):
                sim.set_elapsed(t)
                info = (await ex.fetch_balance())["info"]  # demo-key is all cross
                margin = float(info["totalCrossWalletBalance"]) + float(info["totalCrossUnPnl"])
                ratios.append(float(info["totalMaintMargin"]) / margin)
        assert 0.27 < ratios[0] < 0.33 and 0.85 < ratios[1] < 1.0 and ratios[2] < 0.40

    asyncio.run(main())


def test_signed_endpoints_need_key_timestamp_and_signature_but_any_signature_passes():
    async def main():
        async with run_simulator(MIXED) as sim, aiohttp.ClientSession() as http:
            async def get(query, headers):
                async with http.get(sim.url + "/fapi/v3/account" + query, headers=headers) as resp:
                    return resp.status, await resp.json()

            key = {"X-MBX-APIKEY": "k1"}
            assert await get("?timestamp=1&signature=x", {}) == (401, {"code": -2014, "msg": "API-key format invalid."})
            status, body = await get("?timestamp=1", key)
            assert (status, body["code"]) == (400, -1102) and "'signature'" in body["msg"]
            status, body = await get("?signature=x", key)
            assert (status, body["code"]) == (400, -1102) and "'timestamp'" in body["msg"]
            status, body = await get("?timestamp=1&signature=not-even-hex", key)
            assert status == 200 and body["totalWalletBalance"] == "11500.00000000"

    asyncio.run(main())
