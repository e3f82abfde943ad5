"""The last snapshot of each account, kept so `alerter whatif` can stress what was last seen.

Table ``snapshots`` (account TEXT PRIMARY KEY, at TEXT, payload TEXT): one row per account,
replaced on every successful poll. ``at`` is the snapshot's UTC time (ISO-8601 with
microseconds, like the other tables); ``payload`` is the whole `AccountSnapshot` as strict JSON
(positions included; non-finite floats as the strings "inf"/"-inf"/"nan"), rebuilt exactly by
`snapshot_from_dict`.

The store's schema migration 2 creates the table; readers never create it.
"""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from alerter.codec import from_json_float, json_float
from alerter.models import AccountSnapshot, OwnFigure, Pool, Position

if TYPE_CHECKING:
    import sqlite_utils

TABLE = "snapshots"


def _encode(value):
    if value.__class__ is float and math.isfinite(value) or value is None or value.__class__ is str:
        return value  # the common case, first
    if isinstance(value, float):
        return json_float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _is_float_field(f) -> bool:
    return "float" in str(f.type)


def _decode_fields(cls, data: dict) -> dict:
    values = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if _is_float_field(f) and (isinstance(value, str) or isinstance(value, int) and not isinstance(value, bool)):
            value = from_json_float(value)
        values[f.name] = value
    return values


SNAPSHOT_FIELDS = tuple(f.name for f in fields(AccountSnapshot) if f.name not in ("positions", "pools", "own_figure"))
POSITION_FIELDS = tuple(f.name for f in fields(Position))
POOL_FIELDS = tuple(f.name for f in fields(Pool))


def snapshot_to_dict(snapshot: AccountSnapshot) -> dict:
    """A strict-JSON-safe dict that `snapshot_from_dict` turns back into an equal snapshot."""
    out = {name: _encode(getattr(snapshot, name)) for name in SNAPSHOT_FIELDS}
    out["positions"] = [{name: _encode(getattr(p, name)) for name in POSITION_FIELDS} for p in snapshot.positions]
    out["unreadable"] = [list(item) for item in snapshot.unreadable]
    out["pools"] = [{name: _encode(getattr(p, name)) for name in POOL_FIELDS} | {"symbols": list(p.symbols)} for p in snapshot.pools]
    out["pools"] = [{**pool, "own_figure": _figure_to_dict(p.own_figure)} for pool, p in zip(out["pools"], snapshot.pools, strict=True)]
    out["own_figure"] = _figure_to_dict(snapshot.own_figure)
    return out


def _figure_to_dict(figure: OwnFigure | None) -> dict | None:
    if figure is None:
        return None
    return {"name": figure.name, "trigger": figure.trigger, "inverse": figure.inverse, "percent": figure.percent,
            "notices": [list(n) for n in figure.notices], "cross_only": figure.cross_only}


def _figure_from_dict(figure: dict | None) -> OwnFigure | None:
    if not figure:
        return None
    return OwnFigure(figure["name"], float(figure["trigger"]), bool(figure["inverse"]), bool(figure["percent"]),
                     tuple((str(label), float(value)) for label, value in figure.get("notices") or ()), bool(figure.get("cross_only")))


def snapshot_from_dict(data: dict) -> AccountSnapshot:
    values = _decode_fields(AccountSnapshot, data)
    values["positions"] = tuple(Position(**_decode_fields(Position, p)) for p in data.get("positions") or ())
    values["unreadable"] = tuple((str(scope), str(reason)) for scope, reason in data.get("unreadable") or ())
    values["pools"] = tuple(Pool(**(_decode_fields(Pool, p) | {"symbols": tuple(p.get("symbols") or ()),
                                                              "own_figure": _figure_from_dict(p.get("own_figure"))}))
                            for p in data.get("pools") or ())
    values["own_figure"] = _figure_from_dict(data.get("own_figure"))
    if values.get("fetched_at"):
        values["fetched_at"] = datetime.fromisoformat(values["fetched_at"])
    return AccountSnapshot(**values)


def ensure_table(db: sqlite_utils.Database) -> None:
    db[TABLE].create({"account": str, "at": str, "payload": str}, pk="account", not_null={"account", "at", "payload"}, if_not_exists=True)


def save_snapshot(db: sqlite_utils.Database, snapshot: AccountSnapshot, at: datetime | None = None) -> None:
    """Replace the stored snapshot of `snapshot.account`. `at` defaults to `snapshot.fetched_at`;
    one of them must be a timezone-aware datetime."""
    when = at or snapshot.fetched_at
    if when is None or when.tzinfo is None:
        raise ValueError(f"{snapshot.account}: a snapshot needs a timezone-aware time (fetched_at or at)")
    payload = json.dumps(snapshot_to_dict(snapshot), allow_nan=False, ensure_ascii=False, sort_keys=True)
    # plain SQL: this runs on every full poll, and the store's migration 2 made the table
    db.execute(
        f"INSERT OR REPLACE INTO {TABLE} (account, at, payload) VALUES (?, ?, ?)",
        [snapshot.account, when.astimezone(UTC).isoformat(timespec="microseconds"), payload],
    )


def load_snapshots(db: sqlite_utils.Database) -> dict[str, AccountSnapshot]:
    """account → its last snapshot (empty when none was ever saved). A snapshot saved without
    `fetched_at` gets the row's time, so callers can always tell its age."""
    if not db[TABLE].exists():
        return {}
    out: dict[str, AccountSnapshot] = {}
    for row in db.query(f"SELECT account, at, payload FROM {TABLE} ORDER BY account"):
        snapshot = snapshot_from_dict(json.loads(row["payload"]))
        if snapshot.fetched_at is None:
            snapshot = replace(snapshot, fetched_at=datetime.fromisoformat(row["at"]))
        out[row["account"]] = snapshot
    return out
