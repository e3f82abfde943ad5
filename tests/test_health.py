"""Margin math against hand-computed cases and its invariants.

Formulas: Binance "How to Calculate Liquidation Price of USDⓈ-M Contracts"
(https://www.binance.com/en/support/faq/how-to-calculate-liquidation-price-of-usd%E2%93%A2-m-contracts-b3c689c1f50a44cabb3a84e663b81d93)
and "Margin ratio = maintenance margin ÷ margin balance"
(https://www.binance.com/en/support/faq/what-is-margin-ratio-360033162192);
Bybit "Account maintenance margin rate = account MM ÷ account margin balance"
(https://www.bybit.com/en/help-center/article/Unified-Trading-Account-Maintenance-Margin-Rate).
The numbers below are worked by hand from those formulas.
"""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerter.health import deposit_needed, evaluate, liquidation_move, margin_ratio, move_prices, reprice
from alerter.models import AccountSnapshot, Position


def binance_lp(wallet, q, entry, rate, cum, side, other_mm=0.0, other_pnl=0.0):
    """Binance's cum-amount liquidation price for one position (one-way mode)."""
    s = 1 if side == "long" else -1
    return (wallet - other_mm + other_pnl + cum - s * q * entry) / (q * rate - s * q)


def pos(symbol="BTC/USDT:USDT", side="long", q=1.0, entry=60_000.0, mark=55_000.0, rate=0.005, cum=50.0, **kw):
    s = 1 if side == "long" else -1
    notional = q * mark
    return Position(
        symbol=symbol,
        side=side,
        contracts=q,
        entry_price=entry,
        mark_price=mark,
        notional=notional,
        unrealized_pnl=s * q * (mark - entry),
        maintenance_margin=notional * rate - cum,
        maintenance_rate=rate,
        **kw,
    )


def snap(wallet, positions, **kw):
    cross = [p for p in positions if not p.isolated]
    return AccountSnapshot(
        account="acct",
        exchange="binanceusdm",
        wallet_balance=wallet,
        equity=wallet + sum(p.unrealized_pnl for p in cross),
        maintenance_margin=sum(p.maintenance_margin for p in cross),
        positions=tuple(positions),
        **kw,
    )


def test_cross_long_by_hand():
    # wallet 10,000; long 1 BTC from 60,000, mark 55,000: PnL −5,000, notional 55,000,
    # bracket 0.5 % with cum 50 → maintenance 225; margin balance 5,000 → ratio 4.5 %.
    (h,) = evaluate(snap(10_000, [pos()]), target=0.40)
    assert h.scope == "account"
    assert h.equity == pytest.approx(5_000)
    assert h.maintenance_margin == pytest.approx(225)
    assert h.margin_ratio == pytest.approx(0.045)
    assert h.deposit_needed == 0
    # Binance LP = (10,000 + 50 − 60,000) ÷ (0.005 − 1) = 50,201.0 → a −8.725 % move.
    lp = binance_lp(10_000, 1, 60_000, 0.005, 50, "long")
    assert lp == pytest.approx(50_201.005, abs=0.01)
    assert h.liquidation_move == pytest.approx(lp / 55_000 - 1, rel=1e-9)
    assert h.top_positions[0].symbol == "BTC/USDT:USDT"


def test_cross_short_by_hand():
    # wallet 1,000; short 10 ETH at 3,000, rate 0.5 %, cum 0: maintenance 150, ratio 15 %;
    # Binance LP = (1,000 + 30,000) ÷ (0.05 + 10) = 3,084.58 → a +2.819 % move.
    p = pos("ETH/USDT:USDT", "short", q=10, entry=3_000, mark=3_000, cum=0)
    (h,) = evaluate(snap(1_000, [p]), target=0.40)
    assert h.margin_ratio == pytest.approx(0.15)
    lp = binance_lp(1_000, 10, 3_000, 0.005, 0, "short")
    assert lp == pytest.approx(3_084.577, abs=0.01)
    assert h.liquidation_move == pytest.approx(lp / 3_000 - 1, rel=1e-9)
    assert h.liquidation_move > 0


