"""The exchange profiles: the registry built from them, the generic path only on request and
always approximate, and the tables of docs/exchanges.md generated from them (so they cannot
drift)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from alerter.config import AccountConfig, ConfigError
from alerter.health import evaluate
from alerter.sources import build_source, bybit, generic
from alerter.sources.registry import (
    BLOCKS,
    GENERIC,
    MATRIX_BEGIN,
    MATRIX_END,
    PROFILES,
    main,
    markers,
    permissions_table,
    profile_for,
    streams_table,
    support_matrix,
    with_modes,
)

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"api_key": "key-AbCdEf123456", "secret": "secret-ZyXwVu987654"}
POSITION = {"symbol": "BTC/USDT:USDT", "contracts": 1, "contractSize": 1, "side": "long", "markPrice": 100, "entryPrice": 90,
            "unrealizedPnl": 10, "maintenanceMargin": 5, "notional": 100}
MARKETS = {"BTC/USDT:USDT": {"settle": "USDT"}}


# ---------------------------------------------------------------- the registry

def test_every_profile_states_what_the_readme_and_the_config_need():
    assert set(PROFILES) == {"binance", "binancecoinm", "binanceusdm", "bitget", "bybit", "deribit", "gate", "hyperliquid", "krakenfutures", "kucoinfutures", "okx",
                             "aave", "spark", "compound", "morpho"}
    for exchange_id, profile in [*PROFILES.items(), ("generic", GENERIC)]:
        assert exchange_id in profile.ids or profile is GENERIC
        assert profile.liquidation_url.startswith("https://"), exchange_id
        assert profile.name and profile.modes and profile.figure and profile.currency and profile.liquidation.endswith(".")
        assert ("**approximate**" in profile.figure) == (profile is GENERIC)
        # off where the exchange's maintenance does not follow the mark linearly (tiers, options, coin margin)
        assert profile.reprice == (exchange_id not in ("generic", "hyperliquid", "deribit", "binancecoinm", "kucoinfutures", "binance", "krakenfutures", "gate", "bitget",
                                                       "aave", "spark", "compound", "morpho"))
    assert PROFILES["okx"].credentials == ("api_key", "secret", "password")
    assert PROFILES["hyperliquid"].credentials == ("wallet_address",)
    assert bybit.POSITION_PARAMS == ({"settleCoin": "USDT"}, {"settleCoin": "USDC"})


def test_an_account_gets_its_exchanges_profile_and_generic_only_when_it_asks():
    assert profile_for(AccountConfig(name="o", exchange="okx", password="p", **KEYS)) is PROFILES["okx"]
    assert profile_for(AccountConfig(name="k", exchange="kraken", profile="generic", balance_includes_pnl=True, **KEYS)) is GENERIC
    with pytest.raises(KeyError):  # no silent generic guess
        profile_for(AccountConfig(name="k", exchange="kraken", **KEYS))
    with pytest.raises(ConfigError, match="no profile for 'kraken'"):
        build_source(AccountConfig(name="k", exchange="kraken", **KEYS))


def test_a_source_uses_its_profiles_ccxt_defaults_under_the_accounts_table():
    async def options(account: AccountConfig) -> dict:
        async with build_source(account) as source:
            return source.exchange.options

    okx = asyncio.run(options(AccountConfig(name="o", exchange="okx", password="p", ccxt={"options": {"fetchMarkets": {"types": ["swap"]}}}, **KEYS)))
    assert okx["fetchMarkets"]["types"] == ["swap"]  # the account's table wins
    binance = asyncio.run(options(AccountConfig(name="b", exchange="binanceusdm", **KEYS)))
    assert (binance["fetchCurrencies"], binance["fetchMargins"]) == (False, False)


# ---------------------------------------------------------------- the generic path

@pytest.mark.parametrize("includes_pnl, equity, wallet", [(False, 1010, 1000), (True, 1000, 990)])
def test_generic_reads_the_balance_by_the_declared_convention_and_is_approximate(includes_pnl, equity, wallet):
    snapshot = generic.normalise("a", "someexchange", {"USDT": {"total": 1000}}, [POSITION], MARKETS, balance_includes_pnl=includes_pnl)
    assert (snapshot.equity, snapshot.wallet_balance, snapshot.maintenance_margin, snapshot.currency) == (equity, wallet, 5, "USDT")
    assert snapshot.approximate
    assert all(h.approximate for h in evaluate(snapshot, 0.4))


def test_a_generic_source_reads_with_the_accounts_balance_convention():
    async def equity(includes_pnl: bool) -> float:
        account = AccountConfig(name="d", exchange="kraken", profile="generic", balance_includes_pnl=includes_pnl, **KEYS)
        async with build_source(account) as source:
            return source.normaliser("d", "kraken", {"USDT": {"total": 1000}}, [POSITION], MARKETS).equity

    assert [asyncio.run(equity(flag)) for flag in (True, False)] == [1000, 1010]


def test_generic_ignores_ccxts_maintenance_percentage():
    """ccxt's deribit hands maintenanceMarginPercentage on ×100: read as a rate, a long's distance
    to liquidation would come out as a rise. The distance uses maintenance ÷ notional instead."""
    position = POSITION | {"maintenanceMarginPercentage": 2.15, "unrealizedPnl": 0, "entryPrice": 100}
    snapshot = generic.normalise("a", "deribit", {"USDT": {"total": 50}}, [position], MARKETS, balance_includes_pnl=True)
    assert snapshot.positions[0].maintenance_rate is None
    assert evaluate(snapshot, 0.4)[0].liquidation_move == pytest.approx(-(50 - 5) / (100 - 5))  # a long: prices must fall by 47 %


def test_generic_without_positions_takes_the_balances_currency():
    """A BTC-margined account with no position: its equity is its BTC, not an empty USDT line."""
    balance = {"BTC": {"total": 0.75}, "USDT": {"total": 0}, "total": {"BTC": 0.75, "USDT": 0}}
    snapshot = generic.normalise("a", "deribit", balance, [], {}, balance_includes_pnl=True)
    assert (snapshot.equity, snapshot.maintenance_margin, snapshot.currency) == (0.75, 0, "BTC")
    several = {"BTC": {"total": 1}, "USDT": {"total": 20}, "total": {"BTC": 1, "USDT": 20}}
    assert generic.normalise("a", "x", several, [], {}, balance_includes_pnl=True).currency == "USDT"
    assert generic.normalise("a", "x", {"total": {}}, [], {}, balance_includes_pnl=False).equity == 0


# ---------------------------------------------------------------- the generated tables of docs/exchanges.md

def page_block(what: str) -> str:
    text = (ROOT / "docs" / "exchanges.md").read_text(encoding="utf-8")
    begin, end = markers(what)
    start, stop = text.index(begin), text.index(end) + len(end)
    return text[start:stop]


@pytest.mark.parametrize("what", sorted(BLOCKS))
def test_the_exchanges_page_holds_exactly_the_generated_tables(what):
    assert page_block(what) == BLOCKS[what](), "regenerate it: python -m alerter.sources.registry --write docs/exchanges.md"


def test_the_permissions_and_streams_tables_have_a_row_per_venue():
    permissions = permissions_table().splitlines()[3:-1]
    assert len(permissions) == len(with_modes(PROFILES.distinct())) and all(not row.endswith("| — |") for row in permissions)
    assert '| Hyperliquid (`hyperliquid`) | `wallet_address` | no key' in permissions_table()
    streams = [row.split(" | ")[0] for row in streams_table().splitlines()[3:-1]]
    assert streams == ["| Binance USDⓈ-M (`binanceusdm`)", "| Bybit (`bybit`)", "| OKX (`okx`)", "| Aave V3 (`aave`)",
                       "| Spark (SparkLend) (`spark`)", "| Compound V3 (Comet) (`compound`)", "| Morpho Blue (`morpho`)"]


def test_the_matrix_has_a_row_per_profile_and_lists_the_real_recordings(tmp_path):
    (tmp_path / "okx").mkdir()
    for name in ("PROVENANCE.md", "balance-multi.json", "positions-isolated.json"):
        (tmp_path / "okx" / name).write_text("{}")
    (tmp_path / "okx" / "isolated-inverse").mkdir()
    rows = support_matrix(tmp_path).splitlines()[3:-1]
    assert [row.split(" | ")[0] for row in rows] == [
        "| Binance USDⓈ-M (`binanceusdm`)", "| Binance COIN-M (`binancecoinm`)", "| Bybit (`bybit`)", "| Deribit (`deribit`)", "| OKX (`okx`)",
        "| OKX flexible loan (`okx`)", "| Hyperliquid (`hyperliquid`)", "| KuCoin futures (`kucoinfutures`)",
        "| Binance margin and portfolio margin (`binance`)", "| Binance flexible loans (`binance`)", "| Kraken Futures (`krakenfutures`)",
        "| Gate (`gate`)", "| Bitget (`bitget`)",
        "| Aave V3 (`aave`)", "| Spark (SparkLend) (`spark`)", "| Compound V3 (Comet) (`compound`)", "| Morpho Blue (`morpho`)",
        '| any other ccxt exchange (`profile = "generic"`)']
    okx, others = rows[4], rows[:4] + rows[5:]
    assert okx.endswith("| yes | `balance-multi`, `isolated-inverse`, `positions-isolated` |")
    assert all(row.endswith("| — |") for row in others)
    assert "(full polls only" in rows[6] and "(full polls only" in rows[-1] and "**approximate**" in rows[-1]
    assert "[source](https://www.okx.com/docs-v5/en/#trading-account-rest-api-get-balance)" in okx


def test_the_tables_are_regenerated_in_place(tmp_path, capsys):
    page = tmp_path / "exchanges.md"
    stale = "\n\n".join(f"{begin}\n| stale |\n{end}" for begin, end in map(markers, BLOCKS))
    page.write_text(f"# title\n\n{stale}\n\nafter\n", encoding="utf-8")
    assert main(["--write", str(page)]) == 0
    fresh = "\n\n".join(make() for make in BLOCKS.values())
    assert page.read_text(encoding="utf-8") == f"# title\n\n{fresh}\n\nafter\n"
    assert main([]) == 0 and capsys.readouterr().out == fresh + "\n"
    assert MATRIX_BEGIN in fresh and MATRIX_END in fresh


def test_check_marks_an_approximate_account_in_its_json_and_its_table(capsys):
    from alerter.check import rows_for
    from alerter.commands.check import render_table
    from alerter.config import build_settings
    from alerter.pipeline import Poll
    from alerter.models import Health
    from alerter.plan import plans

    settings = build_settings({"accounts": [
        {"name": "d", "exchange": "kraken", "profile": "generic", "balance_includes_pnl": True, "api_key": "k1234", "secret": "s1234"},
        {"name": "b", "exchange": "binanceusdm", "api_key": "k1234", "secret": "s1234"},
    ]})
    health = dict(scope="account", margin_ratio=0.6, equity=100.0, maintenance_margin=60.0, deposit_needed=50.0, liquidation_move=None)
    rows = rows_for(plans(settings), [Poll("d", [Health(account="d", exchange="kraken", approximate=True, **health)]),
                                      Poll("b", [Health(account="b", exchange="binanceusdm", **health)])])
    assert [(r["account"], r["approximate"]) for r in rows] == [("d", True), ("b", False)]
    render_table(rows)
    out = capsys.readouterr().out
    assert "≈ 60 %" in out and out.count("≈ 60 %") == 1
    assert "approximate: profile = \"generic\"" in out
