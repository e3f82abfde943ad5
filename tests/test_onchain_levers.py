"""The on-chain lenders' levers as the trader reads them: the daemon polls the loopback chain
through a scripted ETH fall, and each alert names the way back in the position's own assets (the
largest collateral and the largest debt, at the protocol's own oracle prices) and how far each
collateral may fall before liquidation; `status` and `whatif --levels` show the protocol's own
figure beside the ratio."""

from __future__ import annotations

import asyncio

import pytest
from helpers import (
    MORPHO_MARKET,
    ONCHAIN_WALLET,
    RPC_KEY,
    poll_on_chain,
    serve_comet_and_morpho,
)
from hypothesis import given
from hypothesis import strategies as st

from alerter import notify
from alerter.cli import main
from alerter.codec import alert_from_json, alert_to_json
from alerter.simulator.chain import (
    AavePosition,
)
from alerter.sources import aave, levers

POOL = aave.AAVE["base"]


async def _fall(tmp_path, serve, prices, **account):
    """The daemon's own pipeline polls the account once per scripted ETH price (one block each)."""
    polls, _, url = await poll_on_chain(tmp_path, serve, [lambda chain, p=p: chain.set_price(p) for p in prices], **account)
    return polls, url


def aave_position(chain):
    chain.aave(POOL.pool, AavePosition(ONCHAIN_WALLET, collateral_eth=2.0, eth_price=3000.0, debt_usd=2490.0),
               data_provider=POOL.data_provider, oracle=POOL.oracle)


