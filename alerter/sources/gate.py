"""Gate (gate.io) APIv4: the unified account, or the classic USDT-settled perpetual futures account.

Which account is read is the account's ccxt option `unifiedAccount` (the profile's default is
false: the futures account). ccxt's fetch_balance() then asks GET /api/v4/unified/accounts (true)
or GET /api/v4/futures/usdt/accounts (false), and hands the answer on as `balance['info']`;
fetch_positions() asks GET /api/v4/futures/usdt/positions in both modes. Setting the option also
spares ccxt its mode probe (GET /api/v4/account/detail), which reads a failed probe as "not
unified" and would then silently read the wrong account.

Gate's rule, the same in every mode: the maintenance margin ratio is margin balance ÷ maintenance
margin, "the higher the ratio, the safer the account. If the ratio drops to 100% or below,
liquidation will be triggered" (unified account,
https://www.gate.com/help/unified-account/unified_account_overview/33014, "FAQ on Unified
Account" 3.); alerts show Gate's own figure beside the ratio as "MMR 250 %". For futures, cross: "MMR = Margin Balance / Maintenance Margin ... when the MMR falls
to 100% or below, liquidation will be triggered", isolated: "MMR = Position Margin Balance /
Position Maintenance Margin", each position on its own
(https://www.gate.com/help/futures/futures-logic/22159/liquidation-process). So the normalised ratio
here is maintenance ÷ margin balance, its inverse: 100 % is Gate's trigger.

Unified account (https://www.gate.com/docs/developers/apiv4/en/#get-unified-account-information):
- Multi-currency and portfolio margin mode: `total_maintenance_margin` ÷ `total_margin_balance`,
  in USD. Gate's own figure is `total_maintenance_margin_rate` (= `total_margin_balance` ÷
  `total_maintenance_margin`, exactly so in Gate's example). Gate also repays debt by force when
  the MMR is "no greater than 110%" in multi-currency margin mode
  (https://www.gate.com/help/unified-account/risk_control_mechanism/33015): shown as Gate's notice
  level. The answer does not say which of the two modes it is, so the notice is shown in both.
- Single-currency margin mode: the totals are "0 in other modes such as single-currency margin
  mode"; each currency's `mm` ÷ `margin_balance` ("valid in single-currency margin mode") is its
  own cross account: one pool (scope "cross:USDT", …) per currency with a maintenance margin, in
  that currency; the USDT-settled cross positions belong to the USDT pool.
- A unified answer with no maintenance anywhere while cross futures positions are listed is
  refused (SourceError "data"): in the classic spot mode those positions are margined by the
  futures account, read with `unifiedAccount = false`.
  Spot borrowing also carries maintenance margin, so a unified maintenance with no position
  listed is not taken for a partial answer.

Futures account, USDT-settled perpetuals
(https://www.gate.com/docs/developers/apiv4/en/#get-futures-account): the cross scope is
`cross_maintenance_margin` ÷ `cross_margin_balance`, Gate's own cross figures ("applicable to new
classic account margin mode"); the wallet is `total` ("excluding unrealized profit and loss").
An answer without them (the old classic margin mode), or stating them "0", is refused while it
holds a cross position: nothing in it states the cross maintenance margin. `margin_mode` other than 0 ("1-cross-currency
margin mode, 2-combined margin mode") means the futures account is margined by the unified
account: refused, with the option to set. Only USDT-settled futures are read: an answer in another
currency (BTC-settled perpetuals) is refused.

Positions (https://www.gate.com/docs/developers/apiv4/en/#get-user-position-list): `size` counts
contracts of `quanto_multiplier` each (ccxt's contractSize); `value` is the notional in USDT,
`mark_price`, `entry_price`, `unrealised_pnl`, `liq_price` ("0" = none); `leverage` "0" is cross,
anything else isolated (`pos_margin_mode` wins where the answer has it); `mode` dual_long /
dual_short in hedge mode. The maintenance margin of a position is Gate's `maintenance_margin`
where the answer states one above 0; older answers do not, and then it is derived by Gate's own
rule, "Position Maintenance Margin = (Value Position * MMR) + Close Position Fee", with Gate's
example (100 × 0.5 %) + 100 × 0.075 % (Gate's blog, "Calculation of Maintenance Margin &
Classification of Contract Types",
https://www.gate.io/tr/blog_detail/351/q2fsy3vsyxrpb24gb2ygtwfpbnrlbmfuy2ugtwfyz2luicygq2xhc3npzmljyxrpb24gb2ygq29udhjhy3qgvhlwzxm,
its English text),
the same rule as Gate's liquidation price, "Liquidation Price = (Entry Price ± Margin / Contract
Multiplier / Size) / [1 ± (Maintenance Margin Ratio + Taker Rate)]"
(https://www.gate.io/help/futures/futures/27724/liquidation-price-bankruptcy-price, as freqtrade's
`exchange.py` quotes it; Gate's support gives the same formula with "Taker rate = 0.075%"): `value` ×
(`average_maintenance_rate` (tiered answers) or `maintenance_rate` (the risk-limit tier's rate)
+ the contract's `taker_fee_rate` from GET /futures/usdt/contracts). The fee is the contract's
listed taker rate, not the user's own: both recorded isolated positions paid less (their
`realised_pnl` opening fees are 0.015 % and 0.05 % of the entry value), and Gate's `liq_price`
(APT_USDT short 12.65, LTC_USDT long 60.07) is where `margin` + PnL meets `value` × (rate +
0.075 %), the contract's rate, to the cent; without the fee it would be 12.660 and 60.024. A
position whose maintenance is not stated and whose contract states no `taker_fee_rate` is
refused (SourceError "data"): the fee is not guessed. The liquidation distance shown is Gate's
`liq_price`. An isolated position is its own scope: equity = `margin` + `unrealised_pnl` (Gate's
position margin balance), maintenance as above.

Completeness: each raw answer must have its documented shape (`check_body`); a futures account
stating a cross maintenance margin while no cross position is listed makes the poll blind.
Re-pricing between polls is off: the unified figures mix spot collateral, borrowing and options,
and the tiered maintenance follows the position value; only a full poll gives Gate's own figures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dataclasses import replace

from alerter.models import AccountSnapshot, OwnFigure, Pool, Position, cross_scope
from alerter.sources.errors import SourceError
from alerter.sources.fields import (
    base_quantity,
    is_blank,
    make_position,
    make_snapshot,
    mapping,
    number,
    optional_number,
    price_or_none,
    shape_error,
)
from alerter.sources.profile import Profile

ID = "gate"
# Gate's maintenance margin ratio (MMR): margin balance ÷ maintenance margin, liquidation at ≤ 100 %
MMR = OwnFigure("MMR", 1.0, inverse=True, percent=True)
# multi-currency (and portfolio) margin: Gate repays the debt by force at MMR ≤ 110 %
UNIFIED_MMR = replace(MMR, notices=(("Gate's forced repayment", 1.1),))


def figure_for(options: Mapping[str, Any]) -> OwnFigure:
    """The unified account's figure carries Gate's forced-repayment notice; the futures account's has none.
    (A single-currency unified answer sets the plain MMR itself: nothing is borrowed there.)"""
    return UNIFIED_MMR if options.get("unifiedAccount") is True else MMR
SETTLE = "USDT"
UNIFIED_CURRENCY = "USD"  # Gate: the unified totals are "converted to USD"
OPTION_HINT = "ccxt.options.unifiedAccount"


def check_body(path: str, data: Any) -> None:
    """The three answers a poll depends on: the unified account or the futures account (objects)
    and the position list (a list of objects with `contract` and `size`)."""
    if path.endswith("/unified/accounts"):
        if not isinstance(data, Mapping) or not isinstance(data.get("balances"), Mapping):
            raise shape_error(ID, path, "a unified account object with balances", data)
    elif path.endswith("/futures/usdt/accounts"):
        if not isinstance(data, Mapping) or "total" not in data or "currency" not in data:
            raise shape_error(ID, path, "a futures account object (total, currency)", data)
    elif path.endswith("/futures/usdt/positions"):
        if not isinstance(data, list) or not all(isinstance(r, Mapping) and "contract" in r and "size" in r for r in data):
            raise shape_error(ID, path, "a list of positions (contract, size)", data)


# ---------------------------------------------------------------- positions

def margin_mode(row: Mapping, where: str) -> str:
    stated = row.get("pos_margin_mode")
    if stated in ("cross", "isolated"):
        return stated
    leverage = number(row.get("leverage"), f"{where}.leverage")
    return "cross" if leverage == 0 else "isolated"


def close_fee_rate(market: Mapping | None, where: str) -> float:
    """The contract's listed taker fee rate (`taker_fee_rate` of GET /futures/usdt/contracts, in
    ccxt's market `info`): the fee to close Gate reserves in a position's maintenance margin."""
    info = market.get("info") if isinstance(market, Mapping) else None
    rate = optional_number(info.get("taker_fee_rate"), f"{where}: contract taker_fee_rate") if isinstance(info, Mapping) else None
    if rate is None or rate < 0:
        raise SourceError("data", f"{where}: maintenance_margin not stated and the contract states no taker_fee_rate "
                                  f"(Gate's fee to close, part of its maintenance margin): not guessed")
    return rate


def maintenance_of(row: Mapping, value: float, where: str, market: Mapping | None = None) -> tuple[float, float | None]:
    """(maintenance margin, the rate it grows at with the value): Gate's `maintenance_margin` where
    stated above 0, else `value` × (the position's (average) maintenance rate + the contract's
    taker fee rate), Gate's maintenance with its fee to close (see the module docstring)."""
    stated = optional_number(row.get("maintenance_margin"), f"{where}.maintenance_margin")
    key = "average_maintenance_rate" if not is_blank(row.get("average_maintenance_rate")) else "maintenance_rate"
    rate = optional_number(row.get(key), f"{where}.{key}")
    if stated is not None and stated > 0:
        return stated, rate
    if rate is None:
        raise SourceError("data", f"{where}: neither maintenance_margin nor maintenance_rate stated")
    rate += close_fee_rate(market, where)
    return value * rate, rate


