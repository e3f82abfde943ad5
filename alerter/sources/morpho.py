"""Morpho Blue: a wallet's borrows in the markets it names, read on-chain; each market a scope.

Every Morpho Blue market is isolated: one collateral token, one loan token, one oracle, one LLTV.
A position is healthy (morpho-org/morpho-blue src/Morpho.sol, `_isHealthy`) while
  borrowed ≤ collateral × price ÷ 1e36 × lltv ÷ 1e18   (mulDivDown, then wMulDown)
with borrowed = borrowShares converted to assets rounding up (SharesMathLib.toAssetsUp, with its
virtual shares 1e6 and virtual assets 1). So the ratio is borrowed ÷ that maximum: 100 % is the
protocol's own boundary. Morpho liquidates a position past it, partly or wholly, without notice.

Reads at one block: `idToMarketParams(id)` → (loanToken, collateralToken, oracle, irm, lltv),
and each token's `decimals()` and `symbol()`, kept (a market's parameters are immutable);
`position(id, user)` → (supplyShares, borrowShares, collateral); `market(id)` →
(totalSupplyAssets, totalSupplyShares, totalBorrowAssets, totalBorrowShares, lastUpdate, fee);
the market oracle's `price()` (1e36-scaled, loan token units per collateral token unit).
`market(id)` states the totals as of the market's last interaction; the interest since then is
added as Morpho itself would accrue it at the block (MorphoBalancesLib.expectedMarketBalances:
the market IRM's `borrowRateView(marketParams, market)`, compounded by MathLib.wTaylorCompounded
over the seconds since `lastUpdate`), one more batch when a borrowed market has not been touched
in that block.

Each market is a pool ("market:0x1234abcd", in its loan token), the account the worst of them.
Its collateral is listed with the oracle price (loan token per collateral token) at which the
position reaches the boundary.

Deployments (morpho-org/sdks @5f297297, packages/blue-sdk/src/addresses.ts): one Morpho contract
per chain, none on Avalanche. No public recording of these answers exists: Morpho Blue is "not
proved", tested on the loopback chain only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from alerter.models import Pool
from alerter.sources import onchain
from alerter.sources.errors import SourceError
from alerter.sources.fields import make_position, make_snapshot
from alerter.sources.levers import LenderFigure, Lever
from alerter.sources.onchain import ChainClient
from alerter.sources.rpc import Call, Head, RpcClient, text, words

POSITION = "0x93c52062"
MARKET = "0x5c60e39a"
ID_TO_MARKET_PARAMS = "0x2c3c9157"
PRICE = "0xa035b1fe"
BORROW_RATE_VIEW = "0x8c00bf6b"  # borrowRateView((address,address,address,address,uint256),(uint128 ×6)), on the market's IRM
DECIMALS = "0x313ce567"
SYMBOL = "0x95d89b41"
ORACLE_PRICE_SCALE = 10**36
WAD = 10**18
VIRTUAL_SHARES = 10**6
VIRTUAL_ASSETS = 1
LOAN_USED = LenderFigure("LLTV used", 1.0, percent=True, oracle="the market's oracle")
MARKET_ID = re.compile(r"^0x[0-9a-fA-F]{64}$")

MORPHO: dict[str, str] = {
    "ethereum": "0xBBBBBbbBBb9cC5e90e3b3Af64bdAF62C37EEFFCb",
    "base": "0xBBBBBbbBBb9cC5e90e3b3Af64bdAF62C37EEFFCb",
    "arbitrum": "0x6c247b1F6182318877311737BaC0844bAa518F5e",
    "optimism": "0xce95AfbB8EA029495c66020883F87aaE8864AF92",
    "polygon": "0x1bF0c2541F820E775182832f06c0B7Fc27A25f67",
}


def market_scope(market_id: str) -> str:
    return f"market:{market_id[:10].lower()}"


@dataclass(frozen=True)
class MarketParams:
    market_id: str
    loan: str
    collateral: str
    oracle: str
    irm: str
    lltv: int
    loan_decimals: int
    collateral_decimals: int
    loan_symbol: str
    collateral_symbol: str


@dataclass(frozen=True)
class MarketReading:
    params: MarketParams
    borrow_shares: int
    collateral: int
    total_borrow_assets: int
    total_borrow_shares: int
    price: int


def _arg(address: str) -> str:
    return "0" * 24 + address[2:].lower()


def _address(word: int) -> str:
    return "0x" + f"{word:040x}"


async def _params(rpc: RpcClient, morpho: str, chain: str, market_ids: list[str], head: Head) -> dict[str, MarketParams]:
    """Each market's parameters and tokens, kept for good on the endpoint (they never change)."""
    missing = [m for m in market_ids if ("morpho market", m.lower()) not in rpc.memo]
    if missing:
        answers = await rpc.calls([Call(morpho, ID_TO_MARKET_PARAMS + m[2:].lower(), f"Morpho.idToMarketParams({m[:10]})") for m in missing], head)
        rows = {}
        for m, answer in zip(missing, answers):
            loan, collateral, oracle, irm, lltv = words(answer, 5, f"Morpho.idToMarketParams({m[:10]}) on {chain}")
            if loan == 0 or oracle == 0 or not 0 < lltv < WAD:
                raise SourceError("data", f"market {m[:10]}… is not a market of Morpho on {chain} (no loan token, oracle or LLTV)")
            rows[m] = (_address(loan), _address(collateral), _address(oracle), _address(irm), lltv)
        tokens = sorted({t for row in rows.values() for t in row[:2]})
        token_answers = await rpc.calls([Call(t, s, f"{t}.{n}") for t in tokens for s, n in ((DECIMALS, "decimals"), (SYMBOL, "symbol"))], head)
        info = {}
        for i, t in enumerate(tokens):
            (decimals,) = words(token_answers[2 * i], 1, f"{t}.decimals")
            try:
                symbol = text(token_answers[2 * i + 1], f"{t}.symbol")
            except SourceError:
                symbol = t[:10]
            if decimals > 36:
                raise SourceError("data", f"token {t} on {chain} states {decimals} decimals")
            info[t] = (decimals, symbol)
        for m, (loan, collateral, oracle, irm, lltv) in rows.items():
            rpc.memo[("morpho market", m.lower())] = MarketParams(m.lower(), loan, collateral, oracle, irm, lltv, info[loan][0],
                                                                  info[collateral][0], info[loan][1], info[collateral][1])
    return {m: rpc.memo[("morpho market", m.lower())] for m in market_ids}


