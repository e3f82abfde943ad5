"""Binance COIN-M: the recorded /dapi/v1/positionRisk and Binance's documented /dapi/v1/account
example (tests/fixtures/real/binancecoinm/, see PROVENANCE.md there), replayed to ccxt's real
binancecoinm class through the real source and health.

Expected numbers are literals from the served payload, with a comment naming the field. Where an
account body is synthetic (no /dapi/v1/account was recorded with a position), the test says so
and asserts only what the recorded positionRisk states, plus how the synthetic figures are routed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from alerter.health import evaluate
from alerter.models import ACCOUNT_SCOPE
from alerter.simulator.replay import Contract, run_replay
from alerter.sources import RetryPolicy, SourceError, build_source

REAL = Path(__file__).parent / "fixtures" / "real" / "binancecoinm"
ONCE = RetryPolicy(attempts=1)
REL = 1e-9

# Binance's published contract sizes: BTCUSD 100 USD, other COIN-M contracts 10 USD
BTCUSD_PERP = Contract("BTCUSD_PERP", "BTC", "USD", "BTC", "inverse", "100")
BCHUSD_241227 = Contract("BCHUSD_241227", "BCH", "USD", "BCH", "inverse", "10")
ETHUSD_PERP = Contract("ETHUSD_PERP", "ETH", "USD", "ETH", "inverse", "10")


def replay(bodies: dict, contracts=(BTCUSD_PERP, BCHUSD_241227)):
    async def run():
        async with run_replay("binancecoinm", bodies, list(contracts)) as server:
            async with build_source(server.account(), retry=ONCE) as source:
                snapshot = await source.fetch_snapshot()
            assert server.unknown == []
            return snapshot, server.paths()

    snapshot, paths = asyncio.run(run())
    return snapshot, {h.scope: h for h in evaluate(snapshot, target=0.4)}, paths


def refused(bodies: dict, contracts=(BTCUSD_PERP, BCHUSD_241227)) -> SourceError:
    async def run():
        async with run_replay("binancecoinm", bodies, list(contracts)) as server:
            async with build_source(server.account(), retry=ONCE) as source:
                await source.fetch_snapshot()

    with pytest.raises(SourceError) as caught:
        asyncio.run(run())
    return caught.value


def asset(coin: str, wallet: str, pnl: str, maint: str) -> dict:
    return {"asset": coin, "walletBalance": wallet, "unrealizedProfit": pnl, "marginBalance": wallet, "maintMargin": maint,
            "initialMargin": "0", "positionInitialMargin": "0", "openOrderInitialMargin": "0", "maxWithdrawAmount": wallet,
            "crossWalletBalance": wallet, "crossUnPnl": pnl, "availableBalance": wallet, "updateTime": 0}


def account_row(symbol: str, amount: str, maint: str, isolated: bool = False, side: str = "BOTH") -> dict:
    return {"symbol": symbol, "positionAmt": amount, "initialMargin": "0", "maintMargin": maint, "unrealizedProfit": "0",
            "positionInitialMargin": "0", "openOrderInitialMargin": "0", "leverage": "20", "isolated": isolated,
            "positionSide": side, "entryPrice": "0", "maxQty": "100", "updateTime": 0}


def synthetic_account(assets: list[dict], rows: list[dict]) -> dict:
    return {"assets": assets, "positions": rows, "canDeposit": True, "canTrade": True, "canWithdraw": True, "feeTier": 0, "updateTime": 0}


# synthetic /dapi/v1/account for the recorded position: BTC wallet 0.01, cross PnL and the
# position's maintenance as we choose them (Binance recorded none with a position)
RECORDED_CROSS = {
    "/dapi/v1/account": synthetic_account([asset("BTC", "0.01", "0.00004318", "0.0002")], [account_row("BTCUSD_PERP", "-3", "0.0002")]),
    "/dapi/v1/positionRisk": REAL / "cross-positionRisk.json",
}


@pytest.fixture(scope="module")
def recorded_cross():
    return replay(RECORDED_CROSS)


def test_recorded_cross_position_liquidation_distance_is_binances(recorded_cross):
    snapshot, healths, paths = recorded_cross
    assert "/dapi/v1/positionRisk" in paths and "/dapi/v1/account" in paths
    [position] = snapshot.positions  # BCHUSD_241227 has positionAmt "0": no position
    assert position.symbol == "BTC/USD:BTC" and position.side == "short"  # positionAmt "-3"
    assert position.inverse and position.currency == "BTC"
    assert position.contracts == 300  # positionAmt 3 contracts × 100 USD
    assert position.notional == pytest.approx(0.00439662, rel=REL)  # notionalValue "-0.00439662" (BTC)
    assert position.liquidation_price == 72491.16879818  # liquidationPrice
    [risk] = healths["cross:BTC"].top_positions
    assert risk.liquidation_move == pytest.approx(72491.16879818 / 68234.2 - 1, rel=REL)  # liquidationPrice ÷ markPrice
    # one cross position: the account liquidates where Binance says the position does
    assert healths["cross:BTC"].liquidation_move == pytest.approx(72491.16879818 / 68234.2 - 1, rel=REL)


def test_recorded_cross_scope_is_in_the_margin_coin(recorded_cross):
    snapshot, healths, _ = recorded_cross
    assert set(healths) == {"cross:BTC"}  # one cross scope per margin coin, no "account" scope
    account = healths["cross:BTC"]
    assert account.currency == "BTC"
    # synthetic account: crossWalletBalance 0.01 + crossUnPnl 0.00004318; maintMargin 0.0002
    assert account.equity == pytest.approx(0.01004318, rel=REL)
    assert account.maintenance_margin == pytest.approx(0.0002, rel=REL)
    assert account.margin_ratio == pytest.approx(0.0002 / 0.01004318, rel=REL)
    assert snapshot.positions[0].maintenance_margin == pytest.approx(0.0002, rel=REL)  # account positions[].maintMargin


def test_doc_account_without_positions_is_binances_btc_balance():
    snapshot, healths, _ = replay({"/dapi/v1/account": REAL / "doc-account.json", "/dapi/v1/positionRisk": []})
    account = healths[ACCOUNT_SCOPE]
    assert account.currency == "BTC"  # assets[0].asset
    assert account.equity == pytest.approx(0.00241969, rel=REL)  # crossWalletBalance + crossUnPnl "0.00000000"
    assert account.maintenance_margin == 0  # maintMargin "0.00000000"
    assert account.margin_ratio == 0
    assert snapshot.positions == ()


def test_position_the_account_answer_lacks_is_refused():
    bodies = {"/dapi/v1/account": REAL / "doc-account.json", "/dapi/v1/positionRisk": REAL / "cross-positionRisk.json"}
    error = refused(bodies)
    assert "BTC/USD:BTC short (-3) is in the positions answer but missing from the account answer" in str(error)


def test_position_the_positions_answer_lacks_is_refused():
    bodies = {"/dapi/v1/account": synthetic_account([asset("BTC", "0.01", "0", "0.0002")], [account_row("BTCUSD_PERP", "-3", "0.0002")]),
              "/dapi/v1/positionRisk": []}
    assert "BTCUSD_PERP short is in the account answer but missing from the positions answer" in str(refused(bodies))


def test_each_margin_coin_is_a_cross_scope_and_isolated_is_its_own():
    """Synthetic (no recording has two coins or an isolated COIN-M position): the recorded BTC
    position plus an ETH cross and an ETH isolated position. Each coin is a cross scope of its
    own, in its coin; the isolated position is a scope of its own."""
    eth_rows = [
        {"symbol": "ETHUSD_PERP", "positionAmt": "50", "entryPrice": "3000", "markPrice": "2900", "unRealizedProfit": "-0.0057",
         "liquidationPrice": "2500", "leverage": "20", "maxQty": "1000", "marginType": "cross", "isolatedMargin": "0",
         "isAutoAddMargin": "false", "positionSide": "BOTH", "notionalValue": "0.17241379", "isolatedWallet": "0", "updateTime": "0"},
        {"symbol": "ETHUSD_PERP", "positionAmt": "-20", "entryPrice": "2800", "markPrice": "2900", "unRealizedProfit": "-0.00246",
         "liquidationPrice": "3100", "leverage": "20", "maxQty": "1000", "marginType": "isolated", "isolatedMargin": "0.004",
         "isAutoAddMargin": "false", "positionSide": "SHORT", "notionalValue": "-0.06896552", "isolatedWallet": "0.00646", "updateTime": "0"},
    ]
    positions = json.loads((REAL / "cross-positionRisk.json").read_text()) + eth_rows
    account = synthetic_account(
        [asset("BTC", "0.01", "0.00004318", "0.0002"), asset("ETH", "0.05", "-0.0057", "0.0045")],
        [account_row("BTCUSD_PERP", "-3", "0.0002"), account_row("ETHUSD_PERP", "50", "0.0035"),
         account_row("ETHUSD_PERP", "-20", "0.001", isolated=True, side="SHORT")],
    )
    snapshot, healths, _ = replay({"/dapi/v1/account": account, "/dapi/v1/positionRisk": positions}, (BTCUSD_PERP, BCHUSD_241227, ETHUSD_PERP))
    assert set(healths) == {"cross:BTC", "cross:ETH", "isolated:ETH/USD:ETH:short"}
    btc = healths["cross:BTC"]
    assert btc.currency == "BTC" and btc.margin_ratio == pytest.approx(0.0002 / 0.01004318, rel=REL)
    assert [p.symbol for p in btc.top_positions] == ["BTC/USD:BTC"]
    cross = healths["cross:ETH"]
    assert [p.symbol for p in cross.top_positions] == ["ETH/USD:ETH"]
    assert snapshot.currency == "ETH"  # the snapshot's summary figures are the worst coin's
    assert cross.currency == "ETH"
    assert cross.equity == pytest.approx(0.05 - 0.0057, rel=REL)  # ETH crossWalletBalance + crossUnPnl
    assert cross.maintenance_margin == pytest.approx(0.0045 - 0.001, rel=REL)  # ETH maintMargin − the isolated one's
    isolated = healths["isolated:ETH/USD:ETH:short"]
    assert isolated.currency == "ETH"
    assert isolated.margin_ratio == pytest.approx(0.001 / 0.004, rel=REL)  # maintMargin ÷ isolatedMargin
    assert isolated.liquidation_move == pytest.approx(3100 / 2900 - 1, rel=REL)  # liquidationPrice ÷ markPrice
