"""Kraken Futures: GET /derivatives/api/v3/accounts (all of `fetch_balance()['info']`) +
GET /derivatives/api/v3/openpositions, with the public GET /derivatives/api/v3/tickers for marks.

Kraken liquidates a margin account once its equity falls below its maintenance margin: "Positions
begin this process once the portfolio value (i.e., equity) of a margin account falls below
Maintenance Margin threshold" (Equity Protection Process,
https://support.kraken.com/hc/en-us/articles/360022835671-Equity-Protection-Process; its 2026
revision: "Maintenance Margin - the minimium account value needed to keep a position open. If your
account value (equity) falls below this level, the EPP activates", with partial liquidations from
2026-03-26). So a scope's ratio is its maintenance margin ÷ its equity, and 100 % is Kraken's
trigger. Kraken Futures states no margin-call notice level (the "margin call level" of about 80 %
on Kraken's pages is spot margin's margin level, not futures): the only other level is the
initial margin, where "all open orders that would further add to the risk of this margin account
are cancelled" (https://support.kraken.com/hc/en-us/articles/360022835651-Leverage-Margining-Summary),
a level that depends on the account (ratio = maintenance ÷ initial margin), not a fixed figure.
So the profile has no `own_figure`: the normalised ratio is Kraken's own maintenance ÷ equity.

Kraken keeps wallets apart (https://support.kraken.com/hc/en-us/articles/4871883902612): one
multi-collateral wallet and one single-collateral wallet per collateral coin. Each wallet in use
is a cross scope of its own (a `Pool`):
- The multi-collateral wallet (`accounts.flex`, type multiCollateralMarginAccount), in USD:
  equity = `marginEquity` ("Margin Equity = [Balance Value in USD * (1-Haircut)] + (Total
  Unrealised Profit/Loss as Margin in USD)",
  https://support.kraken.com/hc/en-us/articles/4844463246100-Margining-Liquidations-Multi-Collateral),
  maintenance = `maintenanceMargin`, wallet = `collateralValue` (the balance after haircuts, before
  the unrealised PnL). Scope "cross:USD"; it is always there.
- A single-collateral wallet (`accounts.fi_xbtusd` and the like, type marginAccount), in its coin
  (`currency` "xbt" is BTC; "All figures shown in `auxiliary` and `marginRequirements` are in this
  currency", https://docs.kraken.com/api/docs/futures-api/trading/get-accounts): equity =
  `auxiliary.pv` ("The portfolio value of the account"), maintenance = `marginRequirements.mm`,
  wallet = its coin balance. Scope "cross:BTC". Listed only while in use (a maintenance margin, or
  a position in it). `lt` ("liquidation threshold"), `tt` and `triggerEstimates` are not read:
  Kraken's support pages liquidate at the maintenance margin and describe no other threshold, and
  Kraken's own example states an `lt` above `mm`.

Positions (openpositions: `symbol`, `side`, `size`, `price` = the entry, `fillTime`,
`unrealizedPnl`, `unrealizedFunding`, `pnlCurrency`, `maxFixedLeverage` for isolated ones,
https://docs.kraken.com/api/docs/futures-api/trading/get-open-positions; ccxt 4.5.90 adds
nothing to them: no mark, no margin). Kraken states no margin per position, so each is
listed with maintenance 0 (the wallet's maintenance is Kraken's own total; nothing is made up per
position); for the distance to liquidation a cross multi-collateral position grows at its
wallet's average rate (maintenance ÷ the wallet's notional), used only to extrapolate a move.
The mark is the public ticker's `markPrice` (read right after the positions by
its `fetch`); the unrealised PnL is Kraken's `unrealizedPnl` where it is in the position's
currency, else worked out from the entry and that mark (linear: size × (mark − entry) in USD;
inverse: face × (1/entry − 1/mark) in the coin); no ratio is made of it. An
isolated multi-collateral position states no margin of its own: it goes in
`AccountSnapshot.unreadable` (its scope blind, the rest evaluated).

Completeness makes a poll blind (SourceError "data"): a wallet stating a maintenance margin with
no position listed in it; a position listed in a wallet whose maintenance margin is 0; a
single-collateral wallet whose contract balances (`balances`, e.g. "FI_XBTUSD_171215": 50000)
name a contract the positions answer lacks; a position without a mark.
Re-pricing between polls is off: the multi-collateral equity holds non-USD collateral at a haircut
(it moves with those coins too) and the maintenance per position is not stated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from alerter.models import AccountSnapshot, Pool, Position, cross_scope, isolated_scope
from alerter.sources.errors import SourceError
from alerter.sources.fields import make_position, make_snapshot, mapping, number, optional_number, shape_error
from alerter.sources.profile import FetchContext, Profile, Raw, fetch_account

ID = "krakenfutures"
FLEX = "flex"
FLEX_CURRENCY = "USD"
COINS = {"xbt": "BTC"}  # Kraken's coin names where ccxt's differ


def check_body(path: str, data: Any) -> None:
    """accounts: an object of accounts; openpositions: a list of positions (each with a symbol);
    tickers: a list. Kraken answers an error with {"result": "error", …}, which ccxt raises first."""
    if "/derivatives/api/v3/" not in path:
        return
    name = path.rsplit("/", 1)[-1]
    if name == "accounts":
        if not isinstance(data, Mapping) or not isinstance(data.get("accounts"), Mapping):
            raise shape_error(ID, path, "an object with accounts", data)
    elif name == "openpositions":
        rows = data.get("openPositions") if isinstance(data, Mapping) else None
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) and "symbol" in r for r in rows):
            raise shape_error(ID, path, "openPositions, a list of positions (symbol)", data)
    elif name == "tickers":
        if not isinstance(data, Mapping) or not isinstance(data.get("tickers"), list):
            raise shape_error(ID, path, "tickers, a list", data)


def coin(code: Any) -> str:
    return COINS.get(str(code).lower(), str(code).upper())


def wallet_of(market_id: str) -> str:
    """The wallet a contract is margined in: PF_/FF_ the multi-collateral one; PI_XBTUSD and
    FI_XBTUSD_201225 the single-collateral fi_xbtusd, PV_XRPXBT fv_xrpxbt."""
    kind, _, rest = market_id.lower().partition("_")
    if len(kind) != 2 or not rest:
        raise SourceError("data", f"{ID} position {market_id!r}: not a Kraken Futures contract name")
    if kind[1] == "f":
        return FLEX
    return f"f{kind[1]}_{rest.split('_')[0]}"


def parse_position(raw: Mapping, markets: Mapping) -> tuple[str, Position | tuple[str, str]]:
    """(its wallet, the position) or (its wallet, (scope, why it cannot be evaluated))."""
    info = mapping(raw.get("info"), f"{ID} position info")
    market_id = str(info.get("symbol") or "")
    symbol = raw.get("symbol") or market_id
    where = f"{ID} position {symbol}"
    wallet = wallet_of(market_id)
    side = info.get("side")
    if side not in ("long", "short"):
        raise SourceError("data", f"{where}.side: expected long or short, got {side!r}")
    if wallet == FLEX and optional_number(info.get("maxFixedLeverage"), f"{where}.maxFixedLeverage") is not None:
        return wallet, (isolated_scope(symbol, side), f"{where} {side} is isolated (maxFixedLeverage {info['maxFixedLeverage']}): "
                                                      "Kraken states no margin for it; check it on Kraken")
    market = markets.get(symbol)
    if market is None:
        raise SourceError("data", f"{where}: unknown contract (not in the instruments list)")
    size = abs(number(info.get("size"), f"{where}.size"))
    face = size * number(market.get("contractSize") if market.get("contractSize") is not None else 1, f"{where} contractSize")
    entry = number(info.get("price"), f"{where}.price")
    mark = optional_number(raw.get("markPrice"), f"{where} markPrice")
    if mark is None or mark <= 0:
        raise SourceError("data", f"{where}: no mark price (the tickers answer has none for it)")
    sign = 1 if side == "long" else -1
    inverse = market.get("inverse") is True
    if inverse:  # face value in USD, PnL and notional in the coin
        notional, pnl, currency = face / mark, sign * face * (1 / entry - 1 / mark), coin(market.get("settle"))
    else:
        notional, pnl, currency = face * mark, sign * face * (mark - entry), FLEX_CURRENCY
    stated = optional_number(info.get("unrealizedPnl"), f"{where}.unrealizedPnl")
    if stated is not None and info.get("pnlCurrency") in (None, currency):
        pnl = stated  # Kraken's own, where it is in the position's currency
    return wallet, make_position(where=where, symbol=symbol, side=side, contracts=face, entry_price=entry, mark_price=mark,
                                 notional=notional, unrealized_pnl=pnl, maintenance_margin=0.0, inverse=inverse, currency=currency)


def contract_balances(account: Mapping) -> set[str] | None:
    """The contracts a single-collateral wallet states it holds (balances like "FI_XBTUSD_171215":
    50000), upper-case; None when it names no contract at all."""
    balances = account.get("balances")
    if not isinstance(balances, Mapping):
        return None
    named = {str(k).upper(): v for k, v in balances.items() if "_" in str(k)}
    if not named:
        return None
    return {k for k, v in named.items() if number(v, f"{ID} balances.{k}") != 0}


def flex_pool(account: Mapping, held: list[Position]) -> tuple[Pool, float]:
    where = f"{ID} accounts.flex"
    if account.get("type") != "multiCollateralMarginAccount":
        raise SourceError("data", f"{where}.type: expected multiCollateralMarginAccount, got {account.get('type')!r}")
    maintenance = number(account.get("maintenanceMargin"), f"{where}.maintenanceMargin")
    pool = Pool(cross_scope(FLEX_CURRENCY), equity=number(account.get("marginEquity"), f"{where}.marginEquity"),
                maintenance_margin=maintenance, currency=FLEX_CURRENCY,
                wallet_balance=number(account.get("collateralValue"), f"{where}.collateralValue"),
                symbols=tuple(sorted(p.symbol for p in held)))
    return pool, number(account.get("initialMargin"), f"{where}.initialMargin")


def single_pool(name: str, account: Mapping, held: list[Position], scope: str) -> tuple[Pool, float]:
    where = f"{ID} accounts.{name}"
    auxiliary = mapping(account.get("auxiliary"), f"{where}.auxiliary")
    requirements = mapping(account.get("marginRequirements"), f"{where}.marginRequirements")
    code = str(account.get("currency") or "")
    balances = account.get("balances") if isinstance(account.get("balances"), Mapping) else {}
    pool = Pool(scope, equity=number(auxiliary.get("pv"), f"{where}.auxiliary.pv"),
                maintenance_margin=number(requirements.get("mm"), f"{where}.marginRequirements.mm"), currency=coin(code),
                wallet_balance=optional_number(balances.get(code), f"{where}.balances.{code}") or 0.0,
                symbols=tuple(sorted(p.symbol for p in held)))
    return pool, optional_number(requirements.get("im"), f"{where}.marginRequirements.im") or 0.0


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    info = mapping(balance.get("info"), f"{ID} accounts answer")
    accounts = mapping(info.get("accounts"), f"{ID} accounts")
    held: dict[str, list[Position]] = {}
    listed: dict[str, set[str]] = {}
    unreadable: list[tuple[str, str]] = []
    for raw in positions:
        wallet, parsed = parse_position(raw, markets)
        listed.setdefault(wallet, set()).add(str(mapping(raw.get("info"), f"{ID} position info").get("symbol")).upper())
        if isinstance(parsed, tuple):
            unreadable.append(parsed)
        else:
            held.setdefault(wallet, []).append(parsed)
    unknown = sorted(set(listed) - set(accounts))
    if unknown:
        raise SourceError("data", f"{ID}: positions in wallet {unknown[0]}, which the accounts answer does not list")

    pools: list[tuple[Pool, float]] = []
    flex = mapping(accounts.get(FLEX), f"{ID} accounts.flex")
    pool, initial = flex_pool(flex, held.get(FLEX, []))
    if pool.maintenance_margin > 0 and FLEX not in listed:
        raise SourceError("data", f"{ID} accounts.flex.maintenanceMargin {pool.maintenance_margin:g} but the positions answer "
                                  "lists no multi-collateral position: positions missing")
    if held.get(FLEX) and pool.maintenance_margin <= 0:
        raise SourceError("data", f"{ID} accounts.flex.maintenanceMargin is 0 but the positions answer lists "
                                  f"{', '.join(sorted(p.symbol for p in held[FLEX]))}: the answers disagree")
    if held.get(FLEX):  # a move's maintenance: the wallet's average rate (Kraken states no rate per position)
        rate = pool.maintenance_margin / sum(p.notional for p in held[FLEX])
        held[FLEX] = [replace(p, maintenance_rate=rate) for p in held[FLEX]]
    pools.append((pool, initial))

    singles = {name: mapping(a, f"{ID} accounts.{name}") for name, a in accounts.items()
               if isinstance(a, Mapping) and a.get("type") == "marginAccount"}
    in_use = []
    for name, account in sorted(singles.items()):
        requirements = mapping(account.get("marginRequirements"), f"{ID} accounts.{name}.marginRequirements")
        maintenance = number(requirements.get("mm"), f"{ID} accounts.{name}.marginRequirements.mm")
        missing = sorted((contract_balances(account) or set()) - listed.get(name, set()))
        if missing:  # only this way round: a wallet may not name its perpetuals among its balances
            raise SourceError("data", f"{ID} accounts.{name} holds {', '.join(missing)} but the positions answer lists "
                                      f"{', '.join(sorted(listed.get(name, set()))) or 'none'} in it: positions missing")
        if maintenance > 0 and name not in listed:
            raise SourceError("data", f"{ID} accounts.{name}.marginRequirements.mm {maintenance:g} but the positions answer "
                                      "lists no position in it: positions missing")
        if maintenance <= 0 and held.get(name):
            raise SourceError("data", f"{ID} accounts.{name}.marginRequirements.mm is 0 but the positions answer lists "
                                      f"{', '.join(sorted(p.symbol for p in held[name]))} in it: the answers disagree")
        if maintenance > 0 or name in listed:
            in_use.append((name, account))
    coins = [coin(a.get("currency")) for _, a in in_use]
    for name, account in in_use:
        code = coin(account.get("currency"))
        scope = cross_scope(code if coins.count(code) == 1 else f"{code}:{name}")
        pools.append(single_pool(name, account, held.get(name, []), scope))

    worst, initial = max(pools, key=lambda pi: (ratio(pi[0]), pi[0].maintenance_margin))
    snapshot = make_snapshot(account=account_name, exchange=exchange_id, equity=worst.equity, maintenance_margin=worst.maintenance_margin,
                             wallet_balance=worst.wallet_balance, positions=[p for ps in held.values() for p in ps],
                             initial_margin=initial, currency=worst.currency)
    return replace(snapshot, pools=tuple(p for p, _ in pools), unreadable=tuple(sorted(set(unreadable))))


def ratio(pool: Pool) -> float:
    if pool.maintenance_margin <= 0:
        return 0.0
    return pool.maintenance_margin / pool.equity if pool.equity > 0 else float("inf")


# ---------------------------------------------------------------- profile

async def fetch(ctx: FetchContext) -> Raw:
    """The default fetch, then the marks the positions do not state: ccxt's `markPrice` of each
    position from the public tickers, read right after the positions (a position left without one
    is the normaliser's to refuse). A position whose symbol ccxt left as Kraken's own id, because
    the case differs (its open positions spell ids in lower case, "pi_xbtusd", its instruments in
    upper case), gets the symbol of the market with that id."""
    balance, positions = await fetch_account(ctx)
    if positions:
        exchange = ctx.exchange
        markets, by_id = exchange.markets or {}, exchange.markets_by_id or {}
        for position in positions:
            symbol = position.get("symbol")
            if isinstance(symbol, str) and symbol not in markets and by_id.get(symbol.upper()):
                position["symbol"] = by_id[symbol.upper()][0]["symbol"]
        tickers = await ctx.call(exchange.fetch_tickers, sorted({p["symbol"] for p in positions if p.get("symbol")}), check=True)
        for position in positions:
            if position.get("markPrice") is None:
                position["markPrice"] = (tickers.get(position.get("symbol")) or {}).get("markPrice")
    return balance, positions


PROFILE = Profile(
    name="Kraken Futures",
    ids=("krakenfutures",),
    modes="multi-collateral (flex) wallet, cross, in USD; single-collateral (inverse) wallets, one cross scope per coin; "
          "isolated multi-collateral positions are blind (Kraken states no margin for them); positions listed without "
          "a maintenance margin of their own",
    figure="multi-collateral: `maintenanceMargin` ÷ `marginEquity` of `accounts.flex`; single-collateral: "
           "`marginRequirements.mm` ÷ `auxiliary.pv` of the coin's wallet (GET /derivatives/api/v3/accounts)",
    currency="USD (multi-collateral); the wallet's coin (single-collateral)",
    liquidation="Kraken's Equity Protection Process starts once a margin account's equity falls below its maintenance "
                "margin (100 % here); each wallet is liquidated on its own.",
    liquidation_url="https://support.kraken.com/hc/en-us/articles/360022835671-Equity-Protection-Process",
    normalise=normalise,
    check_body=check_body,
    fetch=fetch,  # openpositions states no mark: the public tickers' markPrice, fetched with each poll
    permissions='a Kraken Futures key with read-only access (no trading, no withdrawals)',
    reprice=False,  # non-USD collateral moves the multi-collateral equity; no maintenance per position
)
