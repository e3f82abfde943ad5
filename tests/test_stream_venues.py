"""Stream mode on OKX and Bybit, end to end: a replay server answers ccxt's REST (the full polls),
the websocket fake (alerter.simulator.venue_ws) speaks what ccxt.pro's okx and bybit send and
expect (login/auth checked by signature, subscribe, pushes), and the real daemon, SQLite and
apprise deliver to a loopback webhook. Marks are pushed every 0.1 s; full polls are a minute apart,
so every alert here comes from a stream.

The REST answers are synthetic (a small cross account: equity 10,000 USD(T), one long of 3 BTC
at 60,000, maintenance 500, i.e. 5 %), built from the field lists of the recorded answers in
tests/fixtures/real/ (see PROVENANCE.md there): none of these tests checks an exchange's figure,
only that the streams reach the daemon.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from helpers import run, titles, until

from alerter.config import build_settings
from alerter.pipeline import utcnow
from alerter.metrics import METRICS
from alerter.simulator.replay import Contract, run_replay
from alerter.simulator.venue_ws import run_venue_ws
from alerter.sources import deep_merge
from alerter.sources.okx import okx_liquidation_warning

CADENCE = 0.1
KEY, SECRET, PASSPHRASE = "venue-key-0123456789", "venue-secret-0123456789", "venue-pass-42"
EQUITY, SIZE, ENTRY, MAINT = 10_000.0, 3.0, 60_000.0, 500.0
SYMBOL = "BTC/USDT:USDT"
EXCHANGE_IDS = {"okx": "BTC-USDT-SWAP", "bybit": "BTCUSDT"}
REAL = Path(__file__).parent / "fixtures" / "real"


def estimated_ratio(mark: float) -> float:
    """The account's ratio at `mark` as the fast path re-prices it: equity moves with the long's
    PnL, maintenance with its notional."""
    return MAINT * mark / ENTRY / (EQUITY + SIZE * (mark - ENTRY))


def mark_for(ratio: float) -> float:
    lo, hi = ENTRY - EQUITY / SIZE, ENTRY  # a long: the ratio falls as the price rises
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if estimated_ratio(mid) > ratio else (lo, mid)
    return hi


# ---------------------------------------------------------------- synthetic REST answers

def okx_bodies(margin_ratio: float) -> dict:
    """Multi-currency margin: the account's `mgnRatio` = adjEq ÷ maintenance (OKX's, higher is safer)."""
    balance = {"code": "0", "msg": "", "data": [{
        "adjEq": str(EQUITY), "mgnRatio": repr(1 / margin_ratio), "mmr": str(EQUITY * margin_ratio), "imr": "18000",
        "totalEq": str(EQUITY), "isoEq": "0", "upl": "0", "notionalUsd": "180000", "uTime": "1773837554158",
        "details": [{"ccy": "USDT", "eq": str(EQUITY), "cashBal": str(EQUITY), "isoEq": "0", "upl": "0", "mgnRatio": "",
                     "mmr": "", "imr": "", "availBal": "0", "availEq": "0", "frozenBal": "0", "uTime": "1773837554158"}],
    }]}
    positions = {"code": "0", "msg": "", "data": [{
        "instId": "BTC-USDT-SWAP", "instType": "SWAP", "mgnMode": "cross", "posSide": "net", "pos": "300", "ccy": "USDT",
        "avgPx": str(ENTRY), "markPx": str(ENTRY), "upl": "0", "mmr": str(EQUITY * margin_ratio), "imr": "18000", "lever": "10",
        "liqPx": "", "margin": "", "mgnRatio": repr(1 / margin_ratio), "notionalUsd": "180000", "posId": "1",
        "cTime": "1773837554158", "uTime": "1773837554158",
    }]}
    return {"/api/v5/account/balance": balance, "/api/v5/account/positions": positions}


def bybit_bodies(margin_ratio: float) -> dict:
    """A unified trading account, cross (regular) margin: `accountMMRate` is the ratio."""
    maint = str(EQUITY * margin_ratio)
    wallet = {"retCode": 0, "retMsg": "OK", "retExtInfo": {}, "time": 1759432560944, "result": {"list": [{
        "accountType": "UNIFIED", "accountMMRate": repr(margin_ratio), "accountIMRate": "1.8", "totalEquity": str(EQUITY),
        "totalWalletBalance": str(EQUITY), "totalMarginBalance": str(EQUITY), "totalAvailableBalance": "0", "totalPerpUPL": "0",
        "totalInitialMargin": "18000", "totalMaintenanceMargin": maint, "accountLTV": "0",
        "coin": [{"coin": "USDT", "equity": str(EQUITY), "usdValue": str(EQUITY), "walletBalance": str(EQUITY), "unrealisedPnl": "0",
                  "totalPositionIM": "18000", "totalPositionMM": maint, "totalOrderIM": "0", "locked": "0", "borrowAmount": "0",
                  "accruedInterest": "0", "bonus": "0", "cumRealisedPnl": "0", "availableToWithdraw": "", "availableToBorrow": "",
                  "collateralSwitch": True, "marginCollateral": True, "spotHedgingQty": "0", "spotBorrow": "0"}],
    }]}}
    position = {"positionIdx": 0, "tradeMode": 0, "riskId": 1, "riskLimitValue": "2000000", "symbol": "BTCUSDT", "side": "Buy",
                "size": str(SIZE), "entryPrice": str(ENTRY), "leverage": "10", "positionValue": str(SIZE * ENTRY), "positionBalance": "0",
                "markPrice": str(ENTRY), "positionIM": "18000", "positionMM": maint, "unrealisedPnl": "0", "cumRealisedPnl": "0",
                "liqPrice": "", "bustPrice": "", "category": "linear", "positionStatus": "Normal", "createdTime": "1758826877748",
                "updatedTime": "1759432560942", "autoAddMargin": 0, "takeProfit": "0", "stopLoss": "0", "trailingStop": "0"}
    empty = {"retCode": 0, "retMsg": "OK", "retExtInfo": {}, "time": 1759432560944, "result": {"list": [], "nextPageCursor": "", "category": "linear"}}
    return {"/v5/account/wallet-balance": wallet,
            "/v5/position/list": {**empty, "result": {**empty["result"], "list": [position]}},
            "/v5/position/list?settleCoin=USDC": empty}


BODIES = {"okx": okx_bodies, "bybit": bybit_bodies}
CONTRACTS = {"okx": Contract("BTC-USDT-SWAP", "BTC", "USDT", "USDT", "linear", "0.01"),  # OKX: 0.01 BTC a contract
             "bybit": Contract("BTCUSDT", "BTC", "USDT", "USDT")}


def set_rest(replay, exchange: str, margin_ratio: float) -> None:
    for path, body in BODIES[exchange](margin_ratio).items():
        replay.routes[path] = json.dumps(body).encode()


@asynccontextmanager
async def streaming(tmp_path, webhook, exchange: str):
    """The replay server, the websocket fake and a running daemon on one `exchange` account
    ("acct"), its first full poll done."""
    async with run_replay(exchange, BODIES[exchange](0.05), [CONTRACTS[exchange]]) as replay:
        async with run_venue_ws(exchange, {KEY: (SECRET, PASSPHRASE)}, cadence=CADENCE) as ws:
            ws.set_marks({EXCHANGE_IDS[exchange]: ENTRY})
            settings = build_settings({
                "daemon": {"database": str(tmp_path / "alerter.db"), "request_timeout": "3s", "poll_interval": "60s",
                           "price_interval": "0.5s", "stream_timeout": "0.8s"},  # a busy machine's pause is no stall
                "repeat": {"warning": "6h", "call": "30m", "critical": "5m"},
                "accounts": [{"name": "acct", "exchange": exchange, "api_key": KEY, "secret": SECRET,
                              "password": PASSPHRASE if exchange == "okx" else None,
                              "ccxt": deep_merge(replay.ccxt_config(), ws.ccxt_config())}],
                "channels": [{"name": "hook", "url": f"json://{webhook.url}/hook"}],
            })
            from alerter.runtime import build_daemon

            daemon = build_daemon(settings, clock=utcnow)
            for source in daemon.sources.values():
                source.exchange.timeout_on_exit = 0
            runner = asyncio.create_task(daemon.run())
            try:
                await until(lambda: "acct" in daemon.pipeline.confirmed, 10)
                yield replay, ws, daemon
            finally:
                daemon.stop()
                await asyncio.wait_for(runner, 10)



def up(exchange: str, kind: str = "prices", account: str = "") -> float:
    return METRICS.stream_up.labels(exchange, kind, account)._value.get()


def public_rest(replay) -> int:
    return sum(1 for _, path, _ in replay.requests if "mark-price" in path or "tickers" in path)


# ---------------------------------------------------------------- the daemon

ESTIMATED_CALL = {  # OKX's own figure is shown beside alerter's: its mgnRatio, the inverse
    "okx": "CALL · acct · margin ratio 78 % = OKX margin ratio 128 % (call at 70 % = OKX margin ratio 143 %) (estimated)",
    "bybit": "CALL · acct · margin ratio 78 % (call at 70 %) (estimated)",
}
POLLED_CRITICAL = {
    "okx": "CRITICAL · acct · margin ratio 91 % = OKX margin ratio 110 % (critical at 85 % = OKX margin ratio 118 %)",
    "bybit": "CRITICAL · acct · margin ratio 91 % (critical at 85 %)",
}

@pytest.mark.parametrize("exchange", ["okx", "bybit"])
def test_price_step_alerted_from_the_mark_price_stream(tmp_path, webhook, exchange):
    async def scenario():
        async with streaming(tmp_path, webhook, exchange) as (replay, ws, daemon):
            await until(lambda: up(exchange) == 1, 5)
            replay.requests.clear()
            mark = mark_for(0.78)
            ws.set_marks({EXCHANGE_IDS[exchange]: mark})
            latency = await until(lambda: webhook.bodies, 5)
            await asyncio.sleep(0.3)  # more pushes at the same mark: nothing new
            return latency, public_rest(replay), mark, ws.subscribed("public")

    latency, rest, mark, subscribed = run(scenario())
    assert titles(webhook) == [ESTIMATED_CALL[exchange]]  # once
    assert round(estimated_ratio(mark) * 100) == 78
    assert latency < 1.0
    assert rest == 0  # no REST mark price while the stream is up
    assert subscribed == {EXCHANGE_IDS[exchange]}  # one public connection, the symbol held


@pytest.mark.parametrize("exchange, channel", [("okx", "positions"), ("okx", "account"), ("bybit", "position"), ("bybit", "wallet")])
def test_account_push_polls_at_once_and_alerts_before_the_next_poll(tmp_path, webhook, exchange, channel):
    async def scenario():
        async with streaming(tmp_path, webhook, exchange) as (replay, ws, daemon):
            await until(lambda: channel in ws.subscribed("private"), 5)
            set_rest(replay, exchange, 0.91)  # the trader added to the position: the exchange now says 91 %
            sent = await ws.push(KEY, channel, [{"instId": "BTC-USDT-SWAP"} if exchange == "okx" else {"symbol": "BTCUSDT"}])
            latency = await until(lambda: webhook.bodies, 5)
            return sent, latency, ws.counts

    sent, latency, counts = run(scenario())
    assert sent == 1  # the daemon's private connection had subscribed the channel
    assert titles(webhook) == [POLLED_CRITICAL[exchange]]  # a full poll's figures
    assert latency < 2.0  # the next scheduled poll is a minute away
    assert counts["login failed"] == 0 and counts["private"] == 1


def rest_marks(exchange: str, mark: float) -> dict:
    """The public REST mark-price answer (the fast path's, while the stream is down)."""
    if exchange == "okx":  # GET /api/v5/public/mark-price
        return {"/api/v5/public/mark-price": {"code": "0", "msg": "", "data": [
            {"instType": "SWAP", "instId": "BTC-USDT-SWAP", "markPx": repr(mark), "ts": "1773837554158"}]}}
    return {"/v5/market/tickers": {"retCode": 0, "retMsg": "OK", "retExtInfo": {}, "time": 1759432560944, "result": {  # GET /v5/market/tickers
        "category": "linear", "list": [{"symbol": "BTCUSDT", "markPrice": repr(mark), "indexPrice": repr(mark), "lastPrice": repr(mark)}]}}}


@pytest.mark.parametrize("exchange", ["okx", "bybit"])
@pytest.mark.parametrize("fault", ["stall", "drop"])
def test_prices_fall_back_to_rest_while_the_stream_is_down_and_come_back(tmp_path, webhook, exchange, fault):
    async def scenario():
        async with streaming(tmp_path, webhook, exchange) as (replay, ws, daemon):
            await until(lambda: up(exchange) == 1, 5)
            if fault == "stall":  # open but silent, pings unanswered (the account stream stays up)
                ws.stalled = {"public"}
            else:  # closed, and reconnections refused
                ws.refuse = True
                await ws.drop("public")
            await until(lambda: up(exchange) == 0, 3)
            mark = mark_for(0.78)
            for path, body in rest_marks(exchange, mark).items():
                replay.routes[path] = json.dumps(body).encode()
            ws.set_marks({EXCHANGE_IDS[exchange]: mark})
            latency = await until(lambda: webhook.bodies, 5)  # from REST mark prices
            rest = public_rest(replay)
            ws.stalled, ws.refuse = set(), False
            await until(lambda: up(exchange) == 1, 10)
            return latency, rest

    latency, rest = run(scenario())
    assert titles(webhook) == [ESTIMATED_CALL[exchange]]
    assert latency < 1.5 and rest >= 1


# OKX's documented push of the liquidation-warning channel (docs-v5, "Position risk warning
# channel", Push Data Example), its field values as published
OKX_DOC_WARNING = {"arg": {"channel": "liquidation-warning", "uid": "77982378738415879", "instType": "FUTURES"}, "data": [{
    "cTime": "1619507758793", "ccy": "ETH", "instId": "ETH-USD-210430", "instType": "FUTURES", "lever": "10",
    "markPx": "2353.849", "mgnMode": "isolated", "mgnRatio": "11.731726509588816", "pTime": "1619507761462", "pos": "1",
    "posCcy": "", "posId": "307173036051017730", "posSide": "long", "uTime": "1619507761462"}]}


def test_okx_liquidation_warning_is_forwarded_once_and_polls_at_once(tmp_path, webhook):
    row = {"cTime": "1619507758793", "ccy": "USDT", "instId": "BTC-USDT-SWAP", "instType": "SWAP", "lever": "10", "markPx": "57000",
           "mgnMode": "cross", "mgnRatio": "1.0533", "pTime": "1619507761462", "pos": "300", "posCcy": "", "posId": "1",
           "posSide": "net", "uTime": "1619507761462"}

    async def scenario():
        async with streaming(tmp_path, webhook, "okx") as (replay, ws, daemon):
            await until(lambda: "liquidation-warning" in ws.subscribed("private"), 5)
            polled = daemon.pipeline.confirmed["acct"][0]
            sent = await ws.push(KEY, "liquidation-warning", [row])
            latency = await until(lambda: webhook.bodies, 5)
            await until(lambda: daemon.pipeline.confirmed["acct"][0] > polled, 5)
            again = daemon.pipeline.confirmed["acct"][0]
            await ws.push(KEY, "liquidation-warning", [row])  # OKX repeats it: not told again before the call repeat
            await until(lambda: daemon.pipeline.confirmed["acct"][0] > again, 5)
            await asyncio.sleep(0.3)
            return sent, latency

    sent, latency = run(scenario())
    assert sent == 1
    assert titles(webhook) == ["EXCHANGE · acct · OKX liquidation warning: BTC-USDT-SWAP cross, margin ratio 105 % (liquidation at 100 %)"]
    assert "Pushed by OKX at" in webhook.bodies[0]["message"]
    assert latency < 1.0


# ---------------------------------------------------------------- pure

def test_okx_documented_liquidation_warning_reads_as_one_line():
    notice = okx_liquidation_warning(OKX_DOC_WARNING)
    assert notice.text == "OKX liquidation warning: ETH-USD-210430 long isolated, margin ratio 1,173 % (liquidation at 100 %)"
    assert notice.key == "liquidation-warning:ETH-USD-210430 long isolated"


def test_okx_other_messages_are_not_liquidation_warnings():
    assert okx_liquidation_warning({"event": "subscribe", "arg": {"channel": "liquidation-warning", "instType": "ANY"}, "connId": "a"}) is None
    assert okx_liquidation_warning({"arg": {"channel": "positions"}, "data": [{"instId": "BTC-USDT-SWAP"}]}) is None
    assert okx_liquidation_warning({"arg": {"channel": "liquidation-warning"}, "data": []}) is None
    assert okx_liquidation_warning({"event": "login", "code": "0"}) is None
