"""KuCoin futures: recorded /api/v1/positions answers and KuCoin's documented examples
(tests/fixtures/real/kucoinfutures/, see PROVENANCE.md), replayed to ccxt's real kucoinfutures
class through the real source and health.

Expected numbers are literals from the served payloads, with a comment naming the field. No public
recording pairs an account overview with open positions: where a test serves a recording with an
answer of another account (KuCoin's documented overview) or a synthetic one, it says so, and the
figures it asserts are each answer's own.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from alerter import secrets
from alerter.config import ConfigError, build_settings
from alerter.health import evaluate
from alerter.simulator.replay import Contract, run_replay
from alerter.sources import RetryPolicy, SourceError, build_source
from alerter.sources.registry import PROFILES

REAL = Path(__file__).parent / "fixtures" / "real" / "kucoinfutures"
ONCE = RetryPolicy(attempts=1)
REL = 1e-9

# KuCoin's published contract sizes (`multiplier`): XBTUSDTM 0.001 XBT, inverse contracts 1 USD
XBTUSDTM = Contract("XBTUSDTM", "XBT", "USDT", "USDT", "linear", "0.001")
XBTUSDM = Contract("XBTUSDM", "XBT", "USD", "XBT", "inverse", "1")
ETHUSDM = Contract("ETHUSDM", "ETH", "USD", "ETH", "inverse", "1")
CONTRACTS = (XBTUSDTM, XBTUSDM, ETHUSDM)

OVERVIEW = "/api/v1/account-overview"
POSITIONS = "/api/v1/positions"
DOC_OVERVIEW = REAL / "doc-account-overview.json"  # USDT, riskRatio 0.0065289525
# synthetic: an ETH overview for the documented ETHUSDM position (KuCoin documents only a USDT one)
SYNTHETIC_ETH = {"code": "200000", "data": {"accountEquity": 0.01, "unrealisedPNL": -4.975e-7, "marginBalance": 0.0100004975,
                                            "positionMargin": 4.07478e-5, "orderMargin": 0, "frozenFunds": 0, "availableBalance": 0.0099,
                                            "currency": "ETH", "riskRatio": 0.05, "maxWithdrawAmount": 0.0099}}


async def _poll(bodies: dict):
    async with run_replay("kucoinfutures", bodies, list(CONTRACTS)) as server:
        async with build_source(server.account(), retry=ONCE) as source:
            try:
                return await source.fetch_snapshot(), server.requests
            finally:
                assert server.unknown == []


def replay(bodies: dict):
    snapshot, requests = asyncio.run(_poll(bodies))
    return snapshot, {h.scope: h for h in evaluate(snapshot, target=0.4)}, requests


def refused(bodies: dict) -> SourceError:
    with pytest.raises(SourceError) as caught:
        asyncio.run(_poll(bodies))
    return caught.value


def overviews_asked(requests) -> list[str]:
    return [query["currency"] for _, path, query in requests if path == OVERVIEW]


# ------------------------------------------------------------------ a recorded cross position

@pytest.fixture(scope="module")
def recorded_cross():
    # the recorded positions answer with KuCoin's documented USDT overview (another account's)
    return replay({OVERVIEW: DOC_OVERVIEW, POSITIONS: REAL / "cross-positions.json"})


def test_cross_pool_is_kucoins_risk_rate_in_the_settle_currency(recorded_cross):
    snapshot, healths, _ = recorded_cross
    assert set(healths) == {"cross:USDT"}  # one pool per settle currency, no "account" scope
    pool = healths["cross:USDT"]
    assert pool.margin_ratio == pytest.approx(0.0065289525, rel=REL)  # riskRatio
    assert pool.equity == pytest.approx(394.439280806, rel=REL)  # accountEquity (no isolated position)
    assert pool.currency == "USDT"
    assert snapshot.pools[0].wallet_balance == pytest.approx(371.394298816, rel=REL)  # marginBalance
    assert pool.own_figure.text(pool.margin_ratio) == "risk rate 0.65 %"  # as KuCoin's app shows riskRatio
    assert pool.own_figure.notice_ratios() == (("KuCoin's order cancellation", 0.95),)


def test_recorded_cross_position_is_kucoins(recorded_cross):
    snapshot, healths, _ = recorded_cross
    [position] = snapshot.positions
    assert (position.symbol, position.side, position.margin_mode) == ("BTC/USDT:USDT", "long", "cross")  # currentQty 1, CROSS
    assert position.contracts == pytest.approx(0.001, rel=REL)  # currentQty 1 × multiplier 0.001
    assert position.notional == pytest.approx(115.58297, rel=REL)  # markValue
    assert position.maintenance_margin == pytest.approx(0.4623334173, rel=REL)  # posMaint
    assert position.unrealized_pnl == pytest.approx(0.03317, rel=REL)  # unrealisedPnl
    assert position.liquidation_price == 15675.5  # liquidationPrice
    # one cross position: the distance is KuCoin's own liquidationPrice (its reference figure)
    assert healths["cross:USDT"].liquidation_move == pytest.approx(15675.5 / 115582.97 - 1, rel=REL)  # ÷ markPrice


def test_positions_come_first_then_one_overview_per_settle_currency(recorded_cross):
    _, _, requests = recorded_cross
    paths = [path for _, path, _ in requests]
    assert paths.index(POSITIONS) < paths.index(OVERVIEW)
    assert overviews_asked(requests) == ["USDT"]
    assert "/api/ua/v1/account/mode" not in paths and "/api/v3/currencies" not in paths  # no unified-account probe


def test_closed_rows_are_no_positions():
    # recorded in 2021: two closed rows (currentQty 0, isOpen false), with KuCoin's documented overview
    snapshot, healths, requests = replay({OVERVIEW: DOC_OVERVIEW, POSITIONS: REAL / "closed-positions.json"})
    assert snapshot.positions == ()
    assert overviews_asked(requests) == ["USDT"]  # no XBT overview for a closed XBTUSDM row
    assert healths["cross:USDT"].margin_ratio == pytest.approx(0.0065289525, rel=REL)  # riskRatio (open orders)


# ------------------------------------------------------------------ KuCoin's documented example: isolated and inverse cross

@pytest.fixture(scope="module")
def documented():
    return replay({OVERVIEW: DOC_OVERVIEW, f"{OVERVIEW}?currency=ETH": SYNTHETIC_ETH, POSITIONS: REAL / "doc-positions.json"})


def test_isolated_position_is_its_maintenance_over_its_margin(documented):
    snapshot, healths, _ = documented
    health = healths["isolated:BTC/USDT:USDT:long"]
    assert health.equity == pytest.approx(23.0232512243, rel=REL)  # maintMargin (= posMargin + unrealisedPnl)
    assert health.maintenance_margin == pytest.approx(0.4046228699, rel=REL)  # posMaint
    assert health.margin_ratio == pytest.approx(0.4046228699 / 23.0232512243, rel=REL)
    assert health.currency == "USDT"
    [risk] = health.top_positions
    assert risk.liquidation_price == 45704.44  # liquidationPrice
    assert health.liquidation_move == pytest.approx(45704.44 / 68323.06 - 1, rel=REL)  # ÷ markPrice
    # KuCoin's rule, checked on its own figures: at liquidationPrice, posMargin 22.1310912243 plus
    # the PnL (currentQty 1 × 0.001 × (price − avgEntryPrice 67430.9)) is the posMaint
    assert 22.1310912243 + 0.001 * (45704.44 - 67430.9) == pytest.approx(0.4046228699, abs=1e-5)


def test_usdt_pool_leaves_out_the_isolated_margin(documented):
    snapshot, healths, requests = documented
    pool = healths["cross:USDT"]
    assert pool.equity == pytest.approx(394.439280806 - 23.0232512243, rel=REL)  # accountEquity − the isolated maintMargin
    assert pool.margin_ratio == pytest.approx(0.0065289525, rel=REL)  # riskRatio
    assert pool.top_positions == ()  # the USDT position is isolated
    usdt = next(p for p in snapshot.pools if p.currency == "USDT")
    assert usdt.wallet_balance == pytest.approx(371.394298816 - 22.1310912243, rel=REL)  # marginBalance − posMargin
    assert overviews_asked(requests) == ["ETH", "USDT"]


def test_inverse_cross_position_is_in_its_coin(documented):
    snapshot, healths, _ = documented
    pool = healths["cross:ETH"]
    assert pool.currency == "ETH"
    assert pool.margin_ratio == pytest.approx(0.05, rel=REL)  # the synthetic ETH overview's riskRatio
    eth = next(p for p in snapshot.positions if p.symbol == "ETH/USD:ETH")
    assert eth.inverse and eth.currency == "ETH" and eth.side == "long"  # isInverse, settleCurrency, currentQty 1
    assert eth.contracts == 1  # currentQty 1 × 1 USD
    assert eth.notional == pytest.approx(4.07478e-4, rel=REL)  # markValue (ETH)
    assert eth.unrealized_pnl == pytest.approx(-4.975e-7, rel=REL)  # unrealisedPnl (ETH)
    assert eth.liquidation_price == 1429.96  # liquidationPrice
    # KuCoin's documented cross row states no posMaint: the pool's only position carries its maintenance
    assert eth.maintenance_margin == pytest.approx(0.05 * 0.01, rel=REL)
    assert pool.liquidation_move == pytest.approx(1429.96 / 2454.12 - 1, rel=REL)  # liquidationPrice ÷ markPrice
    assert snapshot.currency == "ETH" and snapshot.equity == pytest.approx(0.01)  # the worst pool stands for the account


# ------------------------------------------------------------------ refused, not guessed

def _doc_positions() -> dict:
    return json.loads((REAL / "doc-positions.json").read_text())


def test_overview_without_risk_rate_is_refused_while_cross_positions_are_open():
    overview = json.loads(DOC_OVERVIEW.read_text())
    del overview["data"]["riskRatio"]  # synthetic: an answer of the format before cross margin
    error = refused({OVERVIEW: overview, POSITIONS: REAL / "cross-positions.json"})
    assert error.kind == "data" and "riskRatio: missing" in error.message


def test_isolated_position_without_its_maintenance_is_refused():
    positions = _doc_positions()
    del positions["data"][1]["posMaint"]  # synthetic: the documented isolated row without posMaint
    error = refused({OVERVIEW: DOC_OVERVIEW, f"{OVERVIEW}?currency=ETH": SYNTHETIC_ETH, POSITIONS: positions})
    assert error.kind == "data" and "XBTUSDTM.posMaint: missing for an isolated position" in error.message


def test_an_overview_of_another_currency_is_refused():
    # recorded: an XBT overview (riskRatio 0), answered here when USDT was asked for
    error = refused({OVERVIEW: REAL / "xbt-account-overview.json", POSITIONS: REAL / "cross-positions.json"})
    assert error.kind == "data" and "USDT-settled positions are open but no USDT account overview" in error.message


def test_two_cross_positions_without_maintenance_are_refused():
    positions = _doc_positions()
    second = dict(positions["data"][0], symbol="XBTUSDM", settleCurrency="XBT", id="2")  # synthetic, both without posMaint
    positions["data"].append(second)
    third = dict(second, id="3", positionSide="SHORT", currentQty=-1)
    positions["data"].append(third)
    xbt = json.loads(json.dumps(SYNTHETIC_ETH).replace('"ETH"', '"XBT"'))
    error = refused({OVERVIEW: DOC_OVERVIEW, f"{OVERVIEW}?currency=ETH": SYNTHETIC_ETH, f"{OVERVIEW}?currency=XBT": xbt,
                     POSITIONS: positions})
    assert error.kind == "data" and "states neither posMaint nor maintMarginReq" in error.message


def test_a_positions_answer_of_another_shape_is_refused():
    error = refused({OVERVIEW: DOC_OVERVIEW, POSITIONS: {"code": "200000", "data": {"items": []}}})  # synthetic
    assert error.kind == "data" and "/api/v1/positions: expected" in error.message


# ------------------------------------------------------------------ config: the passphrase

KEYS = {"api_key": "key-AbCdEf123456", "secret": "secret-ZyXwVu987654"}


def test_kucoin_account_needs_its_passphrase_as_password():
    with pytest.raises(ConfigError) as caught:
        build_settings({"accounts": [{"name": "kc", "exchange": "kucoinfutures", **KEYS}]})
    assert any(e.startswith("accounts[0].password: KuCoin futures needs it") for e in str(caught.value).splitlines())
    settings = build_settings({"accounts": [{"name": "kc", "exchange": "kucoinfutures", "password": "pass-Phrase-77", **KEYS}]})
    assert "pass-Phrase-77" in secrets.of(settings)


def test_unified_trading_account_option_is_refused():
    with pytest.raises(ConfigError) as caught:
        build_settings({"accounts": [{"name": "kc", "exchange": "kucoinfutures", "password": "p-123456", **KEYS,
                                      "ccxt": {"options": {"uta": True}}}]})
    assert "accounts[0].ccxt.options.uta: True is not an account the kucoinfutures profile reads" in str(caught.value)


def test_profile_is_registered_without_repricing():
    profile = PROFILES["kucoinfutures"]
    assert profile.credentials == ("api_key", "secret", "password") and not profile.reprice


# ------------------------------------------------------------------ recorded isolated positions (ccxt pull requests)

def test_recorded_isolated_positions_of_2023_are_scopes_at_kucoins_own_posmaint_and_maintmargin():
    """Two position rows printed by ccxt's fetchPosition in ccxt pull requests #17908 (XBTUSDTM,
    2023-05-13) and #19277 (ADAUSDTM, 2023-09-16): isolated in the old layout (`crossMode` false, no
    `marginMode`; the ADA row has no `isInverse` either). Served together as one positions answer
    (a synthetic assembly: different accounts and moments) with KuCoin's documented USDT overview."""
    rows = [json.loads((REAL / name).read_text()) for name in ("isolated-xbtusdtm-position-row.json",
                                                              "isolated-adausdtm-position-row.json")]
    ada = Contract("ADAUSDTM", "ADA", "USDT", "USDT", "linear", "10")  # markValue 2.4994 = 1 × 10 × markPrice 0.24994

    async def poll():
        async with run_replay("kucoinfutures", {OVERVIEW: DOC_OVERVIEW, POSITIONS: {"code": "200000", "data": rows}},
                              [XBTUSDTM, ada]) as server:
            async with build_source(server.account(), retry=ONCE) as source:
                return await source.fetch_snapshot()

    healths = {h.scope: h for h in evaluate(asyncio.run(poll()), target=0.4)}
    assert set(healths) == {"cross:USDT", "isolated:BTC/USDT:USDT:long", "isolated:ADA/USDT:USDT:long"}
    xbt = healths["isolated:BTC/USDT:USDT:long"]
    assert xbt.equity == pytest.approx(5.36531112, rel=REL)  # maintMargin (= posMargin 5.38351112 + unrealisedPnl -0.0182)
    assert xbt.maintenance_margin == pytest.approx(0.12927722, rel=REL)  # posMaint
    (risk,) = xbt.top_positions
    assert (risk.liquidation_price, risk.mark_price) == (pytest.approx(21567), pytest.approx(26802.8))  # liquidationPrice, markPrice
    assert risk.notional == pytest.approx(26.8028, rel=REL)  # markValue
    ada_scope = healths["isolated:ADA/USDT:USDT:long"]
    assert ada_scope.equity == pytest.approx(2.50239724, rel=REL)  # maintMargin
    assert ada_scope.maintenance_margin == pytest.approx(0.02822401, rel=REL)  # posMaint
    (risk,) = ada_scope.top_positions
    assert risk.liquidation_price == pytest.approx(0.00252, rel=REL)  # liquidationPrice
    # the USDT pool is the overview less both positions' margin (each its maintMargin)
    assert healths["cross:USDT"].equity == pytest.approx(394.439280806 - 5.36531112 - 2.50239724, rel=REL)  # accountEquity − maintMargin
    assert healths["cross:USDT"].margin_ratio == pytest.approx(0.0065289525, rel=REL)  # riskRatio


def test_cross_position_against_a_zero_risk_rate_is_blind():
    """The recorded cross position with KuCoin's documented overview, its riskRatio set to 0 (as the
    recorded empty XBT overview states it): an open cross position carries maintenance, so the two
    answers disagree; the ratio is not read as 0."""
    overview = json.loads(DOC_OVERVIEW.read_text())
    overview["data"]["riskRatio"] = 0
    error = refused({OVERVIEW: overview, POSITIONS: REAL / "cross-positions.json"})
    assert error.kind == "data"
    assert "riskRatio is 0 while USDT cross positions are open" in error.message
