"""Real recorded exchange answers (tests/fixtures/real/, see PROVENANCE.md there), replayed byte
for byte (alerter.simulator.replay) to the real ccxt class, through the real source and health.

Every expected number is a literal copied from the served payload, with a comment naming the
field: the figure the exchange itself states. Our own formula is never the expected value.
A disagreement found here is fixed in the code, never in the expected value.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from alerter.health import evaluate
from alerter.models import ACCOUNT_SCOPE
from alerter.simulator.replay import Contract, run_replay
from alerter.sources import RetryPolicy, SourceError, build_source

REAL = Path(__file__).parent / "fixtures" / "real"
ONCE = RetryPolicy(attempts=1)
REL = 1e-6


def replay(exchange_id: str, bodies: dict, contracts: list[Contract], **ccxt):
    """(snapshot, healths by scope, requests) of one poll of a replayed account."""

    async def run():
        async with run_replay(exchange_id, bodies, contracts) as server:
            async with build_source(server.account(**ccxt), retry=ONCE) as source:
                snapshot = await source.fetch_snapshot()
            assert server.unknown == []
            return snapshot, server.paths()

    snapshot, paths = asyncio.run(run())
    return snapshot, {h.scope: h for h in evaluate(snapshot, target=0.4)}, paths


def refused(exchange_id: str, bodies: dict, contracts: list[Contract], **ccxt) -> SourceError:
    async def run():
        async with run_replay(exchange_id, bodies, contracts) as server:
            async with build_source(server.account(**ccxt), retry=ONCE) as source:
                await source.fetch_snapshot()

    with pytest.raises(SourceError) as caught:
        asyncio.run(run())
    return caught.value


# ------------------------------------------------------------------ binance usdⓈ-m

BTCUSDT = Contract("BTCUSDT", "BTC", "USDT", "USDT")
BINANCE_MULTIASSETS = {
    "/fapi/v3/account": REAL / "binanceusdm/multiassets-cross-account-v3.json",
    "/fapi/v3/positionRisk": REAL / "binanceusdm/multiassets-cross-positionRisk-v3.json",
}


@pytest.fixture(scope="module")
def binance_multiassets():
    return replay("binanceusdm", BINANCE_MULTIASSETS, [BTCUSDT])


def test_binanceusdm_cross_account_is_binances_margin_ratio(binance_multiassets):
    snapshot, healths, paths = binance_multiassets
    assert {"/fapi/v3/account", "/fapi/v3/positionRisk"} <= set(paths)  # the recorded endpoints were asked
    account = healths[ACCOUNT_SCOPE]
    # Binance: account margin ratio = totalMaintMargin ÷ totalMarginBalance
    assert account.margin_ratio == pytest.approx(2.43034303 / 26.26840422, rel=REL)
    assert account.equity == pytest.approx(26.26840422, rel=REL)  # totalMarginBalance
    assert account.maintenance_margin == pytest.approx(2.43034303, rel=REL)  # totalMaintMargin
    assert snapshot.wallet_balance == pytest.approx(25.72610060, rel=REL)  # totalWalletBalance
    assert set(healths) == {ACCOUNT_SCOPE}  # one cross position, no isolated scope


def test_binanceusdm_position_liquidation_distance_is_binances(binance_multiassets):
    _, healths, _ = binance_multiassets
    (btc,) = healths[ACCOUNT_SCOPE].top_positions
    assert (btc.symbol, btc.side) == ("BTC/USDT:USDT", "long")
    assert btc.liquidation_price == pytest.approx(64846.98753790, rel=REL)  # positionRisk liquidationPrice
    assert btc.mark_price == pytest.approx(67502.68519858, rel=REL)  # positionRisk markPrice
    assert btc.liquidation_move == pytest.approx(64846.98753790 / 67502.68519858 - 1, rel=REL)
    assert btc.maintenance_margin == pytest.approx(2.43009666, rel=REL)  # positionRisk maintMargin
    assert btc.notional == pytest.approx(607.52416678, rel=REL)  # positionRisk notional


def test_binanceusdm_single_position_account_moves_to_binances_liquidation_price(binance_multiassets):
    _, healths, _ = binance_multiassets
    # positionRisk liquidationPrice ÷ markPrice − 1: the only cross position, so the account's move
    assert healths[ACCOUNT_SCOPE].liquidation_move == pytest.approx(64846.98753790 / 67502.68519858 - 1, rel=REL)


def test_binanceusdm_multiassets_figures_are_in_usd(binance_multiassets):
    _, healths, _ = binance_multiassets
    # assets[USDT].walletBalance 3.72964781 + assets[USDC].walletBalance 22.00000000 ≠ totalWalletBalance 25.72610060
    assert healths[ACCOUNT_SCOPE].currency == "USD"


def test_binanceusdm_single_asset_account_without_positions_is_no_risk():
    bodies = {
        "/fapi/v2/account": REAL / "binanceusdm/singleasset-noposition-account-v2.json",
        "/fapi/v3/positionRisk": b"[]",  # synthetic: no position (the recording's own positions list is empty)
    }
    # the recording is the v2 account answer: ccxt is asked for v2 (options.fetchBalance.useV2)
    snapshot, healths, paths = replay("binanceusdm", bodies, [BTCUSDT], options={"fetchBalance": {"useV2": True}})
    assert "/fapi/v2/account" in paths
    account = healths[ACCOUNT_SCOPE]
    assert account.margin_ratio == 0.0  # totalMaintMargin "0.00000000": nothing maintained
    assert account.maintenance_margin == 0.0  # totalMaintMargin
    assert account.equity == pytest.approx(31.02261200, rel=REL)  # totalMarginBalance
    assert account.liquidation_move is None and account.top_positions == ()
    assert account.currency == "USDT"  # multiAssetsMargin false
    assert snapshot.positions == ()


# ------------------------------------------------------------------ okx

OKX_BALANCE = REAL / "okx/multicurrency-balance.json"
OKX_NO_POSITIONS = {"code": "0", "data": [], "msg": ""}  # synthetic: the balance shows notionalUsdForSwap "0", isoEq "0"
BTC_USD_SWAP = Contract("BTC-USD-SWAP", "BTC", "USD", "BTC", "inverse", "100")  # OKX: 100 USD a contract
# the recording's own notionalUsd 0.2027248512 for pos 2 at markPx 101.33 (and imr 0.020266 at lever 10)
# give 0.001 LTC a contract on the account it was recorded on
LTC_USDT_SWAP = Contract("LTC-USDT-SWAP", "LTC", "USDT", "USDT", "linear", "0.001")


def okx_balance_with_isolated(ccy: str, iso_eq: str) -> bytes:
    """The recorded balance with `details[ccy].isoEq` set: the balance of the moment an isolated
    position was recorded was not recorded, and the source (rightly) refuses an isolated position
    the balance does not show. No figure a test asserts comes from this edit."""
    body = json.loads(OKX_BALANCE.read_text())
    for detail in body["data"][0]["details"]:
        if detail["ccy"] == ccy:
            detail["isoEq"] = iso_eq
    return json.dumps(body).encode()


def okx(positions, balance=OKX_BALANCE, contracts=(BTC_USD_SWAP, LTC_USDT_SWAP)):
    return replay("okx", {"/api/v5/account/balance": balance, "/api/v5/account/positions": positions}, list(contracts))


def test_okx_multicurrency_account_is_okxs_mgn_ratio():
    snapshot, healths, paths = okx(OKX_NO_POSITIONS)
    assert {"/api/v5/account/balance", "/api/v5/account/positions"} <= set(paths)
    account = healths[ACCOUNT_SCOPE]
    assert account.margin_ratio == pytest.approx(1 / 15986.632239614408, rel=REL)  # 1 ÷ data[0].mgnRatio
    assert account.equity == pytest.approx(152550.80919105993, rel=REL)  # data[0].adjEq
    assert account.currency == "USD"
    # the figure OKX states, shown beside the ratio: mgnRatio 15986.632239614408 as a percentage
    assert account.own_figure.value(account.margin_ratio) == pytest.approx(15986.632239614408, rel=REL)  # data[0].mgnRatio
    assert account.own_figure.text(account.margin_ratio) == "OKX margin ratio 1,598,663 %"
    assert snapshot.wallet_balance == pytest.approx(43749372.50896299, rel=REL)  # data[0].totalEq
    assert account.top_positions == () and set(healths) == {ACCOUNT_SCOPE}


def test_okx_multicurrency_maintenance_is_okxs_mmr_plus_its_fee_to_close():
    """OKX liquidates when mgnRatio = adjEq ÷ (mmr + fee to close) reaches 1. alerter's maintenance
    is that denominator, the figure its 100 % is measured against, as OKX states it through adjEq
    and mgnRatio: OKX's mmr plus the fee to close (which the payload does not state on its own)."""
    _, healths, _ = okx(OKX_NO_POSITIONS)
    maintenance = healths[ACCOUNT_SCOPE].maintenance_margin
    assert maintenance == pytest.approx(152550.80919105993 / 15986.632239614408, rel=REL)  # data[0].adjEq ÷ data[0].mgnRatio
    assert maintenance > 9.073149592403611  # data[0].mmr: the fee to close comes on top


