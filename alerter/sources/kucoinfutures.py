"""KuCoin futures (classic account): /api/v1/account-overview per settle currency + /api/v1/positions.

Each settle currency is an account of its own on KuCoin futures: "all USDT-margined cross margin
contracts share USDT margin, but coin-margined contracts do not share margin across different
coins" (https://www.kucoin.com/support/35084093025049, "Cross Margin"). So every settle currency
is one cross scope (a Pool, "cross:USDT", "cross:BTC"), in that currency.

Cross: KuCoin liquidates on its cross-margin *risk rate*, "the only factor for liquidation in cross
margin mode": (maintenance margin of the cross positions + maintenance margin of the open orders
+ expected closing fees) ÷ (total cross margin − expected opening fees); at ≥ 95 % KuCoin cancels
the open orders, at ≥ 100 % it liquidates; a cross position's liquidation price is "only a
reference" (https://www.kucoin.com/support/35233217061785, "Risk Rate of Cross Margin Mode").
The account overview states it: `riskRatio`, "Cross margin risk rate"
(https://www.kucoin.com/docs-new/rest/account-info/account-funding/get-account-futures), a
fraction. A pool's ratio is that figure as stated: equity = the currency's `accountEquity` less
its isolated positions' margin (`maintMargin`, their margin with their unrealised PnL), and
maintenance = `riskRatio` × that equity (the open orders and fees included, as KuCoin counts them).
An overview without `riskRatio`, or stating it 0, while cross positions are open in its currency
is refused.

Isolated: "If the margin balance falls below the maintenance margin, the position will be
liquidated" (the Cross Margin page). Each isolated position is its own scope: `posMaint` ÷
`maintMargin` (= `posMargin` + `unrealisedPnl`). On KuCoin's documented example that ratio reaches
100 % exactly at the stated `liquidationPrice` (posMargin + PnL at 45704.44 = posMaint, to 1e-5),
which is the distance shown. An isolated position without `posMaint` is refused.
How that maintenance moves with the mark (for `alerter whatif`) is KuCoin's formula of the
answer's time (https://www.kucoin.com/announcement/update-to-the-isolated-margin-calculation-formula):
until 2025-05-22 03:00 UTC it was "Average Entry Price × Position Size × Contract Multiplier ×
(Maintenance Margin Rate + (1 + 1/Leverage) × Taker Fee Rate + Funding Rate)", fixed while the
mark moves (the two recorded rows reproduce it exactly: XBTUSDTM 26.821 × (0.004 + 1.2 × 0.0006
+ 0.0001) = 0.12927722, ADAUSDTM 2.4977 × (0.01 + 2 × 0.0006 + 0.0001) = 0.02822401), so an
answer stamped (`currentTimestamp`) before then keeps `posMaint` as it is; since then "Entry
Price is replaced with Mark Price", with the liquidation fee and funding rate in the same
product, so `posMaint` grows with the mark value at `posMaint` ÷ `markValue`.

Positions (https://www.kucoin.com/docs-new/rest/futures-trading/positions/get-position-list):
`currentQty` counts contracts (× the contract's `multiplier`: 0.001 XBT for XBTUSDTM, 1 USD for
inverse contracts), signed; `marginMode` CROSS/ISOLATED (older answers: `crossMode`); `isInverse`;
`settleCurrency` (XBT is ccxt's BTC). Inverse (coin-margined: XBTUSDM, ETHUSDM) figures are in the
coin, as KuCoin states them. A cross position's own maintenance shown is its `posMaint`, else
`maintMarginReq` × |`markValue`|; a lone cross position that states neither carries its pool's.
Closed rows (`currentQty` 0) are skipped.

Which overviews: ccxt's fetch_balance() reads one currency (`code`, default USDT), so the positions
are fetched first and the overview of USDT and of every settle currency with an open position is
asked for (`balance_params`). Not covered: unified trading accounts (ccxt option `uta`).
Re-pricing between polls is off: the risk rate counts open orders and fees a re-priced snapshot
cannot follow, and isolated maintenance grows with KuCoin's risk-limit tiers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from alerter.models import AccountSnapshot, OwnFigure, Pool, Position, cross_scope
from alerter.sources.errors import SourceError
from alerter.sources.fields import make_position, make_snapshot, mapping, number, optional_number, price_or_none, shape_error
from alerter.sources.profile import FetchContext, Profile, Raw

ID = "kucoinfutures"
DEFAULT_CURRENCY = "USDT"  # ccxt's options.fetchBalance.code
# KuCoin's isolated maintenance margin is on the mark price from this moment (ms), on the entry price before
ISOLATED_MARK_PRICED_SINCE_MS = 1747882800000  # 2025-05-22 03:00 UTC, the announced start of the upgrade


def entry_priced(info: Mapping, where: str) -> bool:
    """The answer was made under KuCoin's isolated formula before 2025-05-22: its `posMaint` is on the
    entry price and does not move with the mark. An answer without `currentTimestamp` is today's."""
    stamp = optional_number(info.get("currentTimestamp"), f"{where}.currentTimestamp")
    return stamp is not None and stamp < ISOLATED_MARK_PRICED_SINCE_MS