def parse_position(raw: Mapping, markets: Mapping) -> Position | None:
    row = mapping(raw.get("info"), f"{ID} position info")
    where = f"{ID} position {row.get('contract')}"
    size = number(row.get("size"), f"{where}.size")
    if size == 0:
        return None
    symbol = raw.get("symbol") or row.get("contract")
    mode = margin_mode(row, where)
    side = {"dual_long": "long", "dual_short": "short"}.get(str(row.get("mode")), "long" if size > 0 else "short")
    value = abs(number(row.get("value"), f"{where}.value"))
    pnl = number(row.get("unrealised_pnl"), f"{where}.unrealised_pnl")
    maintenance, rate = maintenance_of(row, value, where, markets.get(symbol))
    collateral = None
    if mode == "isolated":
        collateral = number(row.get("margin"), f"{where}.margin") + pnl  # Gate's position margin balance
    initial = optional_number(row.get("initial_margin"), f"{where}.initial_margin")
    return make_position(
        where=where,
        symbol=symbol,
        side=side,
        contracts=base_quantity(raw, markets, where, require_size=True),
        entry_price=number(row.get("entry_price"), f"{where}.entry_price"),
        mark_price=number(row.get("mark_price"), f"{where}.mark_price"),
        notional=value,
        unrealized_pnl=pnl,
        maintenance_margin=maintenance,
        margin_mode=mode,
        collateral=collateral,
        liquidation_price=price_or_none(row.get("liq_price"), f"{where}.liq_price"),
        initial_margin=initial if initial else None,
        maintenance_rate=rate,
        currency=SETTLE,
    )


