"""Kraken Futures: Kraken's documented GET /accounts and GET /openpositions examples
(tests/fixtures/real/krakenfutures/, see PROVENANCE.md), replayed to ccxt's real krakenfutures
class through the source and health. No public recording of a funded account was found: every
Kraken body here is a documentation example, and a test that changes one says what it changed.

Expected numbers are literals from the served payload, with a comment naming the field. The
instruments list and the tickers (the marks) are synthetic: they carry no figure of the account.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from alerter.config import ConfigError, build_settings
from alerter.health import evaluate
from alerter.simulator.replay import Contract, run_replay
from alerter.sources import RetryPolicy, SourceError, build_source

REAL = Path(__file__).parent / "fixtures" / "real" / "krakenfutures"
ONCE = RetryPolicy(attempts=1)
REL = 1e-9
ACCOUNTS = "/derivatives/api/v3/accounts"
POSITIONS = "/derivatives/api/v3/openpositions"
TICKERS = "/derivatives/api/v3/tickers"

CONTRACTS = (
    Contract("PI_XBTUSD", "BTC", "USD", "BTC", "inverse", "1"),  # Kraken's spec: 1 USD a contract
    Contract("FI_XBTUSD_201225", "BTC", "USD", "BTC", "inverse", "1"),
    Contract("PF_DEFIUSD", "DEFI", "USD", "USD", "linear", "1"),
    Contract("PF_XBTUSD", "BTC", "USD", "USD", "linear", "1"),
)
# synthetic marks (public tickers): inputs, never asserted as Kraken's figures
MARKS = {"PI_XBTUSD": 9400.0, "FI_XBTUSD_201225": 9450.0, "PF_XBTUSD": 60000.0}


def tickers(marks: dict[str, float] = MARKS) -> dict:
    return {"result": "success", "tickers": [{"symbol": s, "markPrice": m, "tag": "perpetual"} for s, m in marks.items()],
            "serverTime": "2020-07-22T14:39:12.376Z"}


def no_positions() -> dict:
    return {"result": "success", "openPositions": [], "serverTime": "2020-07-22T14:39:12.376Z"}


def doc_accounts() -> dict:
    return json.loads((REAL / "doc-accounts.json").read_text())


def doc_accounts_holding_doc_positions() -> dict:
    """Kraken's accounts example with one edit: fi_xbtusd's contract balances name the contracts of
    Kraken's positions example (PI_XBTUSD −10000, FI_XBTUSD_201225 20000) instead of its own
    FI_XBTUSD_171215 / FI_XBTUSD_180615, so the two examples describe one account. Every figure
    asserted (pv, mm, marginEquity, …) is the example's own."""
    body = doc_accounts()
    balances = body["accounts"]["fi_xbtusd"]["balances"]
    del balances["FI_XBTUSD_171215"], balances["FI_XBTUSD_180615"]
    balances.update({"PI_XBTUSD": "-10000", "FI_XBTUSD_201225": "20000"})
    return body


async def poll(bodies: dict):
    async with run_replay("krakenfutures", bodies, CONTRACTS) as server:
        async with build_source(server.account(), retry=ONCE) as source:
            try:
                return await source.fetch_snapshot(), server.paths()
            finally:
                assert server.unknown == []


def refused(bodies: dict) -> SourceError:
    with pytest.raises(SourceError) as caught:
        asyncio.run(poll(bodies))
    assert caught.value.kind == "data"
    return caught.value


@pytest.fixture(scope="module")
def doc_pair():
    snapshot, paths = asyncio.run(poll({ACCOUNTS: doc_accounts_holding_doc_positions(), POSITIONS: REAL / "doc-openpositions.json",
                                        TICKERS: tickers()}))
    return snapshot, {h.scope: h for h in evaluate(snapshot, target=0.4)}, paths


