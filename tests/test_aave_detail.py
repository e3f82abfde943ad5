"""Aave's per-asset detail: each collateral asset's liquidation price, and the account figure kept
when the detail cannot be read. Synthetic positions on the loopback chain (no public recording
of these reads exists); the liquidation prices are checked against the protocol's rule
(health factor = Σ collateral × price × threshold ÷ debt reaches 1)."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerter import notify
from alerter.health import evaluate
from alerter.models import RepeatSchedule, Thresholds
from alerter.policy import decide
from alerter.simulator.chain import USDC, WETH, AavePosition, encode_reserves, run_chain
from alerter.sources import aave, aavedetail
from alerter.sources.aavedetail import Holding
from alerter.sources.chains import CHAINS
from alerter.sources.errors import SourceError
from alerter.sources.rpc import selector
from alerter.sources.rpc import RpcClient

BASE = CHAINS["base"]
POOL = aave.AAVE["base"]
USER = "0x1111111111111111111111111111111111111111"


def test_selectors_are_the_data_providers_and_oracles():
    assert selector("getAllReservesTokens()") == aavedetail.GET_ALL_RESERVES_TOKENS
    assert selector("getUserReserveData(address,address)") == aavedetail.GET_USER_RESERVE_DATA
    assert selector("getReserveConfigurationData(address)") == aavedetail.GET_RESERVE_CONFIGURATION_DATA
    assert selector("getAssetPrice(address)") == aavedetail.GET_ASSET_PRICE


async def _read(fault: tuple[str, str] | None = None, eth_price: float = 2000.0):
    async with run_chain(BASE) as chain:
        chain.aave(POOL.pool, AavePosition(USER, collateral_eth=2.0, eth_price=3000.0, debt_usd=2490.0),
                   data_provider=POOL.data_provider, oracle=POOL.oracle)
        chain.set_price(eth_price)
        if fault:
            chain.fault(fault[0], method=fault[1], count=None) if fault[0] != "revert-later" else None
        async with RpcClient(chain.url, BASE) as rpc:
            if fault and fault[0] == "revert-later":  # the account read passes, every detail read after it reverts
                head = await rpc.head()
                (raw,) = await rpc.calls([aave.account_call(POOL, USER)], head)
                data = aave.decode(raw, "x")
                chain.fault("revert", method="eth_call", count=None)
                positions = await aave.read_positions(rpc, POOL, USER, head, data)
                return aave.snapshot("aave-base", "aave", data, positions=positions)
            return await aave.fetch(rpc, POOL, USER, "aave-base", "aave")


def read(**kwargs):
    return asyncio.run(_read(**kwargs))


def test_collateral_is_listed_with_its_liquidation_price():
    snapshot = read()
    health = evaluate(snapshot, target=0.4)[0]
    (weth,) = health.top_positions
    # 2 WETH against 2,490 USDC at an 83 % threshold: HF 1 at 2,490 ÷ (2 × 0.83) = 1,500 USD
    assert weth.symbol == "WETH" and weth.mark_price == 2000.0 and weth.notional == pytest.approx(4000.0)
    assert weth.liquidation_price == pytest.approx(1500.0, rel=1e-9)
    assert health.liquidation_move == pytest.approx(-0.25, rel=1e-9)  # the one collateral: its own distance
    assert health.own_figure.text(health.margin_ratio) == "health factor 1.33"
    _, alerts = decide(None, health, Thresholds(), RepeatSchedule(), snapshot.fetched_at)
    title, body = notify.render(alerts, markdown=False)
    assert title == "CALL · aave-base · margin ratio 75 % = health factor 1.33 (call at 70 % = health factor 1.42)"
    # the levers in the assets, at the oracle's prices: 3,500 USD ÷ 2,000 = 1.75 WETH; the repay figure is the USD one in USDC at 1.00
    assert body.splitlines() == [
        "Equity 4,000.00 USD · maintenance margin 3,000.00 USD",
        "Add 1.75 WETH of collateral or repay 1,739.53 USDC of debt to get back to 40 %",
        "Liquidation at a −25.0 % move",
        "Largest collateral WETH (4,000.00 USD) · largest debt USDC (2,490.00 USD)",
        "WETH may fall 25.0 % (to 1,500.00 USD on Aave's oracle) before liquidation",
    ]


@pytest.mark.parametrize("method_fault", [("revert-later", None), ("truncated", None), ("empty", None)])
def test_a_failed_detail_keeps_the_account_figure_and_says_so(method_fault):
    if method_fault[0] == "revert-later":
        snapshot = read(fault=method_fault)
    else:
        # the account read is the first eth_call: let it pass, break the rest
        async def go():
            async with run_chain(BASE) as chain:
                chain.aave(POOL.pool, AavePosition(USER, collateral_eth=2.0, eth_price=2000.0, debt_usd=2490.0),
                           data_provider=POOL.data_provider, oracle=POOL.oracle)
                chain.set_price(2000.0)
                async with RpcClient(chain.url, BASE) as rpc:
                    head = await rpc.head()
                    data = aave.decode((await rpc.calls([aave.account_call(POOL, USER)], head))[0], "x")
                    chain.fault(method_fault[0], method="eth_call", count=None)
                    return aave.snapshot("aave-base", "aave", data, positions=await aave.read_positions(rpc, POOL, USER, head, data))

        snapshot = asyncio.run(go())
    health = evaluate(snapshot, target=0.4)[0]
    assert health.top_positions == ()
    assert health.own_figure.text(health.margin_ratio) == "health factor 1.33 · per-asset detail unavailable"
    assert health.margin_ratio == pytest.approx(2490 / (4000 * 0.83), rel=1e-6)


def test_a_failed_account_read_is_still_an_error():
    with pytest.raises(SourceError):
        read(fault=("revert", "eth_call"))


# ---------------------------------------------------------------- pure

def data_for(holdings, lt_bps: int | None = None) -> aave.AccountData:
    """The Pool's answer for these holdings (V3.3 arithmetic, rounded like the Pool)."""
    collateral = sum(h.collateral_value for h in holdings)
    weighted = sum(h.collateral_value * h.liquidation_threshold_bps / 10_000 for h in holdings)
    debt = sum(h.debt_value for h in holdings)
    lt = lt_bps if lt_bps is not None else round(weighted / collateral * 10_000)
    hf = round(collateral * lt / 10_000 / debt * 1e18)
    return aave.AccountData(round(collateral * 1e8), round(debt * 1e8), 0, lt, min(lt, 8000), hf)


