"""The simulator's Binance flexible loans, read by ccxt's real binance class and normalised by
alerter.sources.binance_loans: the LTV follows the scenario's price, and at the price where the
simulator's LTV reaches the collateral's liquidation LTV the ratio is 100 %."""

from __future__ import annotations

import asyncio

import ccxt.async_support as ccxt_async
import pytest

from alerter.health import evaluate
from alerter.models import ACCOUNT_SCOPE
from alerter.simulator import ScenarioError, run_simulator
from alerter.simulator.scenario import parse_scenario
from alerter.sources.binance_loans import COLLATERAL_METHOD, ORDERS_METHOD, ORDERS_PARAMS, check_loan_body, normalise_loans
from alerter.sources.errors import SourceError

LOAN = {"loan_coin": "USDT", "debt": 30000, "collateral_coin": "BTC", "collateral_amount": 1,
        "margin_call_ltv": 0.75, "liquidation_ltv": 0.83}
SCENARIO = {"prices": {"BTCUSDT": 60000, "ETHUSDT": 3000},
            "accounts": [{"api_key": "loan-key", "loans": [LOAN, {**LOAN, "loan_coin": "USDC", "debt": 1000, "collateral_coin": "ETH",
                                                                    "collateral_amount": 1, "margin_call_ltv": 0.7, "liquidation_ltv": 0.8}]},
                         {"api_key": "plain-key"}]}


async def read(sim, api_key: str, params=ORDERS_PARAMS):
    exchange = ccxt_async.binance({"apiKey": api_key, "secret": "sim-secret", **sim.ccxt_config()})
    try:
        orders = await getattr(exchange, ORDERS_METHOD)(dict(params))
        collateral = await getattr(exchange, COLLATERAL_METHOD)()
    finally:
        await exchange.close()
    return orders, collateral


def test_simulated_loans_follow_the_price_to_100_percent_at_the_liquidation_ltv():
    async def scenario():
        async with run_simulator(SCENARIO) as sim:
            first = await read(sim, "loan-key")
            sim.state.set_prices({"BTCUSDT": 30000 / (1 * 0.83)})  # where 30000 USDT ÷ 1 BTC reaches BTC's liquidation LTV
            at_liquidation = await read(sim, "loan-key")
            plain = await read(sim, "plain-key")
        return first, at_liquidation, plain

    first, at_liquidation, plain = asyncio.run(scenario())
    for answer in (*first, *at_liquidation):
        check_loan_body("/sapi/v2/loan/flexible/ongoing/orders", answer)
    healths = {h.scope: h for h in evaluate(normalise_loans("sim", *first), target=0.4)}
    assert healths["loan:USDT/BTC"].margin_ratio == pytest.approx(0.5 / 0.83, rel=1e-7)  # 30000 ÷ 60000 against 0.83
    assert healths["loan:USDC/ETH"].margin_ratio == pytest.approx(1000 / 3000 / 0.8, rel=1e-7)
    healths = {h.scope: h for h in evaluate(normalise_loans("sim", *at_liquidation), target=0.4)}
    assert healths["loan:USDT/BTC"].margin_ratio == pytest.approx(1.0, rel=1e-7)
    assert healths["loan:USDT/BTC"].own_figure.text(1.0) == "LTV 0.83"
    [health] = evaluate(normalise_loans("sim", *plain), target=0.4)
    assert health.scope == ACCOUNT_SCOPE and health.margin_ratio == 0.0


def test_simulated_orders_are_paged_as_binance_pages_them():
    async def scenario():
        async with run_simulator(SCENARIO) as sim:
            return await read(sim, "loan-key", {"limit": 1})

    orders, collateral = asyncio.run(scenario())
    assert len(orders["rows"]) == 1 and orders["total"] == 2
    with pytest.raises(SourceError, match="total 2 ongoing orders but 1 rows: a partial answer"):
        normalise_loans("sim", orders, collateral)


@pytest.mark.parametrize(("loan", "error"), [
    ({**LOAN, "loan_coin": "BTC"}, "accounts[0].loans[0].loan_coin: 'BTC' is not one of USDT, USDC, FDUSD"),
    ({**LOAN, "collateral_coin": "DOGE"}, "accounts[0].loans[0].collateral_coin: 'DOGE' has no USDT price"),
    ({**LOAN, "margin_call_ltv": 0.9}, "accounts[0].loans[0]: margin_call_ltv < liquidation_ltv < 1 must hold"),
    ({**LOAN, "debt": 0}, "accounts[0].loans[0].debt: required, a number > 0"),
    ({**LOAN, "rate": 1}, "accounts[0].loans[0].rate: unknown key"),
])
def test_scenario_loans_are_checked_with_their_key_path(loan, error):
    with pytest.raises(ScenarioError) as caught:
        parse_scenario({"accounts": [{"api_key": "k", "loans": [loan]}]})
    assert error in str(caught.value)