def test_each_wallet_in_use_is_a_scope_and_there_is_no_account_scope(doc_pair):
    snapshot, healths, paths = doc_pair
    assert set(healths) == {"cross:USD", "cross:BTC"}
    assert paths[0] == "/derivatives/api/v3/instruments" and sorted(paths[1:3]) == [ACCOUNTS, POSITIONS]  # concurrently
    assert paths[3:] == [TICKERS]  # the marks: read once, after the positions


def test_multi_collateral_wallet_is_krakens_margin_equity_in_usd(doc_pair):
    snapshot, healths, _ = doc_pair
    flex = healths["cross:USD"]
    assert flex.currency == "USD"
    assert flex.equity == 34122.66  # flex.marginEquity
    assert flex.maintenance_margin == 0  # flex.maintenanceMargin
    assert flex.margin_ratio == 0
    pool = next(p for p in snapshot.pools if p.scope == "cross:USD")
    assert pool.wallet_balance == 34122.66  # flex.collateralValue (after haircuts, before PnL)


def test_single_collateral_wallet_is_its_own_scope_in_its_coin(doc_pair):
    snapshot, healths, _ = doc_pair
    btc = healths["cross:BTC"]
    assert btc.currency == "BTC"  # fi_xbtusd.currency "xbt"
    assert btc.equity == pytest.approx(153.73891563, rel=REL)  # fi_xbtusd.auxiliary.pv
    assert btc.maintenance_margin == pytest.approx(23.76, rel=REL)  # fi_xbtusd.marginRequirements.mm
    assert btc.margin_ratio == pytest.approx(23.76 / 153.73891563, rel=REL)  # Kraken: liquidation when pv < mm
    assert btc.deposit_needed == 0  # 23.76 ÷ 0.4 = 59.4 BTC of equity needed at the 40 % target: it has more
    pool = next(p for p in snapshot.pools if p.scope == "cross:BTC")
    assert pool.wallet_balance == pytest.approx(141.31756797, rel=REL)  # fi_xbtusd.balances.xbt
    assert set(pool.symbols) == {"BTC/USD:BTC", "BTC/USD:BTC-201225"}
    # the snapshot's summary figures are the worst wallet's
    assert (snapshot.currency, snapshot.equity, snapshot.maintenance_margin) == ("BTC", pytest.approx(153.73891563), pytest.approx(23.76))
    assert snapshot.initial_margin == pytest.approx(52.8)  # fi_xbtusd.marginRequirements.im


def test_positions_are_listed_without_a_made_up_maintenance(doc_pair):
    snapshot, healths, _ = doc_pair
    by_symbol = {p.symbol: p for p in snapshot.positions}
    assert set(by_symbol) == {"BTC/USD:BTC", "BTC/USD:BTC-201225"}
    perp = by_symbol["BTC/USD:BTC"]
    assert (perp.side, perp.contracts, perp.entry_price) == ("short", 10000, 9392.749993345933)  # side, size, price
    assert perp.inverse and perp.currency == "BTC"
    assert perp.notional == pytest.approx(10000 / 9400.0, rel=REL)  # face ÷ the ticker's mark, in BTC
    assert perp.unrealized_pnl == -607250.006654067  # unrealizedPnl, as Kraken's example states it
    assert perp.maintenance_margin == 0  # Kraken states no margin per position
    assert {r.symbol for r in healths["cross:BTC"].top_positions} == {"BTC/USD:BTC", "BTC/USD:BTC-201225"}
    assert healths["cross:BTC"].liquidation_move is None  # inverse: no uniform-move model


def test_isolated_multi_collateral_position_is_blind_on_its_own(doc_pair):
    snapshot, healths, _ = doc_pair
    [(scope, reason)] = snapshot.unreadable
    assert scope == "isolated:DEFI/USD:USD:long"  # PF_DEFIUSD side long, maxFixedLeverage 5
    assert "maxFixedLeverage 5" in reason and "Kraken states no margin" in reason
    assert scope not in healths


