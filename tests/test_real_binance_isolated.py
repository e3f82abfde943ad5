"""Binance spot isolated margin: Binance's documented answers of /sapi/v1/margin/isolated/account
and /sapi/v1/margin/isolatedMarginTier and a recorded no-debt isolated account
(tests/fixtures/real/binance/, see PROVENANCE.md), replayed to ccxt's real binance class through
the real source and health.

No answer of an isolated pair *with a debt* has been published (Binance's example and every
recording found borrow nothing), so the pairs with a debt are synthetic: Binance's example with
the figures named in each body changed (`indebted`), served with Binance's documented tier answer.
Expected numbers are literals from the served payload, with a comment naming the field.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import pytest

from alerter.config import build_settings
from alerter.health import evaluate
from alerter.models import ACCOUNT_SCOPE
from alerter.simulator.replay import Contract, run_replay
from alerter.sources import RetryPolicy, SourceError, build_source
from alerter.sources.binance import balance_follow_up
from alerter.sources.registry import PROFILES, refusals

REAL = Path(__file__).parent / "fixtures" / "real" / "binance"
ONCE = RetryPolicy(attempts=1)
REL = 1e-9
ISOLATED = {"options": {"marginMode": "isolated"}}
ACCOUNT = "/sapi/v1/margin/isolated/account"
TIER = "/sapi/v1/margin/isolatedMarginTier"
DOC_ACCOUNT = json.loads((REAL / "doc-isolated-margin-account.json").read_text())
PAIRS = [Contract("BTCUSDT", "BTC", "USDT", "USDT"), Contract("ETHUSDT", "ETH", "USDT", "USDT")]


def indebted(symbol: str = "BTCUSDT", base: str = "BTC", **figures: str) -> dict:
    """Synthetic: Binance's example pair, long on borrowed USDT. Base: 0.5 BTC held; quote:
    500 USDT held, 4000 borrowed, 0.5 interest; marginLevel = (0.5 × 10000 + 500) ÷ 4000.5."""
    pair = copy.deepcopy(DOC_ACCOUNT["assets"][0])
    pair["symbol"] = symbol
    pair["baseAsset"].update(asset=base, free="0.50000000", totalAsset="0.50000000", netAsset="0.50000000")
    pair["quoteAsset"].update(free="500.00000000", totalAsset="500.00000000", borrowed="4000.00000000", interest="0.50000000",
                              netAsset="-3500.50000000")
    pair.update(marginLevel="1.37482815", marginLevelStatus="NORMAL")
    for key, value in figures.items():
        side, _, field = key.partition("__")
        (pair[side] if field else pair).__setitem__(field or side, value)
    return pair


def account(*pairs: dict) -> dict:
    return {**DOC_ACCOUNT, "assets": list(pairs)}


def tiers(symbol: str, *rows: tuple[int, str, str, str]) -> list:
    """Synthetic tier answers, in Binance's documented shape: (tier, liquidationRiskRatio, baseMax, quoteMax)."""
    return [{"symbol": symbol, "tier": t, "effectiveMultiple": "10", "initialRiskRatio": "1.111", "liquidationRiskRatio": ratio,
             "baseAssetMaxBorrowable": base, "quoteAssetMaxBorrowable": quote} for t, ratio, base, quote in rows]


async def _poll(bodies: dict, ccxt: dict = ISOLATED):
    async with run_replay("binance", bodies, PAIRS) as server:
        async with build_source(server.account(**ccxt), retry=ONCE) as source:
            try:
                return await source.fetch_snapshot(), server.requests
            finally:
                assert server.unknown == []


def poll(bodies: dict, ccxt: dict = ISOLATED):
    snapshot, requests = asyncio.run(_poll(bodies, ccxt))
    return snapshot, {h.scope: h for h in evaluate(snapshot, target=0.5)}, requests


@pytest.fixture(scope="module")
def btcusdt():
    return poll({ACCOUNT: account(indebted()), f"{TIER}?symbol=BTCUSDT": REAL / "doc-isolated-margin-tier.json"})


# ------------------------------------------------------------------ a pair with a debt (synthetic, tiers documented)

