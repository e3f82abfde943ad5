"""Truth under faults: every way an RPC endpoint can fail leaves the on-chain account blind,
never ok and never resolved. The loopback chain (alerter.simulator.chain) breaks on request;
the real client and Aave reader meet it over 127.0.0.1.

Positions here are synthetic (AavePosition, encoded by Aave V3.3's arithmetic): the faults are
the point, not the figures.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerter.health import evaluate
from alerter.models import AlertKind, Level, RepeatSchedule, ScopeState, Thresholds
from alerter.policy import decide, decide_failure
from alerter.simulator.chain import AavePosition, run_chain
from alerter.sources import aave
from alerter.sources.chains import CHAINS, STALE_FLOOR_S, is_address, max_block_age_s, stale_reason
from alerter.sources.errors import SourceError
from alerter.sources.rpc import Call, RpcClient, words

BASE = CHAINS["base"]
POOL = aave.AAVE["base"]
USER = "0x1111111111111111111111111111111111111111"
OTHER = "0x2222222222222222222222222222222222222222"
SECRET_PATH = "/v2/SECRETKEY0123456789abcdef"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def position(user: str = USER) -> AavePosition:
    # 1 ETH at 3,000 USD against 1,200 USD: health factor 2.075, ratio 48 %: ok at the default thresholds
    return AavePosition(user, collateral_eth=1.0, eth_price=3000.0, debt_usd=1200.0)


async def _fetch_with(kind: str | None, *, method: str | None = None, seconds: float | None = None, timeout_s: float = 5.0):
    async with run_chain(BASE) as chain:
        chain.aave(POOL.pool, position())
        if kind:
            chain.fault(kind, method=method, seconds=seconds)
        async with RpcClient(chain.url + SECRET_PATH, BASE, timeout_s=timeout_s) as rpc:
            try:
                return await aave.fetch(rpc, POOL, USER, "aave-base", "aave")
            except SourceError as e:
                return e


def fetch_with(kind: str | None, **kwargs):
    return asyncio.run(_fetch_with(kind, **kwargs))


FAULTS = [
    # kind, method, expected SourceError kind, words the message must carry
    ("error", "eth_call", "transient", "internal error"),
    ("error", "eth_getBlockByNumber", "transient", "internal error"),
    ("revert", "eth_call", "data", f"Aave V3 Pool.getUserAccountData at {POOL.pool} on Base reverted"),
    ("empty", "eth_call", "data", "no data (0x)"),
    ("truncated", "eth_call", "data", "96 bytes, not 6 words"),
    ("partial", None, "data", "left eth_getBlockByNumber out of its batch answer"),
    ("lag", None, "transient", "lags behind the chain"),
    ("wrong_chain", None, "data", "rpc_url serves chain 8454, not Base (8453)"),
    ("http500", None, "transient", "HTTP 500"),
    ("http429", None, "transient", "rate limited"),
    ("http401", None, "credentials", "check the API key in rpc_url"),
    ("garbage", None, "data", "not JSON"),
    ("timeout", None, "transient", "did not answer within 0.5 s"),
]


@pytest.mark.parametrize(("kind", "method", "error_kind", "says"), FAULTS, ids=[f"{f[0]}-{f[1]}" for f in FAULTS])
def test_every_fault_is_a_source_error_never_a_figure(kind, method, error_kind, says):
    result = fetch_with(kind, method=method, timeout_s=0.5 if kind == "timeout" else 5.0, seconds=5.0 if kind == "timeout" else None)
    assert isinstance(result, SourceError), f"{kind}: read {result!r}"
    assert result.kind == error_kind
    assert says in result.message
    assert "SECRETKEY" not in result.message and "127.0.0.1" not in result.message


def test_the_healthy_read_without_a_fault():
    snapshot = fetch_with(None)
    health = evaluate(snapshot, target=0.4)[0]
    assert health.own_figure.value(health.margin_ratio) == pytest.approx(2.075, rel=1e-12)
    assert health.margin_ratio == pytest.approx(1 / 2.075, rel=1e-12)


@pytest.mark.parametrize("kind", ["revert", "empty", "truncated", "lag", "http500", "timeout"])
def test_a_fault_at_critical_is_blind_never_resolved(kind):
    """A CRITICAL scope whose next read fails is blind (with its level kept), not all-clear."""
    critical = ScopeState(account="aave-base", scope="account", level=Level.CRITICAL, since_at=NOW, notified_at=NOW, peak=Level.CRITICAL)
    error = fetch_with(kind, method="eth_call" if kind in ("revert", "empty", "truncated") else None,
                       timeout_s=0.5, seconds=5.0 if kind == "timeout" else None)
    assert isinstance(error, SourceError)
    state, alerts = decide_failure(critical, "aave-base", NOW + timedelta(seconds=2), error.message, immediate=False,
                                   blind_after=1, repeat=RepeatSchedule(), exchange="aave")
    assert [a.kind for a in alerts] == [AlertKind.BLIND]
    assert state.level == Level.CRITICAL and state.blind
    assert "SECRETKEY" not in alerts[0].reason


def test_a_refused_connection_is_transient_and_masked(closed_port):
    async def go():
        async with RpcClient(f"http://127.0.0.1:{closed_port}{SECRET_PATH}", BASE, timeout_s=2.0) as rpc:
            return await rpc.head()

    with pytest.raises(SourceError) as caught:
        asyncio.run(go())
    assert caught.value.kind == "transient" and "cannot be reached" in caught.value.message
    assert "SECRETKEY" not in caught.value.message


def test_one_accounts_revert_leaves_the_others_in_the_batch_readable():
    async def go():
        async with run_chain(BASE) as chain:
            chain.aave(POOL.pool, position(USER))
            chain.aave(POOL.pool, position(OTHER))
            async with RpcClient(chain.url, BASE) as rpc:
                head = await rpc.head()
                chain.fault("revert", method="eth_call")
                results = await rpc.calls([aave.account_call(POOL, USER), aave.account_call(POOL, OTHER)], head)
                return results, chain.posts

    results, posts = asyncio.run(go())
    assert posts == 2  # the head, then both accounts in one batch
    assert isinstance(results[0], SourceError) and "reverted" in results[0].message
    assert aave.decode(results[1], "other").health_factor == pytest.approx(2.075)


def test_the_eth_fall_walks_the_levels_up_to_liquidatable():
    """The scripted oracle fall: each block re-encodes the position; the levels follow."""

    async def go():
        seen = []
        async with run_chain(BASE) as chain:
            chain.aave(POOL.pool, position(), data_provider=POOL.data_provider, oracle=POOL.oracle)
            async with RpcClient(chain.url, BASE) as rpc:
                state = None
                for i, price in enumerate((3000.0, 2400.0, 2000.0, 1700.0, 1440.0)):
                    chain.set_price(price)
                    health = evaluate(await aave.fetch(rpc, POOL, USER, "aave-base", "aave"), target=0.4)[0]
                    state, alerts = decide(state, health, Thresholds(), RepeatSchedule(), NOW + timedelta(seconds=i))
                    (weth,) = health.top_positions
                    seen.append((state.level, health.own_figure.text(health.margin_ratio), round(weth.liquidation_price, 2)))
        return seen

    # 1 WETH against 1,200 USDC at an 83 % threshold liquidates at 1,200 ÷ 0.83 = 1,445.78 USD, whatever the price now
    assert asyncio.run(go()) == [
        (Level.OK, "health factor 2.07", 1445.78),
        (Level.WARNING, "health factor 1.66", 1445.78),
        (Level.CALL, "health factor 1.38", 1445.78),
        (Level.CRITICAL, "health factor 1.17", 1445.78),
        (Level.CRITICAL, "health factor 0.996, liquidatable now", 1445.78),
    ]


def test_a_call_at_a_block_the_node_lacks_is_transient():
    async def go():
        async with run_chain(BASE) as chain:
            chain.aave(POOL.pool, position())
            async with RpcClient(chain.url, BASE) as rpc:
                head = await rpc.head()
                ahead = type(head)(head.number + 5, head.timestamp)
                return (await rpc.calls([aave.account_call(POOL, USER)], ahead))[0]

    result = asyncio.run(go())
    assert isinstance(result, SourceError) and result.kind == "transient" and "header not found" in result.message


# ---------------------------------------------------------------- pure parts

def test_stale_limit_has_a_floor_for_quiet_chains():
    assert max_block_age_s(CHAINS["arbitrum"]) == STALE_FLOOR_S  # 2 × 0.25 s would blind a quiet minute
    assert max_block_age_s(CHAINS["ethereum"]) == 30.0  # 2 × 12 s would blind a missed slot plus latency
    assert stale_reason(CHAINS["ethereum"], 10, 1000, 1000 + 30.0) is None
    assert "31 s old" in stale_reason(CHAINS["ethereum"], 10, 1000, 1000 + 31.0)
    assert stale_reason(BASE, 10, 1000, 990.0) is None  # a head "from the future": our clock is behind


@given(st.binary(max_size=256))
def test_words_takes_exactly_six_words_or_refuses(raw):
    if len(raw) == 192:
        assert len(words(raw, 6, "x")) == 6
    else:
        with pytest.raises(SourceError) as caught:
            words(raw, 6, "x")
        assert caught.value.kind == "data"


@given(st.integers(0, 2**256 - 1), st.integers(0, 2**256 - 1), st.integers(0, 20_000), st.integers(0, 2**256 - 1))
def test_decode_never_reads_an_inconsistent_answer_as_a_figure(collateral, debt, lt, hf):
    raw = b"".join(w.to_bytes(32, "big") for w in (collateral, debt, 0, lt, min(lt, 10_000), hf))
    try:
        data = aave.decode(raw, "x")
    except SourceError as e:
        assert e.kind == "data"
        return
    snapshot = aave.snapshot("a", "aave", data)  # a decoded answer always makes a finite snapshot
    health = evaluate(snapshot, target=0.4)[0]
    assert (data.debt_base == 0) == (health.margin_ratio == 0.0)


def test_addresses_are_checked_with_their_eip55_checksum():
    assert is_address("0xA238Dd80C259a72e81d7e4664a9801593F98d1c5")  # Aave's Base Pool, as its address book spells it
    assert is_address("0xa238dd80c259a72e81d7e4664a9801593f98d1c5")  # no checksum: taken as it is
    assert not is_address("0xA238Dd80C259a72e81d7e4664a9801593F98d1C5")  # one letter's case wrong
    assert not is_address("0xA238Dd80C259a72e81d7e4664a9801593F98d1")  # 39 digits
    assert not is_address("A238Dd80C259a72e81d7e4664a9801593F98d1c5ab")


def test_every_cited_address_passes_its_own_checksum():
    for deployments in aave.DEPLOYMENTS.values():
        for d in deployments.values():
            for address in (d.pool, d.data_provider, d.oracle):
                assert is_address(address), (d.protocol, d.chain, address)


def test_call_labels_name_the_contract():
    call = aave.account_call(aave.SPARK["ethereum"], USER)
    assert call == Call("0xC13e21B648A5Ee794902342038FF3aDAB66BE987", "0xbf92857c" + "0" * 24 + USER[2:], "Spark Pool.getUserAccountData")


# ---------------------------------------------------------------- many accounts, one request per block

def test_many_accounts_on_one_endpoint_share_one_head_and_one_batch():
    from alerter.sources.blockreader import release, shared_reader

    users = [f"0x{i:040x}" for i in range(1, 21)]

    async def go():
        async with run_chain(BASE) as chain:
            for user in users:
                chain.aave(POOL.pool, position(user))
            chain.fault("revert", method="eth_call")  # the first account's call reverts: only its read fails
            readers = [shared_reader(chain.url, BASE, timeout_s=5.0) for _ in users]
            assert all(r is readers[0] for r in readers)
            try:
                results = await asyncio.gather(*(r.read(aave.account_call(POOL, u)) for r, u in zip(readers, users)))
                return results, chain.posts, readers[0].rounds
            finally:
                for r in readers:
                    await release(r)

    results, posts, rounds = asyncio.run(go())
    assert (posts, rounds) == (2, 1)  # eth_chainId + latest block, then the 20 calls at that block
    assert len({head for head, _ in results}) == 1
    failed = [r for _, r in results if isinstance(r, SourceError)]
    assert len(failed) == 1 and "reverted" in failed[0].message
    assert all(aave.decode(r, "x").health_factor == pytest.approx(2.075) for _, r in results if not isinstance(r, SourceError))


def test_a_failed_round_fails_every_read_in_it():
    from alerter.sources.blockreader import release, shared_reader

    async def go():
        async with run_chain(BASE) as chain:
            chain.aave(POOL.pool, position())
            chain.fault("lag")
            reader = shared_reader(chain.url, BASE, timeout_s=5.0)
            reader2 = shared_reader(chain.url, BASE, timeout_s=5.0)
            try:
                return await asyncio.gather(reader.read(aave.account_call(POOL, USER)), reader2.read(aave.account_call(POOL, OTHER)),
                                            return_exceptions=True)
            finally:
                await release(reader)
                await release(reader2)

    results = asyncio.run(go())
    assert all(isinstance(r, SourceError) and "lags behind" in r.message for r in results)


def test_more_calls_than_a_batch_holds_go_as_several_batches():
    from alerter.sources.rpc import BATCH_LIMIT

    users = [f"0x{i:040x}" for i in range(1, BATCH_LIMIT + 31)]

    async def go():
        async with run_chain(BASE) as chain:
            for user in users:
                chain.aave(POOL.pool, position(user))
            async with RpcClient(chain.url, BASE) as rpc:
                head = await rpc.head()
                results = await rpc.calls([aave.account_call(POOL, u) for u in users], head)
                return results, chain.posts

    results, posts = asyncio.run(go())
    assert posts == 1 + 2 and len(results) == len(users)
    assert all(aave.decode(r, "x").health_factor == pytest.approx(2.075) for r in results)


# ---------------------------------------------------------------- newHeads

def test_new_heads_arrive_as_blocks_are_mined_and_a_lost_socket_is_an_error():
    from alerter.sources.heads import HeadFeed

    async def go():
        async with run_chain(BASE) as chain:
            feed = HeadFeed(chain.url.replace("http://", "ws://") + "/ws", BASE, timeout_s=5.0)
            try:
                first = asyncio.create_task(feed.next())
                while not chain.subscribers:
                    await asyncio.sleep(0.01)
                mined = chain.set_price(2500.0)
                head = await asyncio.wait_for(first, 5)
                second = asyncio.create_task(feed.next())
                await asyncio.sleep(0.05)
                await chain.drop_subscribers()
                with pytest.raises(SourceError) as caught:
                    await asyncio.wait_for(second, 5)
                return mined, head, caught.value
            finally:
                await feed.close()

    mined, head, lost = asyncio.run(go())
    assert head.number == mined
    assert lost.kind == "transient" and "closed" in lost.message and "127.0.0.1" not in lost.message


def test_rounding_of_the_stated_words_is_not_read_as_inconsistency():
    """Aave 3.5 computes HF before rounding the average threshold down to a basis point: at a
    threshold of 40 % that is up to 2.5e-4 of the HF; a dust debt rounds to a few base units."""
    collateral, debt = 10_000 * 10**8, 3_000 * 10**8
    exact = collateral * 0.40009 / debt  # the unrounded average threshold 40.009 %, stated as 4000 bps
    raw = b"".join(w.to_bytes(32, "big") for w in (collateral, debt, 0, 4000, 3000, round(exact * 1e18)))
    assert aave.decode(raw, "x").health_factor == pytest.approx(exact)
    dust = b"".join(w.to_bytes(32, "big") for w in (1000, 700, 0, 8000, 7500, round((1000 * 0.8 - 1) / 700 * 1e18)))
    assert aave.decode(dust, "x").debt_base == 700
    shifted = b"".join(w.to_bytes(32, "big") for w in (collateral, debt, 0, 4000, 3000, round(exact * 1.01 * 1e18)))
    with pytest.raises(SourceError, match="inconsistent"):
        aave.decode(shifted, "x")
