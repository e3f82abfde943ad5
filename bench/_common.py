"""Helpers shared by the bench scripts (not a benchmark itself).

A loopback JSON webhook that timestamps every POST, a fixed-width table printer, a tiny TOML
writer for config files, account builders for the simulator and the bisection that finds the
mark at which an account sits at a given margin ratio. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


# ---------------------------------------------------------------- output

def table(headers: list[str], rows: list[list], widths: list[int] | None = None) -> str:
    """A plain fixed-width table: first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = widths or [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ---------------------------------------------------------------- webhook receiver

class Webhook:
    """A JSON webhook on 127.0.0.1:<port 0>; records (monotonic arrival time, path, body)."""

    def __init__(self) -> None:
        self.received: list[tuple[float, str, object]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.monotonic()
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                with receiver.lock:
                    receiver.received.append((arrived, self.path, body))
                reply = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def since(self, index: int) -> list[tuple[float, str, object]]:
        with self.lock:
            return list(self.received[index:])

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- config files

def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def write_config(path: Path, data: dict) -> Path:
    """A config dict as TOML: top-level tables, arrays of tables, inline tables below that."""
    lines: list[str] = []
    for section, body in data.items():
        if isinstance(body, dict):
            lines.append(f"[{section}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in body.items()]
        else:
            for entry in body:
                lines.append(f"[[{section}]]")
                lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in entry.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


# ---------------------------------------------------------------- simulator accounts

def bench_account(api_key: str, wallet: float = 20_000.0) -> dict:
    """A scenario account with a couple of positions: BTC cross, ETH cross, SOL isolated."""
    return {
        "name": api_key, "api_key": api_key, "wallet_balance": wallet,
        "positions": [
            {"symbol": "BTCUSDT", "side": "long", "size": 2, "entry_price": 60_000, "margin_type": "cross", "leverage": 20},
            {"symbol": "ETHUSDT", "side": "short", "size": 5, "entry_price": 3_000, "margin_type": "cross", "leverage": 10},
            {"symbol": "SOLUSDT", "side": "long", "size": 100, "entry_price": 150, "margin_type": "isolated",
             "leverage": 10, "isolated_wallet": 1_500},
        ],
    }


def price_for(state, ratio: float, api_key: str, symbol: str = "BTCUSDT", lo: float = 1_000.0, hi: float = 60_000.0) -> float:
    """The mark of `symbol` at which the simulator's own formulas put this account's cross
    margin ratio at `ratio` (a long: the ratio falls as the price rises); bisection."""
    prices = state.prices()
    for _ in range(100):
        mid = (lo + hi) / 2
        if state.risk(api_key, {**prices, symbol: mid}).cross_margin_ratio > ratio:
            lo = mid
        else:
            hi = mid
    return hi


def wallet_for(state, ratio: float, api_key: str) -> float:
    """The cross wallet at which this account's cross margin ratio is `ratio` at current marks."""
    account = state.accounts[api_key]
    lo, hi = 0.0, 10_000_000.0
    for _ in range(100):
        mid = (lo + hi) / 2
        account.wallet_balance = mid
        if state.risk(api_key).cross_margin_ratio > ratio:
            lo = mid
        else:
            hi = mid
    account.wallet_balance = hi
    return hi


def account_config(name: str, api_key: str, ccxt: dict, **extra) -> dict:
    return {"name": name, "exchange": "binanceusdm", "api_key": api_key, "secret": f"{api_key}-secret", "ccxt": ccxt, **extra}


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (kB) of a live process from /proc/PID/status; {} when it is gone."""
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    except OSError:
        return {}
    return out
