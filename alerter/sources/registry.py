"""The venue profiles, keyed by exchange id, and what follows from them: which account is refused,
and the generated tables of docs/exchanges.md.

    PROFILES["okx"]                      # a venue's Profile (its module imported on first ask)
    profile_for(account)                 # the account's profile (GENERIC only where it asks for it)
    refusals(exchange, options, ...)     # why an account has no profile: (key, one line) each
    register(profile) / unregister(profile)   # a venue defined elsewhere (a test's)
    python -m alerter.sources.registry [--write docs/exchanges.md]   # the generated tables

A venue's module is imported only when something asks for its profile: a one-account daemon
imports its own venue's module, not the others. `VENUES` is the light index that lets the config
be checked without importing them all. Imports neither ccxt nor alerter.config.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from alerter.sources import generic
from alerter.sources.profile import Profile


@dataclass(frozen=True)
class Venue:
    """A venue module in the index: the ids its profile reads, and the ids of other exchanges
    whose accounts its redirects may claim (binance with defaultType "future" → binanceusdm)."""

    module: str  # under alerter.sources
    ids: tuple[str, ...]
    claims: tuple[str, ...] = ()


# adding a venue: its module with a PROFILE, one line here, and its recordings under tests/fixtures/real/
# (the order is the support matrix's)
VENUES: tuple[Venue, ...] = (
    Venue("binanceusdm", ("binanceusdm",), claims=("binance",)),
    Venue("binancecoinm", ("binancecoinm",), claims=("binance",)),
    Venue("bybit", ("bybit",)),
    Venue("deribit", ("deribit",)),
    Venue("okx", ("okx",)),
    Venue("hyperliquid", ("hyperliquid",)),
    Venue("kucoinfutures", ("kucoinfutures",)),
    Venue("binance", ("binance",)),
    Venue("krakenfutures", ("krakenfutures",)),
    Venue("gate", ("gate",)),
    Venue("bitget", ("bitget",)),
)
GENERIC: Profile = generic.PROFILE
GENERIC_NAME = "generic"  # the account's `profile = "generic"`


class Profiles(Mapping[str, Profile]):
    """Every venue's Profile by exchange id, each venue's module imported when first asked for
    (iterating the ids imports none; reading the values imports them all)."""

    def __init__(self, venues: tuple[Venue, ...]) -> None:
        self._modules = {exchange_id: venue.module for venue in venues for exchange_id in venue.ids}
        self._claimed: dict[str, list[str]] = {}
        for venue in venues:
            for exchange_id in (*venue.ids, *venue.claims):
                self._claimed.setdefault(exchange_id, []).append(venue.module)
        self._loaded: dict[str, Profile] = {}  # by module
        self._registered: dict[str, Profile] = {}  # by exchange id

    def __getitem__(self, exchange_id: str) -> Profile:
        if exchange_id in self._registered:
            return self._registered[exchange_id]
        return self._load(self._modules[exchange_id])

    def __iter__(self) -> Iterator[str]:
        return iter([*self._modules, *(i for i in self._registered if i not in self._modules)])

    def __len__(self) -> int:
        return len(set(self._modules) | set(self._registered))

    def __contains__(self, exchange_id: object) -> bool:
        return exchange_id in self._modules or exchange_id in self._registered

    def _load(self, module: str) -> Profile:
        profile = self._loaded.get(module)
        if profile is None:
            profile = self._loaded[module] = importlib.import_module(f"alerter.sources.{module}").PROFILE
        return profile

    def distinct(self) -> list[Profile]:
        """Each profile once, in the index's order, registered ones last (imports every venue)."""
        return list({id(p): p for p in (self[i] for i in self)}.values())

    def claiming(self, exchange_id: str) -> list[Profile]:
        """The profiles whose redirects may speak about accounts on `exchange_id` (its own, and
        those that claim its accounts), in the index's order."""
        found = [self._load(module) for module in self._claimed.get(exchange_id, ())]
        if exchange_id in self._registered:
            found.append(self._registered[exchange_id])
        return found

    def register(self, profile: Profile) -> None:
        """Add a profile defined elsewhere (a test's venue), under each of its ids."""
        for exchange_id in profile.ids:
            self._registered[exchange_id] = profile

    def unregister(self, profile: Profile) -> None:
        for exchange_id in profile.ids:
            if self._registered.get(exchange_id) is profile:
                del self._registered[exchange_id]