@pytest.fixture(scope="module")
def aave_fall(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("aave")
    polls, url = asyncio.run(_fall(tmp_path, aave_position, (2000.0, 1450.0)))
    return tmp_path, polls, url


def lines(alerts) -> list[str]:
    title, body = notify.render(alerts, markdown=False)
    return [title, *body.splitlines()]


def test_an_aave_eth_fall_names_both_levers_in_the_assets(aave_fall):
    _, (call, critical), _ = aave_fall
    # 2 WETH against 2,490 USDC at an 83 % threshold: health factor 1 at 2,490 ÷ (2 × 0.83) = 1,500 USD
    assert lines(call) == [
        "CALL · lend · margin ratio 75 % = health factor 1.33 (call at 70 % = health factor 1.42)",
        "Equity 4,000.00 USD · maintenance margin 3,000.00 USD",
        "Add 1.75 WETH of collateral or repay 1,739.53 USDC of debt to get back to 40 %",
        "Liquidation at a −25.0 % move",
        "Largest collateral WETH (4,000.00 USD) · largest debt USDC (2,490.00 USD)",
        "WETH may fall 25.0 % (to 1,500.00 USD on Aave's oracle) before liquidation",
    ]
    # past it: 2 × 1,450 × 0.83 ÷ 2,490 = 0.966; 3,000 ÷ 0.4 − 2,900 = 4,600 USD = 3.173 WETH at 1,450 (rounded up),
    # or (3,000 − 0.4 × 2,900) ÷ (3,000 ÷ 2,490 − 0.4) = 2,286.23 USDC repaid out of the collateral
    assert lines(critical) == [
        "CRITICAL · lend · margin ratio 103.4 % = health factor 0.966, liquidatable now (critical at 85 % = health factor 1.17)",
        "Equity 2,900.00 USD · maintenance margin 3,000.00 USD",
        "Add 3.173 WETH of collateral or repay 2,286.23 USDC of debt to get back to 40 %",
        "Liquidation at a +3.4 % move",
        "Largest collateral WETH (2,900.00 USD) · largest debt USDC (2,490.00 USD)",
        "WETH is 3.4 % below its liquidation price (1,500.00 USD on Aave's oracle): liquidatable now",
    ]
    for alert in call + critical:
        assert alert_from_json(alert_to_json(alert)) == alert  # the outbox keeps the levers
        assert "RPCKEY" not in repr(alert) and ONCHAIN_WALLET not in repr(alert)


def test_status_and_whatif_levels_show_the_health_factor(aave_fall, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    tmp_path, _, url = aave_fall
    path = tmp_path / "alerter.toml"
    path.write_text(f'[daemon]\ndatabase = "{tmp_path / "alerter.db"}"\n\n[[accounts]]\nname = "lend"\nexchange = "aave"\n'
                    f'chain = "base"\nwallet_address = "{ONCHAIN_WALLET}"\nrpc_url = "{url}{RPC_KEY}"\n')
    capsys.readouterr()
    assert main(["status", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "103.4 % = health factor 0.966, liquidatable now" in out
    assert main(["whatif", "--levels", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "103.4 % = health factor 0.966, liquidatable now" in out
    # each level in the protocol's own figure, rounded down as the alert shows it
    assert "call 70 % = health factor 1.42 · critical 85 % = health factor 1.17 · liquidation 100 % = health factor 1.00" in out
    assert "RPCKEY" not in out


def test_compound_and_morpho_name_their_levers(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "m").mkdir()
    ((comet_alerts,), _) = asyncio.run(_fall(tmp_path / "c", serve_comet_and_morpho, (3000.0,), exchange="compound", market="usdc"))
    # 2,000 USDC ÷ (1 WETH × 3,000 × 0.83): liquidation at 2,000 ÷ 0.83 = 2,409.64 USD on the Comet's feed
    assert lines(comet_alerts)[2:] == [
        "Add 1.009 WETH of collateral or repay 1,503.00 USDC of debt to get back to 40 %",
        "Liquidation at a −19.7 % move",
        "Largest collateral WETH (3,000.00 USD) · largest debt USDC (2,000.00 USD)",
        "WETH may fall 19.7 % (to 2,409.64 USD on Compound's price feeds) before liquidation",
    ]
    ((morpho_alerts,), _) = asyncio.run(_fall(tmp_path / "m", serve_comet_and_morpho, (3000.0,), exchange="morpho", markets=[MORPHO_MARKET]))
    # a market in its loan token: liquidation at 2,000 ÷ 0.86 = 2,325.58 USDC per WETH on the market's oracle
    assert lines(morpho_alerts)[2:] == [
        "Add 0.938 WETH of collateral or repay 1,475.61 USDC of debt to get back to 40 %",
        "Liquidation at a −22.5 % move",
        "Largest collateral WETH (3,000.00 USDC) · largest debt USDC (2,000.00 USDC)",
        "WETH (0xe7e7e7e7) may fall 22.5 % (to 2,325.58 USDC on the market's oracle) before liquidation",
    ]


@pytest.mark.parametrize(("quantity", "symbol", "shown"), [
    (1.75, "WETH", "1.75 WETH"),
    (3.1724137931, "WETH", "3.173 WETH"),  # rounded up: the amount always suffices
    (0.000123401, "cbBTC", "0.0001235 cbBTC"),
    (3399.991, "USDC", "3,400.00 USDC"),
    (1739.5301, "USDC", "1,739.54 USDC"),
])
def test_amounts_are_rounded_up_so_they_suffice(quantity, symbol, shown):
    assert levers.amount(quantity, symbol) == shown


def test_a_figure_without_its_assets_leaves_the_generic_lines():
    figure = aave.HEALTH_FACTOR
    assert figure.way_back(100.0, 50.0) == "" and figure.distances((), "USD") == ()
    assert aave.NO_DETAIL.threshold_text(1 / 1.17) == "health factor 1.17"  # the note is said once, not at each level


def test_the_readme_lender_accounts_load(tmp_path, monkeypatch):
    """The README's lender snippet, with its secrets in the environment, loads as written."""
    from pathlib import Path

    from alerter.config import load_settings

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- lenders config -->", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    for name, value in {"AAVE_WALLET": ONCHAIN_WALLET, "BASE_RPC_URL": "https://base.example/v2/KEY", "BASE_WS_URL": "wss://base.example/v2/KEY",
                        "BINANCE_API_KEY": "k" * 24,
                        "BINANCE_API_SECRET": "s" * 24}.items():
        monkeypatch.setenv(name, value)
    config = tmp_path / "alerter.toml"
    config.write_text(f'[daemon]\ndatabase = "{tmp_path / "a.db"}"\n\n' + block, encoding="utf-8")
    settings = load_settings(config)
    assert [(a.name, a.exchange) for a in settings.accounts] == [("aave-base", "aave"), ("binance-loans", "binance")]


@given(st.floats(min_value=1e-9, max_value=1e9), st.sampled_from(["WETH", "cbBTC", "USDC", "DAI"]))
def test_an_amount_shown_is_never_less_than_needed(quantity, symbol):
    shown = float(levers.amount(quantity, symbol).split()[0].replace(",", ""))
    assert shown >= quantity * (1 - 1e-9) and shown <= quantity * 1.001 + 0.01