def test_deposit_restores_target_by_hand():
    # wallet 1,200; long 1 BTC from 60,000 at 59,000: equity 200, maintenance 245 → 122.5 %;
    # to reach 40 %: 245 ÷ 0.4 − 200 = 412.5 deposit.
    (h,) = evaluate(snap(1_200, [pos(mark=59_000)]), target=0.40)
    assert h.margin_ratio == pytest.approx(245 / 200)
    assert h.deposit_needed == pytest.approx(412.5)
    assert h.liquidation_move == 0.0


def test_no_positions():
    (h,) = evaluate(snap(500, []), target=0.4)
    assert (h.margin_ratio, h.deposit_needed, h.liquidation_move, h.top_positions) == (0.0, 0.0, None, ())


def test_equity_at_or_below_zero_with_exposure_is_infinite():
    (h,) = evaluate(snap(4_000, [pos()]), target=0.4)  # equity 4,000 − 5,000 = −1,000
    assert h.margin_ratio == math.inf
    assert h.deposit_needed == pytest.approx(225 / 0.4 + 1_000)
    assert h.liquidation_move == 0.0
    assert margin_ratio(10, 0) == math.inf
    assert margin_ratio(0, -5) == 0.0  # nothing to maintain: no exposure, no ratio


def test_isolated_and_cross_mixed():
    cross = pos()
    # isolated ETH long: 2 ETH from 3,000 at 2,800 → PnL −400; isolated wallet 700 → margin 300;
    # maintenance 5,600 × 0.5 % = 28 → ratio 9.33 %.
    iso = pos("ETH/USDT:USDT", "long", q=2, entry=3_000, mark=2_800, cum=0, margin_mode="isolated", collateral=300.0)
    account, isolated = evaluate(snap(10_000, [cross, iso]), target=0.4)
    assert account.equity == pytest.approx(5_000)  # the isolated PnL stays out of the cross equity
    assert account.margin_ratio == pytest.approx(0.045)
    assert isolated.scope == "isolated:ETH/USDT:USDT:long"
    assert isolated.margin_ratio == pytest.approx(28 / 300)
    lp = binance_lp(700, 2, 3_000, 0.005, 0, "long")
    assert isolated.liquidation_move == pytest.approx(lp / 2_800 - 1, rel=1e-9)


def test_isolated_uses_exchange_liquidation_price_when_given():
    iso = pos(margin_mode="isolated", collateral=3_000.0, liquidation_price=52_000.0)
    _, isolated = evaluate(snap(10_000, [iso]), target=0.4)
    assert isolated.liquidation_move == pytest.approx(52_000 / 55_000 - 1)


def test_reprice_matches_a_fresh_snapshot():
    before = snap(10_000, [pos(mark=55_000), pos("ETH/USDT:USDT", "short", q=10, entry=3_000, mark=3_000, cum=0)])
    after = reprice(before, {"BTC/USDT:USDT": 50_000, "ETH/USDT:USDT": 3_100})
    fresh = snap(10_000, [pos(mark=50_000), pos("ETH/USDT:USDT", "short", q=10, entry=3_000, mark=3_100, cum=0)])
    assert after.estimated and not fresh.estimated
    assert after.equity == pytest.approx(fresh.equity)
    assert after.maintenance_margin == pytest.approx(fresh.maintenance_margin)


def test_move_prices_by_base_asset_and_default():
    before = snap(10_000, [pos(), pos("ETH/USDT:USDT", "short", q=10, entry=3_000, mark=3_000, cum=0)])
    moved = move_prices(before, {"BTC": -0.20}, default=0.10)
    marks = {p.symbol: p.mark_price for p in moved.positions}
    assert marks == {"BTC/USDT:USDT": pytest.approx(44_000), "ETH/USDT:USDT": pytest.approx(3_300)}


# ---------------------------------------------------------------- properties

money = st.floats(min_value=1.0, max_value=1e8, allow_nan=False, allow_infinity=False)
ratio = st.floats(min_value=0.01, max_value=0.99)


