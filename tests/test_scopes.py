"""A position the profile cannot evaluate blinds only its own scope (issue 11, point 4), and a
coin-margined scope speaks in its coin (point 5).

The real daemon in-process on a test clock → real ccxt (okx) → the loopback exchange host of
test_sources serving OKX position rows recorded from OKX (the BTC-USD-SWAP inverse isolated row)
and the isolated MARGIN row of OKX's docs → SQLite → apprise → a webhook. `alerter check` runs
in-process against the same host.
"""

from __future__ import annotations

from helpers import to_toml
from test_daemon import Clock, run, titles
from test_sources import (
    INVERSE_SCOPE,
    OKX_DOC_ISOLATED_MARGIN,
    OKX_INVERSE_ISOLATED,
    FixtureHost,
    account,
    okx_inverse_routes,
    serve,
)

from alerter.check import check_accounts, worst
from alerter.cli import CHECK_EXIT
from alerter.config import build_settings
from alerter.runtime import build_daemon

MARGIN_SCOPE = "isolated:BTC-USDT:long"  # ccxt names the spot-margin instrument by its id (no spot markets loaded)
POSITIONS = "/api/v5/account/positions"


def settings_for(host, tmp_path, webhook):
    okx = account("okx", host.url)
    return build_settings({
        "daemon": {"database": str(tmp_path / "alerter.db"), "request_timeout": "3s", "blind_after": 3},
        "repeat": {"warning": "6h", "call": "1h", "critical": "1h", "blind": "1h"},
        "accounts": [{"name": "okx-main", "exchange": "okx", "api_key": okx.api_key.get_secret_value(), "secret": okx.secret.get_secret_value(),
                      "password": okx.password.get_secret_value(), "ccxt": okx.ccxt}],
        "channels": [{"name": "hook", "url": f"json://{webhook.url}/hook"}],
    })


def show(host: FixtureHost, *rows: dict) -> None:
    """The exchange now lists these positions (and the balance's BTC isolated equity agrees)."""
    fresh = okx_inverse_routes(*rows)
    host.routes[POSITIONS] = fresh[POSITIONS]
    host.routes["/api/v5/account/balance"] = fresh["/api/v5/account/balance"]


def heads(webhook) -> list[str]:
    return [t.split(" · ")[0] for t in titles(webhook)]


def write_check_config(host, tmp_path):
    okx = account("okx", host.url)
    path = tmp_path / "check.toml"
    path.write_text(to_toml({
        "daemon": {"database": str(tmp_path / "check.db")},
        "accounts": [{"name": "okx-main", "exchange": "okx", "api_key": okx.api_key.get_secret_value(), "secret": okx.secret.get_secret_value(),
                      "password": okx.password.get_secret_value(), "ccxt": okx.ccxt}],
    }))
    return path


def test_unreadable_isolated_position_blinds_its_scope_only_and_is_restored_when_closed(tmp_path, webhook):
    host = FixtureHost(okx_inverse_routes(OKX_INVERSE_ISOLATED, OKX_DOC_ISOLATED_MARGIN))
    critical = {**OKX_INVERSE_ISOLATED, "mgnRatio": "1.1"}  # OKX at 1 ÷ 1.1 = 90.9 %

    async def scenario():
        async with serve(host):
            clock = Clock()
            daemon = build_daemon(settings_for(host, tmp_path, webhook), clock=clock)
            for source in daemon.sources.values():
                source.exchange.timeout_on_exit = 0

            async def poll():
                clock.advance(minutes=1)
                alerts = await daemon.pipeline.poll_account("okx-main")
                await daemon.delivery.deliver_once()
                return alerts

            try:
                first = await poll()
                states = daemon.store.load_states("okx-main")
                rows = await check_accounts(write_check_config(host, tmp_path))  # `alerter check` meanwhile
                assert await poll() == []  # still blind: repeated on the blind schedule (1 h), not every poll
                show(host, critical, OKX_DOC_ISOLATED_MARGIN)
                raised = await poll()
                show(host, critical)  # the MARGIN position is closed: both answers agree
                assert await poll() == []  # one full poll without it may be a partial answer
                closed = await poll()
                return first, states, rows, raised, closed
            finally:
                await daemon.sources["okx-main"].close()
                daemon.store.close()

    first, states, rows, raised, closed = run(scenario())
    assert [(a.kind.value, a.scope) for a in first] == [("blind", MARGIN_SCOPE)]  # at once, not after blind_after 3 polls
    assert not states["account"].blind and not states[INVERSE_SCOPE].blind and states[MARGIN_SCOPE].blind
    assert [(a.kind.value, a.scope) for a in raised] == [("raised", INVERSE_SCOPE)]  # the rest is still evaluated
    assert [(a.kind.value, a.scope, a.reason) for a in closed] == [("restored", MARGIN_SCOPE, "position closed")]
    assert heads(webhook) == ["BLIND", "CRITICAL", "RESTORED"]
    blind, critical_body, restored = webhook.bodies
    assert blind["title"] == ("BLIND · okx-main · BTC-USDT long (isolated) · okx position BTC-USDT long (isolated MARGIN position): "
                              "alerter cannot evaluate this kind (isolated linear and inverse swaps/futures only); check it on OKX")
    assert "the position is not known to be safe" in blind["message"]
    # the coin-margined scope in its coin, with OKX's own figures: 1 ÷ mgnRatio, margin + upl, liqPx
    assert critical_body["title"] == "CRITICAL · okx-main · BTC/USD:BTC long (isolated) · margin ratio 90.9 % = OKX margin ratio 110 % (critical at 85 % = OKX margin ratio 118 %)"
    equity = float(OKX_INVERSE_ISOLATED["margin"]) + float(OKX_INVERSE_ISOLATED["upl"])
    assert f"Equity {equity:.8f} BTC · maintenance margin {equity / 1.1:.8f} BTC" in critical_body["message"]
    assert f"Deposit {equity / 1.1 / 0.4 - equity:.8f} BTC to get back to 40 %" in critical_body["message"]
    assert "Liquidation at a −24.7 % move" in critical_body["message"] and "liq. 69,536.61" in critical_body["message"]
    assert "USD " not in critical_body["message"] and "USDT" not in critical_body["message"]
    assert restored["title"] == "RESTORED · okx-main · BTC-USDT long (isolated) · position closed"
    # `alerter check` while the account and the inverse scope are ok: the blind scope is a row of
    # its own, and the exit code says blind (3), never ok
    assert {r["scope"]: r["level"] for r in rows} == {"account": "ok", INVERSE_SCOPE: "ok", MARGIN_SCOPE: "blind"}
    assert CHECK_EXIT[worst(rows)] == 3


def test_a_snapshot_with_coin_margined_and_unreadable_positions_round_trips_through_the_store(tmp_path):
    """`alerter whatif` stresses the stored snapshot: its inverse flag, currency and unreadable
    scopes must come back as they were (a list where a tuple was would compare unequal)."""
    import asyncio
    import json

    from test_sources import fetch

    from alerter.snapshots import snapshot_from_dict, snapshot_to_dict

    snapshot, _ = asyncio.run(fetch("okx", okx_inverse_routes(OKX_INVERSE_ISOLATED, OKX_DOC_ISOLATED_MARGIN)))
    assert snapshot.unreadable and snapshot.positions[0].inverse
    assert snapshot_from_dict(json.loads(json.dumps(snapshot_to_dict(snapshot), allow_nan=False))) == snapshot