async def read(rpc: RpcClient, chain: str, market_ids: list[str], user: str) -> list[MarketReading]:
    """Every named market's position of `user` at the endpoint's newest block."""
    morpho = MORPHO[chain]
    head = await rpc.head()
    params = await _params(rpc, morpho, chain, market_ids, head)
    calls = []
    for m in market_ids:
        p = params[m]
        calls += [Call(morpho, POSITION + m[2:].lower() + _arg(user), f"Morpho.position({m[:10]})"),
                  Call(morpho, MARKET + m[2:].lower(), f"Morpho.market({m[:10]})"),
                  Call(p.oracle, PRICE, f"oracle of market {m[:10]}.price")]
    answers = await rpc.calls(calls, head)
    where = f"on {chain} at block {head.number}"
    rows = []
    for i, m in enumerate(market_ids):
        _, borrow_shares, collateral = words(answers[3 * i], 3, f"{calls[3 * i].label} {where}")
        totals = words(answers[3 * i + 1], 6, f"{calls[3 * i + 1].label} {where}")
        (price,) = words(answers[3 * i + 2], 1, f"{calls[3 * i + 2].label} {where}")
        if borrow_shares > totals[3]:
            raise SourceError("data", f"Morpho market {m[:10]} {where}: the position's borrow shares exceed the market's: an inconsistent answer")
        rows.append((m, borrow_shares, collateral, totals, price))
    # the interest since each market's last update, as Morpho would accrue it at this block
    # (MorphoBalancesLib.expectedMarketBalances): the IRM's borrowRateView at the market's state
    owing = [(m, totals) for m, shares, _, totals, _ in rows
             if shares and totals[2] and head.timestamp > totals[4] and int(params[m].irm, 16)]
    rates = await rpc.calls([Call(params[m].irm, BORROW_RATE_VIEW + _market_params_words(params[m]) + "".join(f"{t:064x}" for t in totals),
                                  f"IRM of market {m[:10]}.borrowRateView") for m, totals in owing], head)
    accrued = {m: words(rate, 1, f"IRM of market {m[:10]}.borrowRateView {where}")[0] for (m, _), rate in zip(owing, rates)}
    readings = []
    for m, borrow_shares, collateral, totals, price in rows:
        total_borrow = totals[2]
        if m in accrued:
            total_borrow += total_borrow * taylor_compounded(accrued[m], head.timestamp - totals[4]) // WAD
        readings.append(MarketReading(params[m], borrow_shares, collateral, total_borrow, totals[3], price))
    return readings


