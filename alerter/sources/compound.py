"""Compound V3 (Comet): a wallet's borrow on one market, read on-chain.

Each Comet is one market: one base asset lent and borrowed (USDC, USDT, WETH), and collateral
assets that earn nothing. An account is liquidatable (compound-finance/comet contracts/Comet.sol,
`isLiquidatable`) when its debt, valued at the base asset's price feed, exceeds
Σ collateralᵢ × priceᵢ ÷ scaleᵢ × liquidateCollateralFactorᵢ; liquidation is `absorb`, the whole
position at once.

Reads (Comet's own functions, one block): `borrowBalanceOf(user)` (base units, interest accrued
to the block), `numAssets()` and `getAssetInfo(i)` → (offset, asset, priceFeed, scale,
borrowCollateralFactor, liquidateCollateralFactor, liquidationFactor, supplyCap), factors scaled
1e18; `collateralBalanceOf(user, asset)`; `getPrice(priceFeed)` (8 decimals); `baseScale()`,
`baseTokenPriceFeed()`; and `isLiquidatable(user)`, the protocol's verdict. The asset list and
the base token's feed are kept ASSETS_TTL_S (a governance vote changes them).

Normalised: ratio = debt value ÷ liquidation-weighted collateral value, so 100 % is exactly
`isLiquidatable`'s boundary; equity = the collateral's value, maintenance = equity × ratio, in
the market's price unit (USD on the USDC and USDT markets, ETH on the WETH markets, whose feeds
are priced in ETH). The protocol's verdict must agree with the figure (beyond rounding), else the
answer is blind; at the boundary the verdict wins. Each collateral asset is listed with the price
at which it alone takes the account to liquidation.

Deployments: compound-finance/comet @d5a30b0aaeff7755f1431e87f818990902237b03,
deployments/<network>/<market>/roots.json (`comet`). None is on Avalanche. No public recording of
these answers exists: Compound V3 is "not proved", tested on the loopback chain only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from alerter.models import AccountSnapshot
from alerter.sources import onchain
from alerter.sources.errors import SourceError
from alerter.sources.fields import make_position, make_snapshot
from alerter.sources.levers import LenderFigure, largest
from alerter.sources.onchain import ChainClient
from alerter.sources.rpc import Call, Head, RpcClient, text, words

BASE_TOKEN_PRICE_FEED = "0xe7dad6bd"
BASE_SCALE = "0x44c1e5eb"
NUM_ASSETS = "0xa46fe83b"
GET_ASSET_INFO = "0xc8c7fe6b"
COLLATERAL_BALANCE_OF = "0x5c2549ee"
GET_PRICE = "0x41976e09"
BORROW_BALANCE_OF = "0x374c49b4"
IS_LIQUIDATABLE = "0x042e02cf"
SYMBOL = "0x95d89b41"
FACTOR = 10**18
PRICE_UNIT = 10**8
ASSETS_TTL_S = 3600.0
MAX_ASSETS = 24  # Comet packs the assets a user holds in a uint16, and configures at most 24 (v2 extension)
BOUNDARY = 1e-9  # how far from 100 % the figure may be from the protocol's verdict (rounding)
LIQUIDATION_RISK = LenderFigure("liquidation risk", 1.0, percent=True, oracle="Compound's price feeds")


@dataclass(frozen=True)
class Market:
    chain: str
    name: str  # the base asset, as the config names the market: "usdc"
    comet: str
    unit: str  # the price feeds' unit: USD, or ETH on the WETH markets


MARKETS: dict[tuple[str, str], Market] = {(m.chain, m.name): m for m in (
    Market("ethereum", "usdc", "0xc3d688B66703497DAA19211EEdff47f25384cdc3", "USD"),
    Market("ethereum", "weth", "0xA17581A9E3356d9A858b789D68B4d866e593aE94", "ETH"),
    Market("ethereum", "usdt", "0x3Afdc9BCA9213A35503b077a6072F3D0d5AB0840", "USD"),
    Market("arbitrum", "usdc", "0x9c4ec768c28520B50860ea7a15bd7213a9fF58bf", "USD"),
    Market("arbitrum", "weth", "0x6f7D514bbD4aFf3BcD1140B7344b32f063dEe486", "ETH"),
    Market("base", "usdc", "0xb125E6687d4313864e53df431d5425969c15Eb2F", "USD"),
    Market("base", "weth", "0x46e6b214b524310239732D51387075E0e70970bf", "ETH"),
    Market("optimism", "usdc", "0x2e44e174f7D53F0212823acC11C01A11d58c5bCB", "USD"),
    Market("polygon", "usdc", "0xF25212E676D1F7F89Cd72fFEe66158f541246445", "USD"),
)}
CHAINS_WITH_COMET = tuple(sorted({m.chain for m in MARKETS.values()}))


@dataclass(frozen=True)
class Asset:
    index: int
    asset: str
    price_feed: str
    scale: int
    liquidate_factor: int  # liquidateCollateralFactor, 1e18 = 100 %
    symbol: str


@dataclass(frozen=True)
class Reading:
    """One account's reads at one block."""

    debt: int  # borrowBalanceOf, base units
    base_scale: int
    base_price: int  # 8 decimals
    collateral: tuple[tuple[Asset, int, int], ...]  # (asset, balance, price) for balances above 0
    liquidatable: bool  # isLiquidatable


