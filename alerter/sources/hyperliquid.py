"""Hyperliquid perpetuals: one wallet address, no API key, the clearinghouse's own figures.

Hyperliquid reads any account by its public address: POST /info {"type": "clearinghouseState",
"user": ADDRESS} (ccxt's `fetch_balance` with `walletAddress`). That one answer holds every figure
this profile uses, all of one moment, so no positions call is made (its `fetch` reads the balance alone):
the positions are the answer's own `assetPositions`.

Liquidation (https://hyperliquid.gitbook.io/hyperliquid-docs/trading/liquidations): "the account
equity falls below the maintenance margin, which is half of the initial margin at max leverage".
- Cross: equity = `crossMarginSummary.accountValue`, maintenance = `crossMaintenanceMarginUsed`,
  so the account ratio is Hyperliquid's own crossMaintenanceMarginUsed ÷ accountValue. An answer
  without `crossMaintenanceMarginUsed` (the 2023 format) is refused (SourceError "data": no
  maintenance figure): the ratio is never guessed.
- Isolated: each position is its own scope. Its equity is the position's `marginUsed` (for an
  isolated position, the isolated margin with its unrealised PnL: `leverage.rawUsd` ∓
  `positionValue`). Hyperliquid states no per-position maintenance margin, so it is derived with
  the documented rule: `positionValue` ÷ (2 × `maxLeverage`), the position's own max leverage.
  That rule reproduces both of Hyperliquid's stated figures on the recording: Σ over the cross
  positions = `crossMaintenanceMarginUsed` (356978.7091 vs 356978.709123), and an isolated
  position's equity meets it exactly at its stated `liquidationPx` (MON, MET, to 9 digits).
  ccxt's own `maintenanceMargin` (computed at the liquidation price, ~4 % high) is not read.
  The distance to liquidation shown is Hyperliquid's `liquidationPx`.

Figures are in USDC. Not covered: spot balances, HIP-3 dex perps (other clearinghouses) and
unified/portfolio-margin accounts, whose collateral sits outside the perp clearinghouse.
Re-pricing between polls is off: the maintenance tiers (margin tables) change `maxLeverage` with
the notional, and funding moves the isolated margin; a full poll is one public request anyway.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from alerter.models import AccountSnapshot, Position
from alerter.sources.errors import SourceError
from alerter.sources.fields import make_position, make_snapshot, mapping, number, optional_number, price_or_none, shape_error
from alerter.sources.profile import FetchContext, Profile, Raw, fetch_account

SETTLE = "USDC"


def check_body(path: str, data: Any) -> None:
    """The clearinghouseState answer: an object with `assetPositions` (a list) and the two summaries.
    (The balance call makes only that request: ccxt's unified-account probe is switched off.)"""
    if not path.endswith("/info"):
        return
    if not isinstance(data, Mapping) or not isinstance(data.get("assetPositions"), list) \
            or not isinstance(data.get("crossMarginSummary"), Mapping) or not isinstance(data.get("marginSummary"), Mapping):
        raise shape_error("hyperliquid", path, "a clearinghouseState (assetPositions, crossMarginSummary, marginSummary)", data)


def symbol_of(coin: str) -> str:
    """ccxt's symbol of a main-dex perp: BTC → BTC/USDC:USDC."""
    return f"{coin}/{SETTLE}:{SETTLE}"


def parse_position(row: Any) -> Position | None:
    raw = mapping(mapping(row, "hyperliquid assetPositions[]").get("position"), "hyperliquid assetPositions[].position")
    coin = raw.get("coin")
    if not isinstance(coin, str) or not coin:
        raise SourceError("data", f"hyperliquid position: coin missing (got {coin!r})")
    where = f"hyperliquid position {coin}"
    size = number(raw.get("szi"), f"{where}.szi")
    if size == 0:
        return None
    leverage = mapping(raw.get("leverage"), f"{where}.leverage")
    mode = leverage.get("type")
    if mode not in ("cross", "isolated"):
        raise SourceError("data", f"{where}.leverage.type: expected cross or isolated, got {mode!r}")
    value = number(raw.get("positionValue"), f"{where}.positionValue")
    max_leverage = number(raw.get("maxLeverage"), f"{where}.maxLeverage")
    if max_leverage <= 0:
        raise SourceError("data", f"{where}.maxLeverage: must be > 0, got {raw.get('maxLeverage')!r}")
    rate = 1 / (2 * max_leverage)  # "half of the initial margin at max leverage"
    margin_used = number(raw.get("marginUsed"), f"{where}.marginUsed")
    contracts = abs(size)
    return make_position(
        where=where,
        symbol=symbol_of(coin),
        side="long" if size > 0 else "short",
        contracts=contracts,
        entry_price=number(raw.get("entryPx"), f"{where}.entryPx"),
        mark_price=value / contracts if value > 0 else 0.0,
        notional=value,
        unrealized_pnl=number(raw.get("unrealizedPnl"), f"{where}.unrealizedPnl"),
        maintenance_margin=value * rate,
        margin_mode=mode,
        collateral=margin_used if mode == "isolated" else None,
        liquidation_price=price_or_none(raw.get("liquidationPx"), f"{where}.liquidationPx"),
        initial_margin=margin_used,
        maintenance_rate=rate,
        currency=SETTLE,
    )


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    """`positions` is empty (no positions call): every figure is read from the one answer."""
    state = mapping(balance.get("info"), "hyperliquid clearinghouseState")
    rows = state.get("assetPositions")
    if not isinstance(rows, list):
        raise SourceError("data", "hyperliquid clearinghouseState.assetPositions: missing")
    cross = mapping(state.get("crossMarginSummary"), "hyperliquid clearinghouseState.crossMarginSummary")
    equity = number(cross.get("accountValue"), "hyperliquid crossMarginSummary.accountValue")
    maintenance = optional_number(state.get("crossMaintenanceMarginUsed"), "hyperliquid crossMaintenanceMarginUsed")
    if maintenance is None:  # checked first: it is what the whole account stands on
        raise SourceError("data", "hyperliquid clearinghouseState has no crossMaintenanceMarginUsed: no maintenance figure "
                                  "for the cross account (an old answer format?); the ratio is not guessed")
    parsed = [p for p in (parse_position(row) for row in rows) if p is not None]
    return make_snapshot(
        account=account_name,
        exchange=exchange_id,
        equity=equity,
        maintenance_margin=maintenance,
        wallet_balance=equity - sum(p.unrealized_pnl for p in parsed if not p.isolated),
        positions=parsed,
        initial_margin=optional_number(cross.get("totalMarginUsed"), "hyperliquid crossMarginSummary.totalMarginUsed") or 0.0,
        currency=SETTLE,
    )


# ---------------------------------------------------------------- profile

WALLET_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


async def fetch(ctx: FetchContext) -> Raw:
    """The balance answer (clearinghouseState) alone: it already lists the positions."""
    return await fetch_account(ctx, ())


def check_credentials(credentials: Mapping[str, str]) -> list[tuple[str, str]]:
    """A wallet address is 0x and 40 hex digits (the problem never quotes it: it identifies the trader)."""
    address = credentials.get("wallet_address")
    if address is not None and not WALLET_ADDRESS.fullmatch(address):
        return [("wallet_address", f"not a wallet address (expected 0x and 40 hex digits, got {len(address)} characters)")]
    return []


PROFILE = Profile(
    name="Hyperliquid",
    ids=("hyperliquid",),
    modes="perpetuals (main dex), cross and isolated, read by wallet address (no API key); not spot, HIP-3 dexes "
          "or unified/portfolio-margin accounts",
    figure="account: `crossMaintenanceMarginUsed` ÷ `crossMarginSummary.accountValue` of POST /info clearinghouseState; "
           "isolated: the position's `marginUsed` against `positionValue` ÷ (2 × `maxLeverage`) (Hyperliquid's "
           "documented maintenance, which meets its `liquidationPx`)",
    currency="USDC",
    liquidation="Liquidation when the account equity (cross: the cross account value; isolated: the position's margin "
                "with its unrealised PnL) falls below the maintenance margin, half of the initial margin at max leverage.",
    liquidation_url="https://hyperliquid.gitbook.io/hyperliquid-docs/trading/liquidations",
    normalise=normalise,
    check_body=check_body,
    # main-dex perps only (no spotMeta, no HIP-3 dex lists); no unified-account probe before the balance
    ccxt_defaults={"options": {"fetchMarkets": {"types": ["swap"]}, "enableUnifiedMargin": False}, "has": {"fetchCurrencies": False}},
    fetch=fetch,
    check_credentials=check_credentials,
    credentials=("wallet_address",),
    permissions="no key: the account's state is public, read by its wallet address (the address is kept out of logs and alerts all the same)",
    reprice=False,
)