# ---------------------------------------------------------------- accounts

def futures_snapshot(account_name: str, exchange_id: str, info: Mapping, parsed: list[Position]) -> AccountSnapshot:
    where = f"{ID} futures account"
    currency = str(info.get("currency") or "")
    if currency.upper() != SETTLE:
        raise SourceError("data", f"{where}.currency is {currency!r}: only USDT-settled futures are read")
    mode = optional_number(info.get("margin_mode"), f"{where}.margin_mode")
    if (mode is not None and mode != 0) or info.get("enable_credit") is True:
        raise SourceError("data", f"{where}: margined by Gate's unified account (margin_mode {info.get('margin_mode')!r}): "
                                  f"set {OPTION_HINT} = true to read the unified account")
    wallet = number(info.get("total"), f"{where}.total")
    cross = [p for p in parsed if not p.isolated]
    if is_blank(info.get("cross_maintenance_margin")) or is_blank(info.get("cross_margin_balance")):
        if cross:
            raise SourceError("data", f"{where} states no cross_maintenance_margin / cross_margin_balance (Gate's old classic "
                                      f"margin mode) while {len(cross)} cross position(s) are open: the cross ratio is not guessed")
        return make_snapshot(account=account_name, exchange=exchange_id, equity=wallet, maintenance_margin=0.0,
                             wallet_balance=wallet, positions=parsed, currency=SETTLE)
    maintenance = number(info["cross_maintenance_margin"], f"{where}.cross_maintenance_margin")
    if maintenance <= 0 and cross:  # Gate states "0" where the cross figures do not apply (the old classic mode)
        raise SourceError("data", f"{where}.cross_maintenance_margin is 0 while {len(cross)} cross position(s) are open: "
                                  f"the cross ratio is not read as 0")
    if maintenance > 0 and not cross:
        raise SourceError("data", f"{where}.cross_maintenance_margin {maintenance:g} but the positions answer lists no cross "
                                  f"position: positions missing")
    return make_snapshot(
        account=account_name,
        exchange=exchange_id,
        equity=number(info["cross_margin_balance"], f"{where}.cross_margin_balance"),
        maintenance_margin=maintenance,
        wallet_balance=wallet,
        positions=parsed,
        initial_margin=optional_number(info.get("cross_initial_margin"), f"{where}.cross_initial_margin") or 0.0,
        currency=SETTLE,
    )