def _ok(data: Any) -> bool:
    return isinstance(data, Mapping) and str(data.get("code")) == "200000" and "data" in data


def check_body(path: str, data: Any) -> None:
    """/api/v1/account-overview: {"code": "200000", "data": {accountEquity, currency, …}};
    /api/v1/positions: {"code": "200000", "data": [{symbol, currentQty, …}, …]}."""
    if path.endswith("/api/v1/account-overview"):
        if not _ok(data) or not isinstance(data["data"], Mapping) or "accountEquity" not in data["data"] or "currency" not in data["data"]:
            raise shape_error(ID, path, 'an object {"code": "200000", "data": {accountEquity, currency, …}}', data)
    elif path.endswith("/api/v1/positions"):
        rows = data.get("data") if _ok(data) else None
        if not isinstance(rows, list) or not all(isinstance(r, Mapping) and "symbol" in r and "currentQty" in r for r in rows):
            raise shape_error(ID, path, 'an object {"code": "200000", "data": [positions (symbol, currentQty)]}', data)


def _info(raw: Mapping) -> Mapping:
    return mapping(raw.get("info"), f"{ID} position info")


def _is_open(raw: Mapping) -> bool:
    info = _info(raw)
    return number(info.get("currentQty"), f"{ID} position {info.get('symbol')}.currentQty") != 0


def _settle_of(raw: Mapping) -> str:
    """ccxt's settle currency of a position, from its unified symbol (BTC/USD:BTC, ETH/USDT:USDT-250328)."""
    symbol = raw.get("symbol")
    if not isinstance(symbol, str) or ":" not in symbol:
        raise SourceError("data", f"{ID} position {_info(raw).get('symbol')}: not a listed contract (symbol {symbol!r})")
    return symbol.split(":", 1)[1].split("-", 1)[0]


def balance_params(positions: list) -> tuple[dict[str, str], ...]:
    """One account-overview per currency: USDT and the settle currency of every open position."""
    codes = {DEFAULT_CURRENCY} | {_settle_of(raw) for raw in positions if _is_open(raw)}
    return tuple({"code": code} for code in sorted(codes))


async def fetch(ctx: FetchContext) -> Raw:
    """One balance call cannot cover the account (KuCoin answers per settle currency): the
    positions first, then one fetch_balance({"code": …}) per currency `balance_params` names for
    them; `normalise` gets {"info": [each balance call's raw answer, in that order]}."""
    exchange = ctx.exchange
    positions = await ctx.call(exchange.fetch_positions, None, {}, check=True)
    balances = await ctx.gather(*(ctx.call(exchange.fetch_balance, dict(params), check=True) for params in balance_params(positions)))
    return {"info": [balance.get("info") for balance in balances]}, positions


