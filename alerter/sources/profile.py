"""`Profile`: everything alerter knows about one venue, in the venue's own module.

Each venue module (binanceusdm.py, bybit.py, okx.py) ends with its `PROFILE`; generic.py has the
explicit fallback (`profile = "generic"` in an account). alerter.sources.registry lists them and
imports a venue's module only when something asks for it. A profile answers a fixed set of
questions, and a quirk of one venue lives in that venue's module, in the functions it gives:

- how its account is fetched: `fetch` (None: `fetch_account`, balance and positions through ccxt),
  and `connect` for a venue that is not a ccxt exchange (its own client);
- what its figures mean: `normalise`, `check_body`, `own_figure`/`figure_for`, `reprice`;
- its stream (`stream`: the spec and parsers, alerter.sources.streamspec), if it streams;
- which accounts and credentials it takes: `credentials`, `check_credentials`, `settings`,
  `check_settings`, `options`, `redirects`;
- what its rows in the docs say: the text fields and `permissions`.

This module imports neither ccxt nor alerter.config. What a venue is given to work with is the
small `Account` protocol (what alerter.config.AccountConfig offers) and `FetchContext` (what
alerter.sources.exchange.Source offers a fetch).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from alerter.models import OwnFigure
from alerter.sources.fields import BodyCheck, Normaliser

if TYPE_CHECKING:
    from alerter.sources.streamspec import HeadSpec, StreamSpec

# the raw answers a fetch hands to `normalise`: (balance, positions), as ccxt's fetch_balance()
# and fetch_positions() return them (a venue's own fetch may shape `balance` as its normaliser reads it)
Raw = tuple[dict, list]


class Account(Protocol):
    """What the sources read of an account (alerter.config.AccountConfig is one)."""

    name: str
    exchange: str  # the venue's id (a ccxt id, or a venue's own)
    ccxt: Mapping[str, Any]  # the ccxt constructor's table, over the profile's defaults
    profile: str | None  # "generic": read from ccxt's unified fields
    # and the settings a normaliser takes by name as keyword-only parameters (the generic
    # profile's `balance_includes_pnl`; alerter.sources.exchange.bound_normaliser passes them)

    def credentials(self) -> dict[str, str]:
        """The credentials it sets, by key ("api_key", "wallet_address", …), as plain text."""
        ...


class FetchContext(Protocol):
    """What a profile's `fetch` works with (alerter.sources.exchange.Source offers it)."""

    exchange: Any  # the ccxt exchange instance (or, with `connect`, the venue's own client)
    options: Mapping[str, Any]  # the account's ccxt options (its `ccxt.options` table)
    markets_reloaded: bool  # this fetch (re)loaded the markets: caches derived from them are stale

    async def call(self, method: Callable[..., Awaitable[Any]], *args: Any, check: bool = False) -> Any:
        """One call, its failure a classified SourceError without secrets; with `check`, every
        HTTP answer of it is checked as complete JSON of the documented shape (`check_body`)."""
        ...

    async def gather(self, *calls: Awaitable[Any]) -> list[Any]:
        """Concurrent calls' results; when any failed, the gravest SourceError once all ended."""
        ...


Fetch = Callable[[FetchContext], Awaitable[Raw]]
# connect(account, timeout_s) -> the venue's own client, in place of a ccxt exchange: an object
# with `id` (the venue's id) and `async close()`, which the profile's `fetch` reads through
# ctx.exchange and ctx.call; no markets are loaded for it (its normaliser gets {})
Connect = Callable[[Account, float], Any]


def options_of(ccxt: Mapping[str, Any]) -> dict[str, Any]:
    """The ccxt options of an account's `ccxt` table (its `options`; {} when it sets none, or
    sets them to something that is not a table)."""
    options = ccxt.get("options")
    return dict(options) if isinstance(options, Mapping) else {}


