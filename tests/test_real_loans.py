"""Binance and OKX flexible loans: the exchanges' documented answers (tests/fixtures/real/, see
PROVENANCE.md; doc examples, no recorded answer exists) served byte for byte by the replay
server to ccxt's real `binance` and `okx` classes, read by the loan mode's source (its fetch,
the answers' shape checks, its normaliser), evaluated, and rendered as the user reads them.

Expected figures are the ones the answers state: Binance's `currentLTV` 0.57 against BNB's
`liquidationLTV` 0.83 and `marginCallLTV` 0.75; OKX's `curLTV` 0.5742 against `liqLTV` 0.8374 and
`marginCallLTV` 0.7374 (never OKX's loanNotionalUsd ÷ collateralNotionalUsd, 0.574403). Bodies
that change a documented one say which field they change (synthetic).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerter.config import build_settings
from alerter.display import money
from alerter.errors import ConfigError
from alerter.health import evaluate
from alerter.models import ACCOUNT_SCOPE, AccountSnapshot, Level, RepeatSchedule, Thresholds
from alerter.notify import details, headline
from alerter.policy import decide
from alerter.simulator.replay import Contract, run_replay
from alerter.sources import RetryPolicy, SourceError, build_source
from alerter.sources.binance_loans import COLLATERAL_PATH, ORDERS_PATH
from alerter.sources.loans import loan_pool
from alerter.sources.okx_loans import LOAN_PATH
from alerter.sources.registry import profile_for

REAL = Path(__file__).parent / "fixtures" / "real"
ORDERS = REAL / "binance" / "doc-flexible-loan-ongoing-orders-v2.json"
COLLATERAL = REAL / "binance" / "doc-flexible-loan-collateral-data-v2.json"
OKX_LOAN = REAL / "okx" / "doc-flexible-loan-loan-info.json"
REL = 1e-12
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SCOPE = "loan:BUSD/BNB"
LOAN_MODE = {"defaultType": "loan"}
ONCE = RetryPolicy(attempts=1)
# the markets ccxt loads on the way (synthetic, no figure comes from them)
MARKETS = {"binance": [Contract("BNBUSDT", "BNB", "USDT", "USDT")], "okx": [Contract("BTC-USDT-SWAP", "BTC", "USDT", "USDT")]}


def doc(path: Path) -> dict:
    return json.loads(path.read_text())


async def read(exchange_id: str, bodies: dict) -> tuple[AccountSnapshot, list]:
    """The loan account's snapshot as its source reads it from the replay server, and the requests made."""
    async with run_replay(exchange_id, bodies, MARKETS[exchange_id]) as replay:
        account = replay.account(f"{exchange_id}-loan", options=LOAN_MODE)
        async with build_source(account, retry=ONCE) as source:
            snapshot = await source.fetch_snapshot()
        return snapshot, replay.requests


def binance_snapshot(orders=ORDERS, collateral=COLLATERAL) -> AccountSnapshot:
    return asyncio.run(read("binance", {ORDERS_PATH: orders, COLLATERAL_PATH: collateral}))[0]


def okx_snapshot(body=OKX_LOAN) -> AccountSnapshot:
    return asyncio.run(read("okx", {LOAN_PATH: body}))[0]


# ---------------------------------------------------------------- Binance

def test_binance_doc_loan_reads_binance_ltv_against_its_liquidation_ltv():
    snapshot, requests = asyncio.run(read("binance", {ORDERS_PATH: ORDERS, COLLATERAL_PATH: COLLATERAL}))
    # the spot markets once (ccxt's load_markets), then both loan answers, the orders' largest page
    assert sorted((path, query.get("limit")) for _, path, query in requests) == [
        ("/api/v3/exchangeInfo", None), (COLLATERAL_PATH, None), (ORDERS_PATH, "100")]
    [pool] = snapshot.pools
    assert pool.scope == SCOPE and pool.currency == "BUSD"  # loanCoin
    [health] = evaluate(snapshot, target=0.40)
    assert health.scope == SCOPE
    assert health.margin_ratio == pytest.approx(0.57 / 0.83, rel=REL)  # currentLTV ÷ BNB's liquidationLTV
    assert health.maintenance_margin == pytest.approx(10000 / 0.83, rel=REL)  # totalDebt ÷ liquidationLTV
    assert health.own_figure.text(health.margin_ratio) == "LTV 0.57"  # Binance's currentLTV
    assert health.own_figure.text(1.0) == "LTV 0.83"  # liquidationLTV
    [(label, at)] = health.own_figure.notice_ratios()
    assert label == "Binance's margin call" and at == pytest.approx(0.75 / 0.83, rel=REL)  # marginCallLTV