def test_okx_linear_cross_position_figures_are_okxs():
    _, healths, _ = okx(REAL / "okx/linear-cross-positions.json")
    account = healths[ACCOUNT_SCOPE]
    assert account.margin_ratio == pytest.approx(1 / 15986.632239614408, rel=REL)  # balance data[0].mgnRatio
    (ltc,) = account.top_positions
    assert (ltc.symbol, ltc.side) == ("LTC/USDT:USDT", "long")  # posSide long
    assert ltc.maintenance_margin == pytest.approx(0.00131729, rel=REL)  # mmr
    assert ltc.notional == pytest.approx(0.020266 * 10, rel=REL)  # imr × lever, in USDT (notionalUsd is in USD)
    assert ltc.mark_price == pytest.approx(101.33, rel=REL)  # markPx
    assert ltc.liquidation_price is None and ltc.liquidation_move is None  # liqPx "": none


def test_okx_inverse_cross_position_keeps_the_account_evaluated():
    _, healths, _ = okx(REAL / "okx/inverse-cross-positions.json")
    assert healths[ACCOUNT_SCOPE].margin_ratio == pytest.approx(1 / 15986.632239614408, rel=REL)  # balance data[0].mgnRatio
    assert set(healths) == {ACCOUNT_SCOPE}


OKX_INVERSE_ISOLATED = REAL / "okx/inverse-isolated-positions.json"
# margin 0.0003611412062116 + upl 0.000000899562244: the position's isolated equity in BTC
INVERSE_ISOLATED_EQUITY = 0.0003611412062116 + 0.000000899562244