def unified_snapshot(account_name: str, exchange_id: str, info: Mapping, parsed: list[Position]) -> AccountSnapshot:
    where = f"{ID} unified account"
    total_maintenance = number(info.get("total_maintenance_margin"), f"{where}.total_maintenance_margin")
    total_balance = number(info.get("total_margin_balance"), f"{where}.total_margin_balance")
    equity_total = optional_number(info.get("unified_account_total_equity"), f"{where}.unified_account_total_equity")
    if total_maintenance > 0 or total_balance > 0:  # multi-currency or portfolio margin mode
        cross = [p for p in parsed if not p.isolated]
        if total_maintenance <= 0 and cross:
            raise SourceError("data", f"{where}.total_maintenance_margin is 0 while {len(cross)} cross futures position(s) "
                                      f"are open: the ratio is not read as 0")
        snapshot = make_snapshot(
            account=account_name,
            exchange=exchange_id,
            equity=total_balance,
            maintenance_margin=total_maintenance,
            wallet_balance=equity_total if equity_total is not None else total_balance,
            positions=parsed,
            initial_margin=optional_number(info.get("total_initial_margin"), f"{where}.total_initial_margin") or 0.0,
            currency=UNIFIED_CURRENCY,
        )
        return replace(snapshot, own_figure=UNIFIED_MMR)
    pools = []  # single-currency margin mode: each currency's own cross account
    for code, row in mapping(info.get("balances"), f"{where}.balances").items():
        row = mapping(row, f"{where}.balances[{code}]")
        at = f"{where}.balances[{code}]"
        maintenance = optional_number(row.get("mm"), f"{at}.mm")
        if maintenance:
            balance = number(row.get("margin_balance"), f"{at}.margin_balance")
            symbols = tuple(p.symbol for p in parsed if not p.isolated and p.currency == code)
            pools.append(Pool(scope=cross_scope(str(code)), equity=balance, maintenance_margin=maintenance, currency=str(code),
                              wallet_balance=optional_number(row.get("cross_balance"), f"{at}.cross_balance") or balance,
                              symbols=symbols))
    unpooled = sorted({p.symbol for p in parsed if not p.isolated} - {s for pool in pools for s in pool.symbols})
    if pools and unpooled:
        raise SourceError("data", f"{where}: cross position {unpooled[0]} is open but its currency states no mm (maintenance margin)")
    if pools:
        worst = max(pools, key=lambda p: (p.maintenance_margin / p.equity if p.equity > 0 else float("inf"), p.scope))
        snapshot = make_snapshot(account=account_name, exchange=exchange_id, equity=worst.equity,
                                 maintenance_margin=worst.maintenance_margin, wallet_balance=worst.wallet_balance,
                                 positions=parsed, currency=worst.currency)
        return replace(snapshot, pools=tuple(sorted(pools, key=lambda p: p.scope)), own_figure=MMR)
    cross = [p for p in parsed if not p.isolated]
    if cross:
        raise SourceError("data", f"{where} states no maintenance margin while {len(cross)} cross futures position(s) are open "
                                  f"(classic spot mode keeps futures in the futures account: set {OPTION_HINT} = false)")
    equity = equity_total if equity_total is not None else 0.0
    return make_snapshot(account=account_name, exchange=exchange_id, equity=equity, maintenance_margin=0.0,
                         wallet_balance=equity, positions=parsed, currency=UNIFIED_CURRENCY)