async def fetch_account(ctx: FetchContext, positions: Iterable[Mapping[str, Any]] = ({},)) -> Raw:
    """The default fetch: fetch_balance() and one fetch_positions(None, params) per entry of
    `positions` (none: the balance answer holds the positions), concurrently, the positions
    concatenated in that order. A venue's own `fetch` calls it with its parameters, or around
    what it adds."""
    exchange = ctx.exchange
    balance, *found = await ctx.gather(ctx.call(exchange.fetch_balance, check=True),
                                       *(ctx.call(exchange.fetch_positions, None, dict(params), check=True) for params in positions))
    return balance, [p for listed in found for p in listed]


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
    """One venue: how to reach it, how to read it, what its figures mean, what the docs say."""

    # the docs: the support matrix's row
    name: str  # as a person calls it: "Binance USDⓈ-M"
    ids: tuple[str, ...]  # the exchange ids it reads (the registry's keys)
    modes: str  # the account modes it covers
    figure: str  # the venue's own figures the margin ratio is made of
    currency: str  # the currency of those figures
    liquidation: str  # the venue's own liquidation rule, in one sentence
    liquidation_url: str  # the venue's page stating it
    # what its figures mean
    normalise: Normaliser  # pure: raw answers → AccountSnapshot
    check_body: BodyCheck | None = None  # the documented shape of the raw answers
    reprice: bool = False  # re-pricing the positions from public mark prices between polls is faithful
    # the venue's own risk figure and notice levels, shown beside the normalised ratio (None: the
    # normalised ratio is the venue's own figure, as on Binance USDⓈ-M) ...
    own_figure: OwnFigure | None = None
    # ... or, where it depends on the account's ccxt options (one exchange id, several modes)
    figure_for: Callable[[Mapping[str, Any]], OwnFigure | None] | None = None
    # how its account is fetched
    fetch: Fetch | None = None  # None: alerter.sources.exchange.fetch_account
    connect: Connect | None = None  # None: ccxt's async class for the account's exchange id
    ccxt_defaults: Mapping[str, Any] = field(default_factory=dict)  # the account's `ccxt` table is merged over these
    # an error answer (the raw body) the venue documents as "system error, try again", which ccxt
    # raises as a plain ExchangeError: transient, for every call the account makes
    server_error: Callable[[str], bool] | None = None
    # which accounts it reads
    credentials: tuple[str, ...] = ("api_key", "secret")  # account keys the venue needs
    # the account's credentials (key → plain value) → (key, one line) for each malformed one
    check_credentials: Callable[[Mapping[str, str]], list[tuple[str, str]]] | None = None
    # account settings beyond its credentials that the venue reads (an on-chain venue's `chain`,
    # Compound's `market`, Morpho's `markets`), and their check: {key: value} → (key, one line)
    # for each missing or wrong one; other venues' accounts may not set them
    settings: tuple[str, ...] = ()
    check_settings: Callable[[Mapping[str, Any]], list[tuple[str, str]]] | None = None
    options: Mapping[str, tuple] = field(default_factory=dict)  # ccxt options an account may set only to these values
    redirects: tuple[Redirect, ...] = ()  # accounts on other ids that belong here (or nowhere yet)
    stream: StreamSpec | HeadSpec | None = None  # its websocket streams (alerter.sources.streamspec), if it has them
    permissions: str = ""  # what the account's API key needs (the docs' permissions table)
    # account modes read like a venue of their own on this venue's ids (Binance's and OKX's flexible
    # loans: their own fetch, figures, no stream): (ccxt option, value, the mode's Profile) each
    mode_profiles: tuple[tuple[str, Any, Profile], ...] = ()
    # a mode's own recordings among its venue's (tests/fixtures/real/<id>/): those whose name holds this
    recording_mark: str = ""
    # its own figure's levels come with each answer, per scope (a loan's margin-call and liquidation
    # LTVs), not with the profile: `alerter validate` polls the account once to place them
    live_levels: bool = False

    def for_options(self, options: Mapping[str, Any] | None = None) -> Profile:
        """The profile that reads an account with these ccxt `options`: one of its modes, or itself."""
        return next((mode for key, value, mode in self.mode_profiles if (options or {}).get(key) == value), self)

    def figure_of(self, options: Mapping[str, Any] | None = None) -> OwnFigure | None:
        """The venue's own figure for an account with these ccxt `options`."""
        if self.figure_for is not None:
            return self.figure_for(options or {})
        return self.own_figure