def test_okx_isolated_inverse_position_is_okxs_mgn_ratio():
    balance = okx_balance_with_isolated("BTC", repr(INVERSE_ISOLATED_EQUITY))
    _, healths, _ = okx(OKX_INVERSE_ISOLATED, balance=balance)
    assert healths[ACCOUNT_SCOPE].margin_ratio == pytest.approx(1 / 15986.632239614408, rel=REL)  # balance mgnRatio
    position = healths["isolated:BTC/USD:BTC:long"]
    assert position.margin_ratio == pytest.approx(1 / 74.32029212310307, rel=REL)  # 1 ÷ mgnRatio
    assert position.equity == pytest.approx(INVERSE_ISOLATED_EQUITY, rel=REL)  # margin + upl
    assert position.currency == "BTC"  # ccy
    # liqPx ÷ markPx − 1
    assert position.liquidation_move == pytest.approx(69536.6125000014 / 92376.7 - 1, rel=REL)


def test_okx_isolated_position_the_balance_does_not_show_is_refused():
    """The recorded balance shows no isolated equity (every isoEq "0"): served with a recorded
    isolated position, the two answers disagree, and the account is blind, never ok."""
    error = refused("okx", {"/api/v5/account/balance": OKX_BALANCE, "/api/v5/account/positions": OKX_INVERSE_ISOLATED},
                    [BTC_USD_SWAP])
    assert error.kind == "data" and "BTC" in error.message


