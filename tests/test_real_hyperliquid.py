"""Hyperliquid's real recorded clearinghouseState answers (tests/fixtures/real/hyperliquid/, see
PROVENANCE.md), replayed byte for byte to ccxt's real hyperliquid class, through the source and
health. Expected numbers are literals from the payload, with a comment naming the field.

The market list (metaAndAssetCtxs) the replay serves is synthetic and minimal (the recorded coins,
a mark of "1" that is never read): it carries no figure of the account.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alerter import secrets
from alerter.config import ConfigError, build_settings
from alerter.health import evaluate, liquidation_move
from alerter.models import ACCOUNT_SCOPE
from alerter.simulator.replay import Contract, run_replay
from alerter.sources import RetryPolicy, SourceError, build_source

REAL = Path(__file__).parent / "fixtures" / "real" / "hyperliquid"
ONCE = RetryPolicy(attempts=1)
REL = 1e-6
COINS_2026 = ("BTC", "ETH", "SOL", "LTC", "LDO", "XRP", "WIF", "SAGA", "MOODENG", "PURR", "HYPE", "VIRTUAL", "MORPHO", "IP", "MON", "MET")
COINS_2023 = ("BTC", "ETH", "ATOM", "DYDX", "APE", "OP", "SOL", "ARB", "MATIC", "LTC", "GMX", "AVAX")


def coins(*names: str) -> list[Contract]:
    return [Contract(name, name, "USDC", "USDC") for name in names]


async def poll(recording: str, names: tuple[str, ...]):
    async with run_replay("hyperliquid", {"/info#clearinghouseState": REAL / recording}, coins(*names)) as server:
        account = server.account()
        try:
            async with build_source(account, retry=ONCE) as source:
                return await source.fetch_snapshot(), server.requests, account
        finally:
            assert server.unknown == []


@pytest.fixture(scope="module")
def cross_isolated():
    snapshot, requests, account = asyncio.run(poll("cross-isolated-clearinghouseState.json", COINS_2026))
    return snapshot, {h.scope: h for h in evaluate(snapshot, target=0.4)}, requests, account


def test_cross_account_is_hyperliquids_cross_maintenance_over_account_value(cross_isolated):
    snapshot, healths, _, _ = cross_isolated
    account = healths[ACCOUNT_SCOPE]
    assert account.equity == pytest.approx(8259027.0754620004, rel=REL)  # crossMarginSummary.accountValue
    assert account.maintenance_margin == pytest.approx(356978.709123, rel=REL)  # crossMaintenanceMarginUsed
    assert account.margin_ratio == pytest.approx(356978.709123 / 8259027.0754620004, rel=REL)  # = 0.043223
    assert account.currency == snapshot.currency == "USDC"
    assert snapshot.initial_margin == pytest.approx(1106837.3161859999, rel=REL)  # crossMarginSummary.totalMarginUsed
    # the 14 cross positions' documented maintenance (positionValue ÷ 2·maxLeverage) adds up to Hyperliquid's own
    cross = [p for p in snapshot.positions if not p.isolated]
    assert len(cross) == 14
    assert sum(p.maintenance_margin for p in cross) == pytest.approx(356978.709123, rel=1e-8)  # crossMaintenanceMarginUsed
    hype = next(p for p in cross if p.symbol == "HYPE/USDC:USDC")
    assert (hype.side, hype.liquidation_price) == ("short", pytest.approx(76.4988794996, rel=REL))  # szi < 0, liquidationPx


def test_isolated_positions_are_own_scopes_at_hyperliquids_liquidation_price(cross_isolated):
    _, healths, _, _ = cross_isolated
    assert set(healths) == {ACCOUNT_SCOPE, "isolated:MON/USDC:USDC:short", "isolated:MET/USDC:USDC:short"}
    for scope, margin_used, value, liq, max_leverage in (
        ("isolated:MON/USDC:USDC:short", 9397.472442, 26961.773417, 0.0296643783, 5),  # marginUsed, positionValue, liquidationPx, maxLeverage
        ("isolated:MET/USDC:USDC:short", 4152.025031, 11878.87253, 0.316148663, 3),
    ):
        health = healths[scope]
        assert health.equity == pytest.approx(margin_used, rel=REL)  # marginUsed: isolated margin with its PnL
        assert health.maintenance_margin == pytest.approx(value / (2 * max_leverage), rel=REL)  # half the initial margin at max leverage
        (risk,) = health.top_positions
        assert risk.liquidation_price == pytest.approx(liq, rel=REL)  # liquidationPx
        mark = risk.mark_price
        assert health.liquidation_move == pytest.approx(liq / mark - 1, rel=REL)  # the distance is Hyperliquid's liquidationPx
        # the derived maintenance agrees with the stated liquidationPx: our own uniform-move model lands on it
        assert mark * (1 + liquidation_move(health.equity, health.maintenance_margin, [p for p in cross_isolated[0].positions if p.scope == scope])) \
            == pytest.approx(liq, rel=1e-6)


def test_one_public_request_per_poll_and_no_key(cross_isolated):
    _, _, requests, account = cross_isolated
    kinds = [query.get("type") for method, path, query in requests if path == "/info"]
    assert kinds == ["metaAndAssetCtxs", "clearinghouseState"]  # markets once, then the account: no spotMeta, no userAbstraction
    assert account.api_key is None and account.secret is None


def test_old_answer_without_cross_maintenance_is_refused_not_guessed():
    with pytest.raises(SourceError) as caught:
        asyncio.run(poll("cross-clearinghouseState.json", COINS_2023))
    assert caught.value.kind == "data"
    assert "no crossMaintenanceMarginUsed" in caught.value.message and "no maintenance figure" in caught.value.message


# ------------------------------------------------------------------ config: wallet_address, not keys

ADDRESS = "0x5e9ee1089755c3435139848e47e6635505d5a13a"


def config_errors(**account) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        build_settings({"accounts": [{"name": "hl", "exchange": "hyperliquid", **account}]})
    return str(caught.value).splitlines()


def test_hyperliquid_account_needs_only_its_wallet_address():
    settings = build_settings({"accounts": [{"name": "hl", "exchange": "hyperliquid", "wallet_address": ADDRESS}]})
    assert settings.accounts[0].wallet_address.get_secret_value() == ADDRESS
    assert ADDRESS in secrets.of(settings)  # masked in logs like a key: it identifies the trader
    assert ADDRESS not in repr(settings.accounts[0])


def test_hyperliquid_account_without_wallet_address_names_it():
    assert any(e.startswith("accounts[0].wallet_address: Hyperliquid needs it") for e in config_errors())


def test_hyperliquid_account_with_api_keys_is_refused():
    errors = config_errors(wallet_address=ADDRESS, api_key="k-123456", secret="s-123456")
    assert any(e.startswith("accounts[0].api_key: not used by hyperliquid") for e in errors)
    assert any(e.startswith("accounts[0].secret: not used by hyperliquid") for e in errors)


def test_malformed_wallet_address_is_refused_without_echoing_it():
    (error,) = [e for e in config_errors(wallet_address="0x1234-not-an-address") if "wallet_address" in e]
    assert "not a wallet address" in error and "0x1234-not-an-address" not in error


def test_key_account_needs_its_keys_and_refuses_a_wallet_address():
    with pytest.raises(ConfigError) as caught:
        build_settings({"accounts": [{"name": "b", "exchange": "binanceusdm", "wallet_address": ADDRESS}]})
    text = str(caught.value)
    assert "accounts[0].api_key: Binance" in text and "accounts[0].secret: Binance" in text
    assert "accounts[0].wallet_address: not used by binanceusdm" in text


def test_an_exchange_error_naming_the_wallet_address_is_masked():
    # synthetic body in the shape ccxt's hyperliquid.handle_errors documents for an unknown user
    async def run():
        async with run_replay("hyperliquid", {}, coins("BTC")) as server:
            account = server.account()
            address = account.wallet_address.get_secret_value()
            server.routes["/info#clearinghouseState"] = (
                f'{{"status":"err","response":"User or API Wallet {address} does not exist."}}'.encode())
            async with build_source(account, retry=ONCE) as source:
                assert source.exchange.walletAddress == address and not source.exchange.apiKey
                with pytest.raises(SourceError) as caught:
                    await source.fetch_snapshot()
            return address, caught.value

    address, error = asyncio.run(run())
    assert "does not exist" in error.message and address not in error.message and "***" in error.message
