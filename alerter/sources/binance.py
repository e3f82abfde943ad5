"""Binance spot cross margin (/sapi/v1/margin/account) and Portfolio Margin (/papi/v1/account).

ccxt id `binance`; the mode is the account's ccxt options (README, "Binance margin and portfolio
margin"): `defaultType = "margin"` reads the cross margin account, `portfolioMargin = true` the
portfolio margin account. Futures options are redirected to binanceusdm / binancecoinm, and what
is not read (plain spot, isolated margin) is refused with a one-line reason (`PROFILE.redirects`).

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

No positions are read in either mode (`position_params` empty): spot margin has none in ccxt's
sense (ccxt's fetch_positions would ask the USDⓈ-M endpoints), and the portfolio margin figure is
the whole account's. Re-pricing between polls is off: the figures move with every asset's price.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from alerter.models import AccountSnapshot, OwnFigure
from alerter.sources.errors import SourceError
from alerter.sources.fields import make_snapshot, mapping, number, optional_number, shape_error

ID = "binance"
CROSS_PATH = "/sapi/v1/margin/account"
PM_PATH = "/papi/v1/account"
MARGIN_TRIGGER = 1.1  # margin level at liquidation (forceLiquidationBar)
UNIMMR_TRIGGER = 1.05  # uniMMR at liquidation
MARGIN_LEVEL = OwnFigure("margin level", MARGIN_TRIGGER, inverse=True, notices=(("Binance's margin-call notice", 1.3),))
UNIMMR = OwnFigure("uniMMR", UNIMMR_TRIGGER, inverse=True, percent=True,
                   notices=(("Binance's uniMMR reminder", 1.5), ("Binance's reduce-only", 1.2)))
CROSS_CLASSIC = (None, "MARGIN_1")
ROUNDING = 0.5e-8  # Binance states these figures to 8 decimals


def portfolio_margin(options: Mapping[str, Any]) -> bool:
    return options.get("portfolioMargin") is True


def figure_for(options: Mapping[str, Any]) -> OwnFigure:
    return UNIMMR if portfolio_margin(options) else MARGIN_LEVEL


def balance_method(options: Mapping[str, Any]) -> str | None:
    """ccxt's implicit method whose answer is the account (None: fetch_balance(), which reads
    /sapi/v1/margin/account with defaultType "margin")."""
    return "papiGetAccount" if portfolio_margin(options) else None


def check_body(path: str, data: Any) -> None:
    """The two account answers must be objects carrying their figures (a cut answer is blind)."""
    if path.endswith(CROSS_PATH):
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


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    """`positions` is empty (none are asked for): the account answer is all there is."""
    info = mapping(balance.get("info"), f"{ID} account answer")
    if "uniMMR" in info:
        return normalise_portfolio(account_name, info)
    if "marginLevel" in info and "userAssets" in info:
        return normalise_cross(account_name, info)
    raise SourceError("data", f"{ID}: the balance answer is neither a cross margin nor a portfolio margin account "
                              f"(keys {', '.join(sorted(map(str, info))[:6])}); set ccxt.options.defaultType = \"margin\" "
                              "or portfolioMargin = true")


# ---------------------------------------------------------------- profile (kept last: what the registry and the config read)

from alerter.sources.profile import Profile, Redirect  # noqa: E402

_SPOT = 'a plain spot wallet has no margin to watch: set ccxt.options.defaultType = "margin" (cross margin) or portfolioMargin = true'
_ISOLATED = ("Binance isolated margin is not read: each pair's liquidation level depends on its leverage tier "
             "(/sapi/v1/margin/isolatedMarginTier), which the account answer does not state")
_PM_ALONE = "a portfolio margin account is read whole (uniMMR of /papi/v1/account): set portfolioMargin = true without defaultType"

PROFILE = Profile(
    name="Binance margin and portfolio margin",
    ids=(ID,),
    modes='spot cross margin, Classic (`defaultType = "margin"`); Portfolio Margin (`portfolioMargin = true`); '
          "not isolated margin, not Cross Margin Pro",
    figure="cross margin: 1.1 ÷ `marginLevel` = 1.1 × `totalLiabilityOfBtc` ÷ `totalAssetOfBtc` of /sapi/v1/margin/account; "
           "portfolio margin: 1.05 ÷ `uniMMR` = 1.05 × `accountMaintMargin` ÷ `accountEquity` of /papi/v1/account",
    currency="BTC (cross margin), USD (portfolio margin)",
    liquidation="Cross margin is liquidated at margin level (assets ÷ borrowed plus interest) 1.1, with a margin call at "
                "1.3; portfolio margin at uniMMR (equity ÷ maintenance margin) 105 %, reduce-only at 120 %, a reminder at 150 %.",
    liquidation_url="https://www.binance.com/en/support/faq/360030493931",
    normalise=normalise,
    check_body=check_body,
    # load_markets() reads the spot exchangeInfo only: no signed wallet (capital/config/getall) or
    # margin pair lists, no futures market lists; no figure comes from the markets
    ccxt_defaults={"options": {"fetchCurrencies": False, "fetchMargins": False, "fetchMarkets": {"types": ["spot"]}}},
    position_params=(),  # no positions: the account answer is the figure
    reprice=False,  # margin level and uniMMR move with every asset's price, not with a position's mark
    options={"defaultType": ("margin",), "marginMode": ("cross",), "defaultMarginMode": ("cross",), "portfolioMargin": (True, False)},
    redirects=(
        Redirect(ID, {"defaultType": (None, "spot"), "portfolioMargin": (None, False), "marginMode": (None,), "defaultMarginMode": (None,)}, _SPOT),
        Redirect(ID, {"marginMode": ("isolated",)}, _ISOLATED),
        Redirect(ID, {"defaultMarginMode": ("isolated",)}, _ISOLATED),
        Redirect(ID, {"portfolioMargin": (True,), "defaultType": ("spot", "margin", "future", "swap", "delivery", "option")}, _PM_ALONE),
    ),
    figure_for=figure_for,
    balance_method=balance_method,
)