# ------------------------------------------------------------------ bybit

def test_bybit_wallet_with_position_margin_but_no_positions_is_blind():
    """The recorded unified wallet carries USDT position maintenance (coin[USDT].totalPositionMM
    "7.00285644") but its position list was not recorded: served with empty lists it is a partial
    answer, and the source says so rather than reading the account as safe."""
    empty = {"retCode": 0, "retMsg": "OK", "result": {"list": [], "nextPageCursor": "", "category": "linear"}, "retExtInfo": {}, "time": 1}
    error = refused("bybit", {"/v5/account/wallet-balance": REAL / "bybit/unified-wallet-balance.json", "/v5/position/list": empty},
                    [Contract("BTCUSDT", "BTC", "USDT", "USDT")])
    assert error.kind == "data" and "totalPositionMM" in error.message


# ------------------------------------------------------------------ binance usdⓈ-m isolated (doc example)

# Binance's "Position Information V2" hedge-mode example (doc example, see PROVENANCE.md): two
# isolated BTCUSDT positions. The long's figures agree with each other: isolatedMargin −
# unRealizedProfit = 13200.70726908 wallet, and with BTCUSDT's then second bracket (0.5 %,
# cum 50) that wallet liquidates at 5930.78, the liquidationPrice stated. The short's
# entryPrice "0.00000" contradicts its own unRealizedProfit (an entry of 6563.86 does not), and
# ccxt drops every row whose entryPrice is not above 0: only the long reaches alerter.
BINANCE_ISOLATED_POSITIONS = REAL / "binanceusdm/doc-isolated-hedge-positionRisk-v2.json"
BINANCE_LONG_ROW = {"symbol": "BTCUSDT", "positionSide": "LONG", "positionAmt": "20.000", "isolated": True, "leverage": "10"}
BINANCE_SHORT_ROW = {"symbol": "BTCUSDT", "positionSide": "SHORT", "positionAmt": "-10.000", "isolated": True, "leverage": "10"}


def binance_isolated_account(*rows: dict) -> dict:
    """Synthetic: no account answer was published with these positions. It lists the given
    position rows (the source requires the account and positionRisk answers to agree) and no
    cross position. No figure a test asserts comes from it."""
    return {
        "feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True, "updateTime": 0, "multiAssetsMargin": False,
        "totalInitialMargin": "0", "totalMaintMargin": "0", "totalWalletBalance": "100000.00000000", "totalUnrealizedProfit": "0",
        "totalMarginBalance": "100000.00000000", "totalPositionInitialMargin": "0", "totalOpenOrderInitialMargin": "0",
        "totalCrossWalletBalance": "100000.00000000", "totalCrossUnPnl": "0.00000000", "availableBalance": "100000.00000000",
        "maxWithdrawAmount": "100000.00000000", "assets": [], "positions": list(rows),
    }


BTCUSDT_TIER2 = Contract("BTCUSDT", "BTC", "USDT", "USDT", maint_rate=0.005)
# the example is the v2 answer (marginType, isolatedMargin): ccxt is asked for the v2 endpoints
BINANCE_V2 = {"options": {"fetchBalance": {"useV2": True}, "fetchPositionsRisk": {"useV2": True}}}


@pytest.fixture(scope="module")
def binance_isolated():
    bodies = {"/fapi/v2/account": binance_isolated_account(BINANCE_LONG_ROW), "/fapi/v2/positionRisk": BINANCE_ISOLATED_POSITIONS}
    return replay("binanceusdm", bodies, [BTCUSDT_TIER2], **BINANCE_V2)


