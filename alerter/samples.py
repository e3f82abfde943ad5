"""The ``samples`` table: every scope's figures at every poll, for `status`, `history`, trends
and the digest. Its columns are described in `alerter.schema`.

The statements run on the connection of a `Store`, under its guard (reads) or inside the
transaction of its write path (`rows` for `Store.commit_poll`, pruning).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from alerter.codec import format_at, parse_at
from alerter.models import Health, Level, ScopeState

if TYPE_CHECKING:
    import sqlite_utils


@dataclass(frozen=True)
class Sample:
    account: str
    scope: str
    at: datetime
    margin_ratio: float  # inf when equity ≤ 0 with exposure
    equity: float
    maintenance_margin: float
    liquidation_move: float | None
    level: Level | None
    estimated: bool
    currency: str | None = None  # of equity and maintenance; None in samples older than schema 5


def rows(healths: Iterable[Health], states: dict[str, ScopeState], at_text: str) -> list[dict]:
    """The rows of one poll's samples, each with its scope's level (None without a state). An
    infinite ratio is ``margin_ratio = NULL, margin_ratio_inf = 1``."""
    out = []
    for health in healths:
        state = states.get(health.scope)
        infinite = math.isinf(health.margin_ratio)
        out.append({
            "account": health.account, "scope": health.scope, "at": at_text,
            "margin_ratio": None if infinite else health.margin_ratio,
            "margin_ratio_inf": int(infinite),
            "equity": health.equity, "maintenance_margin": health.maintenance_margin,
            "liquidation_move": health.liquidation_move,
            "level": state.level.label if state else None,
            "estimated": int(health.estimated), "currency": health.currency,
        })
    return out


def _sample(row: dict) -> Sample:
    return Sample(
        account=row["account"], scope=row["scope"], at=parse_at(row["at"]),
        margin_ratio=math.inf if row["margin_ratio_inf"] else row["margin_ratio"],
        equity=row["equity"], maintenance_margin=row["maintenance_margin"],
        liquidation_move=row["liquidation_move"],
        level=Level.parse(row["level"]) if row["level"] else None, estimated=bool(row["estimated"]),
        currency=row.get("currency"),
    )


def select(db: sqlite_utils.Database, account: str | None, scope: str | None, since: datetime | None) -> list[Sample]:
    where, params = ["1 = 1"], []
    for column, value in (("account", account), ("scope", scope)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("at >= ?")
        params.append(format_at(since))
    return [_sample(row) for row in db.query(f"SELECT * FROM samples WHERE {' AND '.join(where)} ORDER BY at, id", params)]


def latest(db: sqlite_utils.Database) -> list[Sample]:
    found = db.query(
        "SELECT s.* FROM samples s JOIN (SELECT account, scope, max(at) AS at FROM samples GROUP BY account, scope) m "
        "ON s.account = m.account AND s.scope = m.scope AND s.at = m.at ORDER BY s.account, s.scope, s.id"
    )
    newest: dict[tuple[str, str], Sample] = {}
    for row in found:
        newest[(row["account"], row["scope"])] = _sample(row)
    return list(newest.values())


def trend_bases(db: sqlite_utils.Database, since: datetime, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[float, int]]:
    since_text = format_at(since)
    bases = {}
    for account, scope in keys:
        found = db.execute(
            "SELECT margin_ratio FROM samples WHERE account = ? AND scope = ? AND at >= ? "
            "AND margin_ratio_inf = 0 AND margin_ratio IS NOT NULL ORDER BY at, id LIMIT 2",
            [account, scope, since_text],
        ).fetchall()
        if found:
            bases[(account, scope)] = (found[0][0], len(found))
    return bases


def ratio_ranges(db: sqlite_utils.Database, since: datetime, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[float, float]]:
    since_text = format_at(since)
    out = {}
    for account, scope in keys:
        low, high, inf = db.execute(
            "SELECT min(margin_ratio), max(margin_ratio), max(margin_ratio_inf) FROM samples "
            "WHERE account = ? AND scope = ? AND at >= ?", [account, scope, since_text]).fetchone()
        if inf is not None:
            out[(account, scope)] = (math.inf if low is None else low, math.inf if inf else high)
    return out