def test_an_indebted_pair_is_its_own_scope_in_its_quote_asset(btcusdt):
    snapshot, healths, _ = btcusdt
    assert set(healths) == {"pair:BTCUSDT"}  # no "account" scope: the pairs are the scopes
    pair = healths["pair:BTCUSDT"]
    assert pair.currency == "USDT"  # quoteAsset.asset
    assert pair.equity == pytest.approx(0.5 * 10000 + 500, rel=REL)  # baseAsset.totalAsset × indexPrice + quoteAsset.totalAsset
    assert snapshot.pools[0].wallet_balance == pytest.approx(5000 - 3500.5, rel=REL)  # baseAsset.netAsset × indexPrice + quoteAsset.netAsset
    assert snapshot.pools[0].lender_trigger == 1.05  # liquidationRiskRatio of the documented BTCUSDT tier
    assert snapshot.equity == pair.equity and snapshot.currency == "USDT"  # the worst pool's, for summaries


def test_the_ratio_is_the_tiers_trigger_over_binances_margin_level(btcusdt):
    _, healths, _ = btcusdt
    pair = healths["pair:BTCUSDT"]
    assert pair.margin_ratio == pytest.approx(1.05 / 1.37482815, rel=1e-12)  # liquidationRiskRatio ÷ marginLevel
    assert pair.own_figure.value(pair.margin_ratio) == pytest.approx(1.37482815, rel=1e-12)  # marginLevel, back
    assert pair.own_figure.text(pair.margin_ratio) == "margin level 1.37"
    assert pair.own_figure.trigger == 1.05
    # Binance's margin call ratio of a 10x pair whose every tier liquidates at 1.05 (Tiered Leverage FAQ)
    assert pair.own_figure.notice_ratios() == (("Binance's margin-call notice", pytest.approx(1.05 / 1.1)),)


def test_the_way_back_is_repaying_or_adding_in_the_quote_asset(btcusdt):
    _, healths, _ = btcusdt
    pair = healths["pair:BTCUSDT"]
    assets, maintenance = 5500.0, 1.05 * 5500 / 1.37482815
    assert pair.repay_needed == pytest.approx((maintenance - 0.5 * assets) / (1.05 - 0.5), rel=1e-9)
    assert pair.deposit_needed == pytest.approx(maintenance / 0.5 - assets, rel=1e-9)


def test_the_tiers_of_the_indebted_pair_are_asked_for_after_the_account(btcusdt):
    _, _, requests = btcusdt
    asked = [(path, query.get("symbol")) for _, path, query in requests if path.startswith("/sapi")]
    assert asked == [(ACCOUNT, None), (TIER, "BTCUSDT")]


def test_no_tier_request_for_pairs_without_a_debt():
    assert balance_follow_up(json.loads((REAL / "isolated-nodebt-account.json").read_text())) == ()
    assert balance_follow_up(account(indebted(), indebted("ETHUSDT", "ETH", quoteAsset__borrowed="0.00000000",
                                                          quoteAsset__interest="0.00000000"))) \
        == (("sapiGetMarginIsolatedMarginTier", {"symbol": "BTCUSDT"}),)
    assert balance_follow_up({"userAssets": []}) == ()  # the cross account: nothing further


# ------------------------------------------------------------------ tiers

def test_tiers_with_different_ratios_are_chosen_by_the_amount_borrowed():
    """Synthetic tiers as the FAQ's earlier tables had them (the ratio rising with the tier)."""
    rising = tiers("BTCUSDT", (1, "1.050", "3.6", "3000"), (2, "1.061", "7.2", "90000"))
    snapshot, healths, _ = poll({ACCOUNT: account(indebted()), f"{TIER}?symbol=BTCUSDT": rising})
    pair = healths["pair:BTCUSDT"]
    assert snapshot.pools[0].lender_trigger == 1.061  # 4000 USDT borrowed is beyond tier 1's 3000: tier 2
    assert pair.margin_ratio == pytest.approx(1.061 / 1.37482815, rel=1e-12)
    assert pair.own_figure.notices == ()  # the API states no margin call ratio, and the FAQ's table is not this one


def test_a_pair_at_a_tier_boundary_is_blind_on_its_own_and_the_others_are_read():
    """4000 borrowed fits tier 1 (4000), 4000.5 with the interest does not: which ratio applies is unknown."""
    boundary = tiers("BTCUSDT", (1, "1.050", "3.6", "4000"), (2, "1.061", "7.2", "90000"))
    eth = indebted("ETHUSDT", "ETH")
    snapshot, healths, _ = poll({ACCOUNT: account(indebted(), eth), f"{TIER}?symbol=BTCUSDT": boundary,
                                 f"{TIER}?symbol=ETHUSDT": tiers("ETHUSDT", (1, "1.15", "100", "100000"))})
    assert set(healths) == {"pair:ETHUSDT"}
    assert healths["pair:ETHUSDT"].own_figure.trigger == 1.15  # a 5x pair's liquidationRiskRatio
    [(scope, reason)] = snapshot.unreadable
    assert scope == "pair:BTCUSDT" and "boundary of tiers 1 and 2" in reason


