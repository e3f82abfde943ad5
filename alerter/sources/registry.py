"""The exchange profiles, keyed by ccxt id, and what follows from them: which account is refused,
and the README's support matrix.

    PROFILES["okx"]                      # the Profile of every exchange alerter reads by its own figures
    profile_for(account)                 # the account's profile (GENERIC only where it asks for it)
    refusals(exchange, options, ...)     # why an account has no profile: (key, one line) each
    python -m alerter.sources.registry [--write README.md]   # the README's support matrix

Imports neither ccxt nor alerter.config: config validation reads it.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alerter.sources import binance, binancecoinm, binanceusdm, bitget, bybit, deribit, gate, generic, hyperliquid, krakenfutures, kucoinfutures, okx
from alerter.sources.fields import BodyCheck, Normaliser
from alerter.sources.profile import Profile

# adding an exchange: its module with a PROFILE, listed here, plus its recordings under tests/fixtures/real/
PROFILES: dict[str, Profile] = {exchange_id: p.PROFILE for p in (binanceusdm, binancecoinm, bybit, deribit, okx, hyperliquid, kucoinfutures, binance, krakenfutures, gate, bitget) for exchange_id in p.PROFILE.ids}
GENERIC: Profile = generic.PROFILE
GENERIC_NAME = "generic"  # the account's `profile = "generic"`

REAL_RECORDINGS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "real"
MATRIX_BEGIN = "<!-- support matrix: generated from the profiles by `python -m alerter.sources.registry --write README.md`; do not edit -->"
MATRIX_END = "<!-- end of support matrix -->"


def profile_for(account: Any) -> Profile:
    """The profile of an account (an AccountConfig): GENERIC when it says `profile = "generic"`,
    else its exchange's. KeyError for an exchange without one (config validation refuses those)."""
    if getattr(account, "profile", None) == GENERIC_NAME:
        return GENERIC
    return PROFILES[account.exchange]


def normaliser_for(exchange_id: str) -> Normaliser:
    return PROFILES[exchange_id].normalise


def body_check_for(exchange_id: str) -> BodyCheck | None:
    profile = PROFILES.get(exchange_id)
    return profile.check_body if profile is not None else None


def _shown(options: Mapping[str, Any], keys) -> str:
    return ", ".join(f"{key} = {options[key]!r}" for key in keys if options.get(key) is not None)


def refusals(exchange: str, options: Mapping[str, Any], *, generic: bool, known_ids: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """Why an account on `exchange` with these ccxt `options` (its `ccxt.options` table) cannot be
    read: (the key at fault, one line) each, empty when it can. `generic`: the account asked for
    the generic profile. `known_ids`: ccxt's exchange ids (empty: not checked)."""
    if not isinstance(options, Mapping):
        options = {}
    for profile in PROFILES.values():
        for redirect in profile.redirects:
            if redirect.matches(exchange, options):
                shown = _shown(options, redirect.when)
                return [("exchange", f"{exchange!r}{' with ' + shown if shown else ''}: {redirect.advice}")]
    supported = ", ".join(sorted(PROFILES))
    profile = PROFILES.get(exchange)
    if profile is not None:
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


# ---------------------------------------------------------------- the README's support matrix

def recordings(profile: Profile, root: Path = REAL_RECORDINGS) -> list[str]:
    """The real recorded cases of a profile: the entries of tests/fixtures/real/<id>/ (a file's
    name without its suffix, a folder's name), without PROVENANCE.md and README.md."""
    found: set[str] = set()
    for folder in (root / name for name in (profile.ids or (GENERIC_NAME,))):
        if folder.is_dir():
            found |= {p.name if p.is_dir() else p.stem for p in folder.iterdir()
                      if p.name not in ("PROVENANCE.md", "README.md") and not p.name.startswith(".")}
    return sorted(found)


def proof(case: str) -> str:
    """A recording as the matrix names it: a documentation example (`doc-…`) says so."""
    return f"`{case}` (doc example)" if case.startswith("doc-") else f"`{case}`"


def own_figure_cell(profile: Profile) -> str:
    """The exchange's own figure as the matrix describes it, with its trigger and notices."""
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


def support_matrix(root: Path = REAL_RECORDINGS) -> str:
    """The README's exchange support matrix (markdown), one row per profile, generic last."""
    rows = [
        "| exchange | account modes | figure used | currency | liquidation rule | the exchange's own figure | re-pricing between polls | what proves it (recordings tested) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for profile in [*{id(p): p for p in PROFILES.values()}.values(), GENERIC]:
        ids = ", ".join(f"`{i}`" for i in profile.ids) or f'`profile = "{GENERIC_NAME}"`'
        cases = recordings(profile, root)
        rows.append("| " + " | ".join(_cell(cell) for cell in (
            f"{profile.name} ({ids})",
            profile.modes,
            profile.figure,
            profile.currency,
            f"{profile.liquidation} ([source]({profile.liquidation_url}))",
            own_figure_cell(profile),
            "yes" if profile.reprice else "no (full polls only, or `between_polls = \"poll\"`)",
            ", ".join(proof(c) for c in cases) if cases else "—",
        )) + " |")
    return "\n".join([MATRIX_BEGIN, *rows, MATRIX_END])


def with_matrix(text: str, matrix: str) -> str:
    """`text` (the README) with its support matrix block replaced by `matrix`."""
    start, end = text.find(MATRIX_BEGIN), text.find(MATRIX_END)
    if start < 0 or end < start:
        raise ValueError(f"no support matrix block ({MATRIX_BEGIN} … {MATRIX_END})")
    return text[:start] + matrix + text[end + len(MATRIX_END):]


def main(argv: list[str]) -> int:
    """`python -m alerter.sources.registry` prints the matrix; `--write README.md` replaces it there."""
    if argv[:1] == ["--write"] and len(argv) == 2:
        path = Path(argv[1])
        path.write_text(with_matrix(path.read_text(encoding="utf-8"), support_matrix()), encoding="utf-8")
    elif argv:
        print("usage: python -m alerter.sources.registry [--write README.md]", file=sys.stderr)
        return 2
    else:
        print(support_matrix())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
