"""Flexible loans end to end: the simulator's Binance loans (real ccxt `binance`) → a daemon
polling a `defaultType = "loan"` account → SQLite → apprise → a real webhook receiver. Time is a
test clock; the collateral's price is stepped by hand so every alert is exact."""

from __future__ import annotations

import pytest
from helpers import Clock, Harness, run, titles

from alerter.config import build_settings
from alerter.display import money
from alerter.plan import plans
from alerter.simulator import run_simulator

DEBT, AMOUNT, MARGIN_CALL, LIQUIDATION = 30_000.0, 1.0, 0.75, 0.83
SCENARIO = {
    "name": "loans",
    "prices": {"BTCUSDT": 60_000, "ETHUSDT": 3_000},
    "accounts": [{"name": "loan", "api_key": "loan-key",
                  "loans": [{"loan_coin": "USDT", "debt": DEBT, "collateral_coin": "BTC", "collateral_amount": AMOUNT,
                             "margin_call_ltv": MARGIN_CALL, "liquidation_ltv": LIQUIDATION}]},
                 {"name": "none", "api_key": "none-key"}],
}


def btc_for(ratio: float) -> float:
    """The BTC price at which the simulator's LTV (debt ÷ BTC value) is `ratio` × the liquidation LTV."""
    return DEBT / (AMOUNT * ratio * LIQUIDATION)


def settings(sim, tmp_path, webhook, **daemon):
    ccxt = sim.ccxt_config()
    loan = {**ccxt, "options": {**ccxt["options"], "defaultType": "loan"}}
    return build_settings({
        "daemon": {"database": str(tmp_path / "alerter.db"), "request_timeout": "3s", **daemon},
        "accounts": [
            {"name": "loan", "exchange": "binance", "api_key": "loan-key", "secret": "loan-secret", "ccxt": loan},
            {"name": "none", "exchange": "binance", "api_key": "none-key", "secret": "none-secret", "ccxt": loan},
        ],
        "channels": [{"name": "hook", "url": f"json://{webhook.url}/hook"}],
    })


async def step(h: Harness, ratio: float | None = None, account: str = "loan"):
    h.clock.advance(minutes=1)
    if ratio is not None:
        h.sim.set_prices({"BTCUSDT": btc_for(ratio)})
    alerts = await h.daemon.pipeline.poll_account(account)
    await h.daemon.delivery.deliver_once()
    return alerts


def test_a_loan_account_alerts_by_binances_ltv_with_both_levers(tmp_path, webhook):
    async def scenario():
        async with run_simulator(SCENARIO) as sim:
            h = Harness(sim, settings(sim, tmp_path, webhook), Clock())
            try:
                plan = plans(h.settings)["loan"]
                assert plan.profile.name == "Binance flexible loans" and not plan.streams and not plan.repricing
                await step(h, 0.30)     # LTV 0.249: ok
                await step(h, 0.78)     # call
                alerts = await step(h, 0.92)  # critical
                await step(h, 0.30)     # resolved
                assert await step(h, account="none") == []  # a loan account without a loan: ok, silent
                return alerts
            finally:
                await h.close()

    [critical] = run(scenario())
    assert [t.split(" · ")[0] for t in titles(webhook)] == ["CALL", "CRITICAL", "RESOLVED"]
    # Binance's currentLTV 0.92 × 0.83 = 0.7636; critical at 85 % = LTV 0.85 × 0.83
    assert webhook.bodies[1]["title"] == "CRITICAL · loan · loan:USDT/BTC · margin ratio 92 % = LTV 0.764 (critical at 85 % = LTV 0.705)"
    message = webhook.bodies[1]["message"]
    assert (f"Add {money(critical.deposit_needed, 'USDT')} of collateral or repay {money(critical.repay_needed, 'USDT')} "
            "of the loan to get back to 40 %") in message
    # the two levers, in the lender's own terms: collateral value ÷ debt back at 0.40 × 0.83
    collateral = DEBT / 0.92 / LIQUIDATION
    assert DEBT / (collateral + critical.deposit_needed) / LIQUIDATION == pytest.approx(0.40, rel=1e-7)
    assert "loan-secret" not in str(webhook.bodies)


