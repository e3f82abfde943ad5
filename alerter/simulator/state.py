"""The live simulated market: accounts keyed by API key, market-wide prices on a clock.

Prices follow the scenario's path on an injectable clock (`clock()` → seconds, monotonic),
scaled by `speed`. A price set by hand (`set_prices`) pins that symbol: it stays there and
ignores the path until `unpin()` or a reset; other symbols keep following the path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from alerter.simulator.market import Account, AccountRisk, Position, assess_account, interpolate
from alerter.simulator.scenario import Scenario
from alerter.simulator.symbols import SYMBOLS, SymbolSpec


class SimState:
    def __init__(
        self,
        scenario: Scenario,
        *,
        clock: Callable[[], float] = time.monotonic,
        speed: float = 1.0,
        auto_accounts: bool = False,
    ) -> None:
        self.symbols: dict[str, SymbolSpec] = SYMBOLS
        self.clock = clock
        self.speed = speed
        self.auto_accounts = auto_accounts
        self.load(scenario)

    # --- scenario and clock -------------------------------------------------------------
    def load(self, scenario: Scenario) -> None:
        """Replace accounts, prices and path with the scenario's; restart its clock."""
        self.scenario = scenario
        self.accounts: dict[str, Account] = scenario.build_accounts()
        self.pins: dict[str, float] = {}
        self._started = self.clock()
        self._offset = 0.0

    def reset(self) -> None:
        self.load(self.scenario)

    @property
    def elapsed(self) -> float:
        """Seconds along the price path."""
        return (self.clock() - self._started) * self.speed + self._offset

    def set_elapsed(self, seconds: float) -> None:
        self._offset = seconds - (self.clock() - self._started) * self.speed

    def set_speed(self, speed: float) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        now = self.elapsed
        self.speed = speed
        self.set_elapsed(now)

    # --- prices -------------------------------------------------------------------------
    def prices(self) -> dict[str, float]:
        current = interpolate(self.scenario.path, self.scenario.prices, self.elapsed)
        current.update(self.pins)
        return current

    def set_prices(self, prices: dict[str, float]) -> None:
        for symbol, price in prices.items():
            if symbol not in self.symbols:
                raise ValueError(f"unknown symbol {symbol!r} (known: {', '.join(self.symbols)})")
            if not isinstance(price, (int, float)) or isinstance(price, bool) or not price > 0 or math.isinf(price):
                raise ValueError(f"{symbol}: price must be a positive number")
        self.pins.update({s: float(p) for s, p in prices.items()})

    def unpin(self, symbols: Iterable[str] | None = None) -> None:
        """Let pinned symbols follow the path again (all when `symbols` is None)."""
        if symbols is None:
            self.pins.clear()
        for symbol in symbols or ():
            self.pins.pop(symbol, None)

    # --- accounts -----------------------------------------------------------------------
    def account(self, api_key: str) -> Account | None:
        """The account for an API key; None if unknown (auto-created when auto_accounts)."""
        if api_key not in self.accounts and self.auto_accounts:
            self.accounts[api_key] = Account(api_key, api_key)
        return self.accounts.get(api_key)

    def set_account(
        self,
        api_key: str,
        *,
        name: str | None = None,
        wallet_balance: float | None = None,
        positions: Iterable[Position] | None = None,
    ) -> Account:
        """Create or update an account; positions given replace all of its positions."""
        account = self.accounts.setdefault(api_key, Account(api_key, name or api_key))
        if name is not None:
            account.name = name
        if wallet_balance is not None:
            account.wallet_balance = float(wallet_balance)
        if positions is not None:
            new = list(positions)
            symbols = [p.symbol for p in new]
            if len(set(symbols)) != len(symbols):
                raise ValueError("one position per symbol (one-way mode)")
            unknown = [s for s in symbols if s not in self.symbols]
            if unknown:
                raise ValueError(f"unknown symbols: {', '.join(unknown)}")
            account.positions = new
        return account

    def risk(self, api_key: str, prices: dict[str, float] | None = None) -> AccountRisk:
        account = self.accounts[api_key]
        return assess_account(account, prices or self.prices(), self.symbols)

    # --- a JSON view for the control API ------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        prices = self.prices()
        return {
            "scenario": self.scenario.name,
            "elapsed": self.elapsed,
            "speed": self.speed,
            "prices": prices,
            "pinned": sorted(self.pins),
            "accounts": {key: _account_view(acct, self.risk(key, prices)) for key, acct in self.accounts.items()},
        }


def _account_view(account: Account, risk: AccountRisk) -> dict[str, Any]:
    return {
        "name": account.name,
        "wallet_balance": account.wallet_balance,
        "total_wallet_balance": risk.total_wallet_balance,
        "margin_balance": risk.margin_balance,
        "total_maint_margin": risk.total_maint_margin,
        "cross_margin_balance": risk.cross_margin_balance,
        "cross_maint_margin": risk.cross_maint_margin,
        "cross_margin_ratio": None if math.isinf(risk.cross_margin_ratio) else risk.cross_margin_ratio,
        "positions": [
            {
                "symbol": r.position.symbol,
                "size": r.position.size,
                "entry_price": r.position.entry_price,
                "margin_type": r.position.margin_type,
                "leverage": r.position.leverage,
                "isolated_wallet": r.position.isolated_wallet,
                "mark_price": r.mark_price,
                "notional": r.notional,
                "unrealized_pnl": r.unrealized_pnl,
                "maint_margin": r.maint_margin,
                "isolated_margin": r.isolated_margin,
                "margin_ratio": None if r.margin_ratio is None or math.isinf(r.margin_ratio) else r.margin_ratio,
                "liquidation_price": r.liquidation_price,
            }
            for r in risk.positions
        ],
    }
