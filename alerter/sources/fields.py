"""Reading numbers out of exchange answers, strictly, and building validated snapshots.

Exchanges send numbers as strings, sometimes as "" when a figure does not apply. An empty or
missing figure is never read as 0, and NaN/inf never pass: a normaliser either produces
numbers it can stand behind or raises SourceError(kind="data") naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from alerter.models import AccountSnapshot, OwnFigure, Pool, Position
from alerter.sources.errors import SourceError

# normalise(account_name, exchange_id, balance, positions, markets) -> AccountSnapshot
Normaliser = Callable[[str, str, dict, list, Mapping], AccountSnapshot]
# check_body(path, parsed JSON) -> None, or SourceError("data") naming the endpoint
BodyCheck = Callable[[str, Any], None]


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def mapping(value: Any, field: str) -> Mapping:
    """An object (dict) from the answer; ccxt hands on a cut or non-JSON body as a plain string."""
    if not isinstance(value, Mapping):
        shown = type(value).__name__ + (f" {value[:40]!r}…" if isinstance(value, str) else "")
        raise SourceError("data", f"{field}: expected an object, got {shown}")
    return value


def shape_error(exchange_id: str, path: str, expected: str, data: Any) -> SourceError:
    """The error for an answer that is JSON but not of the documented shape."""
    got = type(data).__name__
    if isinstance(data, Mapping):
        got = "an object with keys " + ", ".join(sorted(map(str, data))[:6]) if data else "an empty object"
    elif isinstance(data, list):
        got = f"a list of {len(data)}"
    return SourceError("data", f"{exchange_id} {path}: expected {expected}, got {got}")


def optional_number(value: Any, field: str) -> float | None:
    """A finite float, or None when the exchange left the figure out ("" or null)."""
    if is_blank(value):
        return None
    if isinstance(value, bool):
        raise SourceError("data", f"{field}: expected a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SourceError("data", f"{field}: expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise SourceError("data", f"{field}: not a finite number ({value!r})")
    return number


def number(value: Any, field: str) -> float:
    """A finite float that must be there."""
    result = optional_number(value, field)
    if result is None:
        raise SourceError("data", f"{field}: missing (got {value!r})")
    return result


def price_or_none(value: Any, field: str) -> float | None:
    """A price where "0", "" and null all mean "none" (Binance sends "0" for no liquidation price)."""
    result = optional_number(value, field)
    return result if result is not None and result > 0 else None


def first_present(data: Mapping, *keys: str) -> tuple[str, Any]:
    """The first of `keys` whose value is not blank, with its key (or the first key and None)."""
    for key in keys:
        if not is_blank(data.get(key)):
            return key, data[key]
    return keys[0], None


def make_position(
    *,
    where: str,
    symbol: str,
    side: str,
    contracts: float,
    entry_price: float,
    mark_price: float,
    notional: float,
    unrealized_pnl: float,
    maintenance_margin: float,
    margin_mode: str = "cross",
    collateral: float | None = None,
    liquidation_price: float | None = None,
    initial_margin: float | None = None,
    maintenance_rate: float | None = None,
    inverse: bool = False,
    currency: str | None = None,
) -> Position:
    """A Position, after checking what the health maths relies on. `where` names the position in errors."""
    if side not in ("long", "short"):
        raise SourceError("data", f"{where}: side must be long or short, got {side!r}")
    if margin_mode not in ("cross", "isolated"):
        raise SourceError("data", f"{where}: margin mode must be cross or isolated, got {margin_mode!r}")
    checks = {
        "contracts": contracts,
        "entry price": entry_price,
        "mark price": mark_price,
        "notional": notional,
        "unrealised PnL": unrealized_pnl,
        "maintenance margin": maintenance_margin,
    }
    for name, value in checks.items():
        if value is None or not isinstance(value, int | float) or not math.isfinite(value):
            raise SourceError("data", f"{where}: {name} is not a finite number ({value!r})")
    for name in ("contracts", "mark price", "notional"):
        if not checks[name] > 0:
            raise SourceError("data", f"{where}: {name} must be > 0, got {checks[name]!r}")
    if maintenance_margin < 0:
        raise SourceError("data", f"{where}: maintenance margin must not be negative, got {maintenance_margin!r}")
    if margin_mode == "isolated" and collateral is None:
        raise SourceError("data", f"{where}: isolated position without its margin (collateral)")
    for name, value in (("collateral", collateral), ("liquidation price", liquidation_price), ("initial margin", initial_margin), ("maintenance rate", maintenance_rate)):
        if value is not None and not math.isfinite(value):
            raise SourceError("data", f"{where}: {name} is not a finite number ({value!r})")
    return Position(
        symbol=symbol,
        side=side,
        contracts=float(contracts),
        entry_price=float(entry_price),
        mark_price=float(mark_price),
        notional=float(notional),
        unrealized_pnl=float(unrealized_pnl),
        maintenance_margin=float(maintenance_margin),
        margin_mode=margin_mode,
        collateral=collateral,
        liquidation_price=liquidation_price,
        initial_margin=initial_margin,
        maintenance_rate=maintenance_rate,
        inverse=inverse,
        currency=currency,
    )


def make_snapshot(
    *,
    account: str,
    exchange: str,
    equity: float,
    maintenance_margin: float,
    wallet_balance: float,
    positions: Iterable[Position] = (),
    initial_margin: float = 0.0,
    currency: str = "USDT",
    pools: Iterable[Pool] = (),
    lender_trigger: float | None = None,
    own_figure: OwnFigure | None = None,
) -> AccountSnapshot:
    """An AccountSnapshot after checking its account figures (and its pools'). Negative equity is
    legal (the worst case)."""
    pools = tuple(pools)
    figures = [("", "equity", equity), ("", "maintenance margin", maintenance_margin), ("", "wallet balance", wallet_balance),
               ("", "initial margin", initial_margin)]
    figures += [(f"{pool.scope} ", name, getattr(pool, field)) for pool in pools
                for name, field in (("equity", "equity"), ("maintenance margin", "maintenance_margin"))]
    for where, name, value in figures:
        if value is None or not math.isfinite(value):
            raise SourceError("data", f"{exchange} account {where}{name} is not a finite number ({value!r})")
        if name == "maintenance margin" and value < 0:
            raise SourceError("data", f"{exchange} account {where}maintenance margin must not be negative, got {value!r}")
    ordered = tuple(sorted(positions, key=lambda p: (p.symbol, p.side, p.margin_mode)))
    return AccountSnapshot(
        account=account,
        exchange=exchange,
        equity=float(equity),
        maintenance_margin=float(maintenance_margin),
        wallet_balance=float(wallet_balance),
        positions=ordered,
        initial_margin=float(initial_margin),
        currency=currency,
        pools=pools,
        lender_trigger=lender_trigger,
        own_figure=own_figure,
    )


def wallet_snapshot(*, account: str, exchange: str, wallet: float, positions: list[Position], currency: str,
                    initial_margin: float | None = None) -> AccountSnapshot:
    """A snapshot built from a wallet balance and the positions alone, for exchanges without
    account-level margin figures: equity = wallet + cross unrealised PnL, maintenance = the
    cross positions' own."""
    cross = [p for p in positions if not p.isolated]
    return make_snapshot(
        account=account,
        exchange=exchange,
        equity=wallet + sum(p.unrealized_pnl for p in cross),
        maintenance_margin=sum(p.maintenance_margin for p in cross),
        wallet_balance=wallet,
        positions=positions,
        initial_margin=sum(p.initial_margin or 0.0 for p in cross) if initial_margin is None else initial_margin,
        currency=currency,
    )


def base_quantity(position: Mapping, markets: Mapping, where: str, *, require_size: bool = False) -> float:
    """ccxt's `contracts` × the market's contract size (contracts count contracts, not coins, on OKX)."""
    contracts = number(position.get("contracts"), f"{where}: contracts")
    size = position.get("contractSize")
    if size is None:
        size = (markets.get(position.get("symbol")) or {}).get("contractSize")
    if size is None and require_size:
        raise SourceError("data", f"{where}: unknown contract size (market not loaded?)")
    size = 1.0 if size is None else number(size, f"{where}: contractSize")
    return abs(contracts) * size