def test_two_collaterals_each_liquidate_with_the_other_fixed():
    holdings = (Holding("WETH", WETH, 2.0, 0.0, 2000.0, 8300), Holding("cbBTC", "0x" + "cb" * 20, 0.05, 0.0, 60000.0, 7800),
                Holding("USDC", USDC, 0.0, 4000.0, 1.0, 0))
    data = data_for(holdings)
    prices = aavedetail.liquidation_prices(holdings, data)
    for h in holdings[:2]:
        others = sum(o.collateral_value * o.liquidation_threshold_bps / 10_000 for o in holdings[:2] if o is not h)
        # at its liquidation price, the protocol's own rule reads 1 (to the basis-point rounding of the Pool's average threshold)
        exact = (others + h.collateral * prices[h.asset] * h.liquidation_threshold_bps / 10_000) / 4000.0
        assert exact == pytest.approx(1.0, rel=1e-4)


def test_emode_thresholds_fall_back_to_the_accounts_average():
    # E-mode: the category's 93 % applies, the reserve configuration says 80.5 %
    holdings = (Holding("wstETH", "0x" + "57" * 20, 10.0, 0.0, 4000.0, 8050), Holding("WETH", WETH, 0.0, 35.0, 3500.0, 0))
    data = data_for(holdings, lt_bps=9300)
    (price,) = aavedetail.liquidation_prices(holdings, data).values()
    assert price == pytest.approx(35 * 3500 / (10 * 0.93), rel=1e-6)  # HF 1 at the category's threshold


