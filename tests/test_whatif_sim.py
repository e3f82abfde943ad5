"""whatif predicts what the exchange will report: the daemon polls the simulator, `alerter
whatif --move …` predicts from the stored snapshot, then the simulator's prices really move and
the next poll is compared with the prediction.

Tolerance: the prediction is linear in price with each position's current maintenance
bracket, which is exact while the notional stays in its bracket (Binance's maintenance amount
keeps the formula continuous at a bracket edge, so a crossing shifts it by at most the rate
difference × the part of the notional beyond the edge). The moves below stay inside the
brackets, so the figures agree to 1e-6 of the ratio."""

from __future__ import annotations

import json

import pytest

from helpers import SCENARIO, Clock, Harness, run, settings_for

from alerter.cli import main
from alerter.simulator import run_simulator

ISO = {**SCENARIO, "accounts": SCENARIO["accounts"] + [
    {"name": "iso", "api_key": "iso-key", "wallet_balance": 1_000,
     "positions": [{"symbol": "ETHUSDT", "side": "short", "size": 20, "entry_price": 3_000, "margin_type": "isolated",
                    "isolated_wallet": 4_000, "leverage": 20}]},
]}


@pytest.mark.parametrize("moves, prices", [
    (["--move", "BTC=-3%", "--move", "ETH=+4%"], {"BTCUSDT": 58_200, "ETHUSDT": 3_120}),
    (["--all", "-2%"], {"BTCUSDT": 58_800, "ETHUSDT": 2_940}),
])
def test_whatif_prediction_matches_the_simulator_after_the_move(tmp_path, capsys, moves, prices):
    async def poll_all(h):
        for name in ("main", "second", "iso"):
            await h.step(account=name, minutes=0)

    async def scenario():
        async with run_simulator(ISO) as sim:
            settings = settings_for(sim, tmp_path, [])
            settings.accounts.append(settings.accounts[0].model_copy(update={"name": "iso", "api_key": type(settings.accounts[0].api_key)("iso-key")}))
            h = Harness(sim, settings, Clock())
            try:
                await poll_all(h)
                config = tmp_path / "c.toml"
                config.write_text(f'[daemon]\ndatabase = "{tmp_path / "alerter.db"}"\n')
                capsys.readouterr()
                assert main(["whatif", "--config", str(config), "--json", *moves]) == 0
                predicted = json.loads(capsys.readouterr().out)
                sim.set_prices(prices)
                await poll_all(h)
                actual = {(s.account, s.scope): s.margin_ratio for s in h.daemon.store.latest_samples()}
                return predicted, actual
            finally:
                await h.close()

    predicted, actual = run(scenario())
    compared = 0
    for account in predicted["accounts"]:
        for scope in account["scopes"]:
            after = scope["after"]["margin_ratio"]
            assert after == pytest.approx(actual[(account["account"], scope["scope"])], rel=1e-6, abs=1e-9), (account["account"], scope["scope"])
            compared += 1
    assert compared == 4  # main, second, iso (account + its isolated ETH short)


def test_whatif_fetch_polls_the_exchange_instead_of_the_database(tmp_path, capsys):
    """`--fetch` needs no database at all: it polls the simulator through ccxt."""
    from test_cli import inline_toml

    async def scenario():
        async with run_simulator(ISO) as sim:
            config = tmp_path / "c.toml"
            config.write_text(
                f'[daemon]\ndatabase = "{tmp_path / "never.db"}"\n'
                f'[[accounts]]\nname = "iso"\nexchange = "binanceusdm"\napi_key = "iso-key"\nsecret = "s"\n'
                f"ccxt = {inline_toml(sim.ccxt_config())}\n"
            )
            # the CLI runs its own event loop: run it in a thread while the simulator serves here
            import asyncio

            code = await asyncio.to_thread(main, ["whatif", "--config", str(config), "--fetch", "--json", "--move", "ETH=+3%"])
            ratio = sim.state.risk("iso-key", {**sim.state.prices(), "ETHUSDT": 3_090}).positions[0].margin_ratio
            return code, ratio

    code, expected = run(scenario())
    assert code == 0
    (account,) = json.loads(capsys.readouterr().out)["accounts"]
    iso = next(s for s in account["scopes"] if s["scope"] != "account")
    assert iso["after"]["margin_ratio"] == pytest.approx(expected, rel=1e-6)
    assert not (tmp_path / "never.db").exists()