def test_binanceusdm_isolated_position_is_its_own_scope_at_binances_liquidation_price(binance_isolated):
    _, healths, paths = binance_isolated
    assert "/fapi/v2/positionRisk" in paths
    assert set(healths) == {ACCOUNT_SCOPE, "isolated:BTC/USDT:USDT:long"}
    long = healths["isolated:BTC/USDT:USDT:long"]
    assert long.equity == pytest.approx(15517.54150468, rel=REL)  # isolatedMargin (isolated wallet + unrealised PnL)
    (risk,) = long.top_positions
    assert risk.liquidation_price == pytest.approx(5930.78, rel=REL)  # liquidationPrice
    assert risk.mark_price == pytest.approx(6679.50671178, rel=REL)  # markPrice
    # liquidationPrice ÷ markPrice − 1: the scope's own move is Binance's
    assert long.liquidation_move == pytest.approx(5930.78 / 6679.50671178 - 1, rel=REL)
    assert risk.notional == pytest.approx(20 * 6679.50671178, rel=REL)  # |positionAmt| × markPrice (v2 has no notional)
    # the isolated position stays out of the cross account
    assert healths[ACCOUNT_SCOPE].top_positions == () and healths[ACCOUNT_SCOPE].maintenance_margin == 0.0


def test_binanceusdm_position_ccxt_drops_is_refused():
    """The example's short (positionAmt "-10.000", entryPrice "0.00000") is dropped by ccxt; an
    account answer that lists it makes the poll blind (data), never a closed position."""
    bodies = {"/fapi/v2/account": binance_isolated_account(BINANCE_LONG_ROW, BINANCE_SHORT_ROW),
              "/fapi/v2/positionRisk": BINANCE_ISOLATED_POSITIONS}
    error = refused("binanceusdm", bodies, [BTCUSDT_TIER2], **BINANCE_V2)
    assert error.kind == "data" and "BTCUSDT short" in error.message


# ------------------------------------------------------------------ binance usdⓈ-m isolated (recorded v2 positionRisk)

# Two recorded "Position Information V2" answers of small real hedge-mode accounts, every position
# isolated (see PROVENANCE.md). Their figures agree with Binance's isolated liquidation formula:
# with the isolatedWallet, entryPrice and positionAmt stated, a maintenance rate of 0.5 % (DOGEUSDT)
# and 1.5 % (BLURUSDT) with cum 0 gives each stated liquidationPrice to all 8 decimals. Those rates
# are what the synthetic brackets serve (used only to extrapolate, never asserted). No account
# answer was recorded with them: the synthetic account lists the open rows (binance_isolated_account).
DOGEUSDT = Contract("DOGEUSDT", "DOGE", "USDT", "USDT", maint_rate=0.005)
BLURUSDT = Contract("BLURUSDT", "BLUR", "USDT", "USDT", maint_rate=0.015)


def binance_recorded_isolated(name: str, contract: Contract, *rows: dict):
    bodies = {"/fapi/v2/account": binance_isolated_account(*rows), "/fapi/v2/positionRisk": REAL / f"binanceusdm/{name}"}
    return replay("binanceusdm", bodies, [contract], **BINANCE_V2)


def test_binanceusdm_recorded_isolated_short_is_binances():
    row = {"symbol": "DOGEUSDT", "positionSide": "SHORT", "positionAmt": "-32", "isolated": True, "leverage": "6"}
    _, healths, paths = binance_recorded_isolated("isolated-hedge-short-positionRisk-v2.json", DOGEUSDT, row)
    assert "/fapi/v2/positionRisk" in paths
    assert set(healths) == {ACCOUNT_SCOPE, "isolated:DOGE/USDT:USDT:short"}  # the LONG row has positionAmt "0"
    short = healths["isolated:DOGE/USDT:USDT:short"]
    assert short.equity == pytest.approx(0.86034145, rel=REL)  # isolatedMargin
    (risk,) = short.top_positions
    assert risk.liquidation_price == pytest.approx(0.19059204, rel=REL)  # liquidationPrice
    assert risk.mark_price == pytest.approx(0.16465933, rel=REL)  # markPrice
    assert risk.notional == pytest.approx(5.26909856, rel=REL)  # |notional|
    assert short.liquidation_move == pytest.approx(0.19059204 / 0.16465933 - 1, rel=REL)  # liquidationPrice ÷ markPrice − 1
    assert healths[ACCOUNT_SCOPE].top_positions == ()  # nothing cross


