"""Binance spot cross margin (/sapi/v1/margin/account), isolated margin
(/sapi/v1/margin/isolated/account) and Portfolio Margin (/papi/v1/account).

ccxt id `binance`; the mode is the account's ccxt options (README, "Binance margin and portfolio
margin"): `defaultType = "margin"` reads the cross margin account, `marginMode = "isolated"` the
isolated margin pairs, `portfolioMargin = true` the portfolio margin account. Futures options are
redirected to binanceusdm / binancecoinm, and a plain spot wallet is refused with a one-line
reason (`PROFILE.redirects`).

Cross margin, a lender's account. Binance's margin level = total asset value ÷ (total borrowed +
total accrued interest) (https://www.binance.com/en/support/faq/360030493931); the account is
liquidated at margin level 1.1 and a margin call is sent at 1.3 ("Get Summary of Margin account",
GET /sapi/v1/margin/tradeCoeff: `forceLiquidationBar` "1.1", `marginCallBar` "1.3",
https://developers.binance.com/docs/margin_trading/account/Get-Summary-Of-Margin-Account).
"Query Cross Margin Account Details"
(https://developers.binance.com/docs/margin_trading/account/Query-Cross-Margin-Account-Details)
states the totals in BTC: `totalAssetOfBtc`, `totalLiabilityOfBtc`, `totalNetAssetOfBtc`, and
`marginLevel`. The liability includes the interest (each asset's `netAsset` is free + locked −
borrowed − interest, and `totalNetAssetOfBtc` = `totalAssetOfBtc` − `totalLiabilityOfBtc`), so:
equity = `totalAssetOfBtc`, maintenance = 1.1 × `totalLiabilityOfBtc`, in BTC, and the ratio is
1.1 ÷ margin level (100 % = Binance's liquidation). The stated `marginLevel` must agree with the
totals (to their 8-decimal rounding), else the answer is blind. With nothing borrowed Binance
sends `marginLevel` "999" and a zero liability: ratio 0. Only Cross Margin Classic
(`accountType` "MARGIN_1", or no `accountType`, as older answers) is read: Cross Margin Pro
(MARGIN_2) has its own levels, not checked here.

Portfolio Margin. Binance's uniMMR = account equity ÷ account maintenance margin; liquidation when
it falls below 105 % (https://www.binance.com/en/support/faq/ff4b1ab6c27b4ed6b3ebe8e4ed1572f8);
a reminder at ≤ 150 % and reduce-only at ≤ 120 %
(https://www.binance.com/en/support/faq/binance-portfolio-margin-pro-maintenance-margin-ratio-calculation-5e33af8e6ac04d57a1d0a3398e0a0752).
"Account Information" (https://developers.binance.com/docs/derivatives/portfolio-margin/account/Account-Information)
states `uniMMR`, `accountEquity` and `accountMaintMargin` (USD). So equity = `accountEquity`,
maintenance = 1.05 × `accountMaintMargin` (liquidation is at 105 % of Binance's maintenance, not at
100 %), in USD, and the ratio is 1.05 ÷ uniMMR. ccxt's fetch_balance() with portfolioMargin reads
/papi/v1/balance, which has no uniMMR: the profile reads papiGetAccount instead (`balance_method`).

Isolated margin, a lender per pair. Each pair is an account of its own, liquidated when its margin
level (the pair's total asset value ÷ its borrowed plus interest, https://www.binance.com/en/support/faq/360030493931,
"Margin Level of Isolated Margin") falls to its **liquidation risk ratio**, which depends on the
pair's leverage and tier: "Isolated margin follows a tiered leverage approach. The amount borrowed
will determine the Tier applicable. Each Tier will have a different Max Leverage, Initial Risk
Ratio, Margin Call Ratio and Liquidation Risk Ratio. If you borrow both the base asset and quote
asset in a trading pair, the higher Tier will apply." (https://www.binance.com/en/margin-data);
"Tiered Leverage Function on Isolated Margin" (https://www.binance.com/en/support/faq/7fbadf3c75914efc90e8b831709b644f)
gives the tables: today 10x pairs liquidate at 1.05 (margin call 1.1), 5x at 1.15 (1.19), 3x at
1.18 (1.22), the same for every tier of a leverage (earlier versions of the page let the ratio
rise with the tier). "Query Isolated Margin Account Info"
(https://developers.binance.com/docs/margin_trading/account/Query-Isolated-Margin-Account-Info)
states per pair `marginLevel`, `indexPrice` and each asset's `totalAsset`, `borrowed`,
`interest`, `netAsset`, but not the liquidation ratio; "Query Isolated Margin Tier Data"
(GET /sapi/v1/margin/isolatedMarginTier?symbol=…, https://developers.binance.com/docs/margin_trading/market-data/Query-Isolated-Margin-Tier-Data)
states each tier's `liquidationRiskRatio` with its `baseAssetMaxBorrowable` and
`quoteAssetMaxBorrowable`. So every pair with a debt is asked for its tiers (one request each,
`balance_follow_up`) and becomes a pool "pair:BTCUSDT" in its quote asset: equity = base
`totalAsset` × `indexPrice` + quote `totalAsset`, liabilities = (`borrowed` + `interest`) of both
valued the same way, and the stated `marginLevel` must agree with equity ÷ liabilities (to 0.01 %,
else the pair is blind); maintenance = ratio × equity with ratio = liquidation risk ratio ÷
`marginLevel`, so the normalised ratio is Binance's own margin level against the pair's own
trigger (`Pool.lender_trigger`, `Pool.own_figure`). When the tiers differ in their liquidation
ratio, the tier is the first whose borrow limits hold the borrowed base and quote (the higher of
the two), and it must be the same with and without the interest; a pair whose tier cannot be
established (no tier answer, a debt beyond the last tier, at a tier boundary) is blind on its own
scope (`unreadable`), never guessed. The margin-call notice is Binance's margin call ratio where
the tiers share one liquidation ratio listed on the FAQ page today (1.05 → 1.1, 1.15 → 1.19,
1.18 → 1.22); the API does not state it, so otherwise no notice is shown. `liquidatePrice`,
`liquidateRate` and `marginRatio` are not used: their definitions are not documented. Pairs
without a debt are not scopes; with no debt anywhere the account scope reads 0 (in BTC, from
`totalAssetOfBtc`).

No positions are read in any mode (its `fetch` asks for none): spot margin has none in ccxt's
sense (ccxt's fetch_positions would ask the USDⓈ-M endpoints), and the portfolio margin figure is
the whole account's. Re-pricing between polls is off: the figures move with every asset's price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from alerter.models import AccountSnapshot, OwnFigure, Pool
from alerter.sources.errors import SourceError
from alerter.sources.fields import make_snapshot, mapping, number, optional_number, shape_error
from alerter.sources import binance_loans
from alerter.sources.profile import FetchContext, Profile, Raw, Redirect

ID = "binance"
CROSS_PATH = "/sapi/v1/margin/account"
ISOLATED_PATH = "/sapi/v1/margin/isolated/account"
TIER_PATH = "/sapi/v1/margin/isolatedMarginTier"
TIER_METHOD = "sapiGetMarginIsolatedMarginTier"  # ccxt's implicit method for TIER_PATH
PM_PATH = "/papi/v1/account"
MARGIN_TRIGGER = 1.1  # margin level at liquidation (forceLiquidationBar)
UNIMMR_TRIGGER = 1.05  # uniMMR at liquidation
MARGIN_LEVEL = OwnFigure("margin level", MARGIN_TRIGGER, inverse=True, notices=(("Binance's margin-call notice", 1.3),))
UNIMMR = OwnFigure("uniMMR", UNIMMR_TRIGGER, inverse=True, percent=True,
                   notices=(("Binance's uniMMR reminder", 1.5), ("Binance's reduce-only", 1.2)))
CROSS_CLASSIC = (None, "MARGIN_1")
ROUNDING = 0.5e-8  # Binance states these figures to 8 decimals
# an isolated pair's margin call ratio by its liquidation risk ratio, where every tier of the pair
# has that one ratio (the Tiered Leverage FAQ's tables today: 10x, 5x, 3x)
ISOLATED_MARGIN_CALL = {1.05: 1.1, 1.15: 1.19, 1.18: 1.22}
NO_DEBT_LEVEL = 999.0  # Binance's marginLevel when nothing (or next to nothing) is borrowed
LEVEL_AGREEMENT = 1e-4  # an isolated pair's marginLevel against its assets ÷ liabilities at indexPrice


def pair_scope(symbol: str) -> str:
    """The scope of one isolated margin pair: "pair:BTCUSDT"."""
    return f"pair:{symbol}"


def portfolio_margin(options: Mapping[str, Any]) -> bool:
    return options.get("portfolioMargin") is True


def isolated_margin(options: Mapping[str, Any]) -> bool:
    """ccxt reads the isolated account when its marginMode (else defaultMarginMode) is "isolated"."""
    return not portfolio_margin(options) and (options.get("marginMode") or options.get("defaultMarginMode")) == "isolated"


def figure_for(options: Mapping[str, Any]) -> OwnFigure | None:
    """Isolated margin: None here, each pair carries its own (its liquidation ratio is its tier's)."""
    if portfolio_margin(options):
        return UNIMMR
    return None if isolated_margin(options) else MARGIN_LEVEL


def balance_method(options: Mapping[str, Any]) -> str | None:
    """ccxt's implicit method whose answer is the account (None: fetch_balance(), which reads
    /sapi/v1/margin/account with defaultType "margin")."""
    return "papiGetAccount" if portfolio_margin(options) else None


def _amount(value: Any) -> float:
    """A figure for deciding which requests to make: unreadable counts as a debt (the normaliser
    then names it)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def indebted(pair: Any) -> bool:
    """An isolated pair with something borrowed or interest owed (or unreadable figures)."""
    if not isinstance(pair, Mapping):
        return False
    sides = [pair.get("baseAsset"), pair.get("quoteAsset")]
    return any(not isinstance(side, Mapping) or _amount(side.get(key)) != 0 for side in sides for key in ("borrowed", "interest"))


def balance_follow_up(info: Any) -> tuple[tuple[str, Mapping[str, Any]], ...]:
    """The isolated account answer: one tier request per pair with a debt (other modes: none)."""
    if not isinstance(info, Mapping) or not isinstance(info.get("assets"), list):
        return ()
    symbols = sorted({pair["symbol"] for pair in info["assets"] if indebted(pair) and isinstance(pair.get("symbol"), str)})
    return tuple((TIER_METHOD, {"symbol": symbol}) for symbol in symbols)


async def fetch(ctx: FetchContext) -> Raw:
    """The account answer of the account's mode (`balance_method`), then the requests it names
    (`balance_follow_up`), found by `normalise` in balance["follow_up"] as (method, params,
    answer), in that order. No positions: the account answer is the figure."""
    method = balance_method(ctx.options)
    if method is None:
        balance = await ctx.call(ctx.exchange.fetch_balance, check=True)
    else:
        balance = {"info": await ctx.call(getattr(ctx.exchange, method), check=True)}
    calls = balance_follow_up(balance.get("info"))
    if calls:
        answers = await ctx.gather(*(ctx.call(getattr(ctx.exchange, name), dict(params), check=True) for name, params in calls))
        balance = {**balance, "follow_up": [(name, dict(params), answer) for (name, params), answer in zip(calls, answers, strict=True)]}
    return balance, []


def check_body(path: str, data: Any) -> None:
    """The account answers must be objects carrying their figures (a cut answer is blind)."""
    if path.endswith(ISOLATED_PATH):
        if not isinstance(data, Mapping) or not isinstance(data.get("assets"), list):
            raise shape_error(ID, path, "an isolated margin account (assets)", data)
    elif path.endswith(TIER_PATH):
        if not isinstance(data, list) or not all(isinstance(row, Mapping) and "liquidationRiskRatio" in row for row in data):
            raise shape_error(ID, path, "a list of isolated margin tiers (liquidationRiskRatio)", data)
    elif path.endswith(CROSS_PATH):
        if not isinstance(data, Mapping) or not isinstance(data.get("userAssets"), list) \
                or not all(key in data for key in ("marginLevel", "totalAssetOfBtc", "totalLiabilityOfBtc")):
            raise shape_error(ID, path, "a margin account (marginLevel, totalAssetOfBtc, totalLiabilityOfBtc, userAssets)", data)
    elif path.endswith(PM_PATH):
        if not isinstance(data, Mapping) or not all(key in data for key in ("uniMMR", "accountEquity", "accountMaintMargin")):
            raise shape_error(ID, path, "a portfolio margin account (uniMMR, accountEquity, accountMaintMargin)", data)


def _agrees(stated: float, numerator: float, denominator: float) -> bool:
    """`stated` = numerator ÷ denominator, within the rounding of three 8-decimal figures."""
    computed = numerator / denominator
    slack = computed * (ROUNDING / max(abs(numerator), ROUNDING) + ROUNDING / denominator) + ROUNDING
    return abs(stated - computed) <= 2 * slack + 1e-12 * abs(computed)


def normalise_cross(account_name: str, info: Mapping) -> AccountSnapshot:
    where = f"{ID} {CROSS_PATH}"
    kind = info.get("accountType")
    if kind not in CROSS_CLASSIC:
        raise SourceError("data", f"{where}.accountType is {kind!r}: only Cross Margin Classic (MARGIN_1) is read; "
                                  "Cross Margin Pro's liquidation level is not checked here")
    assets = number(info.get("totalAssetOfBtc"), f"{where}.totalAssetOfBtc")
    liability = number(info.get("totalLiabilityOfBtc"), f"{where}.totalLiabilityOfBtc")
    level = number(info.get("marginLevel"), f"{where}.marginLevel")
    net = optional_number(info.get("totalNetAssetOfBtc"), f"{where}.totalNetAssetOfBtc")
    if assets < 0 or liability < 0:
        raise SourceError("data", f"{where}: negative totals (totalAssetOfBtc {assets:g}, totalLiabilityOfBtc {liability:g})")
    if liability > 0 and not _agrees(level, assets, liability):
        raise SourceError("data", f"{where}.marginLevel {level:g} disagrees with totalAssetOfBtc ÷ totalLiabilityOfBtc "
                                  f"({assets:g} ÷ {liability:g} = {assets / liability:g}): a partial answer")
    snapshot = make_snapshot(
        account=account_name,
        exchange=ID,
        equity=assets,
        maintenance_margin=MARGIN_TRIGGER * liability,
        wallet_balance=net if net is not None else assets - liability,
        currency="BTC",
    )
    return replace(snapshot, lender_trigger=MARGIN_TRIGGER, own_figure=MARGIN_LEVEL)


def normalise_portfolio(account_name: str, info: Mapping) -> AccountSnapshot:
    where = f"{ID} {PM_PATH}"
    equity = number(info.get("accountEquity"), f"{where}.accountEquity")
    maintenance = number(info.get("accountMaintMargin"), f"{where}.accountMaintMargin")
    unimmr = number(info.get("uniMMR"), f"{where}.uniMMR")
    if maintenance < 0:
        raise SourceError("data", f"{where}.accountMaintMargin must not be negative, got {maintenance:g}")
    if maintenance > 0 and equity > 0 and not _agrees(unimmr, equity, maintenance):
        raise SourceError("data", f"{where}.uniMMR {unimmr:g} disagrees with accountEquity ÷ accountMaintMargin "
                                  f"({equity:g} ÷ {maintenance:g} = {equity / maintenance:g}): a partial answer")
    snapshot = make_snapshot(
        account=account_name,
        exchange=ID,
        equity=equity,
        maintenance_margin=UNIMMR_TRIGGER * maintenance,
        wallet_balance=optional_number(info.get("actualEquity"), f"{where}.actualEquity") or equity,
        initial_margin=optional_number(info.get("accountInitialMargin"), f"{where}.accountInitialMargin") or 0.0,
        currency="USD",
    )
    return replace(snapshot, own_figure=UNIMMR)


def _side(pair: Mapping, key: str, where: str) -> tuple[str, float, float, float]:
    """One asset of an isolated pair: (asset, totalAsset, borrowed, interest), its netAsset checked."""
    side = mapping(pair.get(key), f"{where}.{key}")
    asset = side.get("asset")
    if not isinstance(asset, str) or not asset:
        raise SourceError("data", f"{where}.{key}.asset: missing (got {asset!r})")
    total, borrowed, interest, net = (number(side.get(name), f"{where}.{key}.{name}") for name in ("totalAsset", "borrowed", "interest", "netAsset"))
    if min(total, borrowed, interest) < 0:
        raise SourceError("data", f"{where}.{key}: negative totalAsset, borrowed or interest")
    if abs(net - (total - borrowed - interest)) > 4 * ROUNDING + 1e-12 * total:
        raise SourceError("data", f"{where}.{key}.netAsset {net:g} is not totalAsset − borrowed − interest "
                                  f"({total:g} − {borrowed:g} − {interest:g}): a partial answer")
    return asset, total, borrowed, interest


def _tier_trigger(symbol: str, answer: Any, base_debt: tuple[float, float], quote_debt: tuple[float, float]) -> tuple[float, float | None]:
    """The pair's liquidation risk ratio (and Binance's margin call ratio, where known) from its
    tiers. `base_debt`, `quote_debt`: (borrowed, borrowed + interest)."""
    where = f"{ID} {TIER_PATH}?symbol={symbol}"
    if answer is None:
        raise SourceError("data", f"{where}: not answered, so the pair's liquidation level is unknown")
    if not isinstance(answer, list) or not answer:
        raise SourceError("data", f"{where}: no tiers listed, so the pair's liquidation level is unknown")
    tiers = []
    for i, row in enumerate(answer):
        row = mapping(row, f"{where}[{i}]")
        if row.get("symbol") != symbol:
            raise SourceError("data", f"{where}[{i}].symbol is {row.get('symbol')!r}, not {symbol!r}")
        tiers.append((number(row.get("tier"), f"{where}[{i}].tier"),
                      number(row.get("liquidationRiskRatio"), f"{where}[{i}].liquidationRiskRatio"),
                      number(row.get("baseAssetMaxBorrowable"), f"{where}[{i}].baseAssetMaxBorrowable"),
                      number(row.get("quoteAssetMaxBorrowable"), f"{where}[{i}].quoteAssetMaxBorrowable")))
    tiers.sort()
    ratios = {ratio for _, ratio, _, _ in tiers}
    if len(ratios) == 1:
        (trigger,) = ratios
        call = ISOLATED_MARGIN_CALL.get(trigger)
    else:  # the amount borrowed decides the tier: the first whose limits hold it, the higher of base and quote

        def tier_of(base: float, quote: float) -> tuple | None:
            at_base = next((t for t in tiers if base <= t[2]), None)
            at_quote = next((t for t in tiers if quote <= t[3]), None)
            return None if at_base is None or at_quote is None else max(at_base, at_quote)

        found = {tier_of(base_debt[k], quote_debt[k]) for k in (0, 1)}
        if None in found:
            raise SourceError("data", f"{where}: the debt is beyond the last tier's borrow limits, so the pair's liquidation level is unknown")
        if len({t[1] for t in found}) > 1:
            raise SourceError("data", f"{where}: the debt is at the boundary of tiers {' and '.join(f'{t[0]:g}' for t in sorted(found))} "
                                      "(one without the interest, the other with it), whose liquidation ratios differ")
        trigger, call = found.pop()[1], None
    if not trigger > 1:
        raise SourceError("data", f"{where}: liquidationRiskRatio {trigger:g} is not above 1")
    return trigger, call


def _isolated_pool(pair: Mapping, symbol: str, tiers: Mapping[str, Any]) -> Pool | None:
    """One isolated pair as a pool in its quote asset (None: nothing borrowed)."""
    where = f"{ID} {ISOLATED_PATH} {symbol}"
    _, base_total, base_borrowed, base_interest = _side(pair, "baseAsset", where)
    quote, quote_total, quote_borrowed, quote_interest = _side(pair, "quoteAsset", where)
    if base_borrowed + base_interest + quote_borrowed + quote_interest == 0:
        return None
    index = number(pair.get("indexPrice"), f"{where}.indexPrice")
    level = number(pair.get("marginLevel"), f"{where}.marginLevel")
    if not index > 0:
        raise SourceError("data", f"{where}.indexPrice must be > 0, got {index:g}")
    assets = base_total * index + quote_total
    liabilities = (base_borrowed + base_interest) * index + quote_borrowed + quote_interest
    trigger, call = _tier_trigger(symbol, tiers.get(symbol), (base_borrowed, base_borrowed + base_interest),
                                  (quote_borrowed, quote_borrowed + quote_interest))
    computed = assets / liabilities
    if level >= NO_DEBT_LEVEL and computed >= NO_DEBT_LEVEL:  # next to nothing owed: Binance caps the level
        maintenance = trigger * liabilities
    elif abs(level - computed) <= LEVEL_AGREEMENT * computed + ROUNDING:
        # the ratio is exactly trigger ÷ Binance's marginLevel (nothing left: ∞)
        maintenance = trigger * assets / level if level > 0 else trigger * liabilities
    else:
        raise SourceError("data", f"{where}.marginLevel {level:g} disagrees with its assets ÷ liabilities at indexPrice "
                                  f"{index:g} ({assets:g} ÷ {liabilities:g} {quote} = {computed:g}): a partial answer")
    notices = (("Binance's margin-call notice", call),) if call is not None else ()
    return Pool(pair_scope(symbol), equity=assets, maintenance_margin=maintenance, currency=quote,
                wallet_balance=assets - liabilities, lender_trigger=trigger,
                own_figure=OwnFigure("margin level", trigger, inverse=True, notices=notices))


def normalise_isolated(account_name: str, info: Mapping, follow_up: list) -> AccountSnapshot:
    """One pool per pair with a debt; a pair whose figures or tier cannot be read is blind on its own."""
    where = f"{ID} {ISOLATED_PATH}"
    tiers = {params.get("symbol"): answer for method, params, answer in follow_up if method == TIER_METHOD}
    pools: list[Pool] = []
    unreadable: list[tuple[str, str]] = []
    for i, pair in enumerate(info["assets"]):
        pair = mapping(pair, f"{where}.assets[{i}]")
        symbol = pair.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise SourceError("data", f"{where}.assets[{i}].symbol: missing (got {symbol!r})")
        try:
            pool = _isolated_pool(pair, symbol, tiers)
        except SourceError as e:
            unreadable.append((pair_scope(symbol), e.message))
            continue
        if pool is not None:
            pools.append(pool)
    if unreadable and not pools:  # nothing left to watch: the account itself is blind
        raise SourceError("data", "; ".join(reason for _, reason in unreadable))
    if pools:
        worst = max(pools, key=lambda p: p.maintenance_margin / p.equity if p.equity > 0 else float("inf"))
        snapshot = make_snapshot(account=account_name, exchange=ID, equity=worst.equity, maintenance_margin=worst.maintenance_margin,
                                 wallet_balance=worst.wallet_balance, currency=worst.currency, pools=sorted(pools, key=lambda p: p.scope))
        return replace(snapshot, unreadable=tuple(sorted(unreadable)))
    # nothing borrowed in any pair: the account scope, at no risk, in BTC
    total = optional_number(info.get("totalAssetOfBtc"), f"{where}.totalAssetOfBtc")
    if total is None:  # an answer for named symbols carries no totals: the pairs' own
        total = sum(number(mapping(pair.get(key), f"{where}.{pair.get('symbol')}.{key}").get("netAssetOfBtc"), f"{where}.{pair.get('symbol')}.{key}.netAssetOfBtc")
                    for pair in info["assets"] for key in ("baseAsset", "quoteAsset"))
    return make_snapshot(account=account_name, exchange=ID, equity=total, maintenance_margin=0.0, wallet_balance=total, currency="BTC")


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    """`positions` is empty (none are asked for): the account answer (and, for isolated margin, the
    indebted pairs' tiers in balance["follow_up"]) is all there is."""
    info = mapping(balance.get("info"), f"{ID} account answer")
    if "uniMMR" in info:
        return normalise_portfolio(account_name, info)
    if "marginLevel" in info and "userAssets" in info:
        return normalise_cross(account_name, info)
    if isinstance(info.get("assets"), list):
        return normalise_isolated(account_name, info, list(balance.get("follow_up") or ()))
    raise SourceError("data", f"{ID}: the balance answer is neither a cross margin, an isolated margin nor a portfolio margin account "
                              f"(keys {', '.join(sorted(map(str, info))[:6])}); set ccxt.options.defaultType = \"margin\", "
                              "marginMode = \"isolated\" or portfolioMargin = true")


# ---------------------------------------------------------------- profile

_SPOT = ('a plain spot wallet has no margin to watch: set ccxt.options.defaultType = "margin" (cross margin), '
         'marginMode = "isolated" (isolated margin) or portfolioMargin = true')
_PM_ALONE = "a portfolio margin account is read whole (uniMMR of /papi/v1/account): set portfolioMargin = true without defaultType"
_PM_ISOLATED = ("a portfolio margin account is read whole (uniMMR of /papi/v1/account), its isolated margin is not: "
                "set portfolioMargin = true without marginMode, or marginMode = \"isolated\" without portfolioMargin")

_LOAN_ALONE = 'the flexible loans are read on their own (defaultType = "loan"): set defaultType = "loan" without a margin mode'

PROFILE = Profile(
    name="Binance margin and portfolio margin",
    ids=(ID,),
    modes='spot cross margin, Classic (`defaultType = "margin"`); spot isolated margin, each indebted pair on its own '
          '(`marginMode = "isolated"`); Portfolio Margin (`portfolioMargin = true`); not Cross Margin Pro',
    figure="cross margin: 1.1 ÷ `marginLevel` = 1.1 × `totalLiabilityOfBtc` ÷ `totalAssetOfBtc` of /sapi/v1/margin/account; "
           "isolated margin, per pair: the tier's `liquidationRiskRatio` (/sapi/v1/margin/isolatedMarginTier) ÷ the pair's "
           "`marginLevel` (/sapi/v1/margin/isolated/account, checked against its assets ÷ borrowed plus interest at `indexPrice`); "
           "portfolio margin: 1.05 ÷ `uniMMR` = 1.05 × `accountMaintMargin` ÷ `accountEquity` of /papi/v1/account",
    currency="BTC (cross margin), each pair's quote asset (isolated margin), USD (portfolio margin)",
    liquidation="Cross margin is liquidated at margin level (assets ÷ borrowed plus interest) 1.1, with a margin call at "
                "1.3; an isolated pair at its tier's liquidation risk ratio (today 1.05 for 10x pairs, 1.15 for 5x, 1.18 for 3x, "
                "margin calls at 1.1, 1.19, 1.22); portfolio margin at uniMMR (equity ÷ maintenance margin) 105 %, reduce-only at "
                "120 %, a reminder at 150 %.",
    liquidation_url="https://www.binance.com/en/support/faq/360030493931",
    normalise=normalise,
    check_body=check_body,
    # load_markets() reads the spot exchangeInfo only: no signed wallet (capital/config/getall) or
    # margin pair lists, no futures market lists; no figure comes from the markets
    ccxt_defaults={"options": {"fetchCurrencies": False, "fetchMargins": False, "fetchMarkets": {"types": ["spot"]}}},
    reprice=False,  # margin level and uniMMR move with every asset's price, not with a position's mark
    options={"defaultType": ("margin", "loan"), "marginMode": ("cross", "isolated"), "defaultMarginMode": ("cross", "isolated"),
             "portfolioMargin": (True, False)},
    redirects=(
        Redirect(ID, {"defaultType": (None, "spot"), "portfolioMargin": (None, False), "marginMode": (None,), "defaultMarginMode": (None,)}, _SPOT),
        Redirect(ID, {"portfolioMargin": (True,), "defaultType": ("spot", "margin", "future", "swap", "delivery", "option", "loan")}, _PM_ALONE),
        Redirect(ID, {"defaultType": ("loan",), "marginMode": ("cross", "isolated")}, _LOAN_ALONE),
        Redirect(ID, {"defaultType": ("loan",), "defaultMarginMode": ("cross", "isolated")}, _LOAN_ALONE),
        Redirect(ID, {"portfolioMargin": (True,), "marginMode": ("isolated",)}, _PM_ISOLATED),
        Redirect(ID, {"portfolioMargin": (True,), "defaultMarginMode": ("isolated",)}, _PM_ISOLATED),
    ),
    permissions='"Enable Reading" only; for portfolio margin, a key of the portfolio margin account',
    figure_for=figure_for,
    fetch=fetch,
    mode_profiles=(("defaultType", "loan", binance_loans.PROFILE),),
)