def _row(raw: Mapping, markets: Mapping) -> dict | None:
    """make_position's arguments for an open position (a cross one's `maintenance_margin` None when
    it states none), or None for a closed row."""
    info = _info(raw)
    name = info.get("symbol")
    where = f"{ID} position {name}"
    qty = number(info.get("currentQty"), f"{where}.currentQty")
    if qty == 0:
        return None
    symbol = raw.get("symbol")
    market = markets.get(symbol)
    if market is None:
        raise SourceError("data", f"{where}: not a listed contract (markets not loaded?)")
    size = abs(number(market.get("contractSize"), f"{where}: contract size"))
    inverse = info.get("isInverse") if isinstance(info.get("isInverse"), bool) else market.get("inverse")
    if not isinstance(inverse, bool):
        raise SourceError("data", f"{where}.isInverse: missing, and the market does not say")
    mode = str(info.get("marginMode") or "").lower()
    if mode not in ("cross", "isolated"):
        if not isinstance(info.get("crossMode"), bool):
            raise SourceError("data", f"{where}.marginMode: expected CROSS or ISOLATED, got {info.get('marginMode')!r}")
        mode = "cross" if info["crossMode"] else "isolated"
    side = str(info.get("positionSide") or "").lower()
    if side not in ("long", "short"):
        side = "long" if qty > 0 else "short"
    mark = number(info.get("markPrice"), f"{where}.markPrice")
    contracts = abs(qty) * size  # linear: the base coin; inverse: the face value in USD
    value = optional_number(info.get("markValue"), f"{where}.markValue")
    notional = abs(value) if value else (contracts / mark if inverse and mark > 0 else contracts * mark)
    pnl = number(info.get("unrealisedPnl"), f"{where}.unrealisedPnl")
    rate = optional_number(info.get("maintMarginReq"), f"{where}.maintMarginReq")
    maintenance = optional_number(info.get("posMaint"), f"{where}.posMaint")
    collateral = None
    if mode == "isolated":
        if maintenance is None:
            raise SourceError("data", f"{where}.posMaint: missing for an isolated position (its maintenance margin)")
        collateral = optional_number(info.get("maintMargin"), f"{where}.maintMargin")
        if collateral is None:
            collateral = number(info.get("posMargin"), f"{where}.posMargin") + pnl
        # the rate posMaint grows at with the notional: 0 on the entry price (before 2025-05-22), else
        # posMaint ÷ the notional (None: health derives it), as the fees and funding grow with it too
        rate = 0.0 if entry_priced(info, where) else None
    elif maintenance is None and rate is not None and value is not None:
        maintenance = rate * abs(value)
    return dict(
        where=where,
        symbol=symbol,
        side=side,
        contracts=contracts,
        entry_price=number(info.get("avgEntryPrice"), f"{where}.avgEntryPrice"),
        mark_price=mark,
        notional=notional,
        unrealized_pnl=pnl,
        maintenance_margin=maintenance,
        margin_mode=mode,
        collateral=collateral,
        liquidation_price=price_or_none(info.get("liquidationPrice"), f"{where}.liquidationPrice"),
        initial_margin=optional_number(info.get("posInit"), f"{where}.posInit"),
        maintenance_rate=rate,
        inverse=inverse,
        currency=market.get("settle"),
    )


def overviews(balance: Mapping, markets: Mapping) -> dict[str, Mapping]:
    """ccxt currency code → the `data` of its account-overview answer (KuCoin's XBT is ccxt's BTC)."""
    answers = balance.get("info")
    if not isinstance(answers, list):
        raise SourceError("data", f"{ID}: expected one account-overview answer per settle currency, got {type(answers).__name__}")
    codes = {m.get("settleId"): m.get("settle") for m in markets.values() if m.get("settleId") and m.get("settle")}
    found: dict[str, Mapping] = {}
    for answer in answers:
        data = mapping(mapping(answer, f"{ID} account-overview").get("data"), f"{ID} account-overview data")
        currency = data.get("currency")
        if not isinstance(currency, str) or not currency:
            raise SourceError("data", f"{ID} account-overview.currency: missing (got {currency!r})")
        code = codes.get(currency, currency)
        if code in found:
            raise SourceError("data", f"{ID} account-overview: {currency} answered twice")
        found[code] = data
    return found


