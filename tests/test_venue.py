"""Adding a venue is one module and one registry line: a venue defined in this file alone (a lender
that is not a ccxt exchange, read as JSON from a loopback aiohttp server) is registered, accepted
by the config, polled end to end by the daemon's own code (build source → fetch → normalise →
health → decide → record) and shown in the generated tables. And a venue's module is imported
only when an account asks for it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout, web

from alerter.config import ConfigError, build_settings
from alerter.models import AccountSnapshot
from alerter.sources.fields import make_snapshot, mapping, number
from alerter.sources.profile import Account, FetchContext, Profile, Raw
from alerter.sources.registry import permissions_table, register, support_matrix, unregister

WALLET = "0x" + "ab" * 20


class LenderClient:
    """The venue's own client: one GET of the wallet's position (an HTTP session, like a JSON-RPC one)."""

    id = "looplend"

    def __init__(self, url: str, wallet: str, timeout_s: float) -> None:
        self.url, self.wallet = url, wallet
        self.session = ClientSession(timeout=ClientTimeout(total=timeout_s))

    async def position(self) -> Any:
        async with self.session.get(f"{self.url}/position/{self.wallet}") as response:
            response.raise_for_status()
            return await response.json()

    async def close(self) -> None:
        await self.session.close()


async def fetch(ctx: FetchContext) -> Raw:
    return {"info": await ctx.call(ctx.exchange.position, check=True)}, []


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    """The lender's own rule: liquidation when the debt reaches collateral × liquidation threshold."""
    info = mapping(balance.get("info"), f"{exchange_id} position")
    collateral = number(info.get("collateral_usd"), f"{exchange_id} collateral_usd")
    debt = number(info.get("debt_usd"), f"{exchange_id} debt_usd")
    threshold = number(info.get("liquidation_threshold"), f"{exchange_id} liquidation_threshold")
    return make_snapshot(account=account_name, exchange=exchange_id, equity=collateral * threshold, maintenance_margin=debt,
                         wallet_balance=collateral * threshold, currency="USD")


def lender_profile(url: str) -> Profile:
    def connect(account: Account, timeout_s: float) -> LenderClient:
        return LenderClient(url, account.credentials()["wallet_address"], timeout_s)

    return Profile(
        name="Loop lender", ids=("looplend",), modes="one borrowing position per wallet",
        figure="`debt_usd` ÷ (`collateral_usd` × `liquidation_threshold`)", currency="USD",
        liquidation="Liquidation when the debt reaches the collateral times its liquidation threshold.",
        liquidation_url="https://example.org/looplend/liquidation", normalise=normalise,
        fetch=fetch, connect=connect, credentials=("wallet_address",), permissions="no key: read by wallet address",
    )


@pytest.fixture
def lender():
    """The lender's loopback server (its answers settable) and its profile, registered."""
    answers = {WALLET: {"collateral_usd": "10000", "debt_usd": "4800", "liquidation_threshold": "0.8"}}
    asked: list[str] = []

    async def position(request: web.Request) -> web.Response:
        asked.append(request.match_info["wallet"])
        return web.json_response(answers[request.match_info["wallet"]])

    async def start() -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/position/{wallet}", position)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return runner

    return answers, asked, start


def config(tmp_path, **account) -> dict:
    return {"daemon": {"database": str(tmp_path / "alerter.db")},
            "accounts": [{"name": "loan", "exchange": "looplend", "wallet_address": WALLET, **account}]}