def test_binance_doc_loan_alert_names_both_levers():
    snapshot = binance_snapshot()
    [health] = evaluate(snapshot, target=0.40)
    _, [alert] = decide(None, health, Thresholds(), RepeatSchedule(), NOW)
    assert alert.level == Level.WARNING  # 68.7 % is past the 50 % warning
    assert headline(alert) == "WARNING · binance-loan · loan:BUSD/BNB · margin ratio 68.7 % = LTV 0.57 (warning at 50 % = LTV 0.415)"
    lines = details(alert, markdown=False)
    # to 40 %: collateral worth 10000 ÷ (0.40 × 0.83) − 10000 ÷ 0.57 BUSD more, or that much of the
    # debt repaid out of the collateral: (10000 − 0.40 × 0.83 × 10000 ÷ 0.57) ÷ (1 − 0.40 × 0.83)
    add = 10000 / (0.40 * 0.83) - 10000 / 0.57
    repay = (10000 - 0.40 * 0.83 * 10000 / 0.57) / (1 - 0.40 * 0.83)
    assert health.deposit_needed == pytest.approx(add, rel=1e-9)
    assert health.repay_needed == pytest.approx(repay, rel=1e-9)
    assert lines[1] == (f"Add {money(health.deposit_needed, 'BUSD')} of collateral or repay "
                        f"{money(health.repay_needed, 'BUSD')} of the loan to get back to 40 %")
    # after either lever, Binance's own LTV arithmetic gives the target
    assert 10000 / (10000 / 0.57 + health.deposit_needed) / 0.83 == pytest.approx(0.40, rel=1e-9)
    assert (10000 - health.repay_needed) / (10000 / 0.57 - health.repay_needed) / 0.83 == pytest.approx(0.40, rel=1e-9)


def test_binance_loan_at_its_stated_liquidation_ltv_is_100_percent():
    """The one rule: re-priced to Binance's own liquidation LTV (currentLTV set to BNB's
    liquidationLTV "0.83": synthetic), the ratio is exactly 100 %."""
    orders = doc(ORDERS)
    orders["rows"][0]["currentLTV"] = doc(COLLATERAL)["rows"][0]["liquidationLTV"]
    [health] = evaluate(binance_snapshot(orders=orders), target=0.40)
    assert health.margin_ratio == pytest.approx(1.0, rel=REL)
    assert health.own_figure.text(health.margin_ratio) == "LTV 0.83"


def test_binance_without_a_loan_is_ok_at_zero():
    [health] = evaluate(binance_snapshot(orders={"rows": [], "total": 0}), target=0.40)  # synthetic: no ongoing order
    assert health.scope == ACCOUNT_SCOPE and health.margin_ratio == 0.0


def test_binance_each_loan_is_a_scope_and_the_account_figures_are_the_worst():
    """Synthetic: the documented order, and a second one (USDT against ETH, currentLTV 0.70)
    with a collateral row of ETH's (marginCallLTV 0.80, liquidationLTV 0.85)."""
    orders, collateral = doc(ORDERS), doc(COLLATERAL)
    orders["rows"].append({"loanCoin": "USDT", "totalDebt": "500", "collateralCoin": "ETH", "collateralAmount": "0.3", "currentLTV": "0.70"})
    orders["total"] = 2
    collateral["rows"].append({"collateralCoin": "ETH", "initialLTV": "0.7", "marginCallLTV": "0.80", "liquidationLTV": "0.85", "maxLimit": "100"})
    snapshot = binance_snapshot(orders, collateral)
    healths = {h.scope: h for h in evaluate(snapshot, target=0.40)}
    assert set(healths) == {SCOPE, "loan:USDT/ETH"}
    assert healths["loan:USDT/ETH"].margin_ratio == pytest.approx(0.70 / 0.85, rel=REL)
    assert healths["loan:USDT/ETH"].currency == "USDT"
    assert snapshot.maintenance_margin / snapshot.equity == pytest.approx(0.70 / 0.85, rel=REL)  # the worst loan
    assert snapshot.currency == "USDT"