def _pool(code: str, data: Mapping, rows: list[dict]) -> tuple[Pool, list[Position]]:
    where = f"{ID} account-overview[{code}]"
    isolated = [r for r in rows if r["margin_mode"] == "isolated"]
    cross = [r for r in rows if r["margin_mode"] == "cross"]
    equity = number(data.get("accountEquity"), f"{where}.accountEquity") - sum(r["collateral"] for r in isolated)
    wallet = number(data.get("marginBalance"), f"{where}.marginBalance") - sum(r["collateral"] - r["unrealized_pnl"] for r in isolated)
    risk = optional_number(data.get("riskRatio"), f"{where}.riskRatio")
    if risk is None:
        if cross:
            raise SourceError("data", f"{where}.riskRatio: missing (KuCoin's cross-margin risk rate) while {code} cross "
                                      f"positions are open: the cross ratio is not guessed")
        maintenance = 0.0
    elif risk < 0:
        raise SourceError("data", f"{where}.riskRatio: must not be negative, got {risk!r}")
    elif risk == 0 and cross:
        raise SourceError("data", f"{where}.riskRatio is 0 while {code} cross positions are open: the answers disagree")
    elif equity > 0:
        maintenance = risk * equity
    else:  # at or past liquidation: what the positions state keeps the ratio infinite
        maintenance = sum(r["maintenance_margin"] or 0.0 for r in cross)
    unstated = [r for r in cross if r["maintenance_margin"] is None]
    if unstated:
        if len(cross) > 1 or not maintenance:
            raise SourceError("data", f"{unstated[0]['where']}: states neither posMaint nor maintMarginReq (its maintenance margin)")
        unstated[0]["maintenance_margin"] = maintenance  # the pool's only position: all of the pool's maintenance is its
    positions = [make_position(**r) for r in rows]
    symbols = tuple(sorted({p.symbol for p in positions if not p.isolated}))
    return Pool(cross_scope(code), equity=equity, maintenance_margin=maintenance, currency=code, wallet_balance=wallet,
                symbols=symbols), positions


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    found = overviews(balance, markets)
    rows: dict[str, list[dict]] = {}
    for raw in positions:
        row = _row(raw, markets)
        if row is not None:
            rows.setdefault(row["currency"] or "", []).append(row)
    missing = sorted(set(rows) - set(found))
    if missing:
        raise SourceError("data", f"{ID}: {missing[0]}-settled positions are open but no {missing[0]} account overview was answered")
    pools, parsed = [], []
    for code in sorted(found):
        pool, mine = _pool(code, found[code], rows.get(code, []))
        pools.append(pool)
        parsed.extend(mine)

    def risk(pool: Pool) -> tuple:
        ratio = pool.maintenance_margin / pool.equity if pool.equity > 0 else (float("inf") if pool.maintenance_margin > 0 else 0.0)
        return ratio, pool.maintenance_margin, pool.currency == DEFAULT_CURRENCY

    worst = max(pools, key=risk)
    snapshot = make_snapshot(
        account=account_name,
        exchange=exchange_id,
        equity=worst.equity,
        maintenance_margin=worst.maintenance_margin,
        wallet_balance=worst.wallet_balance,
        positions=parsed,
        initial_margin=sum(p.initial_margin or 0.0 for p in parsed if not p.isolated and p.symbol in worst.symbols),
        currency=worst.currency,
    )
    return replace(snapshot, pools=tuple(pools))


# ---------------------------------------------------------------- profile

PROFILE = Profile(
    name="KuCoin futures",
    ids=(ID,),
    modes="classic futures account: one cross scope per settle currency (USDT, USDC, and coin-margined BTC, ETH, …) "
          "and isolated positions, USDT-margined and inverse; not unified trading accounts",
    figure="cross, per settle currency: `riskRatio` (KuCoin's cross-margin risk rate) of /api/v1/account-overview; "
           "isolated: the position's `posMaint` ÷ `maintMargin` (/api/v1/positions); liquidation distance: `liquidationPrice`",
    currency="the settle currency (USDT, USDC, BTC, ETH, …)",
    liquidation="A settle currency's cross positions are liquidated when its risk rate, maintenance (open orders and closing "
                "fees included) ÷ cross margin, reaches 100 % (orders are cancelled at 95 %); an isolated position when its "
                "margin falls below its maintenance margin.",
    liquidation_url="https://www.kucoin.com/support/35233217061785",
    normalise=normalise,
    check_body=check_body,
    # load_markets() reads the contracts (and, with keys, ccxt's spot margin-pair lists) but not the
    # spot currency list; no unified-account probe before each private call, no spot hf-account probe
    ccxt_defaults={"options": {"uta": False, "hf": False}, "has": {"fetchCurrencies": False}},
    fetch=fetch,
    credentials=("api_key", "secret", "password"),
    permissions="a key without trading, transfer or withdrawal rights; KuCoin's API documentation lists the two calls alerter makes "
                "(account overview, position list) under its \"Futures\" permission; the API passphrase goes in `password`. Each settle "
                "currency (USDT, USDC, XBT, …) is a cross scope of its own (`cross:USDT`); unified trading accounts are not read",
    options={"uta": (False,), "defaultType": ("swap", "future", "contract")},
    # the risk rate is the cross account's; KuCoin states none for an isolated position
    own_figure=OwnFigure("risk rate", 1.0, percent=True, notices=(("KuCoin's order cancellation", 0.95),), cross_only=True),
    reprice=False,  # the risk rate counts open orders and fees; isolated maintenance follows KuCoin's risk-limit tiers
)
