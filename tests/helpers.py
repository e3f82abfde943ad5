"""Helpers shared by test modules (not fixtures: those live in conftest.py).

- `simulator_thread`: the exchange simulator on an event loop of its own thread, so that CLI
  subprocesses (and blocking test code) can reach it while the test runs.
- `inline_toml` / `to_toml`: write a config dict as the TOML file a user would write.
- `DaemonRuns`: `python -m alerter run` as a subprocess (restartable), logs in files.
- `query` / `wait_until`: read the daemon's SQLite file read-only while it runs.
- `harness` / `Harness`: the simulator and a daemon in-process on a test clock; `step()` moves
  the price to a margin ratio, polls and delivers. `SCENARIO`, `price_for`, `titles`, `run`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class SimulatorThread:
    """A running simulator (`.sim`) and `.call(fn, *args)`, which runs `fn` on the simulator's
    own event loop and returns its result (the simulator's state is not meant for two threads)."""

    def __init__(self, sim, loop: asyncio.AbstractEventLoop) -> None:
        self.sim = sim
        self.loop = loop

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        async def run() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)


@contextmanager
def simulator_thread(scenario: Any, *, speed: float = 1.0) -> Iterator[SimulatorThread]:
    """`run_simulator(scenario, speed=speed)` in a daemon thread, for the `with` block."""
    from alerter.simulator import run_simulator

    ready, box = threading.Event(), {}

    async def serve() -> None:
        async with run_simulator(scenario, speed=speed) as sim:
            box["sim"], box["stop"] = sim, asyncio.Event()
            ready.set()
            await box["stop"].wait()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True, name="simulator")
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the simulator did not start within 10 s")
    try:
        yield SimulatorThread(box["sim"], loop)
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(10)
        if not thread.is_alive():
            loop.close()