def test_binanceusdm_recorded_isolated_long_and_short_are_two_scopes_at_binances_prices():
    rows = ({"symbol": "BLURUSDT", "positionSide": "LONG", "positionAmt": "14", "isolated": True, "leverage": "4"},
            {"symbol": "BLURUSDT", "positionSide": "SHORT", "positionAmt": "-28", "isolated": True, "leverage": "4"})
    _, healths, _ = binance_recorded_isolated("isolated-hedge-long-short-positionRisk-v2.json", BLURUSDT, *rows)
    assert set(healths) == {ACCOUNT_SCOPE, "isolated:BLUR/USDT:USDT:long", "isolated:BLUR/USDT:USDT:short"}
    long, short = healths["isolated:BLUR/USDT:USDT:long"], healths["isolated:BLUR/USDT:USDT:short"]
    assert long.equity == pytest.approx(2.51886250, rel=REL)  # LONG isolatedMargin
    assert short.equity == pytest.approx(5.05750448, rel=REL)  # SHORT isolatedMargin
    assert long.top_positions[0].notional == pytest.approx(10.09540000, rel=REL)  # LONG notional
    assert short.top_positions[0].notional == pytest.approx(20.19080000, rel=REL)  # SHORT |notional|
    # liquidationPrice ÷ markPrice − 1 (markPrice 0.72110000 on both rows)
    assert long.liquidation_move == pytest.approx(0.54942259 / 0.72110000 - 1, rel=REL)
    assert short.liquidation_move == pytest.approx(0.88839917 / 0.72110000 - 1, rel=REL)


# ------------------------------------------------------------------ bybit unified cross (websocket recording)

def bybit_rest_envelope(ws_message: Path, **result) -> bytes:
    """The `data` rows of a recorded Bybit v5 private websocket push (wallet or position topic),
    served as the REST answer of the same name. The rows are the recording's, value for value
    (every figure is a string); the envelope (retCode, retMsg, result.nextPageCursor, ...) is
    synthetic. Bybit documents the push rows with the same fields as the REST rows."""
    message = json.loads(ws_message.read_text())
    body = {"retCode": 0, "retMsg": "OK", "result": {"list": message["data"], "nextPageCursor": "", **result},
            "retExtInfo": {}, "time": message["creationTime"]}
    return json.dumps(body).encode()


BYBIT_WS_WALLET = REAL / "bybit/ws-unified-cross-wallet.json"
BYBIT_WS_POSITION = REAL / "bybit/ws-unified-cross-position.json"
SOLUSDT = Contract("SOLUSDT", "SOL", "USDT", "USDT")


@pytest.fixture(scope="module")
def bybit_unified_cross():
    bodies = {
        "/v5/account/wallet-balance": bybit_rest_envelope(BYBIT_WS_WALLET),
        "/v5/position/list": bybit_rest_envelope(BYBIT_WS_POSITION, category="linear"),
        # synthetic: the recorded wallet holds USDT only (coin[] has no USDC), so no USDC contract
        "/v5/position/list?settleCoin=USDC": {"retCode": 0, "retMsg": "OK", "result": {"list": [], "nextPageCursor": "", "category": "linear"},
                                              "retExtInfo": {}, "time": 1759432560944},
    }
    return replay("bybit", bodies, [SOLUSDT])


def test_bybit_unified_cross_account_is_bybits_account_mm_rate(bybit_unified_cross):
    snapshot, healths, paths = bybit_unified_cross
    assert {"/v5/account/wallet-balance", "/v5/position/list"} <= set(paths)
    account = healths[ACCOUNT_SCOPE]
    # accountMMRate "0.0226": Bybit cuts the rate to 4 decimals (totalMaintenanceMargin ÷
    # totalMarginBalance = 0.02267 is stated as 0.0226, and the IM rate 0.40836 as "0.4083")
    assert int(account.margin_ratio * 10_000) == 226
    assert account.equity == pytest.approx(11.48691986, rel=REL)  # totalMarginBalance
    assert account.maintenance_margin == pytest.approx(0.26041992, rel=REL)  # totalMaintenanceMargin
    assert snapshot.wallet_balance == pytest.approx(11.48511863, rel=REL)  # totalWalletBalance
    assert account.currency == "USD"
    assert set(healths) == {ACCOUNT_SCOPE}  # tradeMode 0 with account-wide figures: cross