def test_no_liquidation_price_when_the_asset_can_go_to_zero():
    holdings = (Holding("WETH", WETH, 1.0, 0.0, 3000.0, 8300), Holding("cbBTC", "0x" + "cb" * 20, 1.0, 0.0, 60000.0, 7800),
                Holding("USDC", USDC, 0.0, 1000.0, 1.0, 0))
    assert aavedetail.liquidation_prices(holdings, data_for(holdings))[WETH] is None


def test_reserves_decode_what_the_abi_encodes():
    raw = bytes.fromhex(encode_reserves([("WETH", WETH), ("USDC", USDC), ("a-very-long-symbol-over-32-bytes-of-text!", USDC)])[2:])
    reserves = aavedetail.decode_reserves(raw, "x")
    assert [(r.symbol, r.asset) for r in reserves] == [("WETH", WETH.lower()), ("USDC", USDC.lower()),
                                                        ("a-very-long-symbol-over-32-bytes-of-text!", USDC.lower())]


@given(st.binary(max_size=400))
def test_reserves_of_any_bytes_decode_or_refuse_as_data(raw):
    try:
        aavedetail.decode_reserves(raw, "x")
    except SourceError as e:
        assert e.kind == "data"


def test_a_healthy_account_is_read_without_its_detail():
    """Above DETAIL_BELOW the account costs the shared round alone: no per-asset read, and no note."""
    from types import SimpleNamespace

    from alerter.sources import onchain

    async def go():
        async with run_chain(BASE) as chain:
            # 4 WETH at 3,000 USD against 2,000 USD: health factor 4.98
            chain.aave(POOL.pool, AavePosition(USER, collateral_eth=4.0, eth_price=3000.0, debt_usd=2000.0),
                       data_provider=POOL.data_provider, oracle=POOL.oracle)
            account = SimpleNamespace(chain="base", credentials=lambda: {"wallet_address": USER, "rpc_url": chain.url})
            client = aave.AaveClient("aave", account, 5.0)
            try:
                balance, _ = await onchain.fetch(SimpleNamespace(exchange=client, call=lambda method: method()))
            finally:
                await client.close()
            return aave.normalise("a", "aave", balance, [], {}), [m for m, _ in chain.requests if m == "eth_call"]

    snapshot, calls = asyncio.run(go())
    health = evaluate(snapshot, target=0.4)[0]
    assert calls == ["eth_call"] and health.top_positions == ()
    assert health.own_figure.text(health.margin_ratio) == "health factor 4.98"


def test_many_accounts_detail_is_merged_per_block():
    """20 accounts at risk on one endpoint: the account figures in one round, and their detail in
    rounds merged per block (the reserve list once, the 40 user reads in one batch, the 4 asset reads
    once for all), so the requests per block do not grow with the accounts."""
    from types import SimpleNamespace

    from alerter.sources import onchain

    users = [f"0x{i:040x}" for i in range(1, 21)]

    async def go():
        async with run_chain(BASE) as chain:
            for user in users:
                chain.aave(POOL.pool, AavePosition(user, collateral_eth=1.0, eth_price=3000.0, debt_usd=1200.0),
                           data_provider=POOL.data_provider, oracle=POOL.oracle)
            clients = [aave.AaveClient("aave", SimpleNamespace(chain="base", credentials=lambda u=u: {"wallet_address": u, "rpc_url": chain.url}), 5.0)
                       for u in users]
            try:
                answers = await asyncio.gather(*(onchain.fetch(SimpleNamespace(exchange=c, call=lambda method: method())) for c in clients))
            finally:
                for c in clients:
                    await c.close()
            return [aave.normalise("a", "aave", balance, [], {}) for balance, _ in answers], chain.posts

    snapshots, posts = asyncio.run(go())
    assert posts == 5  # head, account figures, reserve list, user reserves, asset configurations and prices
    assert all(s.positions[0].liquidation_price == pytest.approx(1200 / 0.83, rel=1e-9) for s in snapshots)
