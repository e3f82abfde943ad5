"""Compound V3 (Comet) on the loopback chain: no public recording of a Comet's answers exists,
so this venue is "not proved"; these tests check the reads and the normalisation against Comet's
own rule (isLiquidatable, computed by the simulator with Comet's integer arithmetic)."""

from __future__ import annotations

import asyncio

import pytest

from alerter.health import evaluate
from alerter.simulator.chain import IS_LIQUIDATABLE, CometPosition, run_chain
from alerter.sources import compound
from alerter.sources.chains import CHAINS, is_address
from alerter.sources.errors import SourceError
from alerter.sources.rpc import selector
from alerter.sources.rpc import RpcClient

BASE = CHAINS["base"]
MARKET = compound.MARKETS[("base", "usdc")]
USER = "0x3333333333333333333333333333333333333333"


def test_selectors_are_comets():
    for name, signature in (("BASE_TOKEN_PRICE_FEED", "baseTokenPriceFeed()"), ("BASE_SCALE", "baseScale()"), ("NUM_ASSETS", "numAssets()"),
                            ("GET_ASSET_INFO", "getAssetInfo(uint8)"), ("COLLATERAL_BALANCE_OF", "collateralBalanceOf(address,address)"),
                            ("GET_PRICE", "getPrice(address)"), ("BORROW_BALANCE_OF", "borrowBalanceOf(address)"),
                            ("IS_LIQUIDATABLE", "isLiquidatable(address)"), ("SYMBOL", "symbol()")):
        assert getattr(compound, name) == selector(signature), name


def test_every_comet_address_passes_its_checksum():
    assert all(is_address(m.comet) for m in compound.MARKETS.values())
    assert "avalanche" not in compound.CHAINS_WITH_COMET


async def _walk(prices, *, override_liquidatable: int | None = None):
    out = []
    async with run_chain(BASE) as chain:
        chain.comet(MARKET.comet, CometPosition(USER, collateral_eth=1.0, debt_usdc=1660.0))
        async with RpcClient(chain.url, BASE) as rpc:
            for price in prices:
                chain.set_price(price)
                if override_liquidatable is not None:
                    chain.answer(MARKET.comet, IS_LIQUIDATABLE + "0" * 24 + USER[2:], "0x" + f"{override_liquidatable:064x}")
                out.append(await compound.fetch(rpc, MARKET, USER, "comet"))
        return out, chain.posts


def test_the_ratio_reaches_100_percent_exactly_where_comet_liquidates():
    # 1 WETH against 1,660 USDC at an 83 % liquidation factor: liquidatable below 2,000 USD
    snapshots, posts = asyncio.run(_walk([3000.0, 2000.01, 1999.99]))
    healths = [evaluate(s, target=0.4)[0] for s in snapshots]
    assert [round(h.margin_ratio, 6) for h in healths] == [round(1660 / (3000 * 0.83), 6), round(1660 / (2000.01 * 0.83), 6), round(1660 / (1999.99 * 0.83), 6)]
    assert healths[1].margin_ratio < 1 <= healths[2].margin_ratio
    (weth,) = healths[0].top_positions
    assert weth.symbol == "WETH" and weth.liquidation_price == pytest.approx(2000.0, rel=1e-9)
    assert healths[0].own_figure.text(healths[0].margin_ratio) == "liquidation risk 67 %"
    assert healths[0].currency == "USD" and healths[0].repay_needed is not None
    assert posts == 3 + 3 * 2  # the market's asset list in three batches once (then kept), then a head and one batch per poll


def test_a_verdict_that_contradicts_the_figure_is_blind():
    with pytest.raises(SourceError) as caught:
        asyncio.run(_walk([3000.0], override_liquidatable=1))  # "liquidatable" at 67 %
    assert caught.value.kind == "data" and "inconsistent" in caught.value.message


def test_no_debt_is_ratio_zero():
    async def go():
        async with run_chain(BASE) as chain:
            chain.comet(MARKET.comet, CometPosition(USER, collateral_eth=1.0, debt_usdc=0.0))
            async with RpcClient(chain.url, BASE) as rpc:
                return await compound.fetch(rpc, MARKET, USER, "comet")

    health = evaluate(asyncio.run(go()), target=0.4)[0]
    assert health.margin_ratio == 0.0 and health.equity == pytest.approx(3000.0)


def test_a_reverted_read_names_the_comet_and_chain():
    async def go():
        async with run_chain(BASE) as chain:
            chain.comet(MARKET.comet, CometPosition(USER, collateral_eth=1.0, debt_usdc=1000.0))
            async with RpcClient(chain.url, BASE) as rpc:
                await compound.fetch(rpc, MARKET, USER, "comet")  # the asset list, kept
                chain.fault("revert", method="eth_call")
                await compound.fetch(rpc, MARKET, USER, "comet")

    with pytest.raises(SourceError) as caught:
        asyncio.run(go())
    assert f"Compound V3 USDC Comet.borrowBalanceOf at {MARKET.comet} on Base reverted" in caught.value.message