PROFILES = Profiles(VENUES)
register = PROFILES.register
unregister = PROFILES.unregister


def profile_for(account: Any) -> Profile:
    """The profile of an account (alerter.sources.profile.Account): GENERIC when it says
    `profile = "generic"`, else its exchange's. KeyError for an exchange without one (config
    validation refuses those)."""
    if getattr(account, "profile", None) == GENERIC_NAME:
        return GENERIC
    return PROFILES[account.exchange]


def body_check_for(exchange_id: str):
    """The profile's check of its raw answers (None for an exchange without a profile)."""
    return PROFILES[exchange_id].check_body if exchange_id in PROFILES else None


def streams(exchange_id: str) -> bool:
    """Whether alerter streams this exchange (its profile has a stream)."""
    return exchange_id in PROFILES and PROFILES[exchange_id].stream is not None


def streaming_ids() -> list[str]:
    """The exchanges alerter streams (imports every venue: for messages and docs)."""
    return sorted(i for i in PROFILES if PROFILES[i].stream is not None)


def _shown(options: Mapping[str, Any], keys) -> str:
    return ", ".join(f"{key} = {options[key]!r}" for key in keys if options.get(key) is not None)


def refusals(exchange: str, options: Mapping[str, Any], *, generic: bool, known_ids: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Why an account on `exchange` with these ccxt `options` (its `ccxt.options` table) cannot be
    read: (the key at fault, one line) each, empty when it can. `generic`: the account asked for
    the generic profile. `known_ids`: ccxt's exchange ids (empty: not checked). Imports only the
    venues that speak about `exchange`."""
    if not isinstance(options, Mapping):
        options = {}
    for profile in PROFILES.claiming(exchange):
        for redirect in profile.redirects:
            if redirect.matches(exchange, options):
                shown = _shown(options, redirect.when)
                return [("exchange", f"{exchange!r}{' with ' + shown if shown else ''}: {redirect.advice}")]
    supported = ", ".join(sorted(PROFILES))
    if exchange in PROFILES:
        profile = PROFILES[exchange]
        if generic:
            return [("profile", f'{exchange} has its own profile ({profile.name}): remove profile = "generic"')]
        return [
            (f"ccxt.options.{key}", f"{options[key]!r} is not an account the {exchange} profile reads "
                                   f"({key} may be {', '.join(map(repr, allowed))}, or left out)")
            for key, allowed in profile.options.items()
            if key in options and options[key] not in allowed
        ]
    if known_ids and exchange not in known_ids:
        close = difflib.get_close_matches(exchange, [*PROFILES, *known_ids], n=1, cutoff=0.6)
        hint = f"closest: {close[0]}; " if close else ""
        return [("exchange", f"unknown exchange id {exchange!r} ({hint}supported: {supported})")]
    if generic:
        return []
    close = closest_profile(exchange)
    hint = f"closest: {close}; " if close else ""
    return [("exchange", f"no profile for {exchange!r} ({hint}supported: {supported}); to read it anyway from ccxt's "
                         f'unified fields, approximately, set profile = "generic" and balance_includes_pnl')]


def closest_profile(exchange: str) -> str | None:
    """The supported id nearest to `exchange` ("binance" → "binanceusdm")."""
    starts = [i for i in PROFILES if i.startswith(exchange) or exchange.startswith(i)]
    if starts:
        return min(starts, key=lambda i: (len(i), i))  # the shortest: binance → binanceusdm
    close = difflib.get_close_matches(exchange, list(PROFILES), n=1, cutoff=0.5)
    return close[0] if close else None


if __name__ == "__main__":
    import sys

    from alerter.sources.tables import main

    sys.exit(main(sys.argv[1:]))
