"""A collateralised loan as alerter reads it: the lender's own LTV against its liquidation LTV.

A lender (Binance's and OKX's flexible loans) states the loan's current LTV (debt ÷ collateral
value), the LTV at which it sends a margin call and the LTV at which it liquidates. alerter's
ratio is current LTV ÷ liquidation LTV, so 100 % is exactly the lender's liquidation. The loan is
a lender's scope (`lender_trigger` = 1 ÷ liquidation LTV, as Binance's spot margin is with its
margin level): equity = the collateral value, taken as debt ÷ current LTV (the lender's own
valuation), maintenance = debt ÷ liquidation LTV, both in the loan's currency. The health then
gives both levers: the collateral value to add, and the debt to repay out of the collateral.
"""

from __future__ import annotations

from dataclasses import replace

from alerter.models import AccountSnapshot, OwnFigure, Pool
from alerter.sources.errors import SourceError
from alerter.sources.fields import make_snapshot


def loan_figure(liquidation_ltv: float, margin_call_ltv: float, lender: str) -> OwnFigure:
    """The lender's LTV as its own figure: liquidation at `liquidation_ltv`, its margin call a notice."""
    return OwnFigure("LTV", liquidation_ltv, notices=((f"{lender}'s margin call", margin_call_ltv),))


def loan_pool(scope: str, *, debt: float, ltv: float, liquidation_ltv: float, margin_call_ltv: float, currency: str,
              where: str, lender: str) -> Pool | None:
    """A loan as a lender's pool whose ratio is the lender's `ltv` ÷ `liquidation_ltv` (None: no
    debt). `debt` is in `currency`; the collateral value is debt ÷ ltv, in the same currency.
    `where` names the loan in errors, `lender` the margin-call notice ("Binance")."""
    if debt < 0 or ltv < 0:
        raise SourceError("data", f"{where}: negative debt or LTV (debt {debt:g}, LTV {ltv:g})")
    if not 0 < margin_call_ltv < liquidation_ltv < 1:
        raise SourceError("data", f"{where}: the margin-call LTV {margin_call_ltv:g} and liquidation LTV {liquidation_ltv:g} "
                                  "are not 0 < margin call < liquidation < 1")
    if debt == 0 and ltv == 0:
        return None
    if debt == 0 or ltv == 0:
        raise SourceError("data", f"{where}: debt {debt:g} with LTV {ltv:g}: one without the other is a partial answer")
    collateral = debt / ltv
    return Pool(scope, equity=collateral, maintenance_margin=debt / liquidation_ltv, currency=currency,
                wallet_balance=collateral - debt, lender_trigger=1.0 / liquidation_ltv,
                own_figure=loan_figure(liquidation_ltv, margin_call_ltv, lender))


def loans_snapshot(account_name: str, exchange_id: str, pools: list[Pool], unreadable: list[tuple[str, str]],
                   no_loan_currency: str) -> AccountSnapshot:
    """The loans as an account: one pool each, the worst one's figures as the account's; with no
    pool left but unreadable ones, the account is blind; with no loan at all, ratio 0."""
    if unreadable and not pools:
        raise SourceError("data", "; ".join(reason for _, reason in unreadable))
    if not pools:
        return make_snapshot(account=account_name, exchange=exchange_id, equity=0.0, maintenance_margin=0.0,
                             wallet_balance=0.0, currency=no_loan_currency)
    worst = max(pools, key=lambda p: p.maintenance_margin / p.equity)
    snapshot = make_snapshot(account=account_name, exchange=exchange_id, equity=worst.equity,
                             maintenance_margin=worst.maintenance_margin, wallet_balance=worst.wallet_balance,
                             currency=worst.currency, pools=sorted(pools, key=lambda p: p.scope))
    return replace(snapshot, unreadable=tuple(sorted(unreadable)))
