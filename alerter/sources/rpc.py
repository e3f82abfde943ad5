"""A JSON-RPC client for reading a chain over the user's own endpoint: JSON-RPC over aiohttp, the
answers decoded by eth-abi (the Ethereum Foundation's ABI codec; web3.py would add 19 MiB and
0.4 s for a client alerter does not need).

    async with RpcClient(url, CHAINS["base"]) as rpc:
        head = await rpc.head()                       # the newest block; SourceError if stale
        results = await rpc.calls([Call(pool, data, "Aave V3 Pool.getUserAccountData")], head)
        words(results[0], 6, "…")                     # six uint256, or SourceError("data")

One `head()` asks for eth_chainId and the latest block in one batch, and refuses an endpoint on
another chain or one whose newest block is older than the chain allows (alerter.sources.chains).
`calls()` sends every eth_call of one poll in one JSON-RPC batch (BATCH_LIMIT calls each, more
as several at once), pinned to that head's number, so many accounts on one chain cost one request
per block and all read the same block. Each call
gets its own result or its own SourceError: one account's revert does not blind the others.

Errors are SourceError with the project's kinds: transient (timeouts, refused connections, 5xx,
429, a node that has not got the block yet), credentials (HTTP 401/403: the URL's API key),
data (an answer that is not JSON-RPC, `0x`, a cut result, a reverted call, the wrong chain).
A reverted call names its contract and chain. The URL is a secret (it carries the provider's API
key): no message names it; each is masked with the URL's parts all the same, since aiohttp's own
messages may quote the host or path. aiohttp and eth-abi are imported at the first request or
answer, so importing this module (the profiles do, for `validate`) costs nothing.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from alerter.httpsession import LazySession
from alerter.secrets import mask, url_parts
from alerter.sources.chains import Chain, stale_reason
from alerter.sources.errors import SourceError, one_line

TIMEOUT_S = 10.0
# calls per JSON-RPC batch: endpoints limit a batch's size, and one refused batch would blind every
# account in it; more calls go as several batches at once
BATCH_LIMIT = 100
WORD = 32  # bytes in an ABI word
# JSON-RPC error codes that mean "this request is wrong", not "try again"
NOT_TRANSIENT = {-32600: "invalid request", -32601: "method not found", -32602: "invalid params"}


@dataclass(frozen=True)
class Call:
    """One eth_call: `to` the contract, `data` the calldata (0x…), `label` what a person calls it
    ("Aave V3 Pool.getUserAccountData"), for messages."""

    to: str
    data: str
    label: str


@dataclass(frozen=True)
class Head:
    """The block the reads of one poll are pinned to."""

    number: int
    timestamp: int  # seconds since the epoch, as the block states it


def words(result: bytes | SourceError, count: int, what: str) -> tuple[int, ...]:
    """`count` uint256 words out of a call's result, strictly: exactly count × 32 bytes, else
    SourceError("data"). A call's own error is raised as it is."""
    if isinstance(result, SourceError):
        raise result
    if len(result) != count * WORD:
        got = "no data (0x)" if not result else f"{len(result)} bytes"
        raise SourceError("data", f"{what} answered {got}, not {count} words of {WORD} bytes: a partial or foreign answer")
    return decode(("uint256",) * count, result, what)


def decode(types: Sequence[str], result: bytes, what: str) -> tuple:
    """`result` decoded as the ABI types (eth-abi, strictly: every offset and length checked);
    an answer that does not decode is SourceError("data")."""
    from eth_abi import decode as abi_decode
    from eth_abi.exceptions import DecodingError

    try:
        return tuple(abi_decode(list(types), result, strict=True))
    except (DecodingError, OverflowError, ValueError) as e:
        raise SourceError("data", f"{what} answered {len(result)} bytes that are not ({', '.join(types)}): {e}") from None


