"""Aave V3 and Spark (SparkLend, Aave V3's fork): a wallet's position, read on-chain.

The account figure is the Pool's own `getUserAccountData(address user)` (selector 0xbf92857c,
aave-dao/aave-v3-origin src/contracts/interfaces/IPool.sol), six uint256 words:
`totalCollateralBase`, `totalDebtBase`, `availableBorrowsBase` (the oracle's base currency: USD
with 8 decimals on every market listed here), `currentLiquidationThreshold` and `ltv` (basis
points, the collateral-weighted averages, E-mode's where the user is in a category) and
`healthFactor` (18 decimals; 2²⁵⁶ − 1 with no debt). A position may be liquidated when its health
factor is below 1 (ValidationLogic.HEALTH_FACTOR_LIQUIDATION_THRESHOLD = 1e18).

Normalised: the ratio is 1 ÷ health factor, taken from the word the Pool returned, never
recomputed from the totals (Aave 3.5 computes it from unrounded per-asset sums, so the totals give
other last digits). So equity = `totalCollateralBase` and maintenance = equity ÷ health factor,
which is debt ÷ liquidation threshold, the collateral value at which liquidation starts (to the
rounding of the stated threshold). With no debt the ratio is 0; with debt and no collateral ∞.
The answer must hold together, else it is blind: no debt exactly when the health factor is the
maximum, thresholds at most 100 %, collateral exactly when the threshold is not 0 (the Pool
counts only collateral with a threshold), and the health factor within the rounding of the stated
threshold (a bit under 1e-4) of collateral × threshold ÷ debt, which a word from another call or a
shifted answer fails.

The way back names both levers (`lender_trigger`): collateral to add, or debt to repay, in the
largest collateral and the largest debt asset at the oracle's prices when the per-asset detail
was read (alerter.sources.levers: "Add 1.75 WETH of collateral or repay 1,739.53 USDC of debt"),
else in USD. The repay figure is the one that also takes the repaid amount out of the collateral
(repaying with the aTokens, or selling collateral), so repaying from the wallet needs no more
than it says.

Deployments, one Pool per chain, cited from the protocol's own address book:
- Aave V3 (bgd-labs/aave-address-book @f61c97628307d387ca93a78578970fe6db885029,
  src/AaveV3<Chain>.sol: POOL, AAVE_PROTOCOL_DATA_PROVIDER, ORACLE). Ethereum is the Core market
  (the Lido and EtherFi markets have Pools of their own and are not read).
- Spark (sparkdotfi/spark-address-registry @5348de20c16dc5174cbdede70ee959dd31f99ec1,
  src/SparkLend.sol): Ethereum only, among the chains alerter knows.

Proved on recordings (tests/fixtures/real/aave/, PROVENANCE.md): Aave on Base (HF 0.998, the
protocol liquidated the position in the next block) and Aave on Ethereum (an E-mode position,
block not recorded). Spark and Aave on the other chains read the same Pool interface but have no
public recording: "not proved".
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from alerter.models import AccountSnapshot, Position
from alerter.sources import aavedetail, onchain
from alerter.sources.chains import CHAINS
from alerter.sources.errors import SourceError
from alerter.sources.fields import make_snapshot
from alerter.sources.levers import LenderFigure, Lever, largest
from alerter.sources.onchain import ChainClient
from alerter.sources.rpc import Call, Head, RpcClient, words

logger = logging.getLogger(__name__)

GET_USER_ACCOUNT_DATA = "0xbf92857c"  # getUserAccountData(address)
MAX_UINT256 = 2**256 - 1
WAD = 10**18
BASE_UNIT = 10**8  # the base currency's unit on these markets: USD with 8 decimals
BPS = 10_000
CURRENCY = "USD"
ORACLES = {"aave": "Aave's oracle", "spark": "Spark's oracle"}  # whose prices the levers are at
# the health factor against collateral × threshold ÷ debt, within the rounding of the stated
# words: the threshold is the average to a whole basis point (Aave 3.5 computes HF before that
# rounding: one basis point of the threshold, relative), and each asset's value is rounded to a
# base unit (ROUNDED_UNITS of them in all, relative to the collateral and to the debt); a wrong or
# shifted word misses by far more
ROUNDED_UNITS = 64
# the health factor below which a poll also reads the per-asset detail: 3 is a ratio of 33 %, under
# any warning level a trader sets in practice (the default is 50 %, health factor 2)
DETAIL_BELOW = 3.0


@dataclass(frozen=True)
class Deployment:
    """One protocol on one chain: the contracts alerter reads."""

    protocol: str  # "Aave V3", "Spark"
    chain: str
    pool: str
    data_provider: str
    oracle: str
    proved: bool = False  # a public recording of this Pool's answer backs it (PROVENANCE.md)


_AAVE_L2 = ("0x794a61358D6845594F94dc1DB02A252b5b4814aD", "0x243Aa95cAC2a25651eda86e80bEe66114413c43b")
AAVE: dict[str, Deployment] = {d.chain: d for d in (
    Deployment("Aave V3", "ethereum", "0x87870Bca3F3fD6335C3F4ce8392D69350B4fA4E2", "0x0a16f2FCC0D44FaE41cc54e079281D84A363bECD",
               "0x54586bE62E3c3580375aE3723C145253060Ca0C2", proved=True),
    Deployment("Aave V3", "arbitrum", *_AAVE_L2, "0xb56c2F0B653B2e0b10C9b928C8580Ac5Df02C7C7"),
    Deployment("Aave V3", "optimism", *_AAVE_L2, "0xD81eb3728a631871a7eBBaD631b5f424909f0c77"),
    Deployment("Aave V3", "polygon", *_AAVE_L2, "0xb023e699F5a33916Ea823A16485e259257cA8Bd1"),
    Deployment("Aave V3", "avalanche", *_AAVE_L2, "0xEBd36016B3eD09D4693Ed4251c67Bd858c3c7C9C"),
    Deployment("Aave V3", "base", "0xA238Dd80C259a72e81d7e4664a9801593F98d1c5", "0x0F43731EB8d45A581f4a36DD74F5f358bc90C73A",
               "0x2Cc0Fc26eD4563A5ce5e8bdcfe1A2878676Ae156", proved=True),
)}
SPARK: dict[str, Deployment] = {"ethereum": Deployment(
    "Spark", "ethereum", "0xC13e21B648A5Ee794902342038FF3aDAB66BE987", "0xFc21d6d146E6086B8359705C8b28512a983db0cb",
    "0x8105f69D9C41644c6A0803fDA7D03Aa70996cFD9")}
DEPLOYMENTS: dict[str, dict[str, Deployment]] = {"aave": AAVE, "spark": SPARK}


@dataclass(frozen=True)
class HealthFactor(LenderFigure):
    """Aave's health factor beside the ratio: "health factor 1.12"; below 1 it says what the
    protocol may do at once, with no notice: "health factor 0.998, liquidatable now". Shown
    rounded down (0.9999 is not "1.00"): two decimals from 1 up, three below. `note` follows the
    current figure where the snapshot lacks something a reader would expect (the per-asset
    detail); the levers (alerter.sources.levers) name the largest collateral and debt assets."""

    def plain(self, ratio: float) -> str:
        value = self.value(ratio)
        if math.isinf(value):
            return f"{self.name} ∞"
        places = 2 if value >= 1 else 3
        shown = f"{math.floor(value * 10**places) / 10**places:,.{places}f}"
        return f"{self.name} {shown}" + (", liquidatable now" if value < 1 else "")


HEALTH_FACTOR = HealthFactor("health factor", 1.0, inverse=True)
NO_DETAIL = replace(HEALTH_FACTOR, note="per-asset detail unavailable")


@dataclass(frozen=True)
class AccountData:
    """getUserAccountData's six words, as the Pool returned them."""

    collateral_base: int
    debt_base: int
    available_borrows_base: int
    liquidation_threshold_bps: int
    ltv_bps: int
    health_factor_wad: int

    @property
    def health_factor(self) -> float:
        return math.inf if self.health_factor_wad == MAX_UINT256 else self.health_factor_wad / WAD