def account_answer(balance: Mapping) -> Mapping:
    """The account answer in `balance['info']`: with defaultType "swap" ccxt wraps it in a list of one
    (the unified answer too)."""
    info = balance.get("info")
    if isinstance(info, list) and len(info) == 1:
        info = info[0]
    return mapping(info, f"{ID} account answer")


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    info = account_answer(balance)
    parsed = [p for p in (parse_position(raw, markets) for raw in positions) if p is not None]
    if isinstance(info.get("balances"), Mapping):
        return unified_snapshot(account_name, exchange_id, info, parsed)
    return futures_snapshot(account_name, exchange_id, info, parsed)


# ---------------------------------------------------------------- profile

PROFILE = Profile(
    name="Gate",
    ids=(ID,),
    modes="unified account (multi-currency and portfolio margin; single-currency margin: one cross scope per currency) "
          "with `ccxt.options.unifiedAccount = true`; else the classic USDT-settled perpetual futures "
          "account (cross and isolated, one-way and hedge mode); not BTC-settled futures, nor cross positions in the old "
          "classic margin mode (no cross figures stated)",
    figure="unified: `total_maintenance_margin` ÷ `total_margin_balance` of /unified/accounts (single-currency: each "
           "currency's `mm` ÷ `margin_balance`); futures: `cross_maintenance_margin` ÷ `cross_margin_balance` of "
           "/futures/usdt/accounts; isolated: the position's maintenance ÷ (`margin` + `unrealised_pnl`); "
           "liquidation distance: `liq_price`",
    currency="unified: USD (single-currency: the currency); futures: USDT",
    liquidation="Liquidation when the maintenance margin ratio, margin balance ÷ maintenance margin (of the unified "
                "account, the cross futures account, or one isolated position), falls to 100 % or below.",
    liquidation_url="https://www.gate.com/help/futures/futures-logic/22159/liquidation-process",
    normalise=normalise,
    check_body=check_body,
    # the futures account by default; markets: USDT perpetuals only (no spot, delivery, options or currency lists);
    # unifiedAccount set either way spares ccxt its /account/detail probe
    ccxt_defaults={"options": {"defaultType": "swap", "unifiedAccount": False, "fetchMarkets": {"types": ["swap"]},
                               "swap": {"fetchMarkets": {"settlementCurrencies": ["usdt"]}}},
                   "has": {"fetchCurrencies": False}},
    options={"unifiedAccount": (True, False), "defaultType": ("swap",)},
    own_figure=MMR,
    figure_for=figure_for,
    permissions='a read-only APIv4 key (`api_key`, `secret`) with read access to "Perpetual Futures" and, for a unified account, '
                '"Unified Account"; alerter reads the USDT perpetual futures account unless the account sets '
                '`ccxt = { options = { unifiedAccount = true } }` (then Gate\'s unified account: multi-currency, portfolio or '
                'single-currency margin)',
    reprice=False,  # unified figures mix spot collateral and borrowing; tiered maintenance follows the value
)