def test_bybit_unified_cross_position_figures_are_bybits(bybit_unified_cross):
    _, healths, _ = bybit_unified_cross
    (sol,) = healths[ACCOUNT_SCOPE].top_positions
    assert (sol.symbol, sol.side) == ("SOL/USDT:USDT", "long")  # side Buy
    assert sol.maintenance_margin == pytest.approx(0.2602414, rel=REL)  # positionMM
    assert sol.mark_price == pytest.approx(233.029, rel=REL)  # markPrice
    assert sol.liquidation_price == pytest.approx(176.89650029, rel=REL)  # liqPrice
    assert sol.liquidation_move == pytest.approx(176.89650029 / 233.029 - 1, rel=REL)  # liqPrice ÷ markPrice − 1


def test_bybit_single_position_account_moves_to_bybits_liquidation_price(bybit_unified_cross):
    _, healths, _ = bybit_unified_cross
    # liqPrice ÷ markPrice − 1: the only position of the cross account, so the account's move
    assert healths[ACCOUNT_SCOPE].liquidation_move == pytest.approx(176.89650029 / 233.029 - 1, rel=REL)


# ------------------------------------------------------------------ okx isolated linear (recorded row)

# One recorded row of GET /api/v5/account/positions (see PROVENANCE.md): ETH-USDT-SWAP long 1
# contract, isolated. Its figures agree with each other: upl = 0.1 × (markPx − avgPx), notionalUsd
# = 0.1 × markPx × usdPx, so a contract is 0.1 ETH; and mgnRatio = (margin + upl) ÷ (mmr + 0.05 %
# × notional) to 16 digits.
OKX_LINEAR_ISOLATED_ROW = REAL / "okx/linear-isolated-position-row.json"
ETH_USDT_SWAP = Contract("ETH-USDT-SWAP", "ETH", "USDT", "USDT", "linear", "0.1")
# margin 30.11 + upl −0.0460000000000036: the position's isolated equity in USDT
LINEAR_ISOLATED_EQUITY = 30.11 + -0.0460000000000036


@pytest.fixture(scope="module")
def okx_linear_isolated():
    # synthetic envelope around the recorded row (OKX's {"code": "0", "data": [...], "msg": ""})
    positions = b'{"code":"0","data":[' + OKX_LINEAR_ISOLATED_ROW.read_bytes().strip() + b'],"msg":""}'
    balance = okx_balance_with_isolated("USDT", repr(LINEAR_ISOLATED_EQUITY))
    return okx(positions, balance=balance, contracts=(ETH_USDT_SWAP,))


def test_okx_isolated_linear_position_figures_are_okxs(okx_linear_isolated):
    _, healths, _ = okx_linear_isolated
    assert healths[ACCOUNT_SCOPE].margin_ratio == pytest.approx(1 / 15986.632239614408, rel=REL)  # balance mgnRatio
    position = healths["isolated:ETH/USDT:USDT:long"]  # posSide long
    assert position.equity == pytest.approx(LINEAR_ISOLATED_EQUITY, rel=REL)  # margin + upl
    # maintenance: the denominator of OKX's mgnRatio, mmr 1.204216 plus the fee to close
    assert position.maintenance_margin == pytest.approx(LINEAR_ISOLATED_EQUITY / 22.191662920568692, rel=REL)  # (margin + upl) ÷ mgnRatio
    assert position.maintenance_margin > 1.204216  # mmr
    (risk,) = position.top_positions
    assert risk.mark_price == pytest.approx(3010.54, rel=REL)  # markPx
    assert risk.liquidation_price == pytest.approx(2722.159673530889, rel=REL)  # liqPx
    assert position.liquidation_move == pytest.approx(2722.159673530889 / 3010.54 - 1, rel=REL)  # liqPx ÷ markPx − 1