def test_a_cut_loan_answer_makes_the_account_blind_never_ok(tmp_path, webhook):
    async def scenario():
        async with run_simulator(SCENARIO) as sim:
            h = Harness(sim, settings(sim, tmp_path, webhook, blind_after=1), Clock())
            try:
                await step(h, 0.30)
                sim.inject("malformed", count=None, path="/sapi/v2/loan/flexible/ongoing/orders")
                await step(h)
                sim.clear_faults()
                await step(h, 0.30)
            finally:
                await h.close()

    run(scenario())
    assert [t.split(" · ")[0] for t in titles(webhook)] == ["BLIND", "RESTORED"]
    assert webhook.bodies[0]["title"].startswith("BLIND · loan · no data for 1 poll: data: binance /sapi/v2/loan/flexible/ongoing/orders: "
                                                 "the answer is not complete JSON")


def test_validate_places_the_thresholds_against_each_loans_margin_call(tmp_path):
    """`alerter validate` asks the exchange for each loan's levels (they come with the loan, per
    collateral coin) and says where the user's thresholds fall against Binance's margin call."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from helpers import simulator_thread, to_toml

    from alerter.cli import main

    with simulator_thread(SCENARIO) as running:
        ccxt = running.sim.ccxt_config()
        loan = {**ccxt, "options": {**ccxt["options"], "defaultType": "loan"}}
        config = {"daemon": {"database": str(tmp_path / "a.db")},
                  "accounts": [{"name": "loan", "exchange": "binance", "api_key": "loan-key", "secret": "loan-secret", "ccxt": loan},
                               {"name": "none", "exchange": "binance", "api_key": "none-key", "secret": "none-secret", "ccxt": loan}]}
        path = tmp_path / "alerter.toml"
        path.write_text(to_toml(config))
        path.chmod(0o600)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["validate", "--config", str(path)])
    assert code == 0, err.getvalue()
    lines = [line.strip() for line in out.getvalue().splitlines()]
    # BTC's levels: margin call at LTV 0.75 = 0.75 ÷ 0.83 = 90.4 % of the way to liquidation at 0.83
    assert ("loan:USDT/BTC: exchange's own figure: LTV, liquidation at 0.83; your warning 50 % = LTV 0.415 · call 70 % = LTV 0.581 · "
            "critical 85 % = LTV 0.705 · liquidation 100 % = LTV 0.83") in lines
    assert ("loan:USDT/BTC: Binance's margin call (LTV 0.75) is at 90.4 %: your warning at 50 % and call at 70 % and critical at 85 % "
            "come before it") in lines
    assert "its levels: nothing borrowed now (the exchange states them with each loan)" in lines
    assert "loan-secret" not in out.getvalue() + err.getvalue()


def test_an_okx_loan_account_is_alerted_by_okx_s_own_ltv(tmp_path, webhook):
    """OKX's documented loan-info example (tests/fixtures/real/okx/, a doc example) replayed to the
    daemon: one WARNING, by OKX's curLTV 0.5742 against its liqLTV 0.8374."""
    from pathlib import Path

    from alerter.simulator.replay import Contract, run_replay

    body = Path(__file__).parent / "fixtures" / "real" / "okx" / "doc-flexible-loan-loan-info.json"

    async def scenario():
        async with run_replay("okx", {"/api/v5/finance/flexible-loan/loan-info": body}, [Contract("BTC-USDT-SWAP", "BTC", "USDT", "USDT")]) as replay:
            account = replay.account("okx-loan", options={"defaultType": "loan"}).model_dump(exclude_none=True)
            for key in ("api_key", "secret", "password"):
                account[key] = account[key].get_secret_value()
            settings = build_settings({"daemon": {"database": str(tmp_path / "alerter.db"), "request_timeout": "3s"},
                                       "accounts": [account], "channels": [{"name": "hook", "url": f"json://{webhook.url}/hook"}]})
            h = Harness(None, settings, Clock())
            try:
                await step(h, account="okx-loan")
                await step(h, account="okx-loan")  # the same loan a minute later: no repeat for 6 h
            finally:
                await h.close()

    run(scenario())
    assert titles(webhook) == ["WARNING · okx-loan · margin ratio 68.6 % = LTV 0.574 (warning at 50 % = LTV 0.419)"]
    assert "of collateral or repay" in webhook.bodies[0]["message"] and "USD of the loan to get back to 40 %" in webhook.bodies[0]["message"]
