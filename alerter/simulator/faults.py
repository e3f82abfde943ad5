"""Fault injection for the exchange API (never the /control/ API).

Kinds and what the client sees:
  http500   500 + Binance JSON {"code": -1001, "msg": "Internal error; ..."}
  http429   429 + Retry-After: <seconds, default 1> + Binance JSON {"code": -1003, ...}
  http401   401 + Binance JSON {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
  delay     waits `seconds` (default 1), then answers normally
  malformed 200, application/json, the real answer cut in half (invalid JSON); with `path`
            (e.g. "/fapi/v3/positionRisk") a truncated body on that one endpoint only
  hang      holds the request `seconds` (default: until the simulator stops), then drops the
            connection without an answer
  html502   502 + a text/html "502 Bad Gateway" page, as a proxy/CDN in front would send
  empty_list     200, application/json, `[]` instead of the real answer (valid JSON, no rows)
  drop_position  200, the real answer without the position of `symbol` (e.g. "ETHUSDT"; a
            list's rows, or an account's `positions`, with that symbol): a position missing
            from one endpoint but present in the other, when `path` names one of them

A fault applies to the next `count` matching requests (None: until cleared). `api_key`
restricts it to requests carrying that X-MBX-APIKEY (so: private requests of that account),
`path` to request paths containing that substring. The first matching fault wins.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

KINDS = ("http500", "http429", "http401", "delay", "malformed", "hang", "html502", "empty_list", "drop_position")
# kinds that answer with the real handler's body, altered (see `alter_body`)
BODY_KINDS = ("malformed", "empty_list", "drop_position")
DEFAULT_SECONDS = {"delay": 1.0, "http429": 1.0, "hang": None}

_ids = itertools.count(1)


@dataclass
class Fault:
    kind: str
    count: int | None = 1  # remaining; None = until cleared
    seconds: float | None = None
    api_key: str | None = None
    path: str | None = None
    symbol: str | None = None  # drop_position: the exchange symbol to leave out
    id: int = field(default_factory=lambda: next(_ids))

    def matches(self, path: str, api_key: str | None) -> bool:
        if self.api_key is not None and api_key != self.api_key:
            return False
        return self.path is None or self.path in path

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_fault(
    kind: str,
    count: int | None = 1,
    seconds: float | None = None,
    api_key: str | None = None,
    path: str | None = None,
    symbol: str | None = None,
) -> Fault:
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(KINDS)})")
    if (kind == "drop_position") != (symbol is not None):
        raise ValueError("symbol is required by drop_position and only used by it")
    if symbol is not None and (not isinstance(symbol, str) or not symbol):
        raise ValueError("symbol must be an exchange symbol such as 'ETHUSDT'")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise ValueError("count must be a positive integer or null (until cleared)")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0):
        raise ValueError("seconds must be a number >= 0")
    if seconds is None:
        seconds = DEFAULT_SECONDS.get(kind)
    return Fault(kind, count, None if seconds is None else float(seconds), api_key, path, symbol)


def alter_body(fault: Fault, body: bytes) -> bytes:
    """The body a BODY_KINDS fault sends instead of the real answer `body` (JSON)."""
    if fault.kind == "malformed":
        return body[: max(1, len(body) // 2)]
    if fault.kind == "empty_list":
        return b"[]"
    data = json.loads(body)
    if isinstance(data, list):
        data = [row for row in data if not (isinstance(row, dict) and row.get("symbol") == fault.symbol)]
    elif isinstance(data, dict) and isinstance(data.get("positions"), list):
        data["positions"] = [row for row in data["positions"] if row.get("symbol") != fault.symbol]
    return json.dumps(data).encode()


def take_first(faults: list, matches: Callable[[Any], bool]) -> Any | None:
    """The first of `faults` that `matches`, used up by one (a fault with a `count` leaves the list
    when it reaches 0; one without stays until cleared)."""
    for fault in faults:
        if matches(fault):
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    faults.remove(fault)
            return fault
    return None


class FaultBook:
    def __init__(self) -> None:
        self.faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def take(self, path: str, api_key: str | None) -> Fault | None:
        """The first fault matching this request, used up by one."""
        return take_first(self.faults, lambda fault: fault.matches(path, api_key))

    def clear(self) -> None:
        self.faults.clear()

    def as_list(self) -> list[dict[str, Any]]:
        return [f.as_dict() for f in self.faults]


HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>CloudFront</center>\r\n</body>\r\n</html>\r\n"
)
MSG_500 = "Internal error; unable to process your request. Please try again."
MSG_429 = (
    "Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute. "
    "Please use the websocket for live updates to avoid polling the API."
)
