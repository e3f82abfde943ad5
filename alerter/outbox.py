"""The delivery outbox: the alerts recorded, one (alert, channel) row per message owed, and
what is laid over those rows while the database refuses outcomes.

The statements here run on the connection of a `Store`, inside the transaction its write path
opened (the `Store` checks the file and turns SQLite errors into `StoreError`); the outbox's
tables are described in `alerter.schema`.

`Overlay` holds the delivery outcomes the database refused (locked, full, …), in order, and lays
them over the outbox's reads until they are written: the messages did go out, so they are
neither lost nor sent again. It sits here, beside the statements it mirrors: an outcome laid
over a read must look as it will once written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from alerter.codec import alert_from_json, alert_to_json, format_at, parse_at
from alerter.errors import StoreError
from alerter.models import Alert

if TYPE_CHECKING:
    import sqlite_utils


@dataclass(frozen=True)
class Delivery:
    """One (alert, channel) row of the outbox, with its alert rebuilt."""

    alert_id: int
    channel: str
    alert: Alert
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    sent_at: datetime | None


@dataclass(frozen=True)
class HistoryEntry:
    alert_id: int
    alert: Alert
    deliveries: dict[str, str]  # channel → status


_DELIVERY_SQL = "SELECT d.*, a.payload FROM deliveries d JOIN alerts a ON a.id = d.alert_id "


def _delivery(row: dict) -> Delivery:
    return Delivery(
        alert_id=row["alert_id"], channel=row["channel"], alert=alert_from_json(row["payload"]),
        status=row["status"], attempts=row["attempts"], next_attempt_at=parse_at(row["next_attempt_at"]),
        last_error=row["last_error"], sent_at=parse_at(row["sent_at"]),
    )


# ---------------------------------------------------------------- writes (inside the caller's transaction)

def insert_alert(db: sqlite_utils.Database, alert: Alert, channels: Iterable[str], at_text: str) -> int | None:
    """Insert an alert and one pending delivery per channel, due at `at_text`; None when an
    alert with its key exists (nothing inserted)."""
    if db.execute("SELECT 1 FROM alerts WHERE key = ?", [alert.key]).fetchone():
        return None
    cursor = db.execute(
        "INSERT INTO alerts (key, created_at, kind, level, account, scope, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [alert.key, format_at(alert.created_at), str(alert.kind), alert.level.label, alert.account, alert.scope, alert_to_json(alert)],
    )
    for channel in dict.fromkeys(channels):
        db.execute(
            "INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at, reported) VALUES (?, ?, 'pending', 0, ?, 0)",
            [cursor.lastrowid, channel, at_text],
        )
    return cursor.lastrowid


def record_sent(db: sqlite_utils.Database, alerts: Iterable[tuple[Alert, dict[str, datetime | None]]], at: datetime) -> list[int]:
    """Alerts that went out while the database could not take them, with each routed channel's
    outcome: sent at that time, or None (pending, due at `at`). An alert whose key exists is
    skipped. Returns the ids of the alerts recorded."""
    new_ids: list[int] = []
    for alert, outcomes in alerts:
        if db.execute("SELECT 1 FROM alerts WHERE key = ?", [alert.key]).fetchone():
            continue
        cursor = db.execute(
            "INSERT INTO alerts (key, created_at, kind, level, account, scope, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [alert.key, format_at(alert.created_at), str(alert.kind), alert.level.label, alert.account, alert.scope, alert_to_json(alert)],
        )
        new_ids.append(cursor.lastrowid)
        for channel, sent_at in outcomes.items():
            db.execute(
                "INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at, sent_at, reported) VALUES (?, ?, ?, 1, ?, ?, 0)",
                [cursor.lastrowid, channel, "sent" if sent_at else "pending", None if sent_at else format_at(at), sent_at and format_at(sent_at)],
            )
    return new_ids


def mark_sent(db: sqlite_utils.Database, alert_ids: Iterable[int], channel: str, at: datetime, folded: Iterable[int]) -> None:
    for status, ids in (("sent", alert_ids), ("folded", folded)):
        for alert_id in ids:
            db.execute(
                "UPDATE deliveries SET status = ?, attempts = attempts + 1, sent_at = ?, last_error = NULL, next_attempt_at = NULL "
                "WHERE alert_id = ? AND channel = ?",
                [status, format_at(at), alert_id, channel],
            )


def mark_failed(db: sqlite_utils.Database, alert_ids: Iterable[int], channel: str, error: str, next_attempt_at: datetime | None) -> None:
    retry_at = next_attempt_at and format_at(next_attempt_at)
    for alert_id in alert_ids:
        db.execute(
            "UPDATE deliveries SET status = CASE WHEN ? IS NULL THEN 'failed' ELSE 'pending' END, attempts = attempts + 1, "
            "last_error = ?, next_attempt_at = ? WHERE alert_id = ? AND channel = ?",
            [retry_at, error, retry_at, alert_id, channel],
        )


def mark_reported(db: sqlite_utils.Database, alert_ids: Iterable[int], channel: str) -> None:
    for alert_id in alert_ids:
        db.execute("UPDATE deliveries SET reported = 1 WHERE alert_id = ? AND channel = ?", [alert_id, channel])


def expire(db: sqlite_utils.Database, now: datetime, expiry: timedelta) -> list[Delivery]:
    cutoff = format_at(now - expiry)
    rows = list(db.query(_DELIVERY_SQL + "WHERE d.status = 'pending' AND a.created_at < ? ORDER BY a.created_at, a.id", [cutoff]))
    for row in rows:
        db.execute(
            "UPDATE deliveries SET status = 'expired', next_attempt_at = NULL WHERE alert_id = ? AND channel = ?",
            [row["alert_id"], row["channel"]],
        )
        row["status"] = "expired"
        row["next_attempt_at"] = None
    return [_delivery(row) for row in rows]


# ---------------------------------------------------------------- reads

def _where(*conditions: tuple[str, object]) -> tuple[str, list]:
    """A WHERE clause of the (SQL with one `?`, value) conditions whose value is not None, and its
    parameters."""
    given = [(sql, value) for sql, value in conditions if value is not None]
    return " AND ".join(["1 = 1", *(sql for sql, _ in given)]), [value for _, value in given]


def pending(db: sqlite_utils.Database, due_by: datetime | None, channel: str | None) -> list[Delivery]:
    where, params = _where(
        ("d.channel IN (SELECT channel FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?)",
         format_at(due_by) if due_by is not None else None),
        ("d.channel = ?", channel))
    rows = db.query(_DELIVERY_SQL + f"WHERE d.status = 'pending' AND {where} ORDER BY d.channel, a.created_at, a.id", params)
    return [_delivery(row) for row in rows]


def deliveries(db: sqlite_utils.Database, channel: str | None, status: str | None) -> list[Delivery]:
    where, params = _where(("d.channel = ?", channel), ("d.status = ?", status))
    rows = db.query(_DELIVERY_SQL + f"WHERE {where} ORDER BY a.created_at, a.id, d.channel", params)
    return [_delivery(row) for row in rows]


def expired_unreported(db: sqlite_utils.Database, channel: str) -> list[Delivery]:
    rows = db.query(
        _DELIVERY_SQL + "WHERE d.channel = ? AND d.status = 'expired' AND d.reported = 0 ORDER BY a.created_at, a.id",
        [channel],
    )
    return [_delivery(row) for row in rows]


def pending_count(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT count(*) FROM deliveries WHERE status = 'pending'").fetchone()[0]


def history(db: sqlite_utils.Database, account: str | None, since: datetime | None) -> list[HistoryEntry]:
    where, params = _where(("a.account = ?", account), ("a.created_at >= ?", format_at(since) if since is not None else None))
    entries: dict[int, HistoryEntry] = {}
    rows = db.query(
        "SELECT a.id, a.payload, d.channel, d.status FROM alerts a LEFT JOIN deliveries d ON d.alert_id = a.id "
        f"WHERE {where} ORDER BY a.created_at, a.id, d.channel",
        params,
    )
    for row in rows:
        entry = entries.get(row["id"])
        if entry is None:
            entry = entries[row["id"]] = HistoryEntry(row["id"], alert_from_json(row["payload"]), {})
        if row["channel"] is not None:
            entry.deliveries[row["channel"]] = row["status"]
    return list(entries.values())


# ---------------------------------------------------------------- outcomes the database refused

OUTCOMES = ("mark_sent", "mark_failed", "mark_reported")  # the `Store` methods an `Overlay` keeps


class Overlay:
    """Delivery outcomes not yet written, in order, and what they change in the outbox's reads.

    Each outcome is a `Store` method name of `OUTCOMES` with its arguments by name; `pending`
    and `unreported` lay them over `Store.pending_deliveries` and `Store.expired_unreported`."""

    def __init__(self) -> None:
        self.deferred: list[tuple[str, dict]] = []  # in the order they happened
        self.changes: dict[tuple[int, str], dict] = {}  # (alert_id, channel) → what those outcomes changed

    def __bool__(self) -> bool:
        return bool(self.deferred)

    def __len__(self) -> int:
        return len(self.deferred)

    def add(self, name: str, arguments: dict) -> None:
        """Keep one outcome; `arguments` is every argument by name, iterables as lists."""
        self.deferred.append((name, arguments))
        channel = arguments["channel"]
        for alert_id in arguments.get("folded") or ():  # told as "earlier: …" in the same message
            self.changes.setdefault((alert_id, channel), {"attempts": 0})["sent"] = True
        for alert_id in arguments["alert_ids"]:
            entry = self.changes.setdefault((alert_id, channel), {"attempts": 0})
            if name == "mark_sent":
                entry["sent"] = True
                entry["attempts"] += 1
            elif name == "mark_failed":
                entry["next_attempt_at"] = arguments["next_attempt_at"]  # None: given up for good
                entry["attempts"] += 1
            else:
                entry["reported"] = True

    def flush(self, store) -> bool:
        """Write the outcomes through `store`, in order; stop at the first refusal. True when
        this call wrote the last of them."""
        wrote = False
        while self.deferred:
            name, arguments = self.deferred[0]
            try:
                getattr(store, name)(**arguments)
            except StoreError:
                return False
            self.deferred.pop(0)
            wrote = True
        self.changes.clear()
        return wrote

    def pending(self, deliveries: list[Delivery], due_by: datetime | None) -> list[Delivery]:
        """A channel's pending deliveries as they stand with the outcomes: sent (or folded) ones
        are gone, a recorded failure moves the row's next attempt; a channel is still due only
        if one of its remaining rows is."""
        if not self.changes:
            return deliveries
        rows = []
        for d in deliveries:
            entry = self.changes.get((d.alert_id, d.channel))
            if entry is None:
                rows.append(d)
            elif not entry.get("sent") and not ("next_attempt_at" in entry and entry["next_attempt_at"] is None):
                rows.append(replace(d, attempts=d.attempts + entry["attempts"],
                                    next_attempt_at=entry.get("next_attempt_at", d.next_attempt_at)))
        if due_by is None:
            return rows
        due = {d.channel for d in rows if d.next_attempt_at is not None and d.next_attempt_at <= due_by}
        return [d for d in rows if d.channel in due]

    def unreported(self, deliveries: list[Delivery]) -> list[Delivery]:
        """Expired deliveries not yet mentioned, without the ones an outcome reported."""
        return [d for d in deliveries if not self.changes.get((d.alert_id, d.channel), {}).get("reported")]