def account_call(deployment: Deployment, user: str) -> Call:
    """The eth_call of `user`'s account figure on this deployment's Pool."""
    data = GET_USER_ACCOUNT_DATA + "0" * 24 + user[2:].lower()
    return Call(deployment.pool, data, f"{deployment.protocol} Pool.getUserAccountData")


def decode(result: bytes | SourceError, where: str) -> AccountData:
    """The six words, checked to hold together (module docstring); SourceError("data") if not."""
    data = AccountData(*words(result, 6, where))
    if data.liquidation_threshold_bps > BPS or data.ltv_bps > BPS:
        raise SourceError("data", f"{where}: liquidation threshold {data.liquidation_threshold_bps} or LTV {data.ltv_bps} bps "
                                  "above 100 %: not an account answer")
    if (data.collateral_base == 0) != (data.liquidation_threshold_bps == 0):
        raise SourceError("data", f"{where}: collateral {data.collateral_base} with liquidation threshold "
                                  f"{data.liquidation_threshold_bps} bps: the Pool counts collateral only where the threshold is not 0")
    no_debt = data.debt_base == 0
    if no_debt != (data.health_factor_wad == MAX_UINT256):
        raise SourceError("data", f"{where}: debt {data.debt_base} with health factor word {data.health_factor_wad}: "
                                  "the maximum means no debt, and only then")
    if not no_debt:
        expected = data.collateral_base * data.liquidation_threshold_bps / BPS / data.debt_base
        slack = expected * (1 / max(data.liquidation_threshold_bps, 1) + ROUNDED_UNITS / max(data.collateral_base, 1)
                            + ROUNDED_UNITS / data.debt_base) + 1e-12
        if (expected == 0) != (data.health_factor_wad == 0) or abs(data.health_factor - expected) > slack:
            raise SourceError("data", f"{where}: health factor {data.health_factor:.6f} disagrees with collateral × liquidation "
                                      f"threshold ÷ debt ({expected:.6f}): an inconsistent answer")
    return data


