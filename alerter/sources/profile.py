"""`Profile`: everything alerter knows about one exchange, in the exchange's own module.

Each exchange module (binanceusdm.py, bybit.py, okx.py) ends with its `PROFILE`; generic.py has
the explicit fallback (`profile = "generic"` in an account). alerter.sources.registry collects
them. A profile holds plain data and pure functions only: this module imports neither ccxt nor
alerter.config, so config validation reads the registry without importing either.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerter.models import OwnFigure
from alerter.sources.fields import BodyCheck, Normaliser


@dataclass(frozen=True)
class Redirect:
    """An account that looks like another exchange's: `exchange` with ccxt `options` matching
    `when` (option → the values that match; None matches an option left unset) is refused with
    `advice`, e.g. binance with defaultType "future" → use exchange = "binanceusdm"."""

    exchange: str
    when: Mapping[str, tuple]
    advice: str

    def matches(self, exchange: str, options: Mapping[str, Any]) -> bool:
        return exchange == self.exchange and all(options.get(key) in values for key, values in self.when.items())


@dataclass(frozen=True)
class Profile:
    """One exchange: how to reach it, how to read it, what its figures mean."""

    name: str  # as a person calls it: "Binance USDⓈ-M"
    ids: tuple[str, ...]  # the ccxt exchange ids it reads (the registry's keys)
    modes: str  # the account modes it covers
    figure: str  # the exchange's own figures the margin ratio is made of
    currency: str  # the currency of those figures
    liquidation: str  # the exchange's own liquidation rule, in one sentence
    liquidation_url: str  # the exchange's page stating it
    normalise: Normaliser  # pure: raw ccxt answers → AccountSnapshot
    check_body: BodyCheck | None = None  # the documented shape of the raw answers
    ccxt_defaults: Mapping[str, Any] = field(default_factory=dict)  # the account's `ccxt` table is merged over these
    position_params: tuple[Mapping[str, Any], ...] = ({},)  # one fetch_positions() call each, results concatenated
    # where one balance call cannot cover the account (KuCoin: one answer per settle currency): the
    # positions are fetched first, then one fetch_balance(params) per entry this returns for them,
    # and `normalise` gets {"info": [each balance call's raw answer, in that order]} as its balance
    balance_params_for: Callable[[list], tuple[Mapping[str, Any], ...]] | None = None
    position_marks: bool = False  # the positions state no mark: each poll also reads the public tickers' markPrice
    server_error: tuple[str, frozenset[str]] | None = None  # (body marker, codes) meaning "system error, try again"
    reprice: bool = False  # re-pricing the positions from public mark prices between polls is faithful
    credentials: tuple[str, ...] = ("api_key", "secret")  # account keys the exchange needs
    options: Mapping[str, tuple] = field(default_factory=dict)  # ccxt options an account may set only to these values
    redirects: tuple[Redirect, ...] = ()  # accounts on other ids that belong here (or nowhere yet)
    account_keys: tuple[str, ...] = ()  # account settings passed to `normalise` as keywords
    approximate: bool = False  # figures from ccxt's unified fields, not the exchange's own
    # the exchange's own risk figure and notice levels, shown beside the normalised ratio (None:
    # the normalised ratio is the exchange's own figure, as on Binance USDⓈ-M)
    own_figure: OwnFigure | None = None
    # where the figure depends on the account's ccxt options (one exchange id, several modes)
    figure_for: Callable[[Mapping[str, Any]], OwnFigure | None] | None = None
    # where the account is one raw answer that ccxt's fetch_balance() does not ask for: the name of
    # ccxt's implicit method (papiGetAccount) whose answer becomes balance["info"], for an account
    # with these ccxt options (None: fetch_balance())
    balance_method: Callable[[Mapping[str, Any]], str | None] | None = None
    # where the account answer names further requests the figure needs (Binance isolated margin:
    # each indebted pair's leverage tiers): given the raw account answer (balance["info"], any
    # shape), the (ccxt implicit method, params) calls to make after it; `normalise` then finds
    # balance["follow_up"] = [(method, params, raw answer), ...] in that order
    balance_follow_up: Callable[[Any], tuple[tuple[str, Mapping[str, Any]], ...]] | None = None

    # where the positions calls depend on the account's ccxt options (Bitget: one per UTA category)
    position_params_for: Callable[[Mapping[str, Any]], tuple[Mapping[str, Any], ...]] | None = None

    def positions_of(self, options: Mapping[str, Any] | None = None) -> tuple[Mapping[str, Any], ...]:
        """The fetch_positions() parameters for an account with these ccxt `options`, one call each."""
        if self.position_params_for is not None:
            return self.position_params_for(options or {})
        return self.position_params

    def figure_of(self, options: Mapping[str, Any] | None = None) -> OwnFigure | None:
        """The exchange's own figure for an account with these ccxt `options`."""
        if self.figure_for is not None:
            return self.figure_for(options or {})
        return self.own_figure
