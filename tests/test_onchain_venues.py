"""The on-chain venues as the daemon runs them: a configured account (chain, wallet_address,
rpc_url) is validated, polled by the daemon's own pipeline against the loopback chain, recorded,
and blind when the endpoint fails; `validate` refuses what cannot be read, without any API key;
the generated docs tables carry their rows, "not proved" where no recording exists."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    MORPHO_MARKET,
    ONCHAIN_WALLET,
    onchain_config,
    poll_on_chain,
    serve_comet_and_morpho,
)

from alerter.config import ConfigError, build_settings
from alerter.models import AlertKind
from alerter.sources import aave
from alerter.sources.registry import permissions_table, support_matrix

REAL = Path(__file__).parent / "fixtures" / "real" / "aave"
def config(tmp_path, url: str, **account) -> dict:
    return onchain_config(tmp_path, url, **account)


async def _poll_daemon(tmp_path, setup, polls: int = 1, **account):
    """`polls` polls, `setup` run on the chain before the first and again before each other."""
    alerts, states, _ = await poll_on_chain(tmp_path, setup, [lambda chain: None] + [setup] * (polls - 1), **account)
    return alerts, states


def recorded(chain):
    call = aave.account_call(aave.AAVE["base"], ONCHAIN_WALLET)
    chain.answer(call.to, call.data, REAL / "base-getUserAccountData-hf-below-1.json")


def test_a_configured_aave_account_is_polled_end_to_end_on_the_recording(tmp_path):
    (alerts,), states = asyncio.run(_poll_daemon(tmp_path, recorded))
    (alert,) = alerts
    assert (alert.kind, alert.level.label, alert.exchange) == (AlertKind.RAISED, "critical", "aave")
    assert alert.figure == "health factor 0.998, liquidatable now · per-asset detail unavailable"
    assert alert.margin_ratio == pytest.approx(1 / 0.998257566191544493, rel=1e-14)
    assert states["account"].level.label == "critical"
    for text in (alert.figure, alert.reason, repr(alert)):
        assert "RPCKEY" not in text and ONCHAIN_WALLET not in text


def test_an_endpoint_that_fails_leaves_the_account_blind_never_ok(tmp_path):
    def failing(chain):
        recorded(chain)
        chain.fault("http500", count=None)

    (first, second, third), states = asyncio.run(_poll_daemon(tmp_path, failing, polls=3))
    blind = [a for a in first + second + third if a.kind == AlertKind.BLIND]
    assert blind and all(a.kind in (AlertKind.BLIND,) for a in first + second + third)
    assert "HTTP 500" in blind[0].reason and "RPCKEY" not in blind[0].reason
    assert states["account"].failures == 3


def test_compound_and_morpho_accounts_poll_through_the_daemon(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "m").mkdir()
    (comet_alerts,), _ = asyncio.run(_poll_daemon(tmp_path / "c", serve_comet_and_morpho, exchange="compound", market="usdc"))
    assert [(a.level.label, a.figure) for a in comet_alerts] == [("call", "liquidation risk 80 %")]  # 2,000 ÷ (3,000 × 0.83)
    (morpho_alerts,), states = asyncio.run(_poll_daemon(tmp_path / "m", serve_comet_and_morpho, exchange="morpho", markets=[MORPHO_MARKET]))
    assert [(a.scope, a.level.label, a.figure) for a in morpho_alerts] == [("market:0xe7e7e7e7", "call", "LLTV used 78 %")]  # 2,000 ÷ (3,000 × 0.86)


@pytest.mark.parametrize(("account", "message"), [
    ({"chain": "avalanche", "exchange": "spark"}, "accounts[0].chain: Spark is not deployed on 'avalanche': it is on ethereum"),
    ({"chain": "solana"}, "accounts[0].chain: 'solana' is not a chain alerter reads; Aave V3 is on arbitrum, avalanche, base"),
    ({"wallet_address": "0xE9526c721d489464079acb7568c1304af8687298"}, "accounts[0].wallet_address: not an address"),
    ({"wallet_address": "alice.eth"}, "accounts[0].wallet_address: not an address"),
    ({"rpc_url": None}, "accounts[0].rpc_url: Aave V3 needs it"),
    ({"chain": None}, "accounts[0].chain: Aave V3 needs it"),
    ({"api_key": "k-12345678"}, "accounts[0].api_key: not used by aave"),
    ({"exchange": "compound", "market": "dai"}, "accounts[0].market: Compound V3 has no 'dai' market on base: one of usdc, weth"),
    ({"exchange": "morpho", "markets": ["0x12"]}, "accounts[0].markets[0]: '0x12' is not a market id"),
    ({"exchange": "okx", "api_key": "k-12345678", "secret": "s-12345678", "password": "p-12345678", "wallet_address": None,
      "rpc_url": None}, "accounts[0].chain: not used by okx"),
])
def test_validate_refuses_what_cannot_be_read_naming_the_key(tmp_path, account, message):
    fields = config(tmp_path, "https://base.example")
    fields["accounts"][0].update(account)
    fields["accounts"][0] = {k: v for k, v in fields["accounts"][0].items() if v is not None}
    with pytest.raises(ConfigError) as caught:
        build_settings(fields)
    assert message in str(caught.value)
    assert "RPCKEY" not in str(caught.value)


def test_validate_never_needs_an_api_key_and_reads_the_url_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BASE_RPC_URL", "https://base.example/v2/RPCKEY0123")
    fields = config(tmp_path, "")
    fields["accounts"][0]["rpc_url"] = "env:BASE_RPC_URL"
    (account,) = build_settings(fields).accounts
    assert account.rpc_url.get_secret_value() == "https://base.example/v2/RPCKEY0123" and account.api_key is None


def test_the_docs_tables_carry_the_on_chain_venues():
    matrix, permissions = support_matrix(), permissions_table()
    assert "| Aave V3 (`aave`) |" in matrix and "`base-getUserAccountData-hf-below-1`" in matrix
    for name in ("Spark (SparkLend) (`spark`)", "Compound V3 (Comet) (`compound`)", "Morpho Blue (`morpho`)"):
        row = next(line for line in matrix.splitlines() if line.startswith(f"| {name}"))
        assert "Not proved" in row and row.endswith("| — |")
    assert "| Aave V3 (`aave`) | `wallet_address`, `rpc_url` | no API key" in permissions


def test_an_aave_account_imports_its_venue_alone_and_no_ccxt():
    code = ("import json, sys\nfrom alerter.config import build_settings\nfrom alerter.sources.exchange import build_source\n"
            "s = build_settings({'accounts': [{'name': 'a', 'exchange': 'aave', 'chain': 'base', 'wallet_address': '0x' + '1' * 40, "
            "'rpc_url': 'https://base.example/x'}]})\nbuild_source(s.accounts[0])\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('alerter.sources.', 'ccxt', 'aiohttp')))))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout))
    assert not any(m == "ccxt" or m.startswith("ccxt.") for m in loaded)
    assert not any(m.startswith("aiohttp") for m in loaded)  # loaded at the first request, not to build the source
    assert {"alerter.sources.aave", "alerter.sources.aavedetail"} <= loaded
    assert not loaded & {"alerter.sources.okx", "alerter.sources.compound", "alerter.sources.morpho", "alerter.sources.spark"}
