"""The accounts of one RPC endpoint read together: one head and one batch per round.

    reader = shared_reader(url, CHAINS["base"], timeout_s=10.0)   # the same object for every account on it
    head, result = await reader.read(call)    # joins the round in flight, or starts one
    await release(reader)                     # the last account to let go closes the endpoint's session

Reads asked for within COALESCE_S of each other (the daemon starts the polls of a chain's
accounts together, at start, on the same interval, or on a new block) share one eth_chainId +
latest block request and one eth_call batch pinned to that block, so N accounts on one chain cost
two requests per round, not 2N, and all read the same block. Follow-up reads at a block already
read (`read_at`: the per-asset detail) are merged the same way, per block. A failure of the round (timeout,
stale head, refused batch) fails every read in it; a call's own failure (a revert) fails only
its own read. Identical calls (two accounts on one wallet) are sent once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from alerter.sources.chains import Chain
from alerter.sources.errors import SourceError
from alerter.sources.rpc import Call, Head, RpcClient

COALESCE_S = 0.005  # how long a round waits for the reads that come with it


class BlockReader:
    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc
        self.users = 0  # accounts holding it (shared_reader / release)
        self.rounds = 0
        # the rounds being gathered: at the latest block (None), or pinned to a head's number
        self._pending: dict[int | None, list[tuple[Call, asyncio.Future]]] = {}
        self._rounds: dict[int | None, asyncio.Task] = {}

    async def read(self, call: Call) -> tuple[Head, bytes | SourceError]:
        """`call` at the round's head (the newest block): the head and the call's bytes or its own
        SourceError; SourceError raised when the round itself fails."""
        return await self._join(call, None)

    async def read_at(self, calls: list[Call], head: Head) -> list[bytes | SourceError]:
        """`calls` at `head`, in the round of every read pinned to that block (a follow-up read of
        the accounts read at it): each call's bytes or its own SourceError."""
        answers = await asyncio.gather(*(self._join(call, head) for call in calls))
        return [result for _, result in answers]

    def _join(self, call: Call, head: Head | None) -> asyncio.Future:
        key = None if head is None else head.number
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append((call, future))
        if key not in self._rounds:
            self._rounds[key] = asyncio.create_task(self._run(key, head))
        return future

    async def _run(self, key: int | None, head: Head | None) -> None:
        await asyncio.sleep(COALESCE_S)
        batch = self._pending.pop(key, [])
        self._rounds.pop(key, None)
        self.rounds += 1
        unique = list(dict.fromkeys(call for call, _ in batch))
        try:
            if head is None:
                head = await self.rpc.head()
            results = dict(zip(unique, await self.rpc.calls(unique, head)))
        except SourceError as e:
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        except BaseException as e:  # cancelled, or a bug: no read may wait forever
            for _, future in batch:
                if not future.done():
                    future.set_exception(SourceError("transient", f"the {self.rpc.chain.title} read was interrupted ({type(e).__name__})"))
            raise
        for call, future in batch:
            if not future.done():
                future.set_result((head, results[call]))

    async def close(self) -> None:
        for task in self._rounds.values():
            task.cancel()
        await self.rpc.close()


_readers: dict[tuple[str, str], BlockReader] = {}


def shared_reader(url: str, chain: Chain, *, timeout_s: float, clock: Callable[[], float] = time.time) -> BlockReader:
    """The one reader of this endpoint on this chain (made on first use); hold it until `release`."""
    key = (url, chain.name)
    reader = _readers.get(key)
    if reader is None:
        reader = _readers[key] = BlockReader(RpcClient(url, chain, timeout_s=timeout_s, clock=clock))
    reader.users += 1
    return reader


async def release(reader: BlockReader) -> None:
    """One account lets go; the last one closes the endpoint's session."""
    reader.users -= 1
    if reader.users <= 0:
        for key, held in list(_readers.items()):
            if held is reader:
                del _readers[key]
        await reader.close()