def snapshot(account_name: str, protocol_id: str, data: AccountData, fetched_at: datetime | None = None,
             positions: tuple[Position, ...] | None = (), largest_debt: Lever | None = None) -> AccountSnapshot:
    """The account scope of one position, in USD: ratio = 1 ÷ the Pool's health factor.
    `positions`: its collateral assets (alerter.sources.aavedetail); None: the detail could not be
    read, which the figure says. With them and its `largest_debt`, the figure names the levers
    in the assets: the largest collateral and the largest debt, at the oracle's prices."""
    equity = data.collateral_base / BASE_UNIT
    debt = data.debt_base / BASE_UNIT
    if data.debt_base == 0:
        maintenance = 0.0
    elif data.health_factor_wad == 0:  # debt and no collateral (decode checked it): ratio ∞, equity 0
        maintenance = debt
    else:
        maintenance = equity * (WAD / data.health_factor_wad)
    trigger = maintenance / debt if debt > 0 and maintenance > 0 else None  # ≈ 1 ÷ the liquidation threshold
    built = make_snapshot(account=account_name, exchange=protocol_id, equity=equity, maintenance_margin=maintenance,
                          wallet_balance=equity - debt, currency=CURRENCY, lender_trigger=trigger, positions=positions or (),
                          own_figure=figure(protocol_id, positions, largest_debt))
    return replace(built, fetched_at=fetched_at)


def figure(protocol_id: str, positions: tuple[Position, ...] | None, debt: Lever | None) -> HealthFactor:
    """The health factor, with the levers where the detail names them, or the note that it could not be read."""
    if positions is None:
        return NO_DETAIL
    if not positions or debt is None:
        return HEALTH_FACTOR
    top = max(positions, key=lambda p: p.notional)
    return replace(HEALTH_FACTOR, oracle=ORACLES[protocol_id], collateral=Lever(top.symbol, top.mark_price, top.notional), debt=debt)