def test_a_debt_beyond_the_last_tier_leaves_nothing_to_watch():
    small = tiers("BTCUSDT", (1, "1.050", "3.6", "1000"), (2, "1.061", "7.2", "2000"))
    with pytest.raises(SourceError) as caught:
        asyncio.run(_poll({ACCOUNT: account(indebted()), f"{TIER}?symbol=BTCUSDT": small}))
    assert caught.value.kind == "data" and "beyond the last tier" in caught.value.message


def test_a_margin_level_that_disagrees_with_the_pairs_assets_is_blind():
    body = account(indebted(marginLevel="1.50000000"))  # synthetic: one figure changed
    with pytest.raises(SourceError) as caught:
        asyncio.run(_poll({ACCOUNT: body, f"{TIER}?symbol=BTCUSDT": REAL / "doc-isolated-margin-tier.json"}))
    assert caught.value.kind == "data" and "marginLevel 1.5 disagrees with its assets ÷ liabilities" in caught.value.message


def test_a_net_asset_that_is_not_total_less_debt_is_blind():
    body = account(indebted(quoteAsset__netAsset="-3500.00000000"))  # synthetic: the interest left out
    with pytest.raises(SourceError) as caught:
        asyncio.run(_poll({ACCOUNT: body, f"{TIER}?symbol=BTCUSDT": REAL / "doc-isolated-margin-tier.json"}))
    assert "quoteAsset.netAsset -3500 is not totalAsset − borrowed − interest" in caught.value.message


def test_a_cut_tier_answer_is_blind():
    with pytest.raises(SourceError) as caught:
        asyncio.run(_poll({ACCOUNT: account(indebted()), f"{TIER}?symbol=BTCUSDT": (REAL / "doc-isolated-margin-tier.json").read_bytes()[:90]}))
    assert caught.value.kind == "data" and TIER in caught.value.message


# ------------------------------------------------------------------ no debt (documented and recorded)

def test_binances_example_borrows_nothing_and_is_no_risk():
    snapshot, healths, requests = poll({ACCOUNT: REAL / "doc-isolated-margin-account.json"})
    assert set(healths) == {ACCOUNT_SCOPE} and snapshot.pools == ()
    assert healths[ACCOUNT_SCOPE].margin_ratio == 0  # every borrowed and interest "0.00000000"
    assert healths[ACCOUNT_SCOPE].currency == "BTC" and healths[ACCOUNT_SCOPE].equity == 0  # totalAssetOfBtc "0.00000000"
    assert [path for _, path, _ in requests if path.startswith("/sapi")] == [ACCOUNT]  # no tier asked for


def test_recorded_pair_without_debt_is_no_risk():
    snapshot, healths, _ = poll({ACCOUNT: REAL / "isolated-nodebt-account.json"})
    account_scope = healths[ACCOUNT_SCOPE]
    assert account_scope.margin_ratio == 0  # 1INCHUSDT: borrowed "0", interest "0" (marginLevel "999")
    # no totals in this answer: the pair's own netAssetOfBtc, base "0" + quote "0.00054615"
    assert account_scope.equity == pytest.approx(0.00054615, rel=REL) and account_scope.currency == "BTC"


# ------------------------------------------------------------------ configuration

@pytest.mark.parametrize("options", [{"marginMode": "isolated"}, {"defaultType": "margin", "marginMode": "isolated"},
                                     {"defaultMarginMode": "isolated"}])
def test_isolated_margin_is_accepted(options):
    assert refusals("binance", options, generic=False) == []
    settings = build_settings({"accounts": [{"name": "b", "exchange": "binance", "api_key": "k-123456", "secret": "s-123456",
                                             "ccxt": {"options": options}}]})
    assert settings.accounts[0].exchange == "binance"
    assert PROFILES["binance"].figure_of(options) is None  # each pair carries its own figure


@pytest.mark.parametrize("options", [{"portfolioMargin": True, "marginMode": "isolated"}, {"portfolioMargin": True, "defaultMarginMode": "isolated"}])
def test_portfolio_margin_with_isolated_is_refused_in_one_line(options):
    [(at, line)] = refusals("binance", options, generic=False)
    assert at == "exchange" and "its isolated margin is not" in line and "\n" not in line
