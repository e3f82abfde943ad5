"""Run the simulator from the command line: `alerter simulate --scenario demo [--port N]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import signal
import socket
import sys
from pathlib import Path

from alerter.simulator.scenario import Scenario, ScenarioError, builtin_scenarios, load_scenario
from alerter.simulator.server import ccxt_config_for, run_simulator

DEFAULT_PORT = 8765


def inline(value) -> str:
    """A string or a table of strings as a TOML value."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def config_snippet(base_url: str, scenario: Scenario) -> str:
    """`[[accounts]]` entries for config.toml whose ccxt passthrough points at the simulator."""
    config = ccxt_config_for(base_url)
    accounts = scenario.accounts or ()
    keys = [(a.name, a.api_key) for a in accounts] or [("sim", "any-key (auto_accounts)")]
    blocks = []
    for name, api_key in keys:
        lines = [
            "[[accounts]]",
            f"name = {json.dumps(name)}",
            'exchange = "binanceusdm"',
            f"api_key = {json.dumps(api_key)}",
            'secret = "anything"  # the simulator accepts any signature',
            "",
            "[accounts.ccxt.urls.api]",
            *(f"{key} = {inline(url)}" for key, url in config["urls"]["api"].items()),
            "",
            "[accounts.ccxt.options]",
            "fetchCurrencies = false",
            "fetchMargins = false",
            'fetchMarkets = { types = ["linear"] }',
        ]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


async def serve(
    scenario_path_or_name: str | Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    auto_accounts: bool = False,
    speed: float = 1.0,
) -> None:
    """Start the simulator, print its URL and a config snippet, run until SIGINT/SIGTERM."""
    scenario = load_scenario(scenario_path_or_name)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with run_simulator(scenario, host, port, auto_accounts=auto_accounts, speed=speed) as sim:
        print(f"simulator: scenario {scenario.name!r} on {sim.url}", flush=True)
        if scenario.description:
            print(f"  {scenario.description}")
        print(f"  control API: {sim.url}/control/state  (Ctrl-C to stop)\n")
        print("# config.toml accounts for this simulator:\n")
        print(config_snippet(sim.url, scenario), flush=True)
        await stop.wait()
    print("simulator stopped", flush=True)


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535, got {text!r}")
    return port


def speed_factor(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 10, got {text!r}") from None
    if not 0 <= speed < float("inf"):  # also NaN
        raise argparse.ArgumentTypeError(f"must be a finite number of 0 (a frozen market) or more, got {text!r}")
    return speed


def main_simulate(argv: list[str] | None = None) -> int:
    from alerter.cli import Parser

    parser = Parser(prog="alerter simulate", description="Run the Binance USDⓈ-M simulator.")
    parser.add_argument(
        "--scenario", default="demo", help=f"a scenario TOML file or a built-in: {', '.join(builtin_scenarios())}"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"0 = any free port (default {DEFAULT_PORT})")
    parser.add_argument("--speed", type=speed_factor, default=1.0, help="price-path clock speed factor (default 1; 0 = frozen)")
    parser.add_argument("--auto-accounts", action="store_true", help="create an empty account for unknown API keys")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.scenario, args.host, args.port, auto_accounts=args.auto_accounts, speed=args.speed))
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except socket.gaierror as exc:  # a --host that does not resolve: bad input
        print(f"error: --host: cannot listen on {args.host!r}: {exc.strerror}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
