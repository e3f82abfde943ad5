"""Binance cross margin and portfolio margin: Binance's documented answers of
/sapi/v1/margin/account and /papi/v1/account and a recorded no-debt margin account
(tests/fixtures/real/binance/, see PROVENANCE.md), replayed to ccxt's real binance class through
the real source and health.

Expected numbers are literals from the served payload, with a comment naming the field. The
spot market list the replay serves is synthetic (one pair, no figure of the account).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from alerter.config import ConfigError, build_settings
from alerter.health import evaluate
from alerter.models import ACCOUNT_SCOPE
from alerter.simulator.replay import Contract, run_replay
from alerter.sources import RetryPolicy, SourceError, build_source
from alerter.sources.binance import MARGIN_LEVEL, UNIMMR
from alerter.sources.registry import PROFILES, refusals

REAL = Path(__file__).parent / "fixtures" / "real" / "binance"
ONCE = RetryPolicy(attempts=1)
REL = 1e-9
BTCUSDT = Contract("BTCUSDT", "BTC", "USDT", "USDT")
CROSS = {"options": {"defaultType": "margin"}}
PORTFOLIO = {"options": {"portfolioMargin": True}}


async def _poll(bodies: dict, ccxt: dict):
    async with run_replay("binance", bodies, [BTCUSDT]) as server:
        async with build_source(server.account(**ccxt), retry=ONCE) as source:
            try:
                return await source.fetch_snapshot(), server.paths()
            finally:
                assert server.unknown == []


def poll(bodies: dict, ccxt: dict):
    snapshot, paths = asyncio.run(_poll(bodies, ccxt))
    return snapshot, {h.scope: h for h in evaluate(snapshot, target=0.5)}, paths


def refused(bodies: dict, ccxt: dict) -> SourceError:
    with pytest.raises(SourceError) as caught:
        asyncio.run(_poll(bodies, ccxt))
    return caught.value


@pytest.fixture(scope="module")
def cross():
    return poll({"/sapi/v1/margin/account": REAL / "doc-cross-margin-account.json"}, CROSS)


@pytest.fixture(scope="module")
def portfolio():
    return poll({"/papi/v1/account": REAL / "doc-portfolio-margin-account.json"}, PORTFOLIO)


# ------------------------------------------------------------------ cross margin

def test_cross_margin_is_a_lenders_account_in_btc(cross):
    snapshot, healths, _ = cross
    account = healths[ACCOUNT_SCOPE]
    assert account.currency == "BTC"
    assert account.equity == pytest.approx(6.82728457, rel=REL)  # totalAssetOfBtc
    assert account.maintenance_margin == pytest.approx(1.1 * 0.58633215, rel=REL)  # 1.1 × totalLiabilityOfBtc
    assert snapshot.wallet_balance == pytest.approx(6.24095242, rel=REL)  # totalNetAssetOfBtc
    assert snapshot.lender_trigger == 1.1
    assert account.repay_needed is not None and snapshot.positions == ()


def test_cross_margin_ratio_reproduces_binances_margin_level(cross):
    _, healths, _ = cross
    account = healths[ACCOUNT_SCOPE]
    # Binance's own figure, back from the normalised ratio: marginLevel "11.64405625" (the
    # totals are rounded to 8 decimals, so the quotient agrees to about 1e-8)
    assert MARGIN_LEVEL.value(account.margin_ratio) == pytest.approx(11.64405625, rel=1e-8)
    assert account.margin_ratio == pytest.approx(1.1 / 11.64405625, rel=1e-8)
    assert account.own_figure == MARGIN_LEVEL
    assert account.own_figure.text(account.margin_ratio) == "margin level 11.64"


def test_cross_margin_asks_the_margin_account_and_no_positions(cross):
    _, _, paths = cross
    assert paths == ["/api/v3/exchangeInfo", "/sapi/v1/margin/account"]  # spot markets once, then the account


def test_recorded_account_without_debt_is_no_risk():
    snapshot, healths, _ = poll({"/sapi/v1/margin/account": REAL / "cross-nodebt-margin-account.json"}, CROSS)
    account = healths[ACCOUNT_SCOPE]
    assert account.margin_ratio == 0  # totalLiabilityOfBtc "0.00000000" (marginLevel "999.00000000": Binance's "nothing borrowed")
    assert account.equity == 0 and account.currency == "BTC"  # totalAssetOfBtc "0.00000000"
    assert MARGIN_LEVEL.text(account.margin_ratio) == "margin level ∞"


def test_margin_level_that_disagrees_with_the_totals_is_blind():
    body = json.loads((REAL / "doc-cross-margin-account.json").read_text())
    body["marginLevel"] = "12.00000000"  # synthetic: one figure changed
    error = refused({"/sapi/v1/margin/account": body}, CROSS)
    assert error.kind == "data" and "marginLevel 12 disagrees with totalAssetOfBtc ÷ totalLiabilityOfBtc" in error.message


def test_cross_margin_pro_is_refused_not_guessed():
    body = json.loads((REAL / "doc-cross-margin-account.json").read_text())
    body["accountType"] = "MARGIN_2"  # synthetic: Cross Margin Pro
    error = refused({"/sapi/v1/margin/account": body}, CROSS)
    assert error.kind == "data" and "MARGIN_2" in error.message and "Cross Margin Classic" in error.message


def test_cut_margin_account_is_blind():
    error = refused({"/sapi/v1/margin/account": (REAL / "doc-cross-margin-account.json").read_bytes()[:700]}, CROSS)
    assert error.kind == "data" and "/sapi/v1/margin/account" in error.message


# ------------------------------------------------------------------ portfolio margin

def test_portfolio_margin_reads_unimmr_from_the_account_endpoint(portfolio):
    snapshot, healths, paths = portfolio
    assert paths == ["/api/v3/exchangeInfo", "/papi/v1/account"]  # papiGetAccount, not fetch_balance's /papi/v1/balance
    account = healths[ACCOUNT_SCOPE]
    assert account.currency == "USD"
    assert account.equity == pytest.approx(122607.35137903, rel=REL)  # accountEquity
    assert account.maintenance_margin == pytest.approx(1.05 * 23.72469206, rel=REL)  # 1.05 × accountMaintMargin
    assert snapshot.lender_trigger is None and account.repay_needed is None
    assert account.own_figure == UNIMMR


def test_portfolio_ratio_reproduces_binances_unimmr(portfolio):
    _, healths, _ = portfolio
    account = healths[ACCOUNT_SCOPE]
    # uniMMR "5167.92171923" = accountEquity ÷ accountMaintMargin (122607.35137903 ÷ 23.72469206 =
    # 5167.921719234…, the stated figure to its 8 decimals); ratio = 1.05 ÷ uniMMR
    assert 122607.35137903 / 23.72469206 == pytest.approx(5167.92171923, abs=1e-8)
    assert account.margin_ratio == pytest.approx(1.05 / 5167.92171923, rel=1e-10)
    assert UNIMMR.value(account.margin_ratio) == pytest.approx(5167.92171923, rel=1e-10)
    assert UNIMMR.text(account.margin_ratio) == "uniMMR 516,792 %"


def test_unimmr_that_disagrees_is_blind():
    body = json.loads((REAL / "doc-portfolio-margin-account.json").read_text())
    body["uniMMR"] = "1.50000000"  # synthetic: one figure changed
    error = refused({"/papi/v1/account": body}, PORTFOLIO)
    assert error.kind == "data" and "uniMMR 1.5 disagrees" in error.message


# ------------------------------------------------------------------ configuration

def test_figure_follows_the_accounts_options():
    profile = PROFILES["binance"]
    assert profile.figure_of({"defaultType": "margin"}) == MARGIN_LEVEL
    assert profile.figure_of({"portfolioMargin": True}) == UNIMMR


@pytest.mark.parametrize(("options", "key", "text"), [
    ({}, "exchange", "plain spot wallet has no margin to watch"),
    ({"portfolioMargin": True, "marginMode": "isolated"}, "exchange", "its isolated margin is not"),
    ({"portfolioMargin": True, "defaultType": "margin"}, "exchange", "set portfolioMargin = true without defaultType"),
    ({"portfolioMargin": True, "defaultType": "future"}, "exchange", "set portfolioMargin = true without defaultType"),
    ({"defaultType": "future"}, "exchange", 'use exchange = "binanceusdm"'),
    ({"defaultType": "delivery"}, "exchange", 'use exchange = "binancecoinm"'),
    ({"defaultType": "option"}, "ccxt.options.defaultType", "'option' is not an account the binance profile reads"),
])
def test_unsupported_options_are_refused_in_one_line(options, key, text):
    [(at, line)] = refusals("binance", options, generic=False)
    assert at == key and text in line and "\n" not in line


@pytest.mark.parametrize("options", [{"defaultType": "margin"}, {"defaultType": "margin", "marginMode": "cross"}, {"portfolioMargin": True}])
def test_supported_modes_pass(options):
    assert refusals("binance", options, generic=False) == []
    settings = build_settings({"accounts": [{"name": "b", "exchange": "binance", "api_key": "k-123456", "secret": "s-123456",
                                             "ccxt": {"options": options}}]})
    assert settings.accounts[0].exchange == "binance"


def test_binance_account_without_keys_names_them():
    with pytest.raises(ConfigError) as caught:
        build_settings({"accounts": [{"name": "b", "exchange": "binance", "ccxt": {"options": {"defaultType": "margin"}}}]})
    assert "accounts[0].api_key" in str(caught.value) and "accounts[0].secret" in str(caught.value)
