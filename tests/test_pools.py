"""Pure tests of what issue 13's venues share: the exchange's own figure beside the normalised
ratio (OwnFigure), cross scopes per margin coin or per isolated-margin pair (Pool), and a
lender's account, where the way back is repaying the loan as well as adding collateral."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerter.display import money
from alerter.health import evaluate, repay_needed, reprice
from alerter.models import ACCOUNT_SCOPE, AccountSnapshot, AlertKind, Level, OwnFigure, Pool, RepeatSchedule, Thresholds, cross_scope
from alerter.notify import render
from alerter.policy import decide_account, decide_failure
from alerter.snapshots import snapshot_from_dict, snapshot_to_dict
from test_health import pos
from test_store import T0

MARGIN_LEVEL = OwnFigure("margin level", 1.1, inverse=True, notices=(("Binance's margin-call notice", 1.3),))
UNIMMR = OwnFigure("uniMMR", 1.05, inverse=True, percent=True, notices=(("reminder", 1.5), ("reduce-only", 1.2)))


def test_own_figure_reads_as_the_exchange_writes_it():
    assert MARGIN_LEVEL.text(1.1 / 1.24) == "margin level 1.24"
    assert UNIMMR.text(1.05 / 1.38) == "uniMMR 138 %"
    assert MARGIN_LEVEL.text(0.0) == "margin level ∞"  # nothing borrowed
    assert OwnFigure("risk rate", 1.0, percent=True).text(0.4) == "risk rate 40 %"
    assert OwnFigure("risk rate", 1.0, percent=True).text(0.045) == "risk rate 4.5 %"
    assert MARGIN_LEVEL.value(1.0) == pytest.approx(1.1)  # 100 % is the exchange's own trigger
    assert UNIMMR.value(1.0) == pytest.approx(1.05)


def test_notices_as_ratios_come_in_the_order_the_risk_rises():
    assert MARGIN_LEVEL.notice_ratios() == (("Binance's margin-call notice", pytest.approx(1.1 / 1.3)),)
    assert [label for label, _ in UNIMMR.notice_ratios()] == ["reminder", "reduce-only"]
    assert UNIMMR.notice_ratios()[0][1] == pytest.approx(0.70)  # 1.05 ÷ 1.5
    assert UNIMMR.notice_ratios()[1][1] == pytest.approx(0.875)  # 1.05 ÷ 1.2


@given(st.floats(0.01, 100), st.floats(0.5, 2.0), st.booleans())
def test_figure_and_ratio_are_inverse(ratio, trigger, inverse):
    figure = OwnFigure("x", trigger, inverse=inverse)
    assert figure.ratio(figure.value(ratio)) == pytest.approx(ratio, rel=1e-12)


def coin_m() -> AccountSnapshot:
    btc = pos("BTC/USD:BTC", q=1.0, entry=60_000, mark=60_000, rate=0.0, cum=0.0)
    eth = pos("ETH/USD:ETH", q=1.0, entry=3_000, mark=3_000, rate=0.0, cum=0.0)
    return AccountSnapshot(
        account="coinm", exchange="binancecoinm", equity=2.0, maintenance_margin=1.6, wallet_balance=2.0, currency="ETH",
        positions=(btc, eth),
        pools=(Pool(cross_scope("BTC"), equity=0.5, maintenance_margin=0.1, currency="BTC", symbols=("BTC/USD:BTC",)),
               Pool(cross_scope("ETH"), equity=2.0, maintenance_margin=1.6, currency="ETH", symbols=("ETH/USD:ETH",))),
    )


def test_each_pool_is_a_scope_in_its_own_coin_and_there_is_no_account_scope():
    healths = {h.scope: h for h in evaluate(coin_m(), target=0.4)}
    assert set(healths) == {"cross:BTC", "cross:ETH"}
    assert healths["cross:BTC"].margin_ratio == pytest.approx(0.2) and healths["cross:BTC"].currency == "BTC"
    assert healths["cross:ETH"].margin_ratio == pytest.approx(0.8) and healths["cross:ETH"].currency == "ETH"
    assert healths["cross:ETH"].deposit_needed == pytest.approx(1.6 / 0.4 - 2.0)  # in ETH
    assert [p.symbol for p in healths["cross:BTC"].top_positions] == ["BTC/USD:BTC"]


def test_a_pool_is_repriced_by_its_own_positions_only():
    moved = reprice(coin_m(), {"ETH/USD:ETH": 2_900.0})
    pools = {p.scope: p for p in moved.pools}
    assert pools["cross:BTC"].equity == 0.5
    assert pools["cross:ETH"].equity == pytest.approx(2.0 - 100.0)  # the long lost 100 in the test's linear units
    assert moved.estimated


def test_pools_round_trip_through_the_stored_snapshot():
    snapshot = replace(coin_m(), own_figure=UNIMMR)
    assert snapshot_from_dict(snapshot_to_dict(snapshot)) == snapshot


@given(st.floats(0.01, 1e6), st.floats(1.1, 50.0), st.floats(0.05, 0.9))
def test_repaying_brings_a_lenders_ratio_to_the_target(debt, level, target):
    assets = level * debt  # margin level = assets ÷ debt; at 1.1 and below Binance liquidates
    maintenance = 1.1 * debt
    r = repay_needed(maintenance, assets, target, trigger=1.1)
    if r == 0:
        assert maintenance / assets <= target * (1 + 1e-9)
    else:
        assert 1.1 * (debt - r) / (assets - r) == pytest.approx(target, rel=1e-9)
        assert 0 < r <= debt * (1 + 1e-9)


def lender(level: float, debt: float = 1.0) -> AccountSnapshot:
    return AccountSnapshot(account="margin", exchange="binance", equity=level * debt, maintenance_margin=1.1 * debt,
                           wallet_balance=level * debt, currency="BTC", lender_trigger=1.1, own_figure=MARGIN_LEVEL)


def test_a_lenders_alert_shows_the_margin_level_and_both_ways_back():
    healths = evaluate(lender(level=1.25), target=0.4)
    assert healths[0].margin_ratio == pytest.approx(1.1 / 1.25)  # 88 %
    states, alerts = decide_account({}, healths, Thresholds(), RepeatSchedule(), T0)
    (alert,) = alerts
    assert alert.level == Level.CRITICAL
    assert alert.figure == "margin level 1.25" and alert.figure_threshold == "margin level 1.29"
    title, body = render([alert], markdown=False)
    assert title == "CRITICAL · margin · margin ratio 88 % = margin level 1.25 (critical at 85 % = margin level 1.29)"
    deposit = 1.1 / 0.4 - 1.25  # collateral to add, in BTC
    repay = (1.1 - 0.4 * 1.25) / (1.1 - 0.4)  # or debt to repay out of the assets
    assert f"Add {money(deposit, 'BTC')} of collateral or repay {money(repay, 'BTC')} of the loan to get back to 40 %" in body


def test_a_failed_poll_of_a_pooled_account_is_restored_by_the_next_good_poll():
    state, blind = decide_failure(None, "coinm", T0, "timeout", immediate=True, blind_after=1, repeat=RepeatSchedule())
    assert [a.kind for a in blind] == [AlertKind.BLIND]
    states, alerts = decide_account({ACCOUNT_SCOPE: state}, evaluate(coin_m(), 0.4), Thresholds(), RepeatSchedule(), T0 + timedelta(minutes=1))
    kinds = [(a.kind, a.scope) for a in alerts]
    assert (AlertKind.RESTORED, ACCOUNT_SCOPE) in kinds
    assert ACCOUNT_SCOPE not in states  # nothing left to remember about a scope the account no longer has
    assert (AlertKind.RAISED, "cross:ETH") in kinds and states["cross:ETH"].level == Level.CALL


def test_validate_says_where_the_thresholds_fall_against_the_exchanges_notices():
    from alerter.commands.validate import notice_lines

    assert notice_lines(MARGIN_LEVEL, Thresholds()) == [
        "Binance's margin-call notice (margin level 1.30) is at 84.6 %: your warning at 50 % and call at 70 % come before it, "
        "your critical at 85 % after it"]
    late = Thresholds(warning=0.9, call=0.93, critical=0.96)
    assert notice_lines(UNIMMR, late)[0].endswith("your warning at 90 % and call at 93 % and critical at 96 % after it (the exchange warns you first)")


def test_a_pool_with_a_trigger_of_its_own_is_read_at_that_trigger():
    """A lender's isolated pair whose tier liquidates at margin level 1.05, in a 1.1 account."""
    tier = OwnFigure("margin level", 1.05, inverse=True)
    pair = Pool("pair:BTCUSDT", equity=1.2, maintenance_margin=1.05, currency="USDT", lender_trigger=1.05, own_figure=tier)
    snapshot = replace(lender(level=3.0), pools=(pair,))
    (health,) = evaluate(snapshot, target=0.4)
    assert health.own_figure.text(health.margin_ratio) == "margin level 1.20"  # assets 1.2 ÷ debt 1
    assert health.repay_needed == pytest.approx((1.05 - 0.4 * 1.2) / (1.05 - 0.4))
    assert snapshot_from_dict(snapshot_to_dict(snapshot)) == snapshot