def taylor_compounded(rate: int, seconds: int) -> int:
    """MathLib.wTaylorCompounded: e^(rate × seconds) − 1 to three terms, WAD-scaled, rounded down."""
    first = rate * seconds
    second = first * first // (2 * WAD)
    return first + second + second * first // (3 * WAD)


def _market_params_words(p: MarketParams) -> str:
    return "".join(_arg(a) for a in (p.loan, p.collateral, p.oracle, p.irm)) + f"{p.lltv:064x}"


def borrowed_assets(r: MarketReading) -> int:
    """toAssetsUp: shares × (total assets + 1) ÷ (total shares + 1e6), rounded up."""
    numerator = r.borrow_shares * (r.total_borrow_assets + VIRTUAL_ASSETS)
    denominator = r.total_borrow_shares + VIRTUAL_SHARES
    return -(-numerator // denominator)


def market_pool(r: MarketReading):
    """One market as a pool in its loan token, and its collateral as a position."""
    p = r.params
    borrowed = borrowed_assets(r)
    max_borrow = (r.collateral * r.price // ORACLE_PRICE_SCALE) * p.lltv // WAD
    loan_unit = 10 ** p.loan_decimals
    value = r.collateral * r.price / ORACLE_PRICE_SCALE / loan_unit  # the collateral in the loan token
    if borrowed == 0:
        maintenance = 0.0
    elif max_borrow == 0:
        maintenance, value = borrowed / loan_unit, 0.0  # debt with nothing to hold it: ratio ∞
    else:
        maintenance = value * (borrowed / max_borrow)
    symbol = f"{p.collateral_symbol} ({p.market_id[:10]})"
    positions, figure = (), LOAN_USED
    amount = r.collateral / 10 ** p.collateral_decimals
    if amount > 0 and r.price > 0:
        price = r.price / ORACLE_PRICE_SCALE * 10 ** (p.collateral_decimals - p.loan_decimals)  # loan token per collateral token
        liquidation = borrowed / loan_unit / (amount * p.lltv / WAD) if borrowed else None
        positions = (make_position(where=f"Morpho market {p.market_id[:10]}", symbol=symbol, side="long", contracts=amount,
                                   entry_price=price, mark_price=price, notional=amount * price, unrealized_pnl=0.0,
                                   maintenance_margin=0.0, liquidation_price=liquidation, currency=p.loan_symbol),)
        if borrowed:  # the levers: the collateral token at the market's oracle, the loan token at 1
            figure = replace(LOAN_USED, collateral=Lever(p.collateral_symbol, price, amount * price),
                             debt=Lever(p.loan_symbol, 1.0, borrowed / loan_unit))
    debt = borrowed / loan_unit
    pool = Pool(market_scope(p.market_id), equity=value, maintenance_margin=maintenance, currency=p.loan_symbol,
                wallet_balance=value - debt, symbols=(symbol,),
                lender_trigger=maintenance / debt if debt > 0 and maintenance > 0 else None, own_figure=figure)
    return pool, positions


def snapshot(account_name: str, protocol_id: str, readings: list[MarketReading], fetched_at: datetime | None = None):
    pools, positions = [], []
    for r in readings:
        pool, held = market_pool(r)
        pools.append(pool)
        positions += held
    worst = max(pools, key=lambda p: p.maintenance_margin / p.equity if p.equity > 0 else (float("inf") if p.maintenance_margin else 0.0))
    built = make_snapshot(account=account_name, exchange=protocol_id, equity=worst.equity, maintenance_margin=worst.maintenance_margin,
                          wallet_balance=worst.wallet_balance, currency=worst.currency, positions=positions, pools=pools,
                          own_figure=LOAN_USED)
    return replace(built, fetched_at=fetched_at)


async def fetch(rpc: RpcClient, chain: str, market_ids: list[str], user: str, account_name: str, protocol_id: str = "morpho"):
    return snapshot(account_name, protocol_id, await read(rpc, chain, market_ids, user), datetime.fromtimestamp(rpc.clock(), UTC))


def is_market_id(value: object) -> bool:
    return isinstance(value, str) and bool(MARKET_ID.match(value))


# ---------------------------------------------------------------- the venue: client, fetch, normalise

class MorphoClient(ChainClient):
    """One wallet's positions in the markets the account names (`markets`), over its endpoint's session."""

    def __init__(self, account: Any, timeout_s: float) -> None:
        super().__init__("morpho", account, timeout_s)
        self.market_ids = [m.lower() for m in account.markets]

    async def read(self) -> dict:
        return {"readings": await read(self.reader.rpc, self.chain.name, self.market_ids, self.user)}



def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Any):
    return snapshot(account_name, exchange_id, balance["info"]["readings"])


# ---------------------------------------------------------------- profile (kept last: what the registry and the config read)


def check_settings(settings: Any) -> list[tuple[str, str]]:
    """A chain with Morpho Blue, and the market ids (0x and 64 hex digits, at least one, distinct)."""
    problems = onchain.chain_problems("Morpho Blue", settings.get("chain"), MORPHO)
    markets = settings.get("markets")
    if not markets:
        problems.append(("markets", "Morpho Blue needs the ids of the markets to watch (each 0x and 64 hex digits)"))
    else:
        problems += [(f"markets[{i}]", f"{m!r} is not a market id (0x and 64 hex digits)") for i, m in enumerate(markets) if not is_market_id(m)]
        scopes = [market_scope(m) for m in markets if is_market_id(m)]
        if len(set(scopes)) != len(scopes):
            problems.append(("markets", "two ids begin alike (their scopes are named by the first 8 hex digits): list each market once"))
    return problems


PROFILE = onchain.profile(
    name="Morpho Blue",
    ids=("morpho",),
    modes="a wallet's borrows in the markets it names (`markets`, their ids) on its `chain`, each market a scope. "
          "Not proved: no public recording of its answers",
    figure="per market: the borrow (shares to assets, rounded up) ÷ collateral × oracle price ÷ 1e36 × LLTV (Morpho's "
           "_isHealthy), the interest since the market's last update accrued as Morpho would (its IRM's borrowRateView)",
    currency="each market's loan token",
    liquidation="Anyone may liquidate a position once its borrow exceeds collateral × price × LLTV (isolated per market).",
    liquidation_url="https://github.com/morpho-org/morpho-blue/blob/main/src/Morpho.sol",
    normalise=normalise,
    own_figure=LOAN_USED,
    connect=lambda account, timeout_s: MorphoClient(account, timeout_s),
    settings=("markets",),
    check_settings=check_settings,
)
