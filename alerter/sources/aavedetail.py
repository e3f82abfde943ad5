"""The per-asset detail of an Aave V3 or Spark position: which collateral and debt it holds, and at
what oracle price each collateral asset, alone, takes the position to liquidation.

The account figure never depends on this (alerter.sources.aave reads it from
getUserAccountData alone); the detail is read at the same block, after it, and when any of it
fails the account keeps its figure and says the detail is unavailable.

Reads, on the deployment's AaveProtocolDataProvider and oracle (aave-dao/aave-v3-origin
src/contracts/helpers/AaveProtocolDataProvider.sol, src/contracts/interfaces/IAaveOracle.sol):
- `getAllReservesTokens()` → (string symbol, address tokenAddress)[], the market's reserves
  (kept RESERVES_TTL_S: listing a reserve takes a governance vote);
- `getUserReserveData(asset, user)` → 9 words: currentATokenBalance, currentStableDebt,
  currentVariableDebt, principalStableDebt, scaledVariableDebt, stableBorrowRate, liquidityRate,
  stableRateLastUpdated, usageAsCollateralEnabled, one call per reserve;
- for the reserves the user holds: `getReserveConfigurationData(asset)` → 10 words: decimals,
  ltv, liquidationThreshold (bps), liquidationBonus, reserveFactor, usageAsCollateralEnabled,
  borrowingEnabled, stableBorrowRateEnabled, isActive, isFrozen; and the oracle's
  `getAssetPrice(asset)` (base currency, 8 decimals).

Liquidation price of collateral asset i, holding every other price fixed: the health factor is
W ÷ D with W = Σ collateralⱼ × priceⱼ × thresholdⱼ, so it reaches 1 when asset i's price has
fallen by (W − D) ÷ (collateralᵢ × thresholdᵢ). W and D are the Pool's own (W = health factor ×
debt). A user in an E-mode category has the category's threshold on its assets, which the
reserve configuration does not state: when the reserves' thresholds do not add up to W (within
AGREEMENT), every collateral asset takes the account's average threshold instead, which is
exact when they share one (an E-mode position, or a single collateral). No price at which it
liquidates (the asset may go to zero): None.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alerter.models import Position
from alerter.sources.errors import SourceError
from alerter.sources.fields import make_position
from alerter.sources.rpc import Call, Head, RpcClient, decode, words

if TYPE_CHECKING:  # alerter.sources.aave imports this module for its fetch
    from alerter.sources.aave import AccountData, Deployment

BASE_UNIT = 10**8  # prices in the base currency, USD with 8 decimals (as alerter.sources.aave)
BPS = 10_000
WAD = 10**18
MAX_UINT256 = 2**256 - 1

GET_ALL_RESERVES_TOKENS = "0xb316ff89"
GET_USER_RESERVE_DATA = "0x28dd2d01"
GET_RESERVE_CONFIGURATION_DATA = "0x3e150141"
GET_ASSET_PRICE = "0xb3596f07"
RESERVES_TTL_S = 3600.0
AGREEMENT = 0.005
MAX_RESERVES = 512


@dataclass(frozen=True)
class Reserve:
    asset: str
    symbol: str


@dataclass(frozen=True)
class Holding:
    """One reserve the user holds: amounts in the token, price in the base currency (USD)."""

    symbol: str
    asset: str
    collateral: float  # aToken balance, counted only when used as collateral
    debt: float  # stable + variable
    price: float
    liquidation_threshold_bps: int

    @property
    def collateral_value(self) -> float:
        return self.collateral * self.price

    @property
    def debt_value(self) -> float:
        return self.debt * self.price


def _address_word(address: str) -> str:
    return "0" * 24 + address[2:].lower()


def decode_reserves(raw: bytes, what: str) -> tuple[Reserve, ...]:
    """`(string symbol, address tokenAddress)[]`, decoded by eth-abi (every offset checked)."""
    (rows,) = decode(("(bytes,address)[]",), raw, what)
    if len(rows) > MAX_RESERVES or any(len(symbol) > 64 for symbol, _ in rows):
        raise SourceError("data", f"{what}: {len(rows)} reserves: not a reserve list")
    return tuple(Reserve(address.lower(), symbol.decode("utf-8", "replace")) for symbol, address in rows)


def _cached_reserves(rpc: RpcClient, deployment: Deployment) -> tuple[Reserve, ...] | None:
    held = rpc.memo.get(("aave reserves", deployment.data_provider))
    return held[1] if held and time.monotonic() - held[0] < RESERVES_TTL_S else None


async def read_holdings(rpc: RpcClient, deployment: Deployment, user: str, head: Head,
                        send: Callable[[list[Call]], Awaitable[list[bytes | SourceError]]] | None = None) -> tuple[Holding, ...]:
    """The reserves `user` holds at `head`: three rounds of calls (two while the endpoint keeps
    the reserve list, RESERVES_TTL_S), each sent by `send` (default: a batch of the endpoint's
    own; alerter.sources.blockreader.BlockReader.read_at merges them with other accounts')."""
    send = send or (lambda calls: rpc.calls(calls, head))
    where = f"{deployment.protocol} on {deployment.chain} at block {head.number}"
    reserves = _cached_reserves(rpc, deployment)
    if reserves is None:
        (raw,) = await send([Call(deployment.data_provider, GET_ALL_RESERVES_TOKENS, f"{deployment.protocol} DataProvider.getAllReservesTokens")])
        if isinstance(raw, SourceError):
            raise raw
        reserves = decode_reserves(raw, f"{deployment.protocol} DataProvider.getAllReservesTokens")
        rpc.memo[("aave reserves", deployment.data_provider)] = (time.monotonic(), reserves)
    user_calls = [Call(deployment.data_provider, GET_USER_RESERVE_DATA + _address_word(r.asset) + _address_word(user),
                       f"{deployment.protocol} DataProvider.getUserReserveData({r.symbol})") for r in reserves]
    held = []
    for reserve, raw in zip(reserves, await send(user_calls)):
        row = words(raw, 9, f"getUserReserveData({reserve.symbol}) {where}")
        a_balance, stable, variable, as_collateral = row[0], row[1], row[2], row[8]
        if a_balance or stable or variable:
            held.append((reserve, a_balance if as_collateral else 0, stable + variable))
    if not held:
        return ()
    calls = []
    for reserve, _, _ in held:
        calls.append(Call(deployment.data_provider, GET_RESERVE_CONFIGURATION_DATA + _address_word(reserve.asset),
                          f"{deployment.protocol} DataProvider.getReserveConfigurationData({reserve.symbol})"))
        calls.append(Call(deployment.oracle, GET_ASSET_PRICE + _address_word(reserve.asset), f"{deployment.protocol} Oracle.getAssetPrice({reserve.symbol})"))
    answers = await send(calls)
    holdings = []
    for i, (reserve, collateral, debt) in enumerate(held):
        config = words(answers[2 * i], 10, f"getReserveConfigurationData({reserve.symbol}) {where}")
        (price,) = words(answers[2 * i + 1], 1, f"getAssetPrice({reserve.symbol}) {where}")
        decimals, threshold = config[0], config[2]
        if decimals > 36 or threshold > BPS or price == 0:
            raise SourceError("data", f"{reserve.symbol} {where}: decimals {decimals}, threshold {threshold} bps, price {price}: not a reserve")
        unit = 10 ** decimals
        holdings.append(Holding(reserve.symbol, reserve.asset, collateral / unit, debt / unit, price / BASE_UNIT,
                                threshold if collateral else 0))
    return tuple(holdings)


def liquidation_prices(holdings: tuple[Holding, ...], data: AccountData) -> dict[str, float | None]:
    """Each collateral asset's oracle price at which, all else fixed, the health factor reaches 1."""
    collateral = [h for h in holdings if h.collateral > 0 and h.liquidation_threshold_bps > 0]
    if data.debt_base == 0 or data.health_factor_wad in (0, MAX_UINT256) or not collateral:
        return {h.asset: None for h in collateral}
    debt = data.debt_base / BASE_UNIT
    weighted = data.health_factor_wad / WAD * debt  # W, the Pool's own
    summed = sum(h.collateral_value * h.liquidation_threshold_bps / BPS for h in collateral)
    average = abs(summed - weighted) > AGREEMENT * weighted  # E-mode: the reserves' thresholds are not the user's
    prices: dict[str, float | None] = {}
    for h in collateral:
        threshold = (data.liquidation_threshold_bps if average else h.liquidation_threshold_bps) / BPS
        price = h.price - (weighted - debt) / (h.collateral * threshold)
        prices[h.asset] = price if price > 0 else None
    return prices


def collateral_positions(holdings: tuple[Holding, ...], data: AccountData) -> tuple[Position, ...]:
    """The collateral assets as the alert lists them: "WETH long · 145.34 USD · liq. 2,310.50 (−11.4 %)".
    They carry no maintenance of their own (the account's is the Pool's), so the account's
    uniform move is every collateral price falling together, the debt fixed."""
    prices = liquidation_prices(holdings, data)
    return tuple(make_position(where=f"{h.symbol} collateral", symbol=h.symbol, side="long", contracts=h.collateral,
                               entry_price=h.price, mark_price=h.price, notional=h.collateral_value, unrealized_pnl=0.0,
                               maintenance_margin=0.0, liquidation_price=prices.get(h.asset))
                 for h in holdings if h.asset in prices)
