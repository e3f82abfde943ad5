"""Scenarios: initial accounts, initial mark prices and a price path, loaded from TOML.

    name = "example"
    description = "one line"

    [prices]                      # initial marks; unlisted known symbols keep DEFAULT_PRICES
    BTCUSDT = 60000

    [[accounts]]
    name = "main"
    api_key = "main-key"
    wallet_balance = 10000        # USDT cross wallet (isolated wallets come on top)

    [[accounts.positions]]
    symbol = "BTCUSDT"
    size = 0.5                    # signed (short < 0), or positive with side = "long"|"short"
    entry_price = 60000
    margin_type = "cross"         # or "isolated" (then isolated_wallet = USDT locked in it)
    leverage = 20

    [[accounts.loans]]            # Binance flexible loans (alerter.simulator.loans)
    loan_coin = "USDT"
    debt = 30000
    collateral_coin = "BTC"
    collateral_amount = 1
    margin_call_ltv = 0.75
    liquidation_ltv = 0.83

    [[path]]                      # keyframes, linear in between, per symbol
    at = 90                       # seconds since the scenario (re)started
    prices = { BTCUSDT = 42000 }

Built-in scenarios live in alerter/simulator/scenarios/*.toml; `load_scenario("demo")` loads one.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from alerter.simulator.loans import Loan, parse_loans
from alerter.simulator.market import CROSS, ISOLATED, Account, Keyframe, Position
from alerter.simulator.symbols import SYMBOLS

DEFAULT_PRICES: dict[str, float] = {"BTCUSDT": 60000.0, "ETHUSDT": 3000.0, "SOLUSDT": 150.0}


class ScenarioError(ValueError):
    """A scenario file or dict is invalid; the message lists every problem with its key path."""


@dataclass(frozen=True)
class AccountSpec:
    api_key: str
    name: str
    wallet_balance: float = 0.0
    positions: tuple[Position, ...] = ()
    loans: tuple[Loan, ...] = ()

    def build(self) -> Account:
        return Account(self.api_key, self.name, self.wallet_balance, list(self.positions), self.loans)


@dataclass(frozen=True)
class Scenario:
    name: str = "custom"
    description: str = ""
    prices: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    accounts: tuple[AccountSpec, ...] = ()
    path: tuple[Keyframe, ...] = ()

    def build_accounts(self) -> dict[str, Account]:
        """Fresh mutable accounts, keyed by API key."""
        return {spec.api_key: spec.build() for spec in self.accounts}


def builtin_scenarios() -> list[str]:
    folder = resources.files("alerter.simulator") / "scenarios"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def load_scenario(source: str | Path) -> Scenario:
    """A built-in scenario by name ("demo") or a TOML file by path."""
    if isinstance(source, str) and source in builtin_scenarios():
        text = (resources.files("alerter.simulator") / "scenarios" / f"{source}.toml").read_text("utf-8")
        return scenario_from_toml(text, default_name=source)
    from alerter.textfile import read_text_file

    path = Path(source)
    try:
        text = read_text_file(path)
    except OSError as exc:
        known = ", ".join(builtin_scenarios())
        raise ScenarioError(f"cannot read scenario {str(source)!r} ({exc.strerror}); built-ins: {known}") from None
    except ValueError as exc:  # a device, a FIFO, too large, not UTF-8
        raise ScenarioError(f"scenario {str(source)!r} {exc}") from None
    return scenario_from_toml(text, default_name=path.stem)


def scenario_from_toml(text: str, default_name: str = "custom") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"invalid TOML: {exc}") from exc
    except RecursionError:  # thousands of nested arrays or inline tables
        raise ScenarioError("invalid TOML: nested too deeply") from None
    return parse_scenario(data, default_name=default_name)


def parse_scenario(data: dict[str, Any], default_name: str = "custom") -> Scenario:
    """Validate a scenario dict (the TOML structure); raises ScenarioError listing all problems."""
    errors: list[str] = []
    _check_keys(data, {"name", "description", "prices", "accounts", "path"}, "", errors)
    prices = dict(DEFAULT_PRICES)
    prices.update(_parse_prices(data.get("prices", {}), "prices", errors))
    accounts = tuple(
        spec
        for i, raw in enumerate(_as_list(data.get("accounts", []), "accounts", errors))
        if (spec := _parse_account(raw, f"accounts[{i}]", errors)) is not None
    )
    keys = [a.api_key for a in accounts]
    for key in sorted({k for k in keys if keys.count(k) > 1}):
        errors.append(f"accounts: api_key {key!r} is used more than once")
    path = []
    for i, raw in enumerate(_as_list(data.get("path", []), "path", errors)):
        where = f"path[{i}]"
        if not isinstance(raw, dict):
            errors.append(f"{where}: expected a table")
            continue
        _check_keys(raw, {"at", "prices"}, where, errors)
        at = _number(raw.get("at"), f"{where}.at", errors)
        if at is not None and at < 0:
            errors.append(f"{where}.at: must be >= 0")
        path.append(Keyframe(at or 0.0, _parse_prices(raw.get("prices", {}), f"{where}.prices", errors)))
    if errors:
        raise ScenarioError("invalid scenario:\n  " + "\n  ".join(errors))
    return Scenario(
        name=str(data.get("name", default_name)),
        description=str(data.get("description", "")),
        prices=prices,
        accounts=accounts,
        path=tuple(sorted(path, key=lambda kf: kf.at)),
    )


def parse_positions(raw: Any, where: str = "positions") -> tuple[Position, ...]:
    """Positions from a list of dicts (scenario or control API); raises ScenarioError."""
    errors: list[str] = []
    positions = tuple(
        p for i, item in enumerate(_as_list(raw, where, errors)) if (p := _parse_position(item, f"{where}[{i}]", errors))
    )
    if errors:
        raise ScenarioError("invalid positions:\n  " + "\n  ".join(errors))
    return positions


def _parse_account(raw: Any, where: str, errors: list[str]) -> AccountSpec | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a table")
        return None
    _check_keys(raw, {"name", "api_key", "wallet_balance", "positions", "loans"}, where, errors)
    api_key = raw.get("api_key")
    if not isinstance(api_key, str) or not api_key:
        errors.append(f"{where}.api_key: required, a non-empty string")
        api_key = ""
    wallet = _number(raw.get("wallet_balance", 0.0), f"{where}.wallet_balance", errors)
    positions = [
        p
        for i, item in enumerate(_as_list(raw.get("positions", []), f"{where}.positions", errors))
        if (p := _parse_position(item, f"{where}.positions[{i}]", errors))
    ]
    symbols = [p.symbol for p in positions]
    for symbol in sorted({s for s in symbols if symbols.count(s) > 1}):
        errors.append(f"{where}.positions: {symbol} appears twice (one-way mode holds one position per symbol)")
    loans = parse_loans(raw.get("loans", []), f"{where}.loans", errors, SYMBOLS)
    return AccountSpec(api_key, str(raw.get("name", api_key)), wallet or 0.0, tuple(positions), loans)


def _parse_position(raw: Any, where: str, errors: list[str]) -> Position | None:
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a table")
        return None
    allowed = {"symbol", "size", "side", "entry_price", "margin_type", "leverage", "isolated_wallet"}
    _check_keys(raw, allowed, where, errors)
    before = len(errors)
    symbol = raw.get("symbol")
    if symbol not in SYMBOLS:
        errors.append(f"{where}.symbol: {symbol!r} is not one of {', '.join(SYMBOLS)}")
    size = _number(raw.get("size"), f"{where}.size", errors)
    side = raw.get("side")
    if side is not None:
        if side not in ("long", "short"):
            errors.append(f"{where}.side: must be 'long' or 'short'")
        elif size is not None and size < 0:
            errors.append(f"{where}.size: give a positive size with side, or a signed size without it")
        elif size is not None and side == "short":
            size = -size
    entry = _number(raw.get("entry_price"), f"{where}.entry_price", errors)
    if entry is not None and entry <= 0:
        errors.append(f"{where}.entry_price: must be > 0")
    margin_type = raw.get("margin_type", CROSS)
    if margin_type not in (CROSS, ISOLATED):
        errors.append(f"{where}.margin_type: must be 'cross' or 'isolated'")
    leverage = raw.get("leverage", 20)
    if not isinstance(leverage, int) or isinstance(leverage, bool) or leverage < 1:
        errors.append(f"{where}.leverage: must be an integer >= 1")
    wallet = _number(raw.get("isolated_wallet", 0.0), f"{where}.isolated_wallet", errors)
    if margin_type == CROSS and wallet:
        errors.append(f"{where}.isolated_wallet: only for margin_type = 'isolated'")
    if len(errors) > before:
        return None
    return Position(symbol, size, entry, margin_type, leverage, wallet or 0.0)


def _parse_prices(raw: Any, where: str, errors: list[str]) -> dict[str, float]:
    if not isinstance(raw, dict):
        errors.append(f"{where}: expected a table of SYMBOL = price")
        return {}
    result = {}
    for symbol, value in raw.items():
        if symbol not in SYMBOLS:
            errors.append(f"{where}.{symbol}: unknown symbol (known: {', '.join(SYMBOLS)})")
            continue
        price = _number(value, f"{where}.{symbol}", errors)
        if price is not None and price <= 0:
            errors.append(f"{where}.{symbol}: must be > 0")
        elif price is not None:
            result[symbol] = price
    return result


def _number(value: Any, where: str, errors: list[str]) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errors.append(f"{where}: required, a number")
        return None
    return float(value)


def _as_list(value: Any, where: str, errors: list[str]) -> list[Any]:
    if not isinstance(value, list):
        errors.append(f"{where}: expected a list")
        return []
    return value


def _check_keys(raw: dict[str, Any], allowed: set[str], where: str, errors: list[str]) -> None:
    for key in sorted(set(raw) - allowed):
        errors.append(f"{where + '.' if where else ''}{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