def test_the_two_examples_as_published_disagree_and_the_poll_is_blind():
    error = refused({ACCOUNTS: REAL / "doc-accounts.json", POSITIONS: REAL / "doc-openpositions.json", TICKERS: tickers()})
    assert "fi_xbtusd holds FI_XBTUSD_171215, FI_XBTUSD_180615 but the positions answer lists FI_XBTUSD_201225, PI_XBTUSD" in str(error)


def test_a_wallet_with_maintenance_and_no_listed_position_is_blind():
    error = refused({ACCOUNTS: REAL / "doc-accounts.json", POSITIONS: no_positions()})
    assert "fi_xbtusd holds FI_XBTUSD_171215, FI_XBTUSD_180615 but the positions answer lists none" in str(error)


# ------------------------------------------------------------------ multi-collateral with a cross position (synthetic)

def flex_with(maintenance: float, equity: float) -> dict:
    """Synthetic: Kraken's accounts example without its fi_xbtusd wallet, the flex wallet holding a
    cross position (no funded multi-collateral account was found recorded)."""
    body = doc_accounts()
    del body["accounts"]["fi_xbtusd"]
    body["accounts"]["flex"].update(maintenanceMargin=maintenance, marginEquity=equity, initialMargin=2 * maintenance)
    return body


def flex_position(size: str = "0.1", side: str = "long") -> dict:
    return {"result": "success", "serverTime": "2024-02-06T22:25:22.290Z", "openPositions": [
        {"side": side, "symbol": "PF_XBTUSD", "price": 58000, "size": size, "unrealizedFunding": 0, "pnlCurrency": "USD"}]}


def test_multi_collateral_cross_position_reads_krakens_totals():
    snapshot, _ = asyncio.run(poll({ACCOUNTS: flex_with(30.0, 1000.0), POSITIONS: flex_position(), TICKERS: tickers()}))
    [health] = evaluate(snapshot, target=0.4)
    assert health.scope == "cross:USD" and health.currency == "USD"
    assert health.margin_ratio == pytest.approx(30.0 / 1000.0, rel=REL)  # maintenanceMargin ÷ marginEquity
    [position] = snapshot.positions
    assert position.notional == pytest.approx(0.1 * 60000.0, rel=REL) and not position.inverse
    assert position.unrealized_pnl == pytest.approx(0.1 * (60000.0 - 58000), rel=REL)  # no unrealizedPnl stated: from the mark
    assert position.maintenance_margin == 0 and position.maintenance_rate == pytest.approx(30.0 / 6000.0, rel=REL)
    # a long: the uniform move at which equity meets a maintenance that shrinks with the notional
    expected = (1000.0 - 30.0) / -(0.1 * 60000.0 - 30.0)
    assert health.liquidation_move == pytest.approx(expected, rel=1e-9)


def test_multi_collateral_maintenance_without_positions_is_blind():
    error = refused({ACCOUNTS: flex_with(30.0, 1000.0), POSITIONS: no_positions()})
    assert "flex.maintenanceMargin 30 but the positions answer lists no multi-collateral position" in str(error)


def test_multi_collateral_position_without_maintenance_is_blind():
    error = refused({ACCOUNTS: flex_with(0.0, 1000.0), POSITIONS: flex_position(), TICKERS: tickers()})
    assert "flex.maintenanceMargin is 0 but the positions answer lists BTC/USD:USD" in str(error)


def test_position_without_a_mark_is_blind():
    error = refused({ACCOUNTS: flex_with(30.0, 1000.0), POSITIONS: flex_position(), TICKERS: tickers({"PI_XBTUSD": 9400.0})})
    assert "BTC/USD:USD: no mark price" in str(error)


def test_a_positions_answer_of_another_shape_is_blind():
    error = refused({ACCOUNTS: flex_with(30.0, 1000.0), POSITIONS: {"result": "success", "openPositions": [{"side": "long"}]}})
    assert "openpositions" in str(error) and "openPositions, a list of positions" in str(error)


