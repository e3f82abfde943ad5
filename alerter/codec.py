"""How values go into strict JSON and SQLite text and back: the one codec for stored alerts,
snapshots and `--json` output.

- A float: ∞ (equity ≤ 0 with exposure) and NaN have no JSON number, so they travel as the
  strings "inf", "-inf" and "nan"; every other float as itself; None as null.
- A time: UTC ISO-8601 text with microseconds (``2024-05-01T12:00:00.000000+00:00``), so text
  order is time order.
- An `Alert`: a JSON object of its fields (levels as labels, floats as above), rebuilt exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields
from datetime import UTC, datetime

from alerter.models import Alert, AlertKind, Level, PositionRisk


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


def format_at(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: use timezone-aware UTC datetimes")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def parse_at(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


_ALERT_FLOATS = {"margin_ratio", "threshold", "equity", "maintenance_margin", "deposit_needed", "repay_needed", "target", "liquidation_move"}
_POSITION_FLOATS = {"notional", "maintenance_margin", "mark_price", "liquidation_price", "liquidation_move"}


def alert_to_dict(alert: Alert) -> dict:
    """A JSON-safe dict (strict JSON: infinities become "inf"/"-inf") that `alert_from_dict` rebuilds exactly."""
    out: dict = {}
    for f in fields(Alert):
        value = getattr(alert, f.name)
        if f.name == "kind":
            value = str(value)
        elif f.name == "level":
            value = value.label
        elif f.name in ("created_at", "since_at", "until_at"):
            value = value.isoformat() if value else None
        elif f.name in _ALERT_FLOATS:
            value = json_float(value)
        elif f.name == "top_positions":
            value = [
                {p.name: json_float(getattr(pos, p.name)) if p.name in _POSITION_FLOATS else getattr(pos, p.name) for p in fields(PositionRisk)}
                for pos in value
            ]
        out[f.name] = value
    return out


def alert_from_dict(data: dict) -> Alert:
    values = dict(data)
    values["kind"] = AlertKind(values["kind"])
    values["level"] = Level.parse(values["level"])
    values["created_at"] = parse_at(values["created_at"])
    values["since_at"] = parse_at(values.get("since_at"))
    values["until_at"] = parse_at(values.get("until_at"))
    for name in _ALERT_FLOATS:
        if name in values:
            values[name] = from_json_float(values[name])
    values["top_positions"] = tuple(
        PositionRisk(**{k: from_json_float(v) if k in _POSITION_FLOATS else v for k, v in pos.items()})
        for pos in values.get("top_positions") or ()
    )
    values["distances"] = tuple(values.get("distances") or ())
    return Alert(**values)


def alert_to_json(alert: Alert) -> str:
    return json.dumps(alert_to_dict(alert), allow_nan=False, ensure_ascii=False, sort_keys=True)


def alert_from_json(text: str) -> Alert:
    return alert_from_dict(json.loads(text))
