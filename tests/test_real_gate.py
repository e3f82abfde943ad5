"""Gate: Gate's documented unified and futures account examples and recorded USDT-perpetual position
rows (tests/fixtures/real/gate/, see PROVENANCE.md), replayed to ccxt's real gate class through the
source and health. Expected numbers are literals from the payload, with a comment naming the field.

The position list the replay serves is assembled from recorded rows (a list of them, serialised by
the test: said where it happens). The contract list (GET /futures/usdt/contracts) is synthetic: a
name and a contract size per contract, the size taken from the recordings themselves (`value` ÷
(`size` × `mark_price`) = 0.1 for APT_USDT and LTC_USDT). The futures account example and the
position rows are different accounts and moments: the tests pair them only to route positions.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path

import pytest

from alerter.config import ConfigError, build_settings
from alerter.health import evaluate
from alerter.models import ACCOUNT_SCOPE
from alerter.simulator.replay import Contract, run_replay
from alerter.sources import RetryPolicy, SourceError, build_source
from alerter.sources.registry import PROFILES, refusals

REAL = Path(__file__).parent / "fixtures" / "real" / "gate"
ONCE = RetryPolicy(attempts=1)
REL = 1e-9
CONTRACTS = (Contract("APT_USDT", "APT", "USDT", "USDT", size="0.1"), Contract("LTC_USDT", "LTC", "USDT", "USDT", size="0.1"),
             Contract("STX_USDT", "STX", "USDT", "USDT"))
UNIFIED = {"options": {"unifiedAccount": True}}

CROSS_ROW = json.loads((REAL / "cross-position-row.json").read_text())  # LTC_USDT cross long (ccxt's test account)
ISOLATED_ROWS = json.loads((REAL / "isolated-short-positions.json").read_text())  # STX_USDT closed, APT_USDT isolated short
FUTURES_ACCOUNT = json.loads((REAL / "doc-futures-usdt-accounts.json").read_text())


async def poll(bodies: dict, ccxt: dict | None = None):
    async with run_replay("gate", bodies, CONTRACTS) as server:
        try:
            async with build_source(server.account(**(ccxt or {})), retry=ONCE) as source:
                return await source.fetch_snapshot(), server.requests
        finally:
            assert server.unknown == []


def replay(bodies: dict, ccxt: dict | None = None):
    snapshot, requests = asyncio.run(poll(bodies, ccxt))
    return snapshot, {h.scope: h for h in evaluate(snapshot, target=0.4)}, requests


def refused(bodies: dict, ccxt: dict | None = None) -> SourceError:
    with pytest.raises(SourceError) as caught:
        asyncio.run(poll(bodies, ccxt))
    assert caught.value.kind == "data"
    return caught.value


@pytest.fixture(scope="module")
def futures():
    # synthetic assembly: the recorded rows as one positions answer
    return replay({"/api/v4/futures/usdt/accounts": REAL / "doc-futures-usdt-accounts.json",
                   "/api/v4/futures/usdt/positions": [CROSS_ROW, *ISOLATED_ROWS]})


@pytest.fixture(scope="module")
def unified():
    # no position answer was documented with the unified example: an empty list (synthetic)
    return replay({"/api/v4/unified/accounts": REAL / "doc-unified-accounts.json", "/api/v4/futures/usdt/positions": []}, UNIFIED)


def test_futures_cross_scope_is_gates_cross_maintenance_over_cross_margin_balance(futures):
    snapshot, healths, requests = futures
    account = healths[ACCOUNT_SCOPE]
    assert account.equity == pytest.approx(10371.77306201952, rel=REL)  # cross_margin_balance
    assert account.maintenance_margin == pytest.approx(682.04678105, rel=REL)  # cross_maintenance_margin
    assert account.margin_ratio == pytest.approx(682.04678105 / 10371.77306201952, rel=REL)
    assert account.currency == "USDT"  # currency
    assert snapshot.wallet_balance == pytest.approx(9707.803567115145, rel=REL)  # total (without unrealised PnL)
    assert snapshot.initial_margin == pytest.approx(61855.56788525, rel=REL)  # cross_initial_margin
    # Gate's own figure: margin balance ÷ maintenance as a percentage (the example's cross_mmr 797.2134
    # is not that quotient, 15.2068: the documentation example is not consistent, so it is not asserted)
    assert account.own_figure.text(account.margin_ratio) == "MMR 1,521 %"
    assert account.own_figure.notices == ()
    # the futures account only: no unified answer, no /account/detail mode probe, no spot or BTC-settled markets
    assert [path for _, path, _ in requests] == ["/api/v4/futures/usdt/contracts", "/api/v4/futures/usdt/accounts",
                                                 "/api/v4/futures/usdt/positions"]


def test_futures_positions_are_routed_by_gates_leverage(futures):
    snapshot, healths, _ = futures
    assert set(healths) == {ACCOUNT_SCOPE, "isolated:APT/USDT:USDT:short"}  # STX_USDT size "0" makes no scope
    (ltc,) = [p for p in snapshot.positions if not p.isolated]  # leverage "0": cross
    assert (ltc.symbol, ltc.side) == ("LTC/USDT:USDT", "long")  # contract, size "2"
    assert ltc.notional == pytest.approx(19.012, rel=REL)  # value
    assert ltc.contracts == pytest.approx(2 * 0.1, rel=REL)  # size × quanto_multiplier
    assert ltc.liquidation_price is None  # liq_price "0"
    # value × (maintenance_rate + the contract's taker_fee_rate 0.00075, Gate's fee to close; no maintenance_margin stated)
    assert ltc.maintenance_margin == pytest.approx(19.012 * (0.01 + 0.00075), rel=REL)


def test_futures_isolated_position_is_its_own_scope_at_gates_liquidation_price(futures):
    _, healths, _ = futures
    apt = healths["isolated:APT/USDT:USDT:short"]
    assert apt.equity == pytest.approx(17.39155324375 + -0.8092, rel=REL)  # margin + unrealised_pnl
    assert apt.maintenance_margin == pytest.approx(137.8377 * (0.025 + 0.00075), rel=REL)  # value × (maintenance_rate + taker_fee_rate)
    (risk,) = apt.top_positions
    assert risk.liquidation_price == pytest.approx(12.65, rel=REL)  # liq_price
    assert risk.mark_price == pytest.approx(11.583, rel=REL)  # mark_price
    assert apt.liquidation_move == pytest.approx(12.65 / 11.583 - 1, rel=REL)  # the distance is Gate's liq_price
    # the derived maintenance (with the fee to close) meets the margin balance at Gate's liq_price, to the cent
    contracts = 119 * 0.1  # size × quanto_multiplier
    meets_at = (17.39155324375 + contracts * 11.515) / (contracts * (1 + 0.025 + 0.00075))  # margin + PnL = value × (rate + fee)
    assert meets_at == pytest.approx(12.65, abs=0.005)  # liq_price, stated to the cent


def test_unified_account_is_gates_total_maintenance_over_total_margin_balance(unified):
    snapshot, healths, requests = unified
    account = healths[ACCOUNT_SCOPE]
    assert account.equity == pytest.approx(3382495.944473949183, rel=REL)  # total_margin_balance
    assert account.maintenance_margin == pytest.approx(205.01049330176, rel=REL)  # total_maintenance_margin
    assert account.currency == "USD"  # Gate's unified totals are converted to USD
    # Gate's own total_maintenance_margin_rate is the inverse of the normalised ratio
    assert 1 / account.margin_ratio == pytest.approx(16499.135678363399, rel=REL)  # total_maintenance_margin_rate
    assert account.own_figure.text(account.margin_ratio) == "MMR 1,649,914 %"  # total_maintenance_margin_rate × 100
    assert account.own_figure.notices == (("Gate's forced repayment", 1.1),)  # MMR ≤ 110 % (multi-currency margin)
    assert snapshot.wallet_balance == pytest.approx(100016.1, rel=REL)  # unified_account_total_equity
    assert snapshot.initial_margin == pytest.approx(1025.0524665088, rel=REL)  # total_initial_margin
    assert [path for _, path, _ in requests] == ["/api/v4/futures/usdt/contracts", "/api/v4/unified/accounts",
                                                 "/api/v4/futures/usdt/positions"]


def test_unified_single_currency_mode_is_one_cross_pool_per_currency():
    """Synthetic (Gate documents no single-currency example): the example's totals set to "0", as Gate
    says they are in that mode, and the per-currency `mm` / `margin_balance` of two currencies."""
    body = json.loads((REAL / "doc-unified-accounts.json").read_text())
    for key in ("total_margin_balance", "total_maintenance_margin", "total_initial_margin"):
        body[key] = "0"
    body["balances"]["USDT"].update(mm="50", margin_balance="1000", im="100", cross_balance="990")
    body["balances"]["ETH"].update(mm="0.1", margin_balance="4", im="0.2", cross_balance="4")
    snapshot, healths, _ = replay({"/api/v4/unified/accounts": body, "/api/v4/futures/usdt/positions": [CROSS_ROW]}, UNIFIED)
    assert set(healths) == {"cross:ETH", "cross:USDT"}  # no account scope: each currency is its own
    usdt, eth = healths["cross:USDT"], healths["cross:ETH"]
    assert (usdt.currency, usdt.equity, usdt.maintenance_margin) == ("USDT", pytest.approx(1000.0), pytest.approx(50.0))  # margin_balance, mm
    assert (eth.currency, eth.equity, eth.maintenance_margin) == ("ETH", pytest.approx(4.0), pytest.approx(0.1))
    assert [p.symbol for p in usdt.top_positions] == ["LTC/USDT:USDT"]  # the USDT-settled cross position
    assert snapshot.currency == "USDT"  # the worst pool's, for summaries: 50 ÷ 1000 is above 0.1 ÷ 4
    assert usdt.own_figure.text(usdt.margin_ratio) == "MMR 2,000 %"  # margin_balance ÷ mm, Gate's MMR
    assert usdt.own_figure.notices == ()  # no forced repayment: nothing is borrowed in this mode
    body["balances"]["USDT"].update(mm="0")  # the USDT cross position with no USDT maintenance
    error = refused({"/api/v4/unified/accounts": body, "/api/v4/futures/usdt/positions": [CROSS_ROW]}, UNIFIED)
    assert "cross position LTC/USDT:USDT is open but its currency states no mm" in str(error)


def test_unified_answer_without_maintenance_while_cross_positions_are_open_is_refused():
    body = json.loads((REAL / "doc-unified-accounts.json").read_text())
    for key in ("total_margin_balance", "total_maintenance_margin"):
        body[key] = "0"
    error = refused({"/api/v4/unified/accounts": body, "/api/v4/futures/usdt/positions": [CROSS_ROW]}, UNIFIED)
    assert "no maintenance margin while 1 cross futures position(s) are open" in str(error)
    assert "unifiedAccount = false" in str(error)


def test_futures_account_of_a_unified_account_is_refused_with_the_option_to_set():
    account = dict(FUTURES_ACCOUNT, margin_mode=1)  # synthetic: Gate's "1-cross-currency margin mode"
    error = refused({"/api/v4/futures/usdt/accounts": account, "/api/v4/futures/usdt/positions": [CROSS_ROW]})
    assert "margined by Gate's unified account (margin_mode 1)" in str(error)
    assert "set ccxt.options.unifiedAccount = true" in str(error)


def test_old_classic_futures_account_with_a_cross_position_is_refused():
    account = {k: v for k, v in FUTURES_ACCOUNT.items() if not k.startswith("cross_")}  # synthetic: no cross figures
    error = refused({"/api/v4/futures/usdt/accounts": account, "/api/v4/futures/usdt/positions": [CROSS_ROW, *ISOLATED_ROWS]})
    assert "states no cross_maintenance_margin / cross_margin_balance" in str(error)


def test_cross_maintenance_without_a_listed_cross_position_is_blind():
    error = refused({"/api/v4/futures/usdt/accounts": REAL / "doc-futures-usdt-accounts.json",
                     "/api/v4/futures/usdt/positions": ISOLATED_ROWS})
    assert "cross_maintenance_margin 682.047 but the positions answer lists no cross position" in str(error)


def test_btc_settled_futures_account_is_refused():
    account = dict(FUTURES_ACCOUNT, currency="BTC")  # synthetic
    error = refused({"/api/v4/futures/usdt/accounts": account, "/api/v4/futures/usdt/positions": [CROSS_ROW]})
    assert "only USDT-settled futures are read" in str(error)


def test_cut_or_misshapen_positions_answer_is_blind():
    account = REAL / "doc-futures-usdt-accounts.json"
    cut = (REAL / "isolated-short-positions.json").read_bytes()[:700]  # the recording cut short
    error = refused({"/api/v4/futures/usdt/accounts": account, "/api/v4/futures/usdt/positions": cut})
    assert "/api/v4/futures/usdt/positions: the answer is not complete JSON" in str(error)
    error = refused({"/api/v4/futures/usdt/accounts": account, "/api/v4/futures/usdt/positions": {"contract": "APT_USDT"}})
    assert "/api/v4/futures/usdt/positions: expected a list of positions" in str(error)


def test_profile_options_figure_and_credentials():
    profile = PROFILES["gate"]
    assert profile.credentials == ("api_key", "secret")
    assert profile.figure_of({"unifiedAccount": True}).notice_ratios() == (("Gate's forced repayment", pytest.approx(1 / 1.1)),)
    assert profile.figure_of({}).notices == () and profile.figure_of({}).value(0.5) == pytest.approx(2.0)  # MMR 200 %
    assert refusals("gate", {"unifiedAccount": True}, generic=False) == []
    ((key, line),) = refusals("gate", {"unifiedAccount": "yes"}, generic=False)
    assert key == "ccxt.options.unifiedAccount" and "may be True, False" in line
    settings = build_settings({"accounts": [{"name": "g", "exchange": "gate", "api_key": "k", "secret": "s", "ccxt": copy.deepcopy(UNIFIED)}]})
    assert settings.accounts[0].ccxt["options"]["unifiedAccount"] is True
    with pytest.raises(ConfigError) as caught:
        build_settings({"accounts": [{"name": "g", "exchange": "gate", "api_key": "k"}]})
    assert "secret" in str(caught.value)


def test_ccxt_recorded_isolated_long_stating_maintenance_margin_zero_is_valued_at_its_rate():
    """ccxt's own static test recording (fetchPositions, LTC_USDT isolated long of ccxt's test account,
    2024-01-12): `maintenance_margin` "0" and `initial_margin` "0" as Gate sent them then, so the
    maintenance is `value` × (`maintenance_rate` + the contract's taker fee rate), never 0."""
    account = {k: v for k, v in FUTURES_ACCOUNT.items() if not k.startswith("cross_")}  # synthetic: no cross figures
    snapshot, healths, _ = replay({"/api/v4/futures/usdt/accounts": account,
                                   "/api/v4/futures/usdt/positions": REAL / "ccxt-isolated-long-positions.json"})
    ltc = healths["isolated:LTC/USDT:USDT:long"]
    assert ltc.equity == pytest.approx(1.49257625 + 0.008, rel=REL)  # margin + unrealised_pnl
    assert ltc.maintenance_margin == pytest.approx(7.443 * (0.01 + 0.00075), rel=REL)  # value × (maintenance_rate + taker_fee_rate)
    (risk,) = ltc.top_positions
    assert risk.liquidation_price == pytest.approx(60.07, rel=REL)  # liq_price
    assert risk.mark_price == pytest.approx(74.43, rel=REL)  # mark_price
    (position,) = snapshot.positions
    assert position.contracts == pytest.approx(1 * 0.1, rel=REL)  # size × quanto_multiplier
    assert position.initial_margin is None  # initial_margin "0": not stated



def test_cross_position_with_a_zero_cross_maintenance_is_blind():
    """Gate states the cross figures "0" where they do not apply (its old classic margin mode, and
    other settle currencies in its own examples): a cross position open against them is not at 0 %."""
    account = dict(FUTURES_ACCOUNT, cross_maintenance_margin="0", cross_margin_balance="0")  # synthetic
    error = refused({"/api/v4/futures/usdt/accounts": account, "/api/v4/futures/usdt/positions": [CROSS_ROW]})
    assert "cross_maintenance_margin is 0 while 1 cross position(s) are open" in str(error)


def test_unified_total_maintenance_zero_while_cross_positions_are_open_is_blind():
    body = json.loads((REAL / "doc-unified-accounts.json").read_text())
    body["total_maintenance_margin"] = "0"  # synthetic: the margin balance stated, its maintenance "0"
    error = refused({"/api/v4/unified/accounts": body, "/api/v4/futures/usdt/positions": [CROSS_ROW]}, UNIFIED)
    assert "total_maintenance_margin is 0 while 1 cross futures position(s) are open" in str(error)
