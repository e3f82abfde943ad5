"""The tables of docs/exchanges.md that describe the venues, generated from their profiles: the
support matrix, the API key permissions and the streams. A test fails when the page drifts.

    python -m alerter.sources.registry                               # prints the three blocks
    python -m alerter.sources.registry --write docs/exchanges.md     # replaces them there

Imports every venue's module (never ccxt).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from alerter.sources.profile import Profile
from alerter.sources.registry import GENERIC, GENERIC_NAME, PROFILES

REAL_RECORDINGS = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "real"
COMMAND = "`python -m alerter.sources.registry --write docs/exchanges.md`"


def markers(what: str) -> tuple[str, str]:
    """The comments around a generated block in the page."""
    return f"<!-- {what}: generated from the profiles by {COMMAND}; do not edit -->", f"<!-- end of {what} -->"


MATRIX_BEGIN, MATRIX_END = markers("support matrix")


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
    for profile in [*PROFILES.distinct(), GENERIC]:
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
    rows = [[_named(p), ", ".join(f"`{key}`" for key in p.credentials), p.permissions or "—"] for p in PROFILES.distinct()]
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
