"""New blocks as they come: the endpoint's websocket `eth_subscribe("newHeads")`.

    feed = HeadFeed(ws_url, CHAINS["base"], timeout_s=10.0)
    await feed.connect()         # subscribed (optional: next() connects when it must)
    head = await feed.next()     # the next block's number and timestamp; SourceError when the socket is lost
    await feed.close()

A health factor moves only when a block moves an oracle price or the position, so reading the
accounts of a chain when its block arrives is as fast as detection can be (issue 21). The feed
only says when: the reads themselves go over JSON-RPC (alerter.sources.blockreader), pinned to
that block. A lost socket, a refused subscription or no block for the chain's stale-head limit
(alerter.sources.chains.max_block_age_s) fails `next()` with a SourceError; whoever holds the
feed falls back to polling, as the exchange streams do. The URL is a secret (it carries the
provider's key) and is never in a message. aiohttp is imported when the feed connects.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from alerter.secrets import mask, url_parts
from alerter.sources.chains import Chain, max_block_age_s
from alerter.sources.errors import SourceError, one_line
from alerter.sources.rpc import Head


class HeadFeed:
    def __init__(self, url: str, chain: Chain, *, timeout_s: float = 10.0, silence_s: float | None = None) -> None:
        self._url = url
        self._secrets = tuple(url_parts(url)) if "://" in url else (url,)
        self.chain = chain
        self.timeout_s = timeout_s
        self.silence_s = max_block_age_s(chain) if silence_s is None else silence_s  # stalled after this long without a block
        self._session: Any = None
        self._ws: Any = None
        self._subscription: str | None = None

    def _error(self, kind: str, text: str) -> SourceError:
        return SourceError(kind, one_line(mask(f"the {self.chain.title} newHeads feed {text}", self._secrets)))

    async def connect(self) -> None:
        """Open the socket and subscribe (next() does it when not done yet); SourceError when refused."""
        import aiohttp  # here: importing this module must not load aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout_s))
        try:
            self._ws = await self._session.ws_connect(self._url, heartbeat=self.silence_s / 2)
            await self._ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}))
            answer = json.loads((await self._ws.receive(timeout=self.timeout_s)).data)
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, ValueError, TypeError) as e:
            await self.close()
            raise self._error("transient", f"cannot subscribe ({type(e).__name__}: {e})") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("result"), str):
            await self.close()
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise self._error("data", f"refused the subscription ({str(error)[:120]})")
        self._subscription = answer["result"]

    async def next(self) -> Head:
        """The next block; SourceError when the socket is lost or stays silent too long."""
        import aiohttp

        if self._ws is None:
            await self.connect()
        silence = self.silence_s
        # one deadline for the block, not per message: the heartbeat's pongs and other messages
        # must not keep a socket that sends no block alive
        deadline = asyncio.get_running_loop().time() + silence
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await self._ws.receive()
            except (asyncio.TimeoutError, TimeoutError):
                await self.close()
                raise self._error("transient", f"sent no block for {silence:.0f} s") from None
            if message.type != aiohttp.WSMsgType.TEXT:
                await self.close()
                raise self._error("transient", f"closed ({message.type.name})")
            try:
                data = json.loads(message.data)
                params = data["params"]
                if data.get("method") != "eth_subscription" or params["subscription"] != self._subscription:
                    continue
                header = params["result"]
                return Head(int(header["number"], 16), int(header["timestamp"], 16))
            except (ValueError, KeyError, TypeError) as e:
                await self.close()
                raise self._error("data", f"sent a header that does not read ({type(e).__name__})") from None

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._subscription = None