@given(maintenance=money, equity=st.floats(min_value=-1e8, max_value=1e8), target=ratio)
def test_deposit_brings_ratio_to_target(maintenance, equity, target):
    deposit = deposit_needed(maintenance, equity, target)
    assert deposit >= 0
    after = margin_ratio(maintenance, equity + deposit)
    if deposit > 0:
        assert after == pytest.approx(target, rel=1e-6)
    else:
        assert after <= target * (1 + 1e-9)


@given(maintenance=money, e1=money, e2=money)
def test_ratio_falls_as_equity_grows(maintenance, e1, e2):
    low, high = sorted((e1, e2))
    assert margin_ratio(maintenance, high) <= margin_ratio(maintenance, low)


@given(
    wallet=st.floats(min_value=1_000, max_value=1e6),
    q=st.floats(min_value=0.01, max_value=20),
    mark=st.floats(min_value=1_000, max_value=100_000),
    entry_shift=st.floats(min_value=-0.2, max_value=0.2),
    side=st.sampled_from(["long", "short"]),
    rate=st.floats(min_value=0.002, max_value=0.05),
)
def test_the_solved_move_lands_on_liquidation(wallet, q, mark, entry_shift, side, rate):
    before = snap(wallet, [pos(side=side, q=q, entry=mark * (1 + entry_shift), mark=mark, rate=rate, cum=0)])
    (h,) = evaluate(before, target=0.4)
    if h.liquidation_move in (None, 0.0):
        return
    moved = move_prices(before, {}, default=h.liquidation_move)
    assert moved.maintenance_margin == pytest.approx(moved.equity, rel=1e-6, abs=1e-6)
    assert liquidation_move(moved.equity, moved.maintenance_margin, moved.positions) in (0.0, pytest.approx(0.0, abs=1e-9))


