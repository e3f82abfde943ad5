"""How a float goes into strict JSON and back: the one codec for stored alerts, snapshots and
`--json` output. ∞ (equity ≤ 0 with exposure) and NaN have no JSON number, so they travel as the
strings "inf", "-inf" and "nan"; every other float as itself; None as null."""

from __future__ import annotations

import math


def json_float(x: float | None) -> float | str | None:
    if x is None or x.__class__ is float and math.isfinite(x):
        return x  # the common case, first
    if isinstance(x, int | float) and not isinstance(x, bool):
        if math.isfinite(x):
            return x
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    raise TypeError(f"not a number: {x!r}")


def from_json_float(x: float | int | str | None) -> float | None:
    """The float back; raises ValueError for anything that is not one of json_float's outputs."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int | float | str):
        raise ValueError(f"not a stored number: {x!r}")
    if isinstance(x, str) and x not in ("inf", "-inf", "nan"):
        raise ValueError(f"not a stored number: {x!r}")
    return float(x)