def _address(word: int) -> str:
    return "0x" + f"{word:040x}"


def _arg(address: str) -> str:
    return "0" * 24 + address[2:].lower()


def _one(result: bytes | SourceError, what: str) -> int:
    return words(result, 1, what)[0]


async def _assets(rpc: RpcClient, market: Market, head: Head) -> tuple[str, int, tuple[Asset, ...]]:
    """(base price feed, base scale, assets) of the market, kept ASSETS_TTL_S per endpoint."""
    key = ("comet assets", market.comet)
    held = rpc.memo.get(key)
    if held and time.monotonic() - held[0] < ASSETS_TTL_S:
        return held[1]
    label = f"Compound V3 {market.name.upper()} Comet"
    feed, scale, count = await rpc.calls([Call(market.comet, BASE_TOKEN_PRICE_FEED, f"{label}.baseTokenPriceFeed"),
                                          Call(market.comet, BASE_SCALE, f"{label}.baseScale"),
                                          Call(market.comet, NUM_ASSETS, f"{label}.numAssets")], head)
    feed_word, scale_word, n = _one(feed, f"{label}.baseTokenPriceFeed"), _one(scale, f"{label}.baseScale"), _one(count, f"{label}.numAssets")
    if n > MAX_ASSETS or feed_word >= 1 << 160 or scale_word == 0:
        raise SourceError("data", f"{label} on {market.chain}: {n} assets, base scale {scale_word}: not a Comet")
    infos = await rpc.calls([Call(market.comet, GET_ASSET_INFO + f"{i:064x}", f"{label}.getAssetInfo({i})") for i in range(n)], head)
    rows = [words(info, 8, f"{label}.getAssetInfo({i})") for i, info in enumerate(infos)]
    symbols = await rpc.calls([Call(_address(row[1]), SYMBOL, f"{_address(row[1])}.symbol") for row in rows], head)
    assets = []
    for i, (row, symbol) in enumerate(zip(rows, symbols)):
        if row[3] == 0 or row[5] > FACTOR:
            raise SourceError("data", f"{label}.getAssetInfo({i}): scale {row[3]}, liquidateCollateralFactor {row[5]}: not an asset")
        try:
            name = text(symbol, f"{_address(row[1])}.symbol")
        except SourceError:
            name = _address(row[1])[:10]  # a token without a readable symbol is named by its address
        assets.append(Asset(i, _address(row[1]), _address(row[2]), row[3], row[5], name))
    value = (_address(feed_word), scale_word, tuple(assets))
    rpc.memo[key] = (time.monotonic(), value)
    return value


async def read(rpc: RpcClient, market: Market, user: str) -> Reading:
    """The account's reads at the endpoint's newest block."""
    head = await rpc.head()
    base_feed, base_scale, assets = await _assets(rpc, market, head)
    label = f"Compound V3 {market.name.upper()} Comet"
    calls = [Call(market.comet, BORROW_BALANCE_OF + _arg(user), f"{label}.borrowBalanceOf"),
             Call(market.comet, IS_LIQUIDATABLE + _arg(user), f"{label}.isLiquidatable"),
             Call(market.comet, GET_PRICE + _arg(base_feed), f"{label}.getPrice(base)")]
    for a in assets:
        calls.append(Call(market.comet, COLLATERAL_BALANCE_OF + _arg(user) + _arg(a.asset), f"{label}.collateralBalanceOf({a.symbol})"))
        calls.append(Call(market.comet, GET_PRICE + _arg(a.price_feed), f"{label}.getPrice({a.symbol})"))
    results = await rpc.calls(calls, head)
    where = f"{label} on {market.chain} at block {head.number}"
    debt, verdict, base_price = (_one(r, f"{c.label} {where}") for r, c in zip(results[:3], calls[:3]))
    if verdict > 1:
        raise SourceError("data", f"{label}.isLiquidatable {where} answered {verdict}, not a bool")
    held = []
    for i, a in enumerate(assets):
        balance = _one(results[3 + 2 * i], f"{calls[3 + 2 * i].label} {where}")
        price = _one(results[4 + 2 * i], f"{calls[4 + 2 * i].label} {where}")
        if balance:
            held.append((a, balance, price))
    return Reading(debt, base_scale, base_price, tuple(held), bool(verdict))


