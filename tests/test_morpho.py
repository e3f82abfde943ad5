"""Morpho Blue on the loopback chain: no public recording of Morpho's answers exists, so this
venue is "not proved"; these tests check the reads and the normalisation against Morpho's own
rule (_isHealthy: borrowed, rounded up, against collateral × price ÷ 1e36 × LLTV)."""

from __future__ import annotations

import asyncio

import pytest

from alerter.health import evaluate
from alerter.simulator.chain import MorphoPosition, run_chain
from alerter.sources import morpho
from alerter.sources.chains import CHAINS, is_address
from alerter.sources.errors import SourceError
from alerter.sources.rpc import selector
from alerter.sources.rpc import RpcClient

BASE = CHAINS["base"]
USER = "0x4444444444444444444444444444444444444444"
M1 = "0x" + "b3" * 32
M2 = "0x" + "c4" * 32


def test_selectors_are_morphos():
    for name, signature in (("POSITION", "position(bytes32,address)"), ("MARKET", "market(bytes32)"),
                            ("ID_TO_MARKET_PARAMS", "idToMarketParams(bytes32)"), ("PRICE", "price()"),
                            ("DECIMALS", "decimals()"), ("SYMBOL", "symbol()")):
        assert getattr(morpho, name) == selector(signature), name
    assert all(is_address(a) for a in morpho.MORPHO.values()) and "avalanche" not in morpho.MORPHO


async def _read(prices, positions, market_ids):
    out = []
    async with run_chain(BASE) as chain:
        for p in positions:
            chain.morpho(p)
        for m in market_ids:  # an id no market was created with: Morpho's mapping answers zeros
            if not any(p.market_id == m for p in positions):
                chain.answer(morpho.MORPHO["base"], morpho.ID_TO_MARKET_PARAMS + m[2:], "0x" + "00" * 160)
        async with RpcClient(chain.url, BASE) as rpc:
            for price in prices:
                chain.set_price(price)
                out.append(await morpho.fetch(rpc, "base", market_ids, USER, "morpho-base"))
    return out


def test_each_market_is_a_scope_and_100_percent_is_morphos_boundary():
    # M1: 1 WETH against 1,720 USDC at LLTV 86 %: unhealthy below 2,000 USD; M2: 2 WETH against 1,000 USDC
    positions = [MorphoPosition(USER, M1, 1.0, 1720.0), MorphoPosition(USER, M2, 2.0, 1000.0, oracle="0x" + "0b" * 20)]
    (first, second) = asyncio.run(_read([3000.0, 1999.0], positions, [M1, M2]))
    healths = {h.scope: h for h in evaluate(first, target=0.4)}
    assert set(healths) == {"market:0xb3b3b3b3", "market:0xc4c4c4c4"}
    m1 = healths["market:0xb3b3b3b3"]
    assert m1.currency == "USDC" and m1.margin_ratio == pytest.approx(1720 / (3000 * 0.86), rel=1e-9)
    (weth,) = m1.top_positions
    assert weth.liquidation_price == pytest.approx(2000.0, rel=1e-9)
    assert m1.own_figure.text(m1.margin_ratio) == "LLTV used 67 %"
    later = {h.scope: h for h in evaluate(second, target=0.4)}
    assert later["market:0xb3b3b3b3"].margin_ratio > 1 > later["market:0xc4c4c4c4"].margin_ratio
    assert second.equity == pytest.approx(1999.0)  # the account's summary figures are the worst market's


def test_a_market_id_that_is_no_market_is_refused():
    with pytest.raises(SourceError) as caught:
        asyncio.run(_read([3000.0], [MorphoPosition(USER, M1, 1.0, 1720.0)], ["0x" + "99" * 32]))
    assert caught.value.kind == "data" and "is not a market of Morpho on base" in caught.value.message


def test_borrowed_assets_round_up_as_morpho_does():
    params = morpho.MarketParams(M1, "0x1", "0x2", "0x3", "0x4", 86 * 10**16, 6, 18, "USDC", "WETH")
    reading = morpho.MarketReading(params, borrow_shares=1, collateral=0, total_borrow_assets=10, total_borrow_shares=10**7, price=0)
    assert morpho.borrowed_assets(reading) == 1  # 1 × 11 ÷ (1e7 + 1e6), rounded up
    assert morpho.is_market_id(M1) and not morpho.is_market_id(M1[:-1])


def test_interest_since_the_markets_last_update_is_accrued_as_morpho_would():
    """A market untouched for an hour at 10 % a year: the debt is what Morpho would accrue at the
    block (the IRM's borrowRateView, compounded by wTaylorCompounded), not the stale total."""
    irm = "0x" + "1e" * 20
    rate = 10**17 // 31_536_000  # 10 % a year, per second, WAD
    position = MorphoPosition(USER, M1, 1.0, 2000.0, irm=irm, rate=rate, idle_s=3600)
    (snapshot,) = asyncio.run(_read([3000.0], [position], [M1]))
    (health,) = evaluate(snapshot, target=0.4)
    total = 10**13 + 10**13 * morpho.taylor_compounded(rate, 3600) // 10**18
    borrowed = -(-(2000 * 10**6 * 10**6) * (total + 1) // (10**19 + 10**6))
    assert borrowed > 2000 * 10**6  # the stale total would have read exactly 2,000 USDC
    max_borrow = (10**18 * 3000 * 10**24 // 10**36) * (86 * 10**16) // 10**18
    assert health.margin_ratio == pytest.approx(borrowed / max_borrow, rel=1e-12)