@pytest.mark.parametrize("field", ["notional", "maintenance_margin", "mark_price", "unrealized_pnl", "collateral"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
def test_non_finite_inputs_are_refused_naming_the_field(field, bad):
    from dataclasses import replace

    p = replace(pos(margin_mode="isolated", collateral=3_000.0), **{field: bad})
    with pytest.raises(ValueError, match=rf"BTC/USDT:USDT\.{field} is {bad!r}, not a finite number"):
        evaluate(snap(10_000, [p]), target=0.4)
    with pytest.raises(ValueError, match="equity is nan"):
        evaluate(AccountSnapshot("acct", "x", float("nan"), 1.0, 1.0), target=0.4)


# ---------------------------------------------------------------- inverse (coin-margined) positions

def inverse(side="long", face=100.0, entry=92_300.0, mark=92_300.0, mmr_rate=0.004, fee_rate=0.0005, **kw) -> Position:
    """An OKX-style inverse position: face value in USD, every figure in BTC, maintenance = OKX's
    mmr plus its fee to close, both in proportion to the BTC notional."""
    s = 1 if side == "long" else -1
    notional = face / mark
    return Position(symbol="BTC/USD:BTC", side=side, contracts=face, entry_price=entry, mark_price=mark, notional=notional,
                    unrealized_pnl=s * face * (1 / entry - 1 / mark), maintenance_margin=notional * (mmr_rate + fee_rate),
                    inverse=True, currency="BTC", **kw)


def test_inverse_reprice_reproduces_okx_stated_pnl():
    # OKX's recorded BTC-USD-SWAP rows: avgPx 92,300 → upl 0.000000899562244 at markPx 92,376.7 and
    # uplLastPx 0.0000023425375538 at last 92,500; avgPx 91,957.1 → upl 0.0000011848325084 at 92,057.4
    for entry, mark, stated in ((92_300, 92_376.7, 0.000000899562244), (92_300, 92_500, 0.0000023425375538),
                                (91_957.1, 92_057.4, 0.0000011848325084)):
        at_entry = snap(0.05, [inverse(entry=entry, mark=entry)])
        (p,) = reprice(at_entry, {"BTC/USD:BTC": mark}).positions
        assert p.unrealized_pnl == pytest.approx(stated, rel=1e-9)
        assert p.notional == pytest.approx(100 / mark)


def test_inverse_isolated_uses_only_the_exchange_liquidation_price():
    iso = inverse(mark=92_376.7, margin_mode="isolated", collateral=0.00036204, liquidation_price=69_536.6125)
    _, scope = evaluate(snap(0.05, [iso]), target=0.4)
    assert scope.currency == "BTC" and scope.liquidation_move == pytest.approx(69_536.6125 / 92_376.7 - 1)
    from dataclasses import replace

    _, blind_move = evaluate(snap(0.05, [replace(iso, liquidation_price=None)]), target=0.4)
    assert blind_move.liquidation_move is None  # never the linear model's answer for an inverse contract
    assert blind_move.margin_ratio == pytest.approx(iso.maintenance_margin / 0.00036204)


def test_inverse_cross_position_gets_no_uniform_move_and_moves_only_a_coin_account():
    (usd,) = evaluate(snap(10_000, [inverse(mark=90_000)], currency="USD"), target=0.4)
    assert usd.liquidation_move is None and usd.top_positions[0].currency == "BTC"
    btc = snap(0.05, [inverse(mark=90_000)], currency="BTC")
    moved = reprice(btc, {"BTC/USD:BTC": 80_000})
    assert moved.equity - btc.equity == pytest.approx(100 * (1 / 90_000 - 1 / 80_000))  # a long loses BTC as BTC falls
    usd_account = snap(10_000, [inverse(mark=90_000)], currency="USD")
    assert reprice(usd_account, {"BTC/USD:BTC": 80_000}).equity == usd_account.equity  # no BTC amount added to USD


def test_fee_inclusive_maintenance_reprices_in_proportion_to_the_notional():
    # OKX isolated: maintenance = (margin + upl) ÷ mgnRatio = mmr (tier rate × notional) + fee
    # (taker rate × notional): scaling with the notional is exact within the tier
    p = Position(symbol="ETH/USDT:USDT", side="short", contracts=2, entry_price=3_050, mark_price=3_000, notional=6_000,
                 unrealized_pnl=100, maintenance_margin=6_000 * (0.004 + 0.0005), margin_mode="isolated", collateral=405)
    (q,) = reprice(snap(0, [p]), {"ETH/USDT:USDT": 3_300}).positions
    assert q.maintenance_margin == pytest.approx(6_600 * (0.004 + 0.0005))
    assert q.collateral == pytest.approx(405 - 600)


@given(
    side=st.sampled_from(["long", "short"]),
    entry=st.floats(min_value=1_000, max_value=200_000),
    m0=st.floats(min_value=1_000, max_value=200_000),
    m1=st.floats(min_value=1_000, max_value=200_000),
    m2=st.floats(min_value=1_000, max_value=200_000),
)
def test_inverse_reprice_is_path_independent_and_matches_a_fresh_position(side, entry, m0, m1, m2):
    start = snap(1.0, [inverse(side=side, entry=entry, mark=m0, margin_mode="isolated", collateral=0.01)], currency="BTC")
    via = reprice(reprice(start, {"BTC/USD:BTC": m1}), {"BTC/USD:BTC": m2}).positions[0]
    fresh = inverse(side=side, entry=entry, mark=m2)
    for name in ("notional", "unrealized_pnl", "maintenance_margin"):
        assert getattr(via, name) == pytest.approx(getattr(fresh, name), rel=1e-9, abs=1e-15)
    assert via.collateral == pytest.approx(0.01 + fresh.unrealized_pnl - start.positions[0].unrealized_pnl, rel=1e-9, abs=1e-15)


def test_whatif_levels_refuse_an_inverse_scope_rather_than_guess():
    from alerter.models import Thresholds
    from alerter.stress import INVERSE_REFUSED, trip_moves

    iso = inverse(margin_mode="isolated", collateral=0.0005, liquidation_price=60_000.0)
    linear = Position(symbol="ETH/USDT:USDT", side="long", contracts=1.0, entry_price=3_000.0, mark_price=3_000.0,
                      notional=3_000.0, unrealized_pnl=0.0, maintenance_margin=15.0, maintenance_rate=0.005)
    trips = {t.scope: t for t in trip_moves(snap(1_000.0, [iso, linear]), Thresholds())}
    assert trips[iso.scope].refused == INVERSE_REFUSED
    assert set(trips[iso.scope].moves.values()) == {None}
    assert trips["account"].refused is None and trips["account"].moves["liquidation"] < 0
