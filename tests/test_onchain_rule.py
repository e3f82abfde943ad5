"""The one rule for every venue (issue 21), for the on-chain lenders: re-priced at the collateral's
own stated liquidation price by the code that re-prices between polls (`health.reprice`), a
scope's ratio reads 100 %. The positions are synthetic (loopback chain): none of these protocols'
per-asset reads has a public recording, and the recorded Aave answers state no price."""

from __future__ import annotations

import asyncio

import pytest

from alerter.health import evaluate, reprice
from alerter.simulator.chain import AavePosition, CometPosition, MorphoPosition, run_chain
from alerter.sources import aave, compound, morpho
from alerter.sources.chains import CHAINS
from alerter.sources.rpc import RpcClient

BASE = CHAINS["base"]
USER = "0x5555555555555555555555555555555555555555"
MARKET_ID = "0x" + "d5" * 32


async def _snapshots():
    pool = aave.AAVE["base"]
    comet = compound.MARKETS[("base", "usdc")]
    async with run_chain(BASE) as chain:
        chain.aave(pool.pool, AavePosition(USER, 1.5, 2500.0, 2100.0), data_provider=pool.data_provider, oracle=pool.oracle)
        chain.comet(comet.comet, CometPosition(USER, collateral_eth=1.5, debt_usdc=2100.0))
        chain.morpho(MorphoPosition(USER, MARKET_ID, 1.5, 2100.0))
        chain.set_price(2500.0)
        async with RpcClient(chain.url, BASE) as rpc:
            return [await aave.fetch(rpc, pool, USER, "aave", "aave"), await compound.fetch(rpc, comet, USER, "comet"),
                    await morpho.fetch(rpc, "base", [MARKET_ID], USER, "morpho")]


@pytest.mark.parametrize("which", [0, 1, 2], ids=["aave", "compound", "morpho"])
def test_the_ratio_is_100_percent_at_the_collaterals_stated_liquidation_price(which):
    snapshot = asyncio.run(_snapshots())[which]
    (position,) = snapshot.positions
    assert position.liquidation_price is not None and position.liquidation_price < position.mark_price
    (health,) = [h for h in evaluate(reprice(snapshot, {position.symbol: position.liquidation_price}), target=0.4)
                 if position.symbol in {p.symbol for p in h.top_positions}]
    # Aave's stated threshold is a rounded average and its HF a rounded quotient: 1e-6; the others are exact to the float
    assert health.margin_ratio == pytest.approx(1.0, rel=1e-6 if which == 0 else 1e-9)