def test_a_venue_defined_in_a_test_is_validated_polled_end_to_end_and_shown_in_the_tables(tmp_path, lender):
    from alerter.runtime import build_daemon, preflight

    answers, asked, start = lender
    with pytest.raises(ConfigError, match="accounts\\[0\\].exchange: unknown exchange id 'looplend'"):
        build_settings(config(tmp_path))  # not registered: no such venue

    async def scenario():
        runner = await start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        profile = lender_profile(url)
        register(profile)
        try:
            settings = build_settings(config(tmp_path))
            preflight(settings)  # no ccxt class is asked for
            daemon = build_daemon(settings)
            try:
                first = await daemon.pipeline.poll_account("loan")  # 4800 ÷ (10000 × 0.8) = 60 %: WARNING
                answers[WALLET]["debt_usd"] = "7200"  # 90 %: CRITICAL
                second = await daemon.pipeline.poll_account("loan")
                states = daemon.store.load_states("loan")
            finally:
                await asyncio.gather(*(s.close() for s in daemon.sources.values()))
                daemon.store.close()
            return first, second, states, support_matrix(), permissions_table()
        finally:
            unregister(profile)
            await runner.cleanup()

    first, second, states, matrix, permissions = asyncio.run(scenario())
    assert asked == [WALLET, WALLET]
    assert [(a.kind, a.level.label, round(a.margin_ratio, 6)) for a in first] == [("raised", "warning", 0.6)]
    assert [(a.kind, a.level.label, round(a.margin_ratio, 6)) for a in second] == [("raised", "critical", 0.9)]
    assert states["account"].level.label == "critical"
    assert "| Loop lender (`looplend`) | one borrowing position per wallet |" in matrix
    assert "| Loop lender (`looplend`) | `wallet_address` | no key: read by wallet address |" in permissions
    assert "looplend" not in support_matrix()  # unregistered again


def test_an_answer_of_another_shape_is_a_data_error_not_a_ratio(tmp_path, lender):
    """The venue's answer without its debt: the fetch fails with a data error naming the field
    (the daemon counts such polls towards blind), never a ratio made up."""
    from alerter.sources.errors import SourceError
    from alerter.sources.exchange import RetryPolicy, build_source

    answers, _, start = lender
    answers[WALLET] = {"collateral_usd": "10000", "liquidation_threshold": "0.8"}

    async def scenario() -> SourceError:
        runner = await start()
        profile = lender_profile(f"http://127.0.0.1:{runner.addresses[0][1]}")
        register(profile)
        try:
            async with build_source(build_settings(config(tmp_path)).accounts[0], retry=RetryPolicy(attempts=1)) as source:
                with pytest.raises(SourceError) as caught:
                    await source.fetch_snapshot()
                return caught.value
        finally:
            unregister(profile)
            await runner.cleanup()

    error = asyncio.run(scenario())
    assert error.kind == "data" and "looplend debt_usd" in error.message


# ---------------------------------------------------------------- venue modules are imported on demand

def imported_after(code: str) -> set[str]:
    script = code + "\nimport sys\nprint(json.dumps(sorted(m for m in sys.modules if m.startswith(('alerter.sources.', 'ccxt')))))"
    out = subprocess.run([sys.executable, "-c", "import json\n" + script], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


VENUE_MODULES = {f"alerter.sources.{m}" for m in ("binance", "binancecoinm", "binanceusdm", "bitget", "bybit", "deribit", "gate",
                                                  "hyperliquid", "krakenfutures", "kucoinfutures", "okx")}


def test_a_one_account_config_imports_its_venue_alone_and_no_ccxt():
    loaded = imported_after("from alerter.config import build_settings\n"
                            "build_settings({'accounts': [{'name': 'o', 'exchange': 'okx', 'api_key': 'k-1234', 'secret': 's-1234', "
                            "'password': 'p-1234'}]})")
    assert loaded & VENUE_MODULES == {"alerter.sources.okx"}
    assert not any(m == "ccxt" or m.startswith("ccxt.") for m in loaded)
    # the registry's redirects for binance live in binanceusdm and binancecoinm: those are read too
    loaded = imported_after("from alerter.config import build_settings\n"
                            "build_settings({'accounts': [{'name': 'b', 'exchange': 'binance', 'api_key': 'k-1234', 'secret': 's-1234', "
                            "'ccxt': {'options': {'defaultType': 'margin'}}}]})")
    assert loaded & VENUE_MODULES == {"alerter.sources.binance", "alerter.sources.binanceusdm", "alerter.sources.binancecoinm"}


def test_a_one_account_source_imports_its_venue_alone():
    loaded = imported_after("from alerter.config import AccountConfig\nfrom alerter.sources.exchange import build_source\n"
                            "build_source(AccountConfig(name='h', exchange='hyperliquid', wallet_address='0x' + '1' * 40))")
    assert loaded & VENUE_MODULES == {"alerter.sources.hyperliquid"}
