"""Aave V3 on recorded real answers (tests/fixtures/real/aave/, PROVENANCE.md), served byte for
byte by the loopback chain to the real JSON-RPC client, then through health, policy and the
alert text a trader reads.

Expected figures are the Pool's own words, as literals: its health factor and totals. The Base
position (block 30672597) was liquidated by the protocol in the next block, so it must read as
CRITICAL and "liquidatable now".
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerter import notify
from alerter.health import evaluate
from alerter.models import ACCOUNT_SCOPE, AlertKind, Level, RepeatSchedule, Thresholds
from alerter.policy import decide
from alerter.simulator.chain import run_chain
from alerter.sources import aave
from alerter.sources.chains import CHAINS
from alerter.sources.rpc import selector
from alerter.sources.rpc import RpcClient

REAL = Path(__file__).parent / "fixtures" / "real" / "aave"
BASE_USER = "0xe9526c721d489464079acb7568c1304af8687298"
ETHEREUM_USER = "0xf0bb20865277abd641a307ece5ee04e79073416c"
NOW = datetime(2025, 5, 25, 0, 55, 45, tzinfo=UTC)


async def _read(chain_name: str, user: str, recording: Path, protocol: str = "aave"):
    deployment = aave.DEPLOYMENTS[protocol][chain_name]
    async with run_chain(CHAINS[chain_name]) as chain:
        call = aave.account_call(deployment, user)
        chain.answer(call.to, call.data, recording)
        async with RpcClient(chain.url + "/v2/SECRETKEY0123456789", CHAINS[chain_name]) as rpc:
            snapshot = await aave.fetch(rpc, deployment, user, f"{protocol}-{chain_name}", protocol)
        # no per-asset answer was recorded: the detail's first read finds nothing (and the account keeps its figure)
        assert chain.unknown == [(deployment.data_provider.lower(), "0xb316ff89")]
        served = [params for method, params in chain.requests if method == "eth_call"][:1]
        return snapshot, served, chain.head


def read(chain_name: str, user: str, recording: Path, protocol: str = "aave"):
    return asyncio.run(_read(chain_name, user, recording, protocol))


@pytest.fixture(scope="module")
def base():
    return read("base", BASE_USER, REAL / "base-getUserAccountData-hf-below-1.json")


def test_the_selector_is_getUserAccountData():
    assert selector("getUserAccountData(address)") == aave.GET_USER_ACCOUNT_DATA


def test_base_asks_the_pool_the_recording_asked(base):
    _, served, head = base
    # PROVENANCE.md: {"to": "0xA238…d1c5", "data": "0xbf92857c…e9526c72…8298"}, pinned to the head read first
    assert served == [[{"to": "0xA238Dd80C259a72e81d7e4664a9801593F98d1c5",
                        "data": "0xbf92857c000000000000000000000000e9526c721d489464079acb7568c1304af8687298"}, hex(head)]]


def test_base_reads_the_pools_own_words_exactly():
    result = json.loads((REAL / "base-getUserAccountData-hf-below-1.json").read_text())["result"]
    data = aave.decode(bytes.fromhex(result[2:]), "base")
    assert data.collateral_base == 14533942611  # totalCollateralBase
    assert data.debt_base == 12084228335  # totalDebtBase
    assert data.available_borrows_base == 0
    assert data.liquidation_threshold_bps == 8300 and data.ltv_bps == 8000
    assert data.health_factor_wad == 998257566191544493  # healthFactor, never recomputed


def test_base_health_is_the_health_factor_below_one(base):
    snapshot, _, _ = base
    health = evaluate(snapshot, target=0.4)[0]
    assert health.scope == ACCOUNT_SCOPE and health.currency == "USD"
    assert health.equity == pytest.approx(145.33942611, rel=1e-12)  # totalCollateralBase ÷ 1e8
    assert health.margin_ratio == pytest.approx(1 / 0.998257566191544493, rel=1e-14)  # 1 ÷ healthFactor
    assert health.own_figure.value(health.margin_ratio) == pytest.approx(0.998257566191544493, rel=1e-14)
    # maintenance = debt ÷ liquidation threshold, to the rounding the Pool's own HF carries
    assert health.maintenance_margin == pytest.approx(120.84228335 / 0.83, rel=1e-6)
    assert snapshot.wallet_balance == pytest.approx(145.33942611 - 120.84228335, rel=1e-12)


def test_base_is_critical_and_liquidatable_now_in_the_alert(base):
    snapshot, _, _ = base
    health = evaluate(snapshot, target=0.4)[0]
    _, alerts = decide(None, health, Thresholds(), RepeatSchedule(), NOW)
    assert [(a.kind, a.level) for a in alerts] == [(AlertKind.RAISED, Level.CRITICAL)]
    title, body = notify.render(alerts, markdown=False)
    # the note that the per-asset detail is missing is said once, beside the current figure
    assert title == ("CRITICAL · aave-base · margin ratio 100.2 % = health factor 0.998, liquidatable now"
                     " · per-asset detail unavailable (critical at 85 % = health factor 1.17)")
    # without the detail, the way back names both levers in the Pool's base currency
    assert "Add 218.64 USD of collateral or repay 108.67 USD of the loan to get back to 40 %" in body
    assert "SECRETKEY" not in title + body


def test_ethereum_emode_answer_reads_its_health_factor():
    snapshot, _, _ = read("ethereum", ETHEREUM_USER, REAL / "ethereum-getUserAccountData-emode-result.txt")
    health = evaluate(snapshot, target=0.4)[0]
    assert health.own_figure.value(health.margin_ratio) == pytest.approx(1.054703851013772348, rel=1e-14)
    assert health.own_figure.text(health.margin_ratio) == "health factor 1.05 · per-asset detail unavailable"
    assert health.equity == pytest.approx(238287004791444828 / 1e8, rel=1e-12)
    # E-mode: the category's threshold 95 % stands in the answer
    assert health.maintenance_margin == pytest.approx(214631485733445575 / 1e8 / 0.95, rel=1e-6)
    _, alerts = decide(None, health, Thresholds(), RepeatSchedule(), NOW)
    assert [(a.kind, a.level) for a in alerts] == [(AlertKind.RAISED, Level.CRITICAL)]  # 94.8 %
    assert "liquidatable now" not in alerts[0].figure


def test_health_factor_text_rounds_down():
    figure = aave.HEALTH_FACTOR
    assert figure.text(1 / 1.129) == "health factor 1.12"
    assert figure.text(1 / 0.99999) == "health factor 0.999, liquidatable now"
    assert figure.text(1 / 1.00001) == "health factor 1.00"
    assert figure.text(0.0) == "health factor ∞"


def test_the_health_factor_reads_its_trigger_exactly_at_100_percent(base):
    """The one rule for every venue, on Aave's trigger: ratio 100 % is health factor 1, the Pool's
    HEALTH_FACTOR_LIQUIDATION_THRESHOLD; the recorded position (HF 0.998) is past it."""
    snapshot, _, _ = base
    figure = evaluate(snapshot, target=0.4)[0].own_figure
    assert figure.value(1.0) == 1.0 and figure.ratio(1.0) == 1.0
    assert evaluate(snapshot, target=0.4)[0].margin_ratio > 1.0
