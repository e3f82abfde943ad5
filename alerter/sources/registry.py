"""The venue profiles, keyed by exchange id, and what follows from them: which account is refused,
and the tables of docs/exchanges.md that describe them (the support matrix, the API key
permissions, the streams), which a test compares with the page.

    PROFILES["okx"]                      # a venue's Profile (its module imported on first ask)
    profile_for(account)                 # the account's profile (GENERIC only where it asks for it)
    refusals(exchange, options, ...)     # why an account has no profile: (key, one line) each
    register(profile) / unregister(profile)   # a venue defined elsewhere (a test's)
    python -m alerter.sources.registry [--write docs/exchanges.md]   # prints the tables, or replaces them there

A venue's module is imported only when something asks for its profile: a one-account daemon
imports its own venue's module, not the others. `VENUES` is the light index that lets the config
be checked without importing them all. Imports neither ccxt nor alerter.config.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerter.sources.generic import PROFILE as GENERIC
from alerter.sources.profile import Profile, options_of


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
    Venue("aave", ("aave",)),
    Venue("spark", ("spark",)),
    Venue("compound", ("compound",)),
    Venue("morpho", ("morpho",)),
)
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
    `profile = "generic"`, else its exchange's, or the mode its ccxt options choose (a flexible
    loan). KeyError for an exchange without one (config validation refuses those)."""
    if getattr(account, "profile", None) == GENERIC_NAME:
        return GENERIC
    return PROFILES[account.exchange].for_options(options_of(account.ccxt))


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


# ---------------------------------------------------------------- the tables of docs/exchanges.md

REAL_RECORDINGS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "real"
COMMAND = "`python -m alerter.sources.registry --write docs/exchanges.md`"


def markers(what: str) -> tuple[str, str]:
    """The comments around a generated block in the page."""
    return f"<!-- {what}: generated from the profiles by {COMMAND}; do not edit -->", f"<!-- end of {what} -->"


MATRIX_BEGIN, MATRIX_END = markers("support matrix")


def recordings(profile: Profile, root: Path = REAL_RECORDINGS) -> list[str]:
    """The real recorded cases of a profile: the entries of tests/fixtures/real/<id>/ (a file's
    name without its suffix, a folder's name), without PROVENANCE.md and README.md; an account
    mode's are those whose name holds its `recording_mark`, the venue's the others."""
    found: set[str] = set()
    for folder in (root / name for name in (profile.ids or (GENERIC_NAME,))):
        if folder.is_dir():
            found |= {p.name if p.is_dir() else p.stem for p in folder.iterdir()
                      if p.name not in ("PROVENANCE.md", "README.md") and not p.name.startswith(".")}
    if profile.recording_mark:
        return sorted(case for case in found if profile.recording_mark in case)
    marks = [mode.recording_mark for _, _, mode in profile.mode_profiles if mode.recording_mark]
    return sorted(case for case in found if not any(mark in case for mark in marks))


def with_modes(profiles: list[Profile]) -> list[Profile]:
    """Each profile followed by its account modes that read like venues of their own (the docs' rows)."""
    return [row for profile in profiles for row in (profile, *(mode for _, _, mode in profile.mode_profiles))]


def proof(case: str) -> str:
    """A recording as the matrix names it: a documentation example (`doc-…`) says so."""
    return f"`{case}` (doc example)" if case.startswith("doc-") else f"`{case}`"


def own_figure_cell(profile: Profile) -> str:
    """The venue's own figure as the matrix describes it, with its trigger and notices."""
    figure = profile.own_figure
    if figure is None:
        return "the ratio itself" + (" (by mode: see the account modes)" if profile.figure_for else "")

    def at(ratio: float) -> str:
        return figure.text(ratio).removeprefix(figure.name).strip()
    text = f"{figure.name}: liquidation at {at(1.0)}"
    for label, ratio in figure.notice_ratios():
        text += f"; {label} at {at(ratio)} (= {ratio * 100:.1f} %)"
    return text + (" (other modes: other figures)" if profile.figure_for else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _named(profile: Profile) -> str:
    ids = ", ".join(f"`{i}`" for i in profile.ids) or f'`profile = "{GENERIC_NAME}"`'
    return f"{profile.name} ({ids})"


def _table(what: str, header: list[str], rows: list[list[str]]) -> str:
    begin, end = markers(what)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join([begin, *lines, end])


def support_matrix(root: Path = REAL_RECORDINGS) -> str:
    """The support matrix (markdown), one row per profile, generic last."""
    rows = []
    for profile in with_modes([*PROFILES.distinct(), GENERIC]):
        cases = recordings(profile, root)
        rows.append([
            _named(profile),
            profile.modes,
            profile.figure,
            profile.currency,
            f"{profile.liquidation} ([source]({profile.liquidation_url}))",
            own_figure_cell(profile),
            "yes" if profile.reprice else "no (full polls only, or `between_polls = \"poll\"`)",
            ", ".join(proof(c) for c in cases) if cases else "—",
        ])
    return _table("support matrix", ["exchange", "account modes", "figure used", "currency", "liquidation rule",
                                     "the exchange's own figure", "re-pricing between polls", "what proves it (recordings tested)"], rows)


def permissions_table() -> str:
    """What each venue's API key needs, one row per profile with credentials."""
    rows = [[_named(p), ", ".join(f"`{key}`" for key in p.credentials), p.permissions or "—"] for p in with_modes(PROFILES.distinct())]
    return _table("permissions table", ["exchange", "account keys", "permission"], rows)


def streams_table() -> str:
    """What each streaming venue's websockets carry, one row per profile with a stream."""
    rows = [[_named(p), p.stream.prices, p.stream.events, p.stream.notices]
            for p in PROFILES.distinct() if p.stream is not None]
    return _table("streams table", ["exchange", "public connection: mark prices", "private connection: triggers a full poll",
                                    "the exchange's own notice, forwarded"], rows)


BLOCKS: dict[str, Callable[[], str]] = {"support matrix": support_matrix, "permissions table": permissions_table, "streams table": streams_table}


def with_block(text: str, block: str) -> str:
    """`text` (the page) with the generated block of the same markers replaced by `block`."""
    begin, end = block.splitlines()[0], block.splitlines()[-1]
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"no generated block ({begin} … {end})")
    return text[:start] + block + text[stop + len(end):]


def generated(text: str) -> str:
    """`text` with every generated block brought up to date."""
    for make in BLOCKS.values():
        text = with_block(text, make())
    return text


def main(argv: list[str]) -> int:
    """Prints the blocks; `--write PAGE` replaces them in PAGE."""
    if argv[:1] == ["--write"] and len(argv) == 2:
        path = Path(argv[1])
        path.write_text(generated(path.read_text(encoding="utf-8")), encoding="utf-8")
    elif argv:
        print("usage: python -m alerter.sources.registry [--write docs/exchanges.md]", file=sys.stderr)
        return 2
    else:
        print("\n\n".join(make() for make in BLOCKS.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