async def fetch(rpc: RpcClient, deployment: Deployment, user: str, account_name: str, protocol_id: str,
                *, detail: bool = True) -> AccountSnapshot:
    """One position at the endpoint's newest block (refused when that block is stale), with its
    collateral assets read at the same block when `detail`; a failed detail read leaves the
    account figure as it is and says so (NO_DETAIL)."""
    head = await rpc.head()
    (result,) = await rpc.calls([account_call(deployment, user)], head)
    where = f"{deployment.protocol} Pool.getUserAccountData on {CHAINS[deployment.chain].title} at block {head.number}"
    data = decode(result, where)
    positions, debt = await read_detail(rpc, deployment, user, head, data) if detail else ((), None)
    return snapshot(account_name, protocol_id, data, datetime.fromtimestamp(rpc.clock(), UTC), positions, debt)


async def read_detail(rpc: RpcClient, deployment: Deployment, user: str, head: Head, data: AccountData,
                      send=None) -> tuple[tuple[Position, ...] | None, Lever | None]:
    """The collateral assets at `head` and the largest debt (alerter.sources.aavedetail, its calls
    sent by `send`); (None, None) when they cannot be read."""
    if data.collateral_base == 0 and data.debt_base == 0:
        return (), None
    try:
        holdings = await aavedetail.read_holdings(rpc, deployment, user, head, send)
    except SourceError as e:
        logger.info("%s on %s: per-asset detail unavailable: %s", deployment.protocol, deployment.chain, e.message)
        return None, None
    return aavedetail.collateral_positions(holdings, data), largest((h.symbol, h.price, h.debt_value) for h in holdings)


async def read_positions(rpc: RpcClient, deployment: Deployment, user: str, head: Head, data: AccountData,
                         send=None) -> tuple[Position, ...] | None:
    """The collateral assets alone (read_detail)."""
    return (await read_detail(rpc, deployment, user, head, data, send))[0]


# ---------------------------------------------------------------- the venue: client, fetch, normalise

class AaveClient(ChainClient):
    """One Aave V3 or Spark account: its Pool's figure through the endpoint's shared reader (one
    round for every account on it), then, while the health factor is below DETAIL_BELOW, its
    per-asset detail at the same block (two more rounds, merged with the other accounts' at that
    block: a healthy account costs the shared round alone, and its alerts, all-clear ones, need
    no asset list)."""

    def __init__(self, protocol_id: str, account: Any, timeout_s: float) -> None:
        super().__init__(protocol_id, account, timeout_s)
        self.deployment = DEPLOYMENTS[protocol_id][self.chain.name]

    async def read(self) -> dict:
        head, result = await self.reader.read(account_call(self.deployment, self.user))
        data = decode(result, f"{self.deployment.protocol} Pool.getUserAccountData on {self.chain.title} at block {head.number}")
        positions, debt = (), None
        if data.health_factor < DETAIL_BELOW:
            positions, debt = await read_detail(self.reader.rpc, self.deployment, self.user, head, data,
                                                lambda calls: self.reader.read_at(calls, head))
        return {"data": data, "positions": positions, "debt": debt, "block": head.number}


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Any) -> AccountSnapshot:
    info = balance["info"]
    return snapshot(account_name, exchange_id, info["data"], positions=info["positions"], largest_debt=info.get("debt"))


# ---------------------------------------------------------------- profile (kept last: what the registry and the config read)

PROFILE = onchain.profile(
    name="Aave V3",
    ids=("aave",),
    modes="a wallet's position on the Aave V3 Pool of its `chain`: the Core market on ethereum; arbitrum, optimism, polygon, "
          "base, avalanche. Proved on a recording on Base (block 30672597, liquidated the next block) and on an Ethereum answer whose block is not known; not proved on the other chains",
    figure="1 ÷ `healthFactor` of Pool.getUserAccountData(wallet), the Pool's own word; equity `totalCollateralBase`, "
           "maintenance equity ÷ health factor (the debt ÷ the liquidation threshold); per collateral asset its liquidation "
           "price from the data provider and oracle",
    currency="USD (the Aave oracle's base currency)",
    liquidation="Anyone may liquidate a position whose health factor is below 1, at once and with no notice.",
    liquidation_url="https://aave.com/docs/aave-v3/markets/health-factor",
    normalise=normalise,
    own_figure=HEALTH_FACTOR,
    connect=lambda account, timeout_s: AaveClient("aave", account, timeout_s),
    check_settings=onchain.chain_check("Aave V3", AAVE),
)