def snapshot(account_name: str, protocol_id: str, market: Market, reading: Reading, fetched_at: datetime | None = None) -> AccountSnapshot:
    """The account scope: ratio = debt value ÷ Σ collateral value × liquidateCollateralFactor."""
    debt_value = reading.debt * reading.base_price / reading.base_scale / PRICE_UNIT
    values = [(a, balance / a.scale, price / PRICE_UNIT) for a, balance, price in reading.collateral]
    collateral_value = sum(amount * price for _, amount, price in values)
    limit = sum(amount * price * a.liquidate_factor / FACTOR for a, amount, price in values)
    where = f"Compound V3 {market.name.upper()} on {market.chain}"
    if debt_value == 0:
        ratio = 0.0
    elif limit == 0:
        ratio = float("inf")
    else:
        ratio = debt_value / limit
    if reading.debt and not reading.liquidatable and ratio > 1 + BOUNDARY:
        raise SourceError("data", f"{where}: the debt is {ratio:.6f} × the liquidation limit, yet isLiquidatable is false: "
                                  "an inconsistent answer")
    if reading.liquidatable and ratio < 1 - BOUNDARY:
        raise SourceError("data", f"{where}: isLiquidatable is true at {ratio:.6f} × the liquidation limit: an inconsistent answer")
    if reading.liquidatable:
        ratio = max(ratio, 1.0)  # at the boundary, the protocol's verdict
    positions = []
    for a, amount, price in values:
        liq = price - (limit - debt_value) / (amount * a.liquidate_factor / FACTOR) if a.liquidate_factor and debt_value else None
        positions.append(make_position(where=f"{where} {a.symbol}", symbol=a.symbol, side="long", contracts=amount, entry_price=price,
                                       mark_price=price, notional=amount * price, unrealized_pnl=0.0, maintenance_margin=0.0,
                                       liquidation_price=liq if liq is not None and liq > 0 else None))
    if ratio == float("inf"):  # debt and no collateral: nothing to hold it
        maintenance, equity = debt_value, 0.0
    else:
        maintenance, equity = collateral_value * ratio, collateral_value
    trigger = maintenance / debt_value if debt_value > 0 and maintenance > 0 else None  # the way back: repay, or add collateral
    built = make_snapshot(account=account_name, exchange=protocol_id, equity=equity, maintenance_margin=maintenance,
                          wallet_balance=collateral_value - debt_value, currency=market.unit, positions=positions,
                          lender_trigger=trigger, own_figure=levers(market, reading, values, debt_value))
    return replace(built, fetched_at=fetched_at)


def levers(market: Market, reading: Reading, values: list, debt_value: float) -> LenderFigure:
    """The figure naming the largest collateral and the base asset borrowed, at the Comet's price feeds."""
    collateral = largest([(a.symbol, price, amount * price) for a, amount, price in values])
    debt = largest([(market.name.upper(), reading.base_price / PRICE_UNIT, debt_value)])
    return replace(LIQUIDATION_RISK, collateral=collateral, debt=debt) if collateral and debt else LIQUIDATION_RISK


async def fetch(rpc: RpcClient, market: Market, user: str, account_name: str, protocol_id: str = "compound") -> AccountSnapshot:
    return snapshot(account_name, protocol_id, market, await read(rpc, market, user), datetime.fromtimestamp(rpc.clock(), UTC))



# ---------------------------------------------------------------- the venue: client, fetch, normalise

class CometClient(ChainClient):
    """One account on one Comet (the account's `market`), read over its endpoint's session. Its
    reads are several rounds (the market's asset list first), so they are not merged with other
    accounts' rounds."""

    def __init__(self, account: Any, timeout_s: float) -> None:
        super().__init__("compound", account, timeout_s)
        self.market = MARKETS[(self.chain.name, account.market)]

    async def read(self) -> dict:
        return {"reading": await read(self.reader.rpc, self.market, self.user), "market": self.market}



def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Any) -> AccountSnapshot:
    info = balance["info"]
    return snapshot(account_name, exchange_id, info["market"], info["reading"])


# ---------------------------------------------------------------- profile (kept last: what the registry and the config read)


def check_settings(settings: Any) -> list[tuple[str, str]]:
    """A chain with a Comet, and one of its markets (`market`, the base asset)."""
    problems = onchain.chain_problems("Compound V3", settings.get("chain"), CHAINS_WITH_COMET)
    if problems:
        return problems
    chain, market = settings["chain"], settings.get("market")
    offered = sorted(name for c, name in MARKETS if c == chain)
    if market not in offered:
        said = "needs it" if market is None else f"has no {market!r} market on {chain}"
        return [("market", f"Compound V3 {said}: one of {', '.join(offered)} (the market's base asset)")]
    return []


PROFILE = onchain.profile(
    name="Compound V3 (Comet)",
    ids=("compound",),
    modes="a wallet's borrow on one Comet: its `chain` and `market` (the base asset: usdc, usdt, weth where deployed). "
          "Not proved: no public recording of its answers",
    figure="the debt (borrowBalanceOf × the base price) ÷ Σ collateral × price × liquidateCollateralFactor, "
           "checked against the Comet's isLiquidatable; per collateral asset its liquidation price",
    currency="USD (ETH on the WETH markets: their price feeds are in ETH)",
    liquidation="The Comet absorbs the whole position once its debt exceeds its collateral valued at the liquidation "
                "collateral factors (isLiquidatable).",
    liquidation_url="https://docs.compound.finance/liquidation/",
    normalise=normalise,
    own_figure=LIQUIDATION_RISK,
    connect=lambda account, timeout_s: CometClient(account, timeout_s),
    settings=("market",),
    check_settings=check_settings,
)