def selector(signature: str) -> str:
    """The 4-byte function selector of a Solidity signature, as 0x and 8 hex digits:
    selector("getUserAccountData(address)") == "0xbf92857c" (the tests prove the profiles' own)."""
    from eth_utils import function_signature_to_4byte_selector

    return "0x" + function_signature_to_4byte_selector(signature).hex()


def _hex_quantity(value: Any, what: str) -> int:
    if not (isinstance(value, str) and value.startswith("0x") and len(value) > 2):
        raise SourceError("data", f"{what}: expected a hex quantity, got {str(value)[:40]!r}")
    try:
        return int(value, 16)
    except ValueError:
        raise SourceError("data", f"{what}: expected a hex quantity, got {value[:40]!r}") from None


def _hex_data(value: Any, what: str) -> bytes:
    if not (isinstance(value, str) and value.startswith("0x")):
        raise SourceError("data", f"{what}: expected 0x-prefixed data, got {str(value)[:40]!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise SourceError("data", f"{what}: not whole hex bytes ({len(value) - 2} hex digits): a cut answer") from None


class RpcClient(LazySession):
    """One endpoint of one chain. `clock` gives the time the head's age is measured against."""

    def __init__(self, url: str, chain: Chain, *, timeout_s: float = TIMEOUT_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._url = url
        self._secrets = tuple(url_parts(url)) if "://" in url else (url,)
        self.chain = chain
        self.timeout_s = timeout_s
        self.clock = clock
        self._next_id = 0
        self.requests = 0  # HTTP requests sent (a batch is one)
        self.memo: dict = {}  # slow-changing reads kept by the venues that use this endpoint (a market's reserve list)

    def _masked(self, text: str) -> str:
        return one_line(mask(text, self._secrets))

    # ------------------------------------------------------------ transport

    async def _post(self, body: Any) -> Any:
        """POST one JSON-RPC message (a request or a batch); the parsed answer."""
        import aiohttp  # here, not at the top: the profiles import this module, and `--help` must not load aiohttp

        session = self._client(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        where = f"the {self.chain.title} RPC endpoint"
        self.requests += 1
        try:
            async with session.post(self._url, json=body, headers={"Accept": "application/json"}) as response:
                text = await response.text()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except (asyncio.TimeoutError, TimeoutError):
            raise SourceError("transient", f"{where} did not answer within {self.timeout_s:g} s") from None
        except aiohttp.ClientError as e:
            raise SourceError("transient", self._masked(f"{where} cannot be reached ({type(e).__name__}: {e})")) from None
        if status in (401, 403):
            raise SourceError("credentials", f"{where} refused the request (HTTP {status}): check the API key in rpc_url",
                              http_status=status)
        if status == 429 or status >= 500:
            seconds = float(retry_after) if retry_after and retry_after.isdigit() else None
            raise SourceError("transient", f"{where} answered HTTP {status}" + (" (rate limited)" if status == 429 else ""),
                              retry_after_s=seconds, http_status=status)
        try:
            return json.loads(text)
        except ValueError:
            raise SourceError("data", self._masked(f"{where} answered HTTP {status} with something that is not JSON: {text[:80]}"),
                              http_status=status) from None

    def _request(self, method: str, params: list) -> dict:
        self._next_id += 1
        return {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params}

    def _error(self, error: Any, what: str, call: Call | None = None) -> SourceError:
        """The SourceError for a JSON-RPC error object answered to `what`."""
        code = error.get("code") if isinstance(error, dict) else None
        message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
        detail = self._masked(message)[:160]
        if call is not None and (code == 3 or "revert" in message.lower()):
            return SourceError("data", f"{call.label} at {call.to} on {self.chain.title} reverted: {detail or 'no reason given'}")
        if code in NOT_TRANSIENT:
            return SourceError("data", f"the {self.chain.title} RPC endpoint refused {what} ({NOT_TRANSIENT[code]}: {detail})")
        # rate limits (-32005), missing blocks on a node behind the head ("header not found"),
        # internal errors: the endpoint's trouble, which passes
        return SourceError("transient", f"the {self.chain.title} RPC endpoint failed {what} (code {code}: {detail})")

    async def batch(self, requests: Sequence[tuple[str, list]]) -> list[Any]:
        """Send `requests` as one JSON-RPC batch; each answer's `result`, or its error object
        wrapped as {"error": …} (the caller names it), in the order asked."""
        body = [self._request(method, params) for method, params in requests]
        answer = await self._post(body)
        if isinstance(answer, dict) and "error" in answer:  # the whole batch refused
            raise self._error(answer["error"], "a batch request")
        if not isinstance(answer, list):
            raise SourceError("data", f"the {self.chain.title} RPC endpoint answered a batch with {type(answer).__name__}, not a list")
        by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
        results = []
        for request in body:
            item = by_id.get(request["id"])
            if item is None:
                raise SourceError("data", f"the {self.chain.title} RPC endpoint left {request['method']} out of its batch answer: a partial answer")
            if "error" in item and item["error"] is not None:
                results.append({"error": item["error"]})
            elif "result" in item:
                results.append(item["result"])
            else:
                raise SourceError("data", f"the {self.chain.title} RPC endpoint answered {request['method']} with neither result nor error")
        return results

    # ------------------------------------------------------------ reads

    async def head(self) -> Head:
        """The newest block, after checking the endpoint serves this chain and is not behind."""
        chain_id, block = await self.batch([("eth_chainId", []), ("eth_getBlockByNumber", ["latest", False])])
        if isinstance(chain_id, dict):
            raise self._error(chain_id["error"], "eth_chainId")
        if isinstance(block, dict) and "error" in block:
            raise self._error(block["error"], "eth_getBlockByNumber")
        served = _hex_quantity(chain_id, "eth_chainId")
        if served != self.chain.chain_id:
            raise SourceError("data", f"rpc_url serves chain {served}, not {self.chain.title} ({self.chain.chain_id})")
        if not isinstance(block, dict):
            raise SourceError("data", f"the {self.chain.title} RPC endpoint has no latest block (got {type(block).__name__})")
        head = Head(_hex_quantity(block.get("number"), "latest block number"), _hex_quantity(block.get("timestamp"), "latest block timestamp"))
        reason = stale_reason(self.chain, head.number, head.timestamp, self.clock())
        if reason:
            raise SourceError("transient", reason)
        return head

    async def calls(self, calls: Sequence[Call], head: Head) -> list[bytes | SourceError]:
        """Every call at `head`, BATCH_LIMIT to a batch (sent together): each one's returned bytes
        or its own SourceError."""
        if not calls:
            return []
        block = hex(head.number)
        requests = [("eth_call", [{"to": c.to, "data": c.data}, block]) for c in calls]
        chunks = await asyncio.gather(*(self.batch(requests[i:i + BATCH_LIMIT]) for i in range(0, len(requests), BATCH_LIMIT)))
        answers = [answer for chunk in chunks for answer in chunk]
        results: list[bytes | SourceError] = []
        for call, answer in zip(calls, answers):
            if isinstance(answer, dict) and "error" in answer:
                results.append(self._error(answer["error"], f"{call.label} (eth_call)", call))
                continue
            try:
                results.append(_hex_data(answer, f"{call.label} at {call.to} on {self.chain.title}"))
            except SourceError as e:
                results.append(e)
        return results


def text(result: bytes | SourceError, what: str) -> str:
    """An ABI `string` result (ERC-20 symbol()), or a bytes32 one (a few old tokens), strictly."""
    if isinstance(result, SourceError):
        raise result
    if len(result) == WORD:  # bytes32, zero-padded
        return result.rstrip(b"\0").decode("utf-8", "replace")
    (raw,) = decode(("bytes",), result, what)  # a string's bytes, whatever their encoding
    return raw.decode("utf-8", "replace")