# ------------------------------------------------------------------ config

def test_kraken_futures_account_needs_key_and_secret():
    with pytest.raises(ConfigError) as caught:
        build_settings({"accounts": [{"name": "kf", "exchange": "krakenfutures", "api_key": "k-123456"}]})
    assert "accounts[0].secret" in str(caught.value)
    settings = build_settings({"accounts": [{"name": "kf", "exchange": "krakenfutures", "api_key": "k-123456", "secret": "c2VjcmV0LTEyMzQ1Ng=="}]})
    assert settings.accounts[0].exchange == "krakenfutures"


# ------------------------------------------------------------------ python-kraken-sdk's recorded demo answers

def test_recorded_demo_wallets_without_positions_are_the_multi_collateral_scope_at_zero():
    """python-kraken-sdk's docstring of get_wallets(): a real answer of Kraken's demo environment
    (2023-04-04), every margin figure 0.0, fi_xbtusd empty, a funded cash account (not margin)."""
    snapshot, _ = asyncio.run(poll({ACCOUNTS: REAL / "sdk-demo-accounts.json", POSITIONS: no_positions(), TICKERS: tickers()}))
    healths = {h.scope: h for h in evaluate(snapshot, target=0.4)}
    assert set(healths) == {"cross:USD"}  # fi_xbtusd: mm 0.0 and no position, so not in use; cash is no margin account
    assert (healths["cross:USD"].equity, healths["cross:USD"].maintenance_margin) == (0.0, 0.0)  # flex.marginEquity, .maintenanceMargin
    assert healths["cross:USD"].margin_ratio == 0


def test_recorded_lower_case_position_symbol_is_read_as_its_contract():
    """The demo positions answer spells the contract `pi_xbtusd` (lower case, as ccxt's own comments
    show Kraken did in 2022-2023); ccxt 4.5.90 leaves such an id unresolved. Served with Kraken's
    documented wallets, fi_xbtusd's two dated contract balances removed (the example's other contracts:
    a perpetual is not named among a wallet's balances), so the wallet holds only this short."""
    accounts = doc_accounts()
    balances = accounts["accounts"]["fi_xbtusd"]["balances"]
    del balances["FI_XBTUSD_171215"], balances["FI_XBTUSD_180615"]
    snapshot, paths = asyncio.run(poll({ACCOUNTS: accounts, POSITIONS: REAL / "sdk-demo-openpositions.json",
                                        TICKERS: tickers({"PI_XBTUSD": 28000.0})}))
    (short,) = snapshot.positions
    assert (short.symbol, short.side, short.inverse) == ("BTC/USD:BTC", "short", True)  # symbol pi_xbtusd, side short
    assert short.contracts == 8000  # size (USD, 1 a contract)
    assert short.entry_price == pytest.approx(27523.749993345933, rel=REL)  # price
    healths = {h.scope: h for h in evaluate(snapshot, target=0.4)}
    assert healths["cross:BTC"].maintenance_margin == pytest.approx(23.76, rel=REL)  # fi_xbtusd.marginRequirements.mm
    assert [p for p in healths["cross:BTC"].top_positions] and healths["cross:BTC"].top_positions[0].symbol == "BTC/USD:BTC"


def test_recorded_demo_pair_is_blind_where_a_wallet_holds_a_position_at_mm_zero():
    """The demo's two recorded answers together (two days apart): fi_xbtusd states mm 0.0 while the
    positions answer lists pi_xbtusd in it. Not a ratio of 0: the answers disagree."""
    error = refused({ACCOUNTS: REAL / "sdk-demo-accounts.json", POSITIONS: REAL / "sdk-demo-openpositions.json",
                     TICKERS: tickers({"PI_XBTUSD": 28000.0})})
    assert "accounts.fi_xbtusd.marginRequirements.mm is 0 but the positions answer lists BTC/USD:BTC" in str(error)
