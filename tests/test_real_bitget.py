"""Bitget: recorded answers and Bitget's documented examples (tests/fixtures/real/bitget/, see
PROVENANCE.md), replayed byte for byte to ccxt's real bitget class, through the source and health.

Expected numbers are literals from the served payload, with a comment naming the field. Where a
body is synthetic (no account list was recorded at the moment of a recorded position), the test
says so and asserts only what the recording states plus how the synthetic figures are routed.
The market list the replay serves (mix/market/contracts) is synthetic and carries no account figure.
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

REAL = Path(__file__).parent / "fixtures" / "real" / "bitget"
ONCE = RetryPolicy(attempts=1)
REL = 1e-9
CONTRACTS = (Contract("LTCUSDT", "LTC", "USDT", "USDT"), Contract("BTCUSDT", "BTC", "USDT", "USDT"),
             Contract("BTCUSD", "BTC", "USD", "BTC", "inverse"))
ACCOUNTS, POSITIONS = "/api/v2/mix/account/accounts", "/api/v2/mix/position/all-position"
UTA_ASSETS, UTA_POSITIONS = "/api/v3/account/assets", "/api/v3/position/current-position"
NO_POSITIONS = {"code": "00000", "msg": "success", "requestTime": 0, "data": []}  # synthetic: an empty list
NO_UTA_POSITIONS = {"code": "00000", "msg": "success", "requestTime": 0, "data": {"list": []}}  # synthetic


async def poll(bodies: dict, **ccxt):
    async with run_replay("bitget", bodies, CONTRACTS) as server:
        try:
            async with build_source(server.account(**ccxt), retry=ONCE) as source:
                return await source.fetch_snapshot(), server.requests
        finally:
            assert server.unknown == []


def replay(bodies: dict, **ccxt):
    snapshot, requests = asyncio.run(poll(bodies, **ccxt))
    return snapshot, {h.scope: h for h in evaluate(snapshot, target=0.4)}, requests


def refused(bodies: dict, **ccxt) -> SourceError:
    with pytest.raises(SourceError) as caught:
        asyncio.run(poll(bodies, **ccxt))
    assert caught.value.kind == "data"
    return caught.value


def usdt_row(**figures) -> dict:
    """A synthetic USDT row of /api/v2/mix/account/accounts, in the documented field set."""
    row = {"marginCoin": "USDT", "locked": "0", "available": "0", "crossedMaxAvailable": "0", "isolatedMaxAvailable": "0",
           "maxTransferOut": "0", "accountEquity": "0", "usdtEquity": "0", "btcEquity": "0", "crossedRiskRate": "0",
           "unrealizedPL": "0", "coupon": "0", "crossedUnrealizedPL": "", "isolatedUnrealizedPL": "", "assetMode": "single"}
    return {"code": "00000", "msg": "success", "requestTime": 0, "data": [{**row, **figures}]}


def uta_assets(mmr: str, eff_equity: str) -> dict:
    """A synthetic /api/v3/account/assets answer in the documented field set (mgnRatio as Bitget
    states it: mmr ÷ effEquity to 4 decimals)."""
    return {"code": "00000", "msg": "success", "requestTime": 0,
            "data": {"accountEquity": eff_equity, "usdtEquity": eff_equity, "btcEquity": "0", "unrealisedPnl": "0", "usdtUnrealisedPnl": "0",
                     "btcUnrealizedPnl": "0", "effEquity": eff_equity, "mmr": mmr, "imr": "0",
                     "mgnRatio": f"{float(mmr) / float(eff_equity):.4f}", "positionMgnRatio": "0", "assets": []}}


# ---------------------------------------------------------------- classic USDT-M, cross

# synthetic account list for the recorded LTCUSDT position: equity chosen, and crossedRiskRate set to
# the position's own marginRatio (Bitget's own examples show a cross position's marginRatio
# beside the account's crossedRiskRate: 0.0028541 and 0.0028505, a week apart)
RECORDED_CROSS = {ACCOUNTS: usdt_row(accountEquity="49.78", crossedRiskRate="0.001458866276", unrealizedPL="-0.004"),
                  POSITIONS: REAL / "cross-positions.json"}


@pytest.fixture(scope="module")
def recorded_cross():
    return replay(RECORDED_CROSS)


def test_recorded_cross_position_is_read_from_bitgets_own_fields(recorded_cross):
    snapshot, healths, _ = recorded_cross
    [position] = snapshot.positions
    assert (position.symbol, position.side, position.margin_mode) == ("LTC/USDT:USDT", "long", "cross")  # holdSide, marginMode "crossed"
    assert position.contracts == 0.1  # total (LTC)
    assert position.mark_price == 72.62 and position.entry_price == 72.66  # markPrice, openPriceAvg
    assert position.unrealized_pnl == -0.004  # unrealizedPL
    assert position.notional == pytest.approx(0.1 * 72.62, rel=REL)  # total × markPrice
    assert position.maintenance_rate == 0.01  # keepMarginRate
    assert position.initial_margin == 1.4532  # marginSize
    assert position.liquidation_price is None  # liquidationPrice "0": none
    assert healths[ACCOUNT_SCOPE].top_positions[0].liquidation_move is None


def test_recorded_cross_account_ratio_is_bitgets_risk_rate(recorded_cross):
    snapshot, healths, _ = recorded_cross
    account = healths[ACCOUNT_SCOPE]
    assert account.margin_ratio == pytest.approx(0.001458866276, rel=REL)  # crossedRiskRate (= the position's marginRatio)
    assert account.equity == pytest.approx(49.78, rel=REL)  # synthetic accountEquity, no isolated position
    assert account.maintenance_margin == pytest.approx(0.001458866276 * 49.78, rel=REL)  # crossedRiskRate × cross equity
    assert account.currency == snapshot.currency == "USDT"
    assert set(healths) == {ACCOUNT_SCOPE}
    assert account.own_figure.text(account.margin_ratio) == "risk rate 0.15 %"  # Bitget's name, 100 % = liquidation


def test_classic_account_asks_the_usdt_futures_endpoints_and_never_probes_for_a_unified_account(recorded_cross):
    _, _, requests = recorded_cross
    private = sorted((path, tuple(sorted(query.items()))) for _, path, query in requests if "/market/" not in path)
    assert private == [(ACCOUNTS, (("productType", "USDT-FUTURES"),)), (POSITIONS, (("marginCoin", "USDT"), ("productType", "USDT-FUTURES")))]
    assert not any(path.startswith("/api/v3/") for _, path, _ in requests)  # no /api/v3/account/settings probe


def test_recorded_account_list_without_positions_is_at_zero():
    snapshot, healths, _ = replay({ACCOUNTS: REAL / "empty-accounts.json", POSITIONS: NO_POSITIONS})
    account = healths[ACCOUNT_SCOPE]
    assert account.margin_ratio == 0  # crossedRiskRate "0"
    assert account.equity == 0  # accountEquity "0"
    assert snapshot.positions == ()


def test_risk_rate_without_a_cross_position_is_refused_as_partial():
    error = refused({ACCOUNTS: usdt_row(accountEquity="100", crossedRiskRate="0.5"), POSITIONS: NO_POSITIONS})
    assert "crossedRiskRate 0.5 but the positions answer lists no cross position" in error.message


def test_cross_position_with_a_zero_risk_rate_is_refused_as_stale():
    error = refused({ACCOUNTS: REAL / "empty-accounts.json", POSITIONS: REAL / "cross-positions.json"})
    assert "crossedRiskRate is 0 but the positions answer lists 1 cross position" in error.message


def test_union_mode_reads_the_unions_equity_only_where_it_agrees_with_the_risk_rate():
    # synthetic: multi-asset mode, the USDT balance negative (as in Bitget's own example) while the union backs it
    union = dict(accountEquity="-4767.74182959", crossedRiskRate="0.001458866276", assetMode="union")
    _, healths, _ = replay({ACCOUNTS: usdt_row(**union, unionTotalMargin="1000", unionMm="1.458866276"),
                            POSITIONS: REAL / "cross-positions.json"})
    assert healths[ACCOUNT_SCOPE].equity == 1000  # unionTotalMargin
    assert healths[ACCOUNT_SCOPE].margin_ratio == pytest.approx(0.001458866276, rel=REL)  # crossedRiskRate
    error = refused({ACCOUNTS: usdt_row(**union), POSITIONS: REAL / "cross-positions.json"})
    assert "multi-asset (union) mode without unionTotalMargin and unionMm" in error.message
    error = refused({ACCOUNTS: usdt_row(**union, unionTotalMargin="1000", unionMm="5"), POSITIONS: REAL / "cross-positions.json"})
    assert "does not agree with crossedRiskRate" in error.message


# ---------------------------------------------------------------- classic USDT-M, isolated (Bitget's doc example)

def test_doc_isolated_position_is_its_own_scope_at_bitgets_margin_ratio():
    # synthetic account list: 20 USDT of equity, the doc position's PnL stated as isolatedUnrealizedPL
    snapshot, healths, _ = replay({ACCOUNTS: usdt_row(accountEquity="20", isolatedUnrealizedPL="1"),
                                   POSITIONS: REAL / "doc-isolated-positions.json"})
    isolated = healths["isolated:BTC/USDT:USDT:long"]
    assert isolated.margin_ratio == pytest.approx(0.1082149545822005, rel=REL)  # marginRatio
    assert isolated.equity == pytest.approx(9.6695050093373343 + 1, rel=REL)  # marginSize + unrealizedPL
    assert isolated.liquidation_move == pytest.approx(24144.1124161806977798 / 25100 - 1, rel=REL)  # liquidationPrice ÷ markPrice
    # Bitget's marginRatio is (keepMarginRate 0.004 + the 0.06 % fee to close) × notional ÷ (marginSize + unrealizedPL)
    assert (0.004 + 0.0006) * 0.01 * 25100 / (9.6695050093373343 + 1) == pytest.approx(0.1082149545822005, rel=1e-12)
    account = healths[ACCOUNT_SCOPE]
    assert account.equity == pytest.approx(20 - 9.6695050093373343 - 1, rel=REL)  # accountEquity − marginSize − isolatedUnrealizedPL
    assert account.margin_ratio == 0  # crossedRiskRate "0"
    # where the row states its isolated margin, that figure is taken (synthetic: 9.5)
    _, healths, _ = replay({ACCOUNTS: usdt_row(accountEquity="20", isolatedUnrealizedPL="1", isolatedMargin="9.5"),
                            POSITIONS: REAL / "doc-isolated-positions.json"})
    assert healths[ACCOUNT_SCOPE].equity == pytest.approx(20 - 9.5 - 1, rel=REL)  # accountEquity − isolatedMargin − isolatedUnrealizedPL


def test_isolated_position_past_its_margin_is_at_infinity_not_an_error():
    body = json.loads((REAL / "doc-isolated-positions.json").read_text())
    body["data"][0]["unrealizedPL"] = "-10"  # synthetic: the loss exceeds marginSize 9.6695…
    _, healths, _ = replay({ACCOUNTS: usdt_row(accountEquity="20"), POSITIONS: body})
    assert healths["isolated:BTC/USDT:USDT:long"].margin_ratio == float("inf")


def test_isolated_position_without_its_margin_ratio_is_blind_on_its_own():
    body = json.loads((REAL / "doc-isolated-positions.json").read_text())
    body["data"][0]["marginRatio"] = ""  # synthetic: the figure left out
    snapshot, healths, _ = replay({ACCOUNTS: usdt_row(accountEquity="20"), POSITIONS: body})
    assert dict(snapshot.unreadable) == {"isolated:BTC/USDT:USDT:long": "bitget position BTCUSDT: isolated position without marginRatio or marginSize"}
    assert set(healths) == {ACCOUNT_SCOPE}


# ---------------------------------------------------------------- unified trading account

def test_recorded_unified_account_is_mmr_over_effective_equity():
    snapshot, healths, requests = replay({UTA_ASSETS: REAL / "uta-assets.json", UTA_POSITIONS: NO_UTA_POSITIONS}, options={"uta": True})
    account = healths[ACCOUNT_SCOPE]
    assert account.equity == pytest.approx(256783.39028097, rel=REL)  # effEquity
    assert account.maintenance_margin == 0 and account.margin_ratio == 0  # mmr "0"
    assert account.currency == "USD" and account.own_figure.name == "margin ratio"  # mgnRatio "0" = mmr ÷ effEquity
    private = sorted((path, tuple(sorted(query.items()))) for _, path, query in requests if "/market/" not in path)
    assert private == [(UTA_ASSETS, ())] + [(UTA_POSITIONS, (("category", c),)) for c in ("COIN-FUTURES", "USDC-FUTURES", "USDT-FUTURES")]


def test_recorded_unified_position_is_listed_in_the_unified_account():
    # synthetic assets answer (mmr 1.5, effEquity 100) around the recorded position
    bodies = {UTA_ASSETS: uta_assets("1.5", "100"), UTA_POSITIONS: NO_UTA_POSITIONS, f"{UTA_POSITIONS}?category=USDT-FUTURES": REAL / "uta-positions.json"}
    snapshot, healths, _ = replay(bodies, options={"uta": True})
    [position] = snapshot.positions
    assert (position.symbol, position.side, position.margin_mode) == ("BTC/USDT:USDT", "long", "cross")  # posSide, marginMode "crossed"
    assert position.contracts == 0.001 and position.mark_price == 115085.6  # total, markPrice
    assert position.maintenance_rate == 0.004  # mmr (a rate on a position)
    assert position.initial_margin == 5.82333136  # positionBalance
    assert healths[ACCOUNT_SCOPE].margin_ratio == pytest.approx(1.5 / 100, rel=REL)  # synthetic mmr ÷ effEquity


def test_unified_isolated_and_coin_margined_positions():
    """Synthetic (no UTA isolated or COIN-FUTURES position was found recorded): the recorded row
    made isolated, and a BTCUSD row margined in BTC. The isolated one is blind on its own (no
    margin ratio stated); the coin-margined one is listed in BTC."""
    recorded = json.loads((REAL / "uta-positions.json").read_text())
    isolated = json.loads(json.dumps(recorded))
    isolated["data"]["list"][0]["marginMode"] = "isolated"
    coin = json.loads(json.dumps(recorded))
    coin["data"]["list"][0].update(category="COIN-FUTURES", symbol="BTCUSD", marginCoin="BTC", positionBalance="0.00005", total="0.002")
    bodies = {UTA_ASSETS: uta_assets("2", "100"), UTA_POSITIONS: NO_UTA_POSITIONS,
              f"{UTA_POSITIONS}?category=USDT-FUTURES": isolated, f"{UTA_POSITIONS}?category=COIN-FUTURES": coin}
    snapshot, healths, _ = replay(bodies, options={"uta": True})
    assert dict(snapshot.unreadable) == {
        "isolated:BTC/USDT:USDT:long": "Bitget's unified-account position answer states no margin ratio for an isolated position"}
    [position] = snapshot.positions
    assert (position.symbol, position.inverse, position.currency) == ("BTC/USD:BTC", True, "BTC")
    assert position.notional == 0.002  # total (BTC)
    assert position.contracts == pytest.approx(0.002 * 115085.6, rel=REL)  # face value: total × markPrice (USD)
    assert position.maintenance_margin == pytest.approx(0.004 * 0.002, rel=REL)  # mmr rate × total, in BTC
    assert healths[ACCOUNT_SCOPE].margin_ratio == pytest.approx(2 / 100, rel=REL)  # mmr ÷ effEquity


def test_unified_ratio_must_agree_with_bitgets_mgn_ratio():
    # synthetic answers: mmr 1.5 ÷ effEquity 100 = 0.015; Bitget would state mgnRatio "0.015"
    agreeing = uta_assets("1.5", "100")
    agreeing["data"]["mgnRatio"] = "0.015"
    bodies = {UTA_POSITIONS: NO_UTA_POSITIONS, f"{UTA_POSITIONS}?category=USDT-FUTURES": REAL / "uta-positions.json"}
    _, healths, _ = replay({**bodies, UTA_ASSETS: agreeing}, options={"uta": True})
    assert healths[ACCOUNT_SCOPE].own_figure.text(healths[ACCOUNT_SCOPE].margin_ratio) == "margin ratio 1.5 %"
    disagreeing = uta_assets("1.5", "100")
    disagreeing["data"]["mgnRatio"] = "66.6667"  # what effEquity ÷ mmr would read
    error = refused({**bodies, UTA_ASSETS: disagreeing}, options={"uta": True})
    assert "mmr ÷ effEquity (0.015) is not Bitget's mgnRatio (66.6667)" in error.message


def test_a_position_answered_twice_is_refused():
    # the recorded UTA position served for every category: an answer that ignored the category
    bodies = {UTA_ASSETS: REAL / "uta-assets.json", UTA_POSITIONS: REAL / "uta-positions.json"}
    error = refused(bodies, options={"uta": True})
    assert "bitget position BTC/USDT:USDT long listed 3 times" in error.message


def test_a_unified_account_read_as_classic_fails_with_bitgets_own_words():
    # Bitget's answer as quoted in ccxt 4.5.90's bitget.py (its exceptions table, code 40085)
    answer = (b'{"code":"40085","msg":"You are in Unified Account mode, and the Classic Account API is not supported at this time",'
              b'"requestTime":1790329761103,"data":null}')
    with pytest.raises(SourceError) as caught:
        asyncio.run(poll({ACCOUNTS: answer, POSITIONS: answer}))
    assert caught.value.kind == "credentials"  # ccxt: PermissionDenied
    assert "You are in Unified Account mode, and the Classic Account API is not supported" in caught.value.message


# ---------------------------------------------------------------- config

def config_errors(**account) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_settings({"accounts": [{"name": "bg", "exchange": "bitget", "api_key": "k-123456", "secret": "s-123456", **account}]})
    return str(caught.value).splitlines()


def test_bitget_account_needs_its_passphrase():
    assert any(e.startswith("accounts[0].password: Bitget needs it") for e in config_errors())
    settings = build_settings({"accounts": [{"name": "bg", "exchange": "bitget", "api_key": "k-123456", "secret": "s-123456",
                                             "password": "p-123456", "ccxt": {"options": {"uta": True}}}]})
    assert settings.accounts[0].password.get_secret_value() == "p-123456"


def test_coin_margined_and_spot_accounts_are_refused_with_the_reason():
    (error,) = config_errors(password="p", ccxt={"options": {"defaultSubType": "inverse"}})
    assert "coin-margined (COIN-FUTURES) accounts are not supported" in error
    (error,) = config_errors(password="p", ccxt={"options": {"defaultType": "spot"}})
    assert error.startswith("accounts[0].ccxt.options.defaultType: 'spot' is not an account the bitget profile reads")


def test_bitget_repricing_is_refused():
    (error,) = config_errors(password="p", between_polls="reprice")
    assert error.startswith("accounts[0].between_polls: cannot re-price bitget positions faithfully")


@pytest.mark.parametrize("total", ["", None])
def test_a_position_row_without_its_size_is_blind_not_dropped(total):
    """The recorded LTCUSDT row with `total` "" or null (synthetic edit): a row the answer lists is
    not read as a closed position."""
    body = json.loads((REAL / "cross-positions.json").read_text())
    body["data"][0]["total"] = total
    error = refused({ACCOUNTS: RECORDED_CROSS[ACCOUNTS], POSITIONS: body})
    assert "bitget position LTCUSDT.total: missing" in error.message


def test_a_blind_isolated_positions_margin_still_leaves_the_cross_equity():
    """Bitget's cross equity excludes every isolated position's margin and PnL, also one whose own
    ratio cannot be read (marginRatio "" here, a synthetic edit of the doc example); the recorded
    account rows state no isolatedMargin and may state isolatedUnrealizedPL "" or null."""
    body = json.loads((REAL / "doc-isolated-positions.json").read_text())
    body["data"][0]["marginRatio"] = ""
    _, healths, _ = replay({ACCOUNTS: usdt_row(accountEquity="20"), POSITIONS: body})
    assert healths[ACCOUNT_SCOPE].equity == pytest.approx(20 - 9.6695050093373343 - 1, rel=REL)  # accountEquity − marginSize − unrealizedPL
    body["data"][0]["marginSize"] = ""  # and without its margin: the cross equity is not known
    error = refused({ACCOUNTS: usdt_row(accountEquity="20"), POSITIONS: body})
    assert "bitget position BTCUSDT.marginSize: missing" in error.message


def test_recorded_account_row_with_isolated_pnl_stated_as_empty():
    """A USDT account row printed in ccxt pull request #21576 (2024-03-07; Bitget's single-account
    answer, the same row fields as the list's), served as the only row of an account list (a
    synthetic envelope): `isolatedUnrealizedPL` "" is not read as 0 but as not stated."""
    row = json.loads((REAL / "account-row.json").read_text())
    accounts = {"code": "00000", "msg": "success", "requestTime": 0, "data": [row]}
    _, healths, _ = replay({ACCOUNTS: accounts, POSITIONS: NO_POSITIONS})
    assert healths[ACCOUNT_SCOPE].equity == pytest.approx(19.88811074, rel=REL)  # accountEquity
    assert healths[ACCOUNT_SCOPE].margin_ratio == 0  # crossedRiskRate "0"
    # with Bitget's documented isolated position (another account): its own unrealizedPL is taken
    _, healths, _ = replay({ACCOUNTS: accounts, POSITIONS: REAL / "doc-isolated-positions.json"})
    assert healths[ACCOUNT_SCOPE].equity == pytest.approx(19.88811074 - 9.6695050093373343 - 1, rel=REL)  # − marginSize − unrealizedPL
