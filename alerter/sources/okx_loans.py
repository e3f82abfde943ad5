"""OKX flexible loan: the account's loan read by OKX's own LTVs.

OKX states the whole flexible loan in one answer, "GET / Loan info"
(GET /api/v5/finance/flexible-loan/loan-info, ccxt `privateGetFinanceFlexibleLoanLoanInfo`,
https://www.okx.com/docs-v5/en/#financial-product-flexible-loan-get-loan-info): `curLTV`,
`marginCallLTV`, `liqLTV`, `loanNotionalUsd`, `collateralNotionalUsd`, `loanData` and
`collateralData` (each currency's `amt`), and `riskWarningData.liqPx` (stated only with one
collateral and one loan currency). One loan covers every loan and collateral currency of the
account, so it is the account scope, in USD.

OKX's ratio is its own `curLTV` against its own `liqLTV`: ratio = curLTV ÷ liqLTV, 100 % exactly
at OKX's liquidation LTV. Built as a lender's account (`lender_trigger` = 1 ÷ liqLTV): the debt
is OKX's `loanNotionalUsd`, the collateral value is the debt ÷ `curLTV`, maintenance = debt ÷
liqLTV. OKX's own quotient loanNotionalUsd ÷ collateralNotionalUsd need not be its `curLTV`
exactly (the documented example: 0.574403 against 0.5742), so the ratio is never that quotient;
a quotient more than `LTV_AGREEMENT` away from `curLTV` (relative) means the figures are not of
one moment, and the answer is blind. "Add X of collateral" is collateral value in USD; "repay Y of
the loan" is the repayment out of the collateral (it lowers both; a repayment from elsewhere needs
less). The own figure is OKX's LTV, with OKX's margin call (`marginCallLTV`) as its notice.

No loan (no entry in `data`, or a zero `loanNotionalUsd` with no LTV): ratio 0. Anything partial
(a blank LTV or level with a debt, more than one entry) is blind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from alerter.models import AccountSnapshot
from alerter.sources.errors import SourceError
from alerter.sources.fields import make_snapshot, mapping, number, optional_number, shape_error
from alerter.sources.loans import loan_pool
from alerter.sources.profile import FetchContext, Profile, Raw

ID = "okx"
LOAN_PATH = "/api/v5/finance/flexible-loan/loan-info"
LOAN_METHOD = "privateGetFinanceFlexibleLoanLoanInfo"  # ccxt's implicit method for LOAN_PATH
CURRENCY = "USD"
LTV_AGREEMENT = 0.02  # loanNotionalUsd ÷ collateralNotionalUsd against curLTV, relative


def check_loan_body(path: str, data: Any) -> None:
    """The loan answer is a v5 answer {"code": "0", "data": [...]} whose entries are objects."""
    if path.endswith(LOAN_PATH):
        if not isinstance(data, Mapping) or str(data.get("code")) != "0" or not isinstance(data.get("data"), list) \
                or not all(isinstance(row, Mapping) for row in data["data"]):
            raise shape_error(ID, path, 'the flexible loan {"code": "0", "data": [{curLTV, liqLTV, …}]}', data)


def normalise_loan(account_name: str, answer: Any) -> AccountSnapshot:
    """The loan-info answer (the whole v5 body) → the account scope (see module)."""
    where = f"{ID} {LOAN_PATH}"
    body = mapping(answer, where)
    if str(body.get("code")) != "0":
        raise SourceError("data", f"{where}: code {body.get('code')!r}, not \"0\"")
    data = body.get("data")
    if not isinstance(data, list):
        raise SourceError("data", f"{where}.data: expected a list, got {type(data).__name__}")
    if len(data) > 1:
        raise SourceError("data", f"{where}.data: {len(data)} loans where OKX states one per account")
    if not data:
        return make_snapshot(account=account_name, exchange=ID, equity=0.0, maintenance_margin=0.0, wallet_balance=0.0, currency=CURRENCY)
    loan = mapping(data[0], f"{where}.data[0]")
    debt = number(loan.get("loanNotionalUsd"), f"{where}.loanNotionalUsd")
    ltv = optional_number(loan.get("curLTV"), f"{where}.curLTV")
    if debt == 0 and not ltv:  # nothing borrowed: OKX need not state an LTV
        return make_snapshot(account=account_name, exchange=ID, equity=0.0, maintenance_margin=0.0, wallet_balance=0.0, currency=CURRENCY)
    ltv = number(loan.get("curLTV"), f"{where}.curLTV")
    collateral = number(loan.get("collateralNotionalUsd"), f"{where}.collateralNotionalUsd")
    if debt > 0 and ltv > 0:
        stated = debt / collateral if collateral > 0 else float("inf")
        if abs(stated - ltv) > LTV_AGREEMENT * ltv:
            raise SourceError("data", f"{where}.curLTV {ltv:g} disagrees with loanNotionalUsd ÷ collateralNotionalUsd "
                                      f"({debt:g} ÷ {collateral:g} = {stated:g}): figures of different moments")
    pool = loan_pool("account", debt=debt, ltv=ltv, liquidation_ltv=number(loan.get("liqLTV"), f"{where}.liqLTV"),
                     margin_call_ltv=number(loan.get("marginCallLTV"), f"{where}.marginCallLTV"), currency=CURRENCY,
                     where=where, lender="OKX")
    if pool is None:  # a zero debt with a zero curLTV stated: nothing borrowed
        return make_snapshot(account=account_name, exchange=ID, equity=0.0, maintenance_margin=0.0, wallet_balance=0.0, currency=CURRENCY)
    snapshot = make_snapshot(account=account_name, exchange=ID, equity=pool.equity, maintenance_margin=pool.maintenance_margin,
                             wallet_balance=pool.wallet_balance, currency=CURRENCY)
    return replace(snapshot, lender_trigger=pool.lender_trigger, own_figure=pool.own_figure)


async def fetch_loan(ctx: FetchContext) -> Raw:
    """The loan-info answer, checked against its documented shape; `normalise` finds it in
    balance["loan"]. No positions."""
    return {"loan": await ctx.call(getattr(ctx.exchange, LOAN_METHOD), check=True)}, []


def normalise(account_name: str, exchange_id: str, balance: dict, positions: list, markets: Mapping) -> AccountSnapshot:
    """The mode's normaliser: the answer `fetch_loan` put in balance["loan"]."""
    return normalise_loan(account_name, balance.get("loan"))


# ---------------------------------------------------------------- the mode's profile (okx.PROFILE lists it)

PROFILE = Profile(
    name="OKX flexible loan",
    ids=(ID,),
    modes='flexible loan (`defaultType = "loan"`): the account\'s one loan, all its loan and collateral currencies',
    figure="`curLTV` ÷ `liqLTV` of /api/v5/finance/flexible-loan/loan-info",
    currency="USD",
    liquidation="The loan is liquidated when its LTV (loan ÷ collateral value) reaches `liqLTV`; OKX sends a margin call "
                "at `marginCallLTV` (both stated with the loan).",
    liquidation_url="https://www.okx.com/docs-v5/en/#financial-product-flexible-loan-get-loan-info",
    normalise=normalise,
    check_body=check_loan_body,
    fetch=fetch_loan,
    ccxt_defaults={"options": {"fetchMarkets": {"types": ["swap", "future"]}}, "has": {"fetchCurrencies": False}},
    credentials=("api_key", "secret", "password"),
    reprice=False,  # an LTV moves with every collateral's price, which no position carries
    permissions='"Read" permission only; the API passphrase goes in `password`',
    recording_mark="flexible-loan",
    live_levels=True,
)
