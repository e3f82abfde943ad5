"""A Binance USDⓈ-M futures simulator that the real ccxt binanceusdm class can talk to.

    from alerter.simulator import run_simulator
    async with run_simulator("demo") as sim:   # port 0 by default
        config = sim.ccxt_config()              # {"urls": {"api": {...}}, "options": {...}}

Modules: symbols (contracts, brackets), market (pure formulas), scenario (TOML loader),
state (live prices + accounts), binance_api (exchange endpoints), faults, control (/control/),
server (app, run_simulator, ccxt_config_for), standalone (serve, main_simulate).
No ccxt import here: the simulator is a server and must start fast.
"""

from alerter.simulator.scenario import Scenario, ScenarioError, builtin_scenarios, load_scenario
from alerter.simulator.server import Simulator, ccxt_config_for, run_simulator
from alerter.simulator.standalone import main_simulate, serve

__all__ = [
    "Scenario",
    "ScenarioError",
    "Simulator",
    "builtin_scenarios",
    "ccxt_config_for",
    "load_scenario",
    "main_simulate",
    "run_simulator",
    "serve",
]
