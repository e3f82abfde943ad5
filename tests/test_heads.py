"""On-chain accounts that follow their endpoint's new blocks: the loopback chain pushes each mined
block over a real websocket on 127.0.0.1 (`eth_subscribe("newHeads")`), the real daemon
(scheduler, SQLite, apprise) reads the accounts at that block and alerts a loopback webhook, with
full polls an hour apart so that only the block can have done it. A refused, dropped or stalled
subscription falls back to the full polls and comes back; no URL reaches the logs."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import pytest
from helpers import run, titles, until

from alerter.config import ConfigError, build_settings
from alerter.metrics import METRICS
from alerter.simulator.chain import AavePosition, run_chain
from alerter.sources import aave, chains
from alerter.sources.chains import CHAINS

KEY = "RPCKEY0123456789abcdef"
WS_KEY = "WSKEY0123456789abcdef"
USERS = ["0x" + "11" * 20, "0x" + "22" * 20]


def settings(tmp_path, chain, webhook, *, poll_interval: str, chain_name: str = "base", **account):
    fields = {"exchange": "aave", "chain": chain_name, "rpc_url": f"{chain.url}/v2/{KEY}",
              "ws_url": f"{chain.url.replace('http://', 'ws://')}/ws/{WS_KEY}", **account}
    return build_settings({
        "daemon": {"database": str(tmp_path / "alerter.db"), "poll_interval": poll_interval, "request_timeout": "3s"},
        "accounts": [{"name": f"lend-{i}", "wallet_address": user, **fields} for i, user in enumerate(USERS)],
        "channels": [{"name": "hook", "url": f"json://{webhook.url}/hook"}],
    })


@asynccontextmanager
async def following(tmp_path, webhook, *, poll_interval: str = "1h", chain_name: str = "base", before=None):
    """The loopback chain with two healthy Aave positions (48 % at 3,000 USD) and a running
    daemon on it, both accounts on one endpoint, their first polls done."""
    from alerter.runtime import build_daemon

    async with run_chain(CHAINS[chain_name]) as chain:
        pool = aave.AAVE[chain_name]
        for user in USERS:
            chain.aave(pool.pool, AavePosition(user, collateral_eth=1.0, eth_price=3000.0, debt_usd=1200.0),
                       data_provider=pool.data_provider, oracle=pool.oracle)
        if before is not None:
            before(chain)
        daemon = build_daemon(settings(tmp_path, chain, webhook, poll_interval=poll_interval, chain_name=chain_name))
        runner = asyncio.create_task(daemon.run())
        try:
            await until(lambda: {"lend-0", "lend-1"} <= daemon.pipeline.confirmed.keys(), 10)
            yield chain, daemon
        finally:
            daemon.stop()
            await asyncio.wait_for(runner, 10)


def critical(webhook) -> set[str]:
    """The accounts told CRITICAL, in one message or several."""
    text = "\n".join(f"{b['title']}\n{b['message']}" for b in webhook.bodies)
    return {name for name in ("lend-0", "lend-1") if f"CRITICAL · {name} · margin ratio 85 %" in text}


def up(chain_name: str = "base") -> float:
    return METRICS.stream_up.labels(chain_name, "heads", ",".join(f"lend-{i}" for i in range(len(USERS))))._value.get()


def test_a_price_move_in_a_block_is_alerted_at_that_block_not_at_the_poll(tmp_path, webhook):
    async def scenario():
        async with following(tmp_path, webhook) as (chain, daemon):
            await until(lambda: up() == 1, 5)
            subscribers = len(chain.subscribers)
            chain.set_price(1700.0)  # 85 % on both
            await until(lambda: webhook.bodies, 15)  # full polls are an hour apart: the block did it
            return subscribers, daemon.store.load_states("lend-0")["account"]

    subscribers, state = run(scenario())
    assert subscribers == 1  # one subscription for both accounts of the endpoint
    assert titles(webhook) == ["2 alerts: CRITICAL lend-0, CRITICAL lend-1"]
    assert "CRITICAL · lend-0 · margin ratio 85 % = health factor 1.17" in webhook.bodies[0]["message"]
    assert not state.blind


@pytest.mark.parametrize("fault", ["drop", "stall", "refuse"])
def test_a_lost_head_stream_falls_back_to_the_polls_and_comes_back(tmp_path, webhook, caplog, monkeypatch, fault):
    # Arbitrum's blocks come every 0.25 s: with a 2 s floor, a subscription silent for 2 s is stalled
    monkeypatch.setattr(chains, "STALE_FLOOR_S", 2.0)
    caplog.set_level(logging.DEBUG)

    def refuse(chain):
        chain.heads_fault = "refuse"

    async def mining(chain):  # the chain goes on making blocks, served over HTTP whatever the socket does
        while True:
            await asyncio.sleep(0.3)
            chain.mine()

    async def scenario():
        async with following(tmp_path, webhook, poll_interval="1s", chain_name="arbitrum",
                             before=refuse if fault == "refuse" else None) as (chain, daemon):
            miner = asyncio.create_task(mining(chain))
            try:
                if fault != "refuse":
                    await until(lambda: up("arbitrum") == 1, 5)
                    if fault == "drop":
                        chain.heads_fault = "refuse"  # and it stays down a while
                        await chain.drop_subscribers()
                    else:
                        chain.heads_fault = "stall"
                await until(lambda: up("arbitrum") == 0, 15)
                chain.set_price(1700.0)
                await until(lambda: critical(webhook) == {"lend-0", "lend-1"}, 15)  # from the full polls, every 1 s
                chain.heads_fault = None
                await until(lambda: up("arbitrum") == 1, 15)
                return daemon.store.load_states("lend-0")["account"]
            finally:
                miner.cancel()

    state = run(scenario())
    assert state.failures == 0 and not state.blind  # a stream being down is not blindness
    lines = [r.getMessage() for r in caplog.records if r.name == "alerter.streams" and "new blocks" in r.getMessage()]
    down = [line for line in lines if "down" in line or "not connected" in line]
    assert down and "reads at the full polls (every 1 s) until it is back" in down[0], lines
    if fault == "stall":
        assert "sent no block for 2 s" in down[0]
    if fault == "refuse":
        assert "refused the subscription" in down[0]
    assert lines[-1].startswith("new blocks (Arbitrum One, 2 accounts) stream up")
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert KEY not in everything and WS_KEY not in everything and "127.0.0.1" not in "\n".join(lines)


def test_only_an_account_with_ws_url_follows_the_blocks(tmp_path, webhook):
    from alerter.plan import plans

    class Endpoint:
        url = "http://127.0.0.1:9"

    with_ws = plans(settings(tmp_path, Endpoint, webhook, poll_interval="1h"))
    without = plans(settings(tmp_path, Endpoint, webhook, poll_interval="1h", ws_url=None))
    assert [p.streams for p in with_ws.values()] == [True, True]
    assert [p.streams for p in without.values()] == [False, False]


@pytest.mark.parametrize(("account", "message"), [
    ({"ws_url": "https://base.example/v2/WSKEY0123456789"}, "accounts[0].ws_url: not a ws(s) URL"),
    ({"ws_url": None, "streams": True}, "accounts[0].streams: Aave V3 streams new blocks over the endpoint's websocket: set ws_url"),
    ({"exchange": "okx", "api_key": "k-12345678", "secret": "s-12345678", "password": "p-12345678", "wallet_address": None,
      "rpc_url": None, "chain": None}, "accounts[0].ws_url: not used by okx"),
])
def test_validate_refuses_a_ws_url_that_cannot_be_used_in_one_line(tmp_path, account, message):
    fields = {"name": "lend", "exchange": "aave", "chain": "base", "wallet_address": USERS[0],
              "rpc_url": f"https://base.example/v2/{KEY}", "ws_url": f"wss://base.example/v2/{WS_KEY}", **account}
    with pytest.raises(ConfigError) as caught:
        build_settings({"accounts": [{k: v for k, v in fields.items() if v is not None}]})
    assert message in str(caught.value)
    assert KEY not in str(caught.value) and WS_KEY not in str(caught.value)