def toml_key(key: Any) -> str:
    key = str(key)
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def inline_toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(k)} = {inline_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(inline_toml(v) for v in value) + "]"
    return json.dumps(value)  # strings, numbers and booleans are spelled alike


def to_toml(config: dict[str, Any]) -> str:
    """A config dict as a TOML file: top-level tables as [sections], lists of tables as
    [[arrays]], anything nested deeper inline."""
    lines: list[str] = []
    for key, value in config.items():
        if not isinstance(value, dict | list):
            lines.append(f"{toml_key(key)} = {inline_toml(value)}")
    for key, value in config.items():
        if isinstance(value, dict):
            lines.append(f"\n[{toml_key(key)}]")
            lines += [f"{toml_key(k)} = {inline_toml(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for entry in value:
                lines.append(f"\n[[{toml_key(key)}]]")
                lines += [f"{toml_key(k)} = {inline_toml(v)}" for k, v in entry.items()]
        elif isinstance(value, list):
            lines.insert(0, f"{toml_key(key)} = {inline_toml(value)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the daemon as a subprocess

class DaemonRuns:
    """Starts `alerter run --config PATH` incarnations, each with its own stdout/stderr files
    (`logs/run-N.out`, `logs/run-N.err`), outside systemd (no journald/notify variables)."""

    def __init__(self, config: Path, logs: Path, env: dict[str, str] | None = None) -> None:
        self.config, self.logs = config, logs
        logs.mkdir(exist_ok=True)
        self.count = 0
        self.env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
        self.env.update(env or {})

    def start(self) -> subprocess.Popen:
        self.count += 1
        with open(self.stderr(), "wb") as err, open(self.stdout(), "wb") as out:
            return subprocess.Popen([sys.executable, "-m", "alerter", "run", "--config", str(self.config)],
                                    stdout=out, stderr=err, env=self.env)

    def stderr(self, n: int | None = None) -> Path:
        return self.logs / f"run-{n or self.count}.err"

    def stdout(self, n: int | None = None) -> Path:
        return self.logs / f"run-{n or self.count}.out"

    def ready(self) -> bool:
        """The current incarnation has scheduled its polls (it logged "watching N account(s)")."""
        return "watching" in self.stderr().read_text(errors="replace")

    def wait_ready(self, proc: subprocess.Popen, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            assert proc.poll() is None, f"the daemon exited by itself ({proc.returncode})\n{self.tail()}"
            assert time.monotonic() < deadline, f"the daemon did not start in {timeout:g} s\n{self.tail()}"
            time.sleep(0.01)

    def tail(self, runs: int = 3, chars: int = 1500) -> str:
        parts = []
        for n in range(max(1, self.count - runs + 1), self.count + 1):
            text = self.stderr(n).read_text(errors="replace") if self.stderr(n).exists() else ""
            parts.append(f"--- run {n} stderr (tail) ---\n{text[-chars:]}")
        return "\n".join(parts)


def query(db: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Rows from the SQLite file, opened read-only (safe while the daemon writes it)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def until(condition, timeout: float) -> float:
    """Seconds until `condition()` holds; fails the test after `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def wait_until(predicate: Callable[[], Any], timeout: float, what: Callable[[], str] | str = "") -> Any:
    """Poll `predicate` every 50 ms until it returns something truthy (returned) or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what() if callable(what) else what}")
        time.sleep(0.05)


# ---------------------------------------------------------------- the daemon, in-process

SCENARIO = {
    "name": "test",
    "prices": {"BTCUSDT": 60_000, "ETHUSDT": 3_000},
    "accounts": [
        {"name": "main", "api_key": "main-key", "wallet_balance": 10_000,
         "positions": [{"symbol": "BTCUSDT", "side": "long", "size": 2, "entry_price": 60_000, "margin_type": "cross", "leverage": 20}]},
        {"name": "second", "api_key": "second-key", "wallet_balance": 50_000,
         "positions": [{"symbol": "ETHUSDT", "side": "long", "size": 10, "entry_price": 3_000, "margin_type": "cross", "leverage": 5}]},
    ],
}
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def advance(self, **kw):
        self.now += timedelta(**kw)


def price_for(sim, ratio, api_key="main-key", symbol="BTCUSDT"):
    """The mark at which the simulator's own formulas give this cross margin ratio (bisection)."""
    lo, hi = 1_000.0, 60_000.0  # a long: the ratio falls as the price rises
    for _ in range(100):
        mid = (lo + hi) / 2
        if sim.state.risk(api_key, {**sim.state.prices(), symbol: mid}).cross_margin_ratio > ratio:
            lo = mid
        else:
            hi = mid
    return hi


class Harness:
    def __init__(self, sim, settings, clock):
        self.sim, self.settings, self.clock = sim, settings, clock
        self.daemon = self.start()

    def start(self):
        from alerter.runtime import build_daemon

        daemon = build_daemon(self.settings, clock=self.clock)
        for source in daemon.sources.values():
            source.exchange.timeout_on_exit = 0
        return daemon

    async def restart(self):
        await self.close()
        self.daemon = self.start()

    async def close(self):
        await asyncio.gather(*(s.close() for s in self.daemon.sources.values()))
        await self.daemon.store_thread.close()

    async def step(self, ratio=None, minutes=1, account="main"):
        """Move BTC so `main` sits at `ratio`, advance the clock, poll, deliver."""
        self.clock.advance(minutes=minutes)
        if ratio is not None:
            self.sim.set_prices({"BTCUSDT": price_for(self.sim, ratio)})
        alerts = await self.daemon.pipeline.poll_account(account)
        await self.daemon.delivery.deliver_once()
        return alerts


@asynccontextmanager
async def harness(tmp_path, channels, scenario=SCENARIO, **daemon):
    """The simulator playing `scenario` and a daemon polling it, closed on the way out."""
    from alerter.simulator import run_simulator

    async with run_simulator(scenario) as sim:
        h = Harness(sim, settings_for(sim, tmp_path, channels, **daemon), Clock())
        try:
            yield h
        finally:
            await h.close()


def settings_for(sim, tmp_path, channels, **daemon):
    from alerter.config import build_settings

    ccxt = sim.ccxt_config()
    return build_settings({
        "daemon": {"database": str(tmp_path / "alerter.db"), "request_timeout": "3s", **daemon},
        "repeat": {"warning": "6h", "call": "30m", "critical": "5m"},
        "accounts": [
            {"name": "main", "exchange": "binanceusdm", "api_key": "main-key", "secret": "main-secret", "ccxt": ccxt},
            {"name": "second", "exchange": "binanceusdm", "api_key": "second-key", "secret": "second-secret", "ccxt": ccxt},
        ],
        "channels": channels,
    })


def run(coro):
    return asyncio.run(coro)


def titles(webhook):
    return [b["title"] for b in webhook.bodies]


# ---------------------------------------------------------------- on-chain accounts on the loopback chain

ONCHAIN_WALLET = "0xe9526c721d489464079acb7568c1304af8687298"  # the recorded Base position's
MORPHO_MARKET = "0x" + "e7" * 32
RPC_KEY = "/v2/RPCKEY0123456789abcdef"  # the endpoint's API key in its path: never to be seen


def onchain_config(tmp_path, url: str, **account) -> dict:
    """The settings of one on-chain account `lend` (Aave on Base unless `account` says otherwise)."""
    fields = {"name": "lend", "exchange": "aave", "chain": "base", "wallet_address": ONCHAIN_WALLET, "rpc_url": url + RPC_KEY,
              **account}
    return {"daemon": {"database": str(tmp_path / "alerter.db")}, "accounts": [fields]}


async def poll_on_chain(tmp_path, setup: Callable, before_each: list[Callable], **account) -> tuple[list, dict, str]:
    """The daemon's own pipeline polls `lend` on the loopback chain once per entry of `before_each`
    (run on the chain before its poll), after `setup`: (each poll's alerts, the stored states,
    the chain's URL)."""
    from alerter.config import build_settings
    from alerter.runtime import build_daemon, preflight
    from alerter.simulator.chain import run_chain
    from alerter.sources.chains import CHAINS

    async with run_chain(CHAINS[account.get("chain", "base")]) as chain:
        setup(chain)
        settings = build_settings(onchain_config(tmp_path, chain.url, **account))
        preflight(settings)
        daemon = build_daemon(settings)
        try:
            polls = []
            for before in before_each:
                before(chain)
                polls.append(await daemon.pipeline.poll_account("lend"))
            return polls, daemon.store.load_states("lend"), chain.url
        finally:
            await asyncio.gather(*(s.close() for s in daemon.sources.values()))
            daemon.store.close()


def serve_comet_and_morpho(chain) -> None:
    """1 WETH against 2,000 USDC, on Base's USDC Comet and in a Morpho Blue WETH/USDC market."""
    from alerter.simulator.chain import CometPosition, MorphoPosition
    from alerter.sources import compound

    chain.comet(compound.MARKETS[("base", "usdc")].comet, CometPosition(ONCHAIN_WALLET, collateral_eth=1.0, debt_usdc=2000.0))
    chain.morpho(MorphoPosition(ONCHAIN_WALLET, MORPHO_MARKET, 1.0, 2000.0))