@pytest.mark.parametrize(("change", "reason"), [
    (lambda o, c: o.update(total=2), "total 2 ongoing orders but 1 rows: a partial answer"),
    (lambda o, c: c.update(rows=[]), "no row for BNB, so the loan's margin-call and liquidation LTVs are unknown"),
    (lambda o, c: o["rows"][0].update(currentLTV=""), "currentLTV: missing"),
    (lambda o, c: o["rows"][0].update(currentLTV="0"), "debt 10000 with LTV 0: one without the other is a partial answer"),
    (lambda o, c: c["rows"][0].update(liquidationLTV=""), "BNB.liquidationLTV: missing"),
    (lambda o, c: c["rows"][0].update(marginCallLTV="0.9"), "are not 0 < margin call < liquidation < 1"),
    (lambda o, c: o["rows"][0].pop("collateralAmount"), "collateralAmount: missing"),
])
def test_binance_partial_or_inconsistent_loan_answers_are_blind(change, reason):
    orders, collateral = doc(ORDERS), doc(COLLATERAL)
    change(orders, collateral)  # synthetic: one documented field changed or removed
    with pytest.raises(SourceError) as caught:
        binance_snapshot(orders, collateral)
    assert caught.value.kind == "data" and reason in str(caught.value)


def test_binance_one_unreadable_loan_is_blind_on_its_own_scope():
    """Synthetic: a second order whose collateral coin (SOL) has no collateral row."""
    orders = doc(ORDERS)
    orders["rows"].append({"loanCoin": "USDT", "totalDebt": "50", "collateralCoin": "SOL", "collateralAmount": "1", "currentLTV": "0.4"})
    orders["total"] = 2
    snapshot = binance_snapshot(orders=orders)
    assert [p.scope for p in snapshot.pools] == [SCOPE]
    [(scope, reason)] = snapshot.unreadable
    assert scope == "loan:USDT/SOL" and "no row for SOL" in reason


@pytest.mark.parametrize(("body", "reason"), [
    (b'{"rows": [{"loanCoin": "BUSD", "totalDe', "the answer is not complete JSON"),  # cut short
    (b"[]", "expected the ongoing flexible loans (rows, total), got a list of 0"),
    (b'{"total": 1}', "expected the ongoing flexible loans (rows, total), got an object with keys total"),
])
def test_binance_cut_or_misshapen_orders_answer_is_blind(body, reason):
    with pytest.raises(SourceError) as caught:
        binance_snapshot(orders=body)  # synthetic bodies
    assert caught.value.kind == "data" and reason in str(caught.value)


def test_binance_loan_mode_is_refused_with_a_margin_mode():
    with pytest.raises(ConfigError) as caught:
        build_settings({"accounts": [{"name": "l", "exchange": "binance", "api_key": "k-0123456789", "secret": "s-0123456789",
                                      "ccxt": {"options": {"defaultType": "loan", "marginMode": "isolated"}}}]})
    assert "the flexible loans are read on their own" in str(caught.value)


# ---------------------------------------------------------------- OKX

def test_okx_doc_loan_reads_okx_curltv_against_its_liqltv():
    snapshot, requests = asyncio.run(read("okx", {LOAN_PATH: OKX_LOAN}))
    assert [path for _, path, _ in requests][-1] == LOAN_PATH  # after the markets: the loan, and nothing of the trading account
    assert not any("/account/" in path for _, path, _ in requests)
    assert not snapshot.pools and snapshot.currency == "USD"
    [health] = evaluate(snapshot, target=0.40)
    assert health.scope == ACCOUNT_SCOPE
    assert health.margin_ratio == pytest.approx(0.5742 / 0.8374, rel=REL)  # curLTV ÷ liqLTV, not 0.574403 ÷ liqLTV
    assert health.maintenance_margin == pytest.approx(0.8661285 / 0.8374, rel=REL)  # loanNotionalUsd ÷ liqLTV
    assert health.own_figure.text(health.margin_ratio) == "LTV 0.574"
    [(label, at)] = health.own_figure.notice_ratios()
    assert label == "OKX's margin call" and at == pytest.approx(0.7374 / 0.8374, rel=REL)
    _, [alert] = decide(None, health, Thresholds(), RepeatSchedule(), NOW)
    assert headline(alert) == "WARNING · okx-loan · margin ratio 68.6 % = LTV 0.574 (warning at 50 % = LTV 0.419)"
    assert "of collateral or repay" in details(alert, markdown=False)[1]


def test_okx_loan_at_its_stated_liquidation_ltv_is_100_percent():
    """The one rule: curLTV set to OKX's liqLTV, and the collateral valued so (synthetic)."""
    body = doc(OKX_LOAN)
    loan = body["data"][0]
    loan["curLTV"] = loan["liqLTV"]
    loan["collateralNotionalUsd"] = str(float(loan["loanNotionalUsd"]) / float(loan["liqLTV"]))
    [health] = evaluate(okx_snapshot(body), target=0.40)
    assert health.margin_ratio == pytest.approx(1.0, rel=REL)