def test_okx_isolated_linear_position_is_okxs_mgn_ratio(okx_linear_isolated):
    _, healths, _ = okx_linear_isolated
    position = healths["isolated:ETH/USDT:USDT:long"]
    assert position.margin_ratio == pytest.approx(1 / 22.191662920568692, rel=REL)  # 1 ÷ mgnRatio


def test_okx_isolated_linear_position_figures_are_in_usdt(okx_linear_isolated):
    _, healths, _ = okx_linear_isolated
    assert healths["isolated:ETH/USDT:USDT:long"].currency == "USDT"  # ccy


# ------------------------------------------------------------------ deribit (doc examples)

DERIBIT_SUMMARIES = REAL / "deribit/doc-btc-account-summaries-result.json"
DERIBIT_POSITIONS = REAL / "deribit/doc-btc-perpetual-positions.json"
BTC_PERPETUAL = Contract("BTC-PERPETUAL", "BTC", "USD", "BTC", "inverse", "10")  # Deribit: 10 USD a contract


def deribit_envelope(result: Path) -> bytes:
    """The recorded `result` object inside Deribit's JSON-RPC envelope (the envelope is synthetic)."""
    return b'{"jsonrpc": "2.0", "result": ' + result.read_bytes() + b', "usIn": 0, "usOut": 0, "usDiff": 0, "testnet": false}'


@pytest.fixture(scope="module")
def deribit_btc():
    bodies = {"/api/v2/private/get_account_summaries": deribit_envelope(DERIBIT_SUMMARIES), "/api/v2/private/get_positions": DERIBIT_POSITIONS}
    return replay("deribit", bodies, [BTC_PERPETUAL])


def test_deribit_btc_account_is_maintenance_over_margin_balance(deribit_btc):
    snapshot, healths, paths = deribit_btc
    assert {"/api/v2/private/get_account_summaries", "/api/v2/private/get_positions"} <= set(paths)
    assert set(healths) == {"cross:BTC"}  # one cross scope per margined currency
    account = healths["cross:BTC"]
    # Deribit liquidates when maintenance_margin reaches margin_balance
    assert account.margin_ratio == pytest.approx(0.8857841 / 302.62729214, rel=REL)
    assert account.equity == pytest.approx(302.62729214, rel=REL)  # summaries[BTC].margin_balance
    assert account.maintenance_margin == pytest.approx(0.8857841, rel=REL)  # summaries[BTC].maintenance_margin
    assert snapshot.wallet_balance == pytest.approx(302.61869214, rel=REL)  # summaries[BTC].equity
    assert account.currency == "BTC"  # summaries[BTC].currency, not USDT


def test_deribit_position_is_listed_at_deribits_liquidation_price(deribit_btc):
    _, healths, _ = deribit_btc
    (perp,) = healths["cross:BTC"].top_positions
    assert perp.side == "long"  # direction "buy", size 50
    assert perp.mark_price == pytest.approx(7476.65, rel=REL)  # mark_price
    assert perp.liquidation_price == pytest.approx(1.74, rel=REL)  # estimated_liquidation_price
    assert perp.liquidation_move == pytest.approx(1.74 / 7476.65 - 1, rel=REL)
    assert perp.maintenance_margin == pytest.approx(0.000143783, rel=REL)  # maintenance_margin
    assert perp.notional == pytest.approx(0.006687487, rel=1e-6)  # size_currency: 50 USD ÷ mark_price, in BTC


def test_deribit_summary_with_maintenance_but_no_position_is_blind():
    bodies = {"/api/v2/private/get_account_summaries": deribit_envelope(DERIBIT_SUMMARIES),
              "/api/v2/private/get_positions": {"jsonrpc": "2.0", "result": []}}  # synthetic: no position listed
    error = refused("deribit", bodies, [BTC_PERPETUAL])
    assert error.kind == "data" and "positions missing" in error.message
