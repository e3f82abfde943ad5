"""What every on-chain venue (aave, spark, compound, morpho) shares: the account's checks and the
client that reads it through its endpoint's shared reader.

An on-chain account names its `chain`, its `wallet_address` and its `rpc_url` (a secret: RPC URLs
carry the provider's key); it needs no API key. `account_problems` says what is wrong with them,
one line per key; `ChainClient` is the venue's own client (Profile.connect): it holds the
endpoint's BlockReader (alerter.sources.blockreader), shared by every account on that endpoint
and chain, and lets go of it on close.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from alerter.sources.blockreader import BlockReader, release, shared_reader
from alerter.sources.chains import CHAINS, Chain, is_address
from alerter.sources.profile import Profile
from alerter.sources.streamspec import HeadSpec


def chain_problems(name: str, chain: Any, deployed_on: Iterable[str]) -> list[tuple[str, str]]:
    """A chain the venue is not deployed on, or none."""
    deployed = sorted(deployed_on)
    if chain is None:
        return [("chain", f"{name} needs it: one of {', '.join(deployed)}")]
    if chain not in CHAINS:
        return [("chain", f"{chain!r} is not a chain alerter reads; {name} is on {', '.join(deployed)}")]
    if chain not in deployed:
        return [("chain", f"{name} is not deployed on {chain!r}: it is on {', '.join(deployed)}")]
    return []


def chain_check(name: str, deployed_on: Iterable[str]) -> Callable[[Mapping[str, Any]], list[tuple[str, str]]]:
    """Profile.check_settings for a venue that reads only `chain`."""
    deployed = tuple(deployed_on)
    return lambda settings: chain_problems(name, settings.get("chain"), deployed)


# where the account names its endpoint's websocket (`ws_url`), each new block reads it (alerter.streams)
STREAM = HeadSpec()
PERMISSIONS = "no API key: read by wallet address over the account's own JSON-RPC endpoint (rpc_url, a secret)"
CREDENTIALS = ("wallet_address", "rpc_url")


def credential_problems(credentials: Mapping[str, str]) -> list[tuple[str, str]]:
    """The wallet must be an address (EIP-55 checked in mixed case), the endpoint an http(s) URL
    and its websocket, where given, a ws(s) URL. No value is quoted: all are secrets."""
    problems = []
    wallet = credentials.get("wallet_address")
    if wallet is not None and not is_address(wallet):
        problems.append(("wallet_address", "not an address: 0x and 40 hex digits (in mixed case, with its EIP-55 checksum right)"))
    url = credentials.get("rpc_url")
    if url is not None and not url.startswith(("http://", "https://")):
        problems.append(("rpc_url", "not an http(s) URL of a JSON-RPC endpoint (env:NAME reads it from the environment)"))
    ws_url = credentials.get("ws_url")
    if ws_url is not None and not ws_url.startswith(("ws://", "wss://")):
        problems.append(("ws_url", "not a ws(s) URL of the endpoint's websocket (wss://…; env:NAME reads it from the environment)"))
    return problems


class ChainClient:
    """The venue's own client for one account: its wallet, its chain, its endpoint's shared reader."""

    def __init__(self, venue_id: str, account: Any, timeout_s: float) -> None:
        credentials = account.credentials()
        self.id = venue_id
        self.chain: Chain = CHAINS[account.chain]
        self.user: str = credentials["wallet_address"]
        self.reader: BlockReader = shared_reader(credentials["rpc_url"], self.chain, timeout_s=timeout_s)
        self._closed = False

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await release(self.reader)


async def fetch(ctx: Any) -> tuple[dict, list]:
    """Profile.fetch of every on-chain venue: its client's `read()`, through the Source's call
    (retries of transient failures, masking), as balance["info"]."""
    return {"info": await ctx.call(ctx.exchange.read)}, []


def profile(*, settings: tuple[str, ...] = (), **fields: Any) -> Profile:
    """The Profile of an on-chain venue: what every one of them shares (its fetch, credentials,
    newHeads stream, permissions, the `chain` and `ws_url` settings) with the venue's own `fields`
    and further `settings`."""
    return Profile(fetch=fetch, credentials=CREDENTIALS, check_credentials=credential_problems, stream=STREAM,
                   permissions=PERMISSIONS, settings=("chain", "ws_url", *settings), **fields)