@pytest.mark.parametrize("body", [
    {"code": "0", "data": [], "msg": ""},  # synthetic: no loan at all
    {"code": "0", "data": [{"collateralData": [], "collateralNotionalUsd": "0", "curLTV": "", "liqLTV": "", "loanData": [],
                            "loanNotionalUsd": "0", "marginCallLTV": "", "riskWarningData": {"instId": "", "liqPx": ""}}], "msg": ""},
])
def test_okx_without_a_loan_is_ok_at_zero(body):
    [health] = evaluate(okx_snapshot(body), target=0.40)
    assert health.margin_ratio == 0.0


@pytest.mark.parametrize(("change", "reason"), [
    (lambda loan: loan.update(curLTV=""), "curLTV: missing"),
    (lambda loan: loan.update(liqLTV=""), "liqLTV: missing"),
    (lambda loan: loan.update(marginCallLTV=""), "marginCallLTV: missing"),
    (lambda loan: loan.update(collateralNotionalUsd="3"), "disagrees with loanNotionalUsd ÷ collateralNotionalUsd"),
    (lambda loan: loan.update(liqLTV="0.7"), "are not 0 < margin call < liquidation < 1"),
])
def test_okx_partial_or_inconsistent_loan_answers_are_blind(change, reason):
    body = doc(OKX_LOAN)
    change(body["data"][0])  # synthetic: one documented field changed
    with pytest.raises(SourceError) as caught:
        okx_snapshot(body)
    assert caught.value.kind == "data" and reason in str(caught.value)


@pytest.mark.parametrize(("change", "reason"), [
    (lambda body: body.update(data=body["data"] * 2), "2 loans where OKX states one per account"),
    (lambda body: body.update(data=["cut"]), "expected the flexible loan"),
])
def test_okx_two_loans_or_a_misshapen_answer_are_blind(change, reason):
    body = doc(OKX_LOAN)
    change(body)  # synthetic
    with pytest.raises(SourceError) as caught:
        okx_snapshot(body)
    assert caught.value.kind == "data" and reason in str(caught.value)


def test_okx_loan_mode_has_no_stream_and_no_repricing():
    """OKX's trading account streams and is re-priced between polls; its loan mode does neither
    (its LTV moves with every collateral's price, which no position carries)."""
    settings = build_settings({"accounts": [{"name": "l", "exchange": "okx", "api_key": "k-0123456789", "secret": "s-0123456789",
                                             "password": "p-0123456789", "ccxt": {"options": LOAN_MODE}}]})
    profile = profile_for(settings.accounts[0])
    assert profile.name == "OKX flexible loan" and profile.stream is None and not profile.reprice
    with pytest.raises(ConfigError) as caught:
        build_settings({"accounts": [{"name": "l", "exchange": "okx", "api_key": "k-0123456789", "secret": "s-0123456789",
                                      "password": "p-0123456789", "streams": True, "ccxt": {"options": LOAN_MODE}}]})
    assert "accounts[0].streams: alerter does not stream okx" in str(caught.value)


# ---------------------------------------------------------------- the loan arithmetic

@settings(max_examples=200, deadline=None)
@given(debt=st.floats(1e-6, 1e9), ltv=st.floats(1e-4, 0.99), margin_call=st.floats(0.05, 0.9), gap=st.floats(0.01, 0.09),
       target=st.floats(0.05, 0.95))
def test_loan_ratio_is_the_lenders_ltv_over_its_liquidation_ltv_and_both_levers_reach_the_target(debt, ltv, margin_call, gap, target):
    liquidation = margin_call + gap
    pool = loan_pool("loan:X/Y", debt=debt, ltv=ltv, liquidation_ltv=liquidation, margin_call_ltv=margin_call,
                     currency="X", where="test", lender="Test")
    [health] = evaluate(AccountSnapshot("a", "test", pool.equity, pool.maintenance_margin, 0.0, pools=(pool,)), target)
    assert health.margin_ratio == pytest.approx(ltv / liquidation, rel=1e-12)
    assert health.own_figure.value(health.margin_ratio) == pytest.approx(ltv, rel=1e-12)
    collateral = debt / ltv
    if health.margin_ratio > target:
        assert debt / (collateral + health.deposit_needed) / liquidation == pytest.approx(target, rel=1e-9)
        repaid = health.repay_needed
        assert (debt - repaid) / (collateral - repaid) / liquidation == pytest.approx(target, rel=1e-7)
    else:
        assert health.deposit_needed == 0 and health.repay_needed == 0

