"""The SQLite file: schema and migrations, scope state, history and the delivery outbox.

sqlite-utils only; no decisions. Every public method either works or raises `StoreError`
with one line naming the file. Times are stored as UTC ISO-8601 text with microseconds
(``2024-05-01T12:00:00.000000+00:00``), so text order is time order.

Schema (version 1, kept in ``PRAGMA user_version``):

- ``scope_state`` (account, scope) PK + the `ScopeState` fields (levels as labels).
- ``samples`` (id, account, scope, at, margin_ratio, margin_ratio_inf, equity,
  maintenance_margin, liquidation_move, level, estimated, currency). ``currency``: of equity and
  maintenance (version 5; NULL in rows written before). An infinite ratio (equity ≤ 0 with
  exposure) is stored as ``margin_ratio = NULL, margin_ratio_inf = 1`` so the table stays valid
  JSON for any reader; indexes on (account, scope, at) and (at).
- ``alerts`` (id, key UNIQUE, created_at, kind, level, account, scope, payload): ``payload`` is
  the whole `Alert` as JSON (infinities as the strings "inf"/"-inf"), rebuilt exactly.
- ``deliveries`` (alert_id, channel) PK: status pending|sent|folded|failed|expired, attempts,
  next_attempt_at, last_error, sent_at, reported (an expired row mentioned to its channel).
  ``failed`` is reserved for a delivery given up for good; a failed attempt stays ``pending``
  with a later ``next_attempt_at`` until it is sent or expires. ``folded``: delivered only as a
  mention ("earlier: …") under a newer alert of the same scope, in the same message.
- ``acks`` (account, scope) PK: level, acked_at, until_at (NULL: until resolved), note — the
  acknowledgements in force (version 4). The command writes them, the daemon reads them at every
  decision and deletes the ones a decision ended (matched on acked_at, so an acknowledgement
  written meanwhile survives).
- ``digests`` (channel, day) PK: sent_at — the daily digests sent, `day` in the channel's time
  zone, so a restart never sends one twice (version 4).
- ``poll_errors`` (id, account, at, kind, error): failed polls, for the digest; pruned with the
  samples (version 4).
- ``notes`` (at, text): what happened to the file itself (it was deleted and recreated). Not
  part of the versioned schema: created when the first note is written; readers never create it.

The file deleted (or replaced) under an open store: `ensure_file`, called before every write,
notices it (the path's inode is not the one opened), copies what the open connection still
sees into a new file at the path, and writes a note there.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlite_utils

from alerter.codec import from_json_float, json_float
from alerter.errors import StoreError
from alerter.snapshots import ensure_table as ensure_snapshots_table
from alerter.snapshots import load_snapshots, save_snapshot
from alerter.models import AccountSnapshot, Ack, Alert, AlertKind, Health, Level, PositionRisk, ScopeState

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- serialisation

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
    return Alert(**values)


def alert_to_json(alert: Alert) -> str:
    return json.dumps(alert_to_dict(alert), allow_nan=False, ensure_ascii=False, sort_keys=True)


def alert_from_json(text: str) -> Alert:
    return alert_from_dict(json.loads(text))


# ---------------------------------------------------------------- records returned

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


@dataclass(frozen=True)
class HistoryEntry:
    alert_id: int
    alert: Alert
    deliveries: dict[str, str]  # channel → status


# ---------------------------------------------------------------- schema

def _migrate_1(db: sqlite_utils.Database) -> None:
    db["scope_state"].create(
        {
            "account": str, "scope": str, "level": str, "since_at": str, "notified_at": str,
            "peak": str, "failures": int, "blind": int, "blind_notified_at": str,
        },
        pk=("account", "scope"),
        not_null={"account", "scope", "level", "peak", "failures", "blind"},
    )
    db["samples"].create(
        {
            "id": int, "account": str, "scope": str, "at": str, "margin_ratio": float,
            "margin_ratio_inf": int, "equity": float, "maintenance_margin": float,
            "liquidation_move": float, "level": str, "estimated": int,
        },
        pk="id",
        not_null={"account", "scope", "at", "margin_ratio_inf", "estimated"},
    )
    db["samples"].create_index(["account", "scope", "at"], index_name="samples_account_scope_at")
    db["samples"].create_index(["at"], index_name="samples_at")
    db["alerts"].create(
        {
            "id": int, "key": str, "created_at": str, "kind": str, "level": str,
            "account": str, "scope": str, "payload": str,
        },
        pk="id",
        not_null={"key", "created_at", "kind", "level", "account", "scope", "payload"},
    )
    db["alerts"].create_index(["key"], index_name="alerts_key", unique=True)
    db["alerts"].create_index(["created_at"], index_name="alerts_created_at")
    db["deliveries"].create(
        {
            "alert_id": int, "channel": str, "status": str, "attempts": int,
            "next_attempt_at": str, "last_error": str, "sent_at": str, "reported": int,
        },
        pk=("alert_id", "channel"),
        foreign_keys=[("alert_id", "alerts", "id")],
        not_null={"status", "attempts", "reported"},
        defaults={"status": "pending", "attempts": 0, "reported": 0},
    )
    db["deliveries"].create_index(["status", "next_attempt_at"], index_name="deliveries_status_next")


def _migrate_2(db: sqlite_utils.Database) -> None:
    """The last full snapshot of each account (positions included), for `alerter whatif`."""
    ensure_snapshots_table(db)


def _migrate_3(db: sqlite_utils.Database) -> None:
    """scope_state.absent: full polls in a row that did not list an alerting scope."""
    db["scope_state"].add_column("absent", int, not_null_default=0)


def _migrate_4(db: sqlite_utils.Database) -> None:
    """acks (acknowledged scopes), digests (the daily digests sent), poll_errors (for the digest)."""
    db["acks"].create(
        {"account": str, "scope": str, "level": str, "acked_at": str, "until_at": str, "note": str},
        pk=("account", "scope"),
        not_null={"account", "scope", "level", "acked_at", "note"},
    )
    db["digests"].create({"channel": str, "day": str, "sent_at": str}, pk=("channel", "day"), not_null={"channel", "day", "sent_at"})
    db["poll_errors"].create({"id": int, "account": str, "at": str, "kind": str, "error": str}, pk="id",
                             not_null={"account", "at", "kind", "error"})
    db["poll_errors"].create_index(["at"], index_name="poll_errors_at")


def _migrate_5(db: sqlite_utils.Database) -> None:
    """samples.currency: a coin's cross pool or a coin-margined position is in the coin, not the
    account's settle currency, and `status` must say which."""
    db["samples"].add_column("currency", str)


# Forward migrations: MIGRATIONS[i] takes the schema from version i to i + 1.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_migrate_1, _migrate_2, _migrate_3, _migrate_4, _migrate_5]
SCHEMA_VERSION = len(MIGRATIONS)


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    low = text.lower()
    if "file is not a database" in low or "malformed" in low:
        return "not a SQLite database (corrupt, or some other file)"
    if "readonly" in low or "read-only" in low:
        return "read-only (check the permissions of the file and its directory)"
    if "unable to open" in low:
        return "cannot open the file (does its directory exist and is it writable?)"
    if "disk is full" in low or "disk i/o" in low:
        return f"{text} (is the disk full?)" if "full" not in low else "the disk is full"
    if "locked" in low or "busy" in low:
        return "the database is locked by another process"
    return text


def _inode(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _insert_rows(db: sqlite_utils.Database, table: str, rows: list[dict]) -> None:
    """Plain executemany: sqlite-utils' insert_all re-reads the table's schema on every call,
    which is most of the cost of a poll's commit."""
    columns = list(rows[0])
    db.conn.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
        [[row[c] for c in columns] for row in rows],
    )


class Store:
    """One SQLite file. Not thread-safe: use it from one thread (the daemon's event loop)."""

    def __init__(self, path: str | Path, *, busy_timeout: float = 5.0):
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._open()

    def _open(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            with self._guard("open"):
                conn = sqlite3.connect(str(self.path), timeout=self._busy_timeout, check_same_thread=False)
                self.db = sqlite_utils.Database(conn)
                version = self.db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.path}: written by a newer alerter (schema version {version}, this version knows {SCHEMA_VERSION})"
                    )
                self.db.execute("PRAGMA journal_mode=WAL")
                # In WAL mode NORMAL survives any crash of the process (kill -9 included); a power
                # cut may roll back the last commits, but state and outbox roll back together, so
                # the next poll decides those alerts again: nothing is lost, at worst repeated.
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute("PRAGMA foreign_keys=ON")
                self._migrate(version)
                self.inode = _inode(self.path)
        except StoreError:
            if conn is not None:
                conn.close()
            raise

    # ------------------------------------------------------------ plumbing

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        try:
            yield
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{self.path}: cannot {action}: {_reason(e)}") from e

    def _migrate(self, version: int) -> None:
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self.db.atomic():
                MIGRATIONS[target - 1](self.db)
                self.db.execute(f"PRAGMA user_version = {target}")
            logger.info("%s: migrated the schema to version %d", self.path, target)

    @property
    def busy_timeout(self) -> float:
        """Seconds a statement waits for another process's lock before "database is locked"."""
        return self._busy_timeout

    @busy_timeout.setter
    def busy_timeout(self, seconds: float) -> None:
        if seconds != self._busy_timeout:
            with self._guard("set the busy timeout"):
                self.db.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
            self._busy_timeout = seconds

    # ------------------------------------------------------------ the file itself

    def ensure_file(self) -> str | None:
        """If the file at the path is no longer the one this store opened (deleted, or replaced
        by another), put this store's data back at the path and carry on there. Returns the
        note written into the new file, or None when the file is in place. One stat() call in
        the common case."""
        try:
            if _inode(self.path) == self.inode:
                return None
            what = "replaced by another file"
        except FileNotFoundError:
            what = "deleted"
        except OSError as e:
            raise StoreError(f"{self.path}: cannot check the file: {_reason(e)}") from e
        try:
            return self._recreate(what)
        except OSError as e:
            raise StoreError(f"{self.path}: the file was {what} and cannot be recreated: {_reason(e)}") from e

    def _recreate(self, what: str) -> str:
        at = datetime.now(UTC)
        copy = self.path.with_name(self.path.name + ".recreating")
        kept = True
        try:  # the open connection still reads the old file (and its WAL): copy it page by page
            copy.unlink(missing_ok=True)
            target = sqlite3.connect(str(copy))
            try:
                self.db.conn.backup(target)
            finally:
                target.close()
        except (sqlite3.Error, OSError) as e:
            logger.error("%s: cannot copy the open database: %s", self.path, _reason(e))
            kept = False
        try:
            self.db.close()
        except sqlite3.Error:
            pass
        aside = None
        stamp = at.strftime("%Y%m%dT%H%M%SZ")
        if self.path.exists():  # someone else's file: keep it, out of the way
            aside = self.path.with_name(f"{self.path.name}.replaced-{stamp}")
            os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):  # the old file's: they would be replayed into the new one
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        if kept:
            os.replace(copy, self.path)
        else:
            copy.unlink(missing_ok=True)
        self._open()
        clock = at.strftime("%Y-%m-%d %H:%M:%S UTC")
        note = f"database file {what} while the daemon ran; recreated at {clock}" + (
            " from the daemon's open copy: nothing lost" if kept else "; history before that is lost")
        if aside is not None:
            note += f"; the other file was moved to {aside.name}"
        with self._guard("write a note"), self.db.atomic():
            self.db.execute("CREATE TABLE IF NOT EXISTS notes (at TEXT NOT NULL, text TEXT NOT NULL)")
            self.db.execute("INSERT INTO notes (at, text) VALUES (?, ?)", [format_at(at), note])
        logger.error("%s: %s", self.path, note)
        return note

    def notes(self) -> list[tuple[datetime, str]]:
        """What happened to the file itself, oldest first."""
        with self._guard("read the notes"):
            if not self.db["notes"].exists():
                return []
            return [(parse_at(at), text) for at, text in self.db.execute("SELECT at, text FROM notes ORDER BY at")]

    @property
    def schema_version(self) -> int:
        with self._guard("read"):
            return self.db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        with self._guard("close"):
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------ state

    def load_states(self, account: str) -> dict[str, ScopeState]:
        with self._guard("read the scope state"):
            rows = self.db.query("SELECT * FROM scope_state WHERE account = ? ORDER BY scope", [account])
            return {row["scope"]: ScopeState.from_dict(row) for row in rows}

    def load_decision(self, account: str) -> tuple[dict[str, ScopeState], list[Ack]]:
        """What a decision about the account starts from: its scope states and acknowledgements."""
        return self.load_states(account), self.acks(account)

    def commit_poll(
        self,
        account: str,
        states: dict[str, ScopeState],
        samples: Iterable[Health],
        alerts: Iterable[Alert],
        routes: dict[str, list[str]],
        at: datetime,
        snapshot: AccountSnapshot | None = None,
        *,
        ended_acks: Iterable[Ack] = (),
        poll_error: tuple[str, str] | None = None,
    ) -> list[int]:
        """Record one poll in ONE transaction: replace the account's scope state (scopes not in
        `states` are deleted), append samples, insert alerts (an alert whose key exists is
        ignored) and one pending delivery per routed channel, due at `at`, and keep `snapshot`
        as the account's last one; delete the acknowledgements the decision ended (only those:
        one written meanwhile stays) and note a failed poll, `poll_error` = (kind, error).
        Returns the ids of the alerts that were new."""
        at_text = format_at(at)
        new_ids: list[int] = []
        self.ensure_file()
        with self._guard("record the poll"), self.db.atomic():
            if snapshot is not None:
                save_snapshot(self.db, snapshot, at)
            self.db.execute("DELETE FROM scope_state WHERE account = ?", [account])
            rows = []
            for scope, state in states.items():
                if state.account != account or state.scope != scope:
                    raise ValueError(f"state {state.account}/{state.scope} filed under {account}/{scope}")
                row = state.to_dict()
                row["blind"] = int(state.blind)
                rows.append(row)
            if rows:
                _insert_rows(self.db, "scope_state", rows)
            sample_rows = []
            for health in samples:
                state = states.get(health.scope)
                infinite = math.isinf(health.margin_ratio)
                sample_rows.append({
                    "account": health.account, "scope": health.scope, "at": at_text,
                    "margin_ratio": None if infinite else health.margin_ratio,
                    "margin_ratio_inf": int(infinite),
                    "equity": health.equity, "maintenance_margin": health.maintenance_margin,
                    "liquidation_move": health.liquidation_move,
                    "level": state.level.label if state else None,
                    "estimated": int(health.estimated), "currency": health.currency,
                })
            if sample_rows:
                _insert_rows(self.db, "samples", sample_rows)
            for alert in alerts:
                alert_id = self._insert_alert(alert, routes.get(alert.key, []), at_text)
                if alert_id is not None:
                    new_ids.append(alert_id)
            for ack in ended_acks:
                self.db.execute("DELETE FROM acks WHERE account = ? AND scope = ? AND acked_at = ?",
                                [ack.account, ack.scope, format_at(ack.acked_at)])
            if poll_error is not None:
                self.db.execute("INSERT INTO poll_errors (account, at, kind, error) VALUES (?, ?, ?, ?)", [account, at_text, *poll_error])
        return new_ids

    def _insert_alert(self, alert: Alert, channels: Iterable[str], at_text: str) -> int | None:
        """Insert an alert and one pending delivery per channel, due at `at_text`, inside the
        caller's transaction; None when an alert with its key exists (nothing inserted)."""
        if self.db.execute("SELECT 1 FROM alerts WHERE key = ?", [alert.key]).fetchone():
            return None
        cursor = self.db.execute(
            "INSERT INTO alerts (key, created_at, kind, level, account, scope, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [alert.key, format_at(alert.created_at), str(alert.kind), alert.level.label, alert.account, alert.scope, alert_to_json(alert)],
        )
        for channel in dict.fromkeys(channels):
            self.db.execute(
                "INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at, reported) VALUES (?, ?, 'pending', 0, ?, 0)",
                [cursor.lastrowid, channel, at_text],
            )
        return cursor.lastrowid

    # ------------------------------------------------------------ acknowledgements

    @staticmethod
    def _ack(row: dict) -> Ack:
        return Ack(account=row["account"], scope=row["scope"], level=Level.parse(row["level"]), acked_at=parse_at(row["acked_at"]),
                   until_at=parse_at(row["until_at"]), note=row["note"])

    def acks(self, account: str | None = None) -> list[Ack]:
        """The acknowledgements recorded (of one account), by account and scope. Some may have
        run out: the policy decides (`ack_holds`), the daemon deletes them at its next decision."""
        where, params = ("WHERE account = ?", [account]) if account is not None else ("", [])
        with self._guard("read the acknowledgements"):
            return [self._ack(row) for row in self.db.query(f"SELECT * FROM acks {where} ORDER BY account, scope", params)]

    def save_ack(self, ack: Ack, announcement: Alert, channels: Iterable[str]) -> None:
        """Record an acknowledgement (replacing one of the same scope) and its announcement with
        one pending delivery per channel, in one transaction."""
        self.ensure_file()
        with self._guard("record the acknowledgement"), self.db.atomic():
            self.db.execute(
                "INSERT OR REPLACE INTO acks (account, scope, level, acked_at, until_at, note) VALUES (?, ?, ?, ?, ?, ?)",
                [ack.account, ack.scope, ack.level.label, format_at(ack.acked_at), ack.until_at and format_at(ack.until_at), ack.note],
            )
            self._insert_alert(announcement, channels, format_at(announcement.created_at))

    def remove_ack(self, account: str, scope: str, announcement: Alert | None = None, channels: Iterable[str] = ()) -> Ack | None:
        """Delete a scope's acknowledgement; returns it (None when there was none). `announcement`
        (of the acknowledgement read before, `since_at` its acked_at) is recorded with one pending
        delivery per channel in the same transaction, only if that acknowledgement is the one
        deleted (the daemon may have ended it, or another written a newer one, meanwhile)."""
        self.ensure_file()
        with self._guard("remove the acknowledgement"), self.db.atomic():
            row = next(iter(self.db.query("SELECT * FROM acks WHERE account = ? AND scope = ?", [account, scope])), None)
            if row is None:
                return None
            ack = self._ack(row)
            if announcement is not None and announcement.since_at != ack.acked_at:
                return None
            self.db.execute("DELETE FROM acks WHERE account = ? AND scope = ?", [account, scope])
            if announcement is not None:
                self._insert_alert(announcement, channels, format_at(announcement.created_at))
            return ack

    # ------------------------------------------------------------ daily digest

    def digest_sent(self, channel: str, day: str) -> datetime | None:
        """When the digest of `day` (the channel's local date, ISO) went to `channel`, if it did."""
        with self._guard("read the digests"):
            row = self.db.execute("SELECT sent_at FROM digests WHERE channel = ? AND day = ?", [channel, day]).fetchone()
            return parse_at(row[0]) if row else None

    def record_digest(self, channel: str, day: str, at: datetime) -> None:
        self.ensure_file()
        with self._guard("record the digest"), self.db.atomic():
            self.db.execute("INSERT OR REPLACE INTO digests (channel, day, sent_at) VALUES (?, ?, ?)", [channel, day, format_at(at)])

    def poll_errors(self, since: datetime) -> dict[str, dict[str, int]]:
        """account → {kind: failed polls} since `since`."""
        with self._guard("read the poll errors"):
            out: dict[str, dict[str, int]] = {}
            for account, kind, n in self.db.execute(
                    "SELECT account, kind, count(*) FROM poll_errors WHERE at >= ? GROUP BY account, kind ORDER BY account, kind", [format_at(since)]):
                out.setdefault(account, {})[kind] = n
            return out

    def ratio_ranges(self, since: datetime, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[float, float]]:
        """For each (account, scope) of `keys` with samples since `since`: its (lowest, highest)
        margin ratio (∞ when equity was ≤ 0). One index range per scope."""
        since_text = format_at(since)
        out = {}
        with self._guard("read the samples"):
            for account, scope in keys:
                low, high, inf = self.db.execute(
                    "SELECT min(margin_ratio), max(margin_ratio), max(margin_ratio_inf) FROM samples "
                    "WHERE account = ? AND scope = ? AND at >= ?", [account, scope, since_text]).fetchone()
                if inf is not None:
                    out[(account, scope)] = (math.inf if low is None else low, math.inf if inf else high)
        return out

    def record_sent(self, alerts: Iterable[tuple[Alert, dict[str, datetime | None]]], at: datetime) -> list[int]:
        """Record alerts that went out while the database could not take them, with each routed
        channel's outcome: sent at that time, or None (pending, due at `at`: the outbox retries
        it). An alert whose key exists is skipped. Returns the ids of the alerts recorded."""
        new_ids: list[int] = []
        self.ensure_file()
        with self._guard("record the alerts sent without the database"), self.db.atomic():
            for alert, outcomes in alerts:
                if self.db.execute("SELECT 1 FROM alerts WHERE key = ?", [alert.key]).fetchone():
                    continue
                cursor = self.db.execute(
                    "INSERT INTO alerts (key, created_at, kind, level, account, scope, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [alert.key, format_at(alert.created_at), str(alert.kind), alert.level.label, alert.account, alert.scope, alert_to_json(alert)],
                )
                new_ids.append(cursor.lastrowid)
                for channel, sent_at in outcomes.items():
                    self.db.execute(
                        "INSERT INTO deliveries (alert_id, channel, status, attempts, next_attempt_at, sent_at, reported) VALUES (?, ?, ?, 1, ?, ?, 0)",
                        [cursor.lastrowid, channel, "sent" if sent_at else "pending",
                         None if sent_at else format_at(at), sent_at and format_at(sent_at)],
                    )
        return new_ids

    # ------------------------------------------------------------ outbox

    _DELIVERY_SQL = (
        "SELECT d.*, a.payload FROM deliveries d JOIN alerts a ON a.id = d.alert_id "
    )

    @staticmethod
    def _delivery(row: dict) -> Delivery:
        return Delivery(
            alert_id=row["alert_id"], channel=row["channel"], alert=alert_from_json(row["payload"]),
            status=row["status"], attempts=row["attempts"], next_attempt_at=parse_at(row["next_attempt_at"]),
            last_error=row["last_error"], sent_at=parse_at(row["sent_at"]),
        )

    def pending_deliveries(self, due_by: datetime | None = None, channel: str | None = None) -> list[Delivery]:
        """Every pending delivery of each channel that has at least one due by `due_by` (of
        every channel with any pending when None), by channel, then oldest alert first. The
        backoff belongs to the channel: once one of its rows is due, all of them go out."""
        where, params = ["d.status = 'pending'"], []
        if due_by is not None:
            where.append("d.channel IN (SELECT channel FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?)")
            params.append(format_at(due_by))
        if channel is not None:
            where.append("d.channel = ?")
            params.append(channel)
        with self._guard("read the outbox"):
            rows = self.db.query(self._DELIVERY_SQL + f"WHERE {' AND '.join(where)} ORDER BY d.channel, a.created_at, a.id", params)
            return [self._delivery(row) for row in rows]

    def deliveries(self, *, channel: str | None = None, status: str | None = None) -> list[Delivery]:
        with self._guard("read the outbox"):
            where, params = ["1 = 1"], []
            if channel is not None:
                where.append("d.channel = ?")
                params.append(channel)
            if status is not None:
                where.append("d.status = ?")
                params.append(status)
            rows = self.db.query(self._DELIVERY_SQL + f"WHERE {' AND '.join(where)} ORDER BY a.created_at, a.id, d.channel", params)
            return [self._delivery(row) for row in rows]

    def _update(self, action: str, sql: str, params: list, alert_ids: Iterable[int], channel: str) -> None:
        ids = list(alert_ids)
        if not ids:
            return
        self.ensure_file()
        with self._guard(action), self.db.atomic():
            for alert_id in ids:
                self.db.execute(sql, [*params, alert_id, channel])

    def mark_sent(self, alert_ids: Iterable[int], channel: str, at: datetime, *, folded: Iterable[int] = ()) -> None:
        """Record a delivered message: `alert_ids` were told in full ('sent'); `folded` ones only
        mentioned under a newer alert of their scope ('folded'). One transaction, so a crash can
        never leave a superseded alert pending, to be told after the state that replaced it."""
        updates = [("sent", alert_id) for alert_id in alert_ids] + [("folded", alert_id) for alert_id in folded]
        if not updates:
            return
        with self._guard("record a delivery"), self.db.atomic():
            for status, alert_id in updates:
                self.db.execute(
                    "UPDATE deliveries SET status = ?, attempts = attempts + 1, sent_at = ?, last_error = NULL, next_attempt_at = NULL "
                    "WHERE alert_id = ? AND channel = ?",
                    [status, format_at(at), alert_id, channel],
                )

    def mark_failed(self, alert_ids: Iterable[int], channel: str, error: str, next_attempt_at: datetime | None) -> None:
        """Record a failed attempt; the rows stay pending until `next_attempt_at`, or become
        failed for good when it is None."""
        self._update(
            "record a failed delivery",
            "UPDATE deliveries SET status = CASE WHEN ? IS NULL THEN 'failed' ELSE 'pending' END, attempts = attempts + 1, "
            "last_error = ?, next_attempt_at = ? WHERE alert_id = ? AND channel = ?",
            [next_attempt_at and format_at(next_attempt_at), error, next_attempt_at and format_at(next_attempt_at)], alert_ids, channel,
        )

    def expire(self, now: datetime, expiry: timedelta) -> list[Delivery]:
        """Pending deliveries of alerts created before now − expiry become expired; returns them."""
        cutoff = format_at(now - expiry)
        self.ensure_file()
        with self._guard("expire old deliveries"), self.db.atomic():
            rows = list(self.db.query(
                self._DELIVERY_SQL + "WHERE d.status = 'pending' AND a.created_at < ? ORDER BY a.created_at, a.id",
                [cutoff],
            ))
            for row in rows:
                self.db.execute(
                    "UPDATE deliveries SET status = 'expired', next_attempt_at = NULL WHERE alert_id = ? AND channel = ?",
                    [row["alert_id"], row["channel"]],
                )
                row["status"] = "expired"
                row["next_attempt_at"] = None
            return [self._delivery(row) for row in rows]

    def expired_unreported(self, channel: str) -> list[Delivery]:
        """Expired deliveries of `channel` not yet mentioned in a message to it, oldest first."""
        with self._guard("read the outbox"):
            rows = self.db.query(
                self._DELIVERY_SQL + "WHERE d.channel = ? AND d.status = 'expired' AND d.reported = 0 ORDER BY a.created_at, a.id",
                [channel],
            )
            return [self._delivery(row) for row in rows]

    def mark_reported(self, alert_ids: Iterable[int], channel: str) -> None:
        self._update("record a report", "UPDATE deliveries SET reported = 1 WHERE alert_id = ? AND channel = ?", [], alert_ids, channel)

    def pending_count(self) -> int:
        with self._guard("read the outbox"):
            return self.db.execute("SELECT count(*) FROM deliveries WHERE status = 'pending'").fetchone()[0]

    # ------------------------------------------------------------ history

    def history(self, account: str | None = None, since: datetime | None = None) -> list[HistoryEntry]:
        """Alerts, oldest first, with each channel's delivery status."""
        where, params = ["1 = 1"], []
        if account is not None:
            where.append("a.account = ?")
            params.append(account)
        if since is not None:
            where.append("a.created_at >= ?")
            params.append(format_at(since))
        with self._guard("read the history"):
            entries: dict[int, HistoryEntry] = {}
            rows = self.db.query(
                "SELECT a.id, a.payload, d.channel, d.status FROM alerts a LEFT JOIN deliveries d ON d.alert_id = a.id "
                f"WHERE {' AND '.join(where)} ORDER BY a.created_at, a.id, d.channel",
                params,
            )
            for row in rows:
                entry = entries.get(row["id"])
                if entry is None:
                    entry = entries[row["id"]] = HistoryEntry(row["id"], alert_from_json(row["payload"]), {})
                if row["channel"] is not None:
                    entry.deliveries[row["channel"]] = row["status"]
            return list(entries.values())

    @staticmethod
    def _sample(row: dict) -> Sample:
        return Sample(
            account=row["account"], scope=row["scope"], at=parse_at(row["at"]),
            margin_ratio=math.inf if row["margin_ratio_inf"] else row["margin_ratio"],
            equity=row["equity"], maintenance_margin=row["maintenance_margin"],
            liquidation_move=row["liquidation_move"],
            level=Level.parse(row["level"]) if row["level"] else None, estimated=bool(row["estimated"]),
            currency=row.get("currency"),
        )

    def samples(self, account: str | None = None, scope: str | None = None, since: datetime | None = None) -> list[Sample]:
        where, params = ["1 = 1"], []
        for column, value in (("account", account), ("scope", scope)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("at >= ?")
            params.append(format_at(since))
        with self._guard("read the samples"):
            rows = self.db.query(f"SELECT * FROM samples WHERE {' AND '.join(where)} ORDER BY at, id", params)
            return [self._sample(row) for row in rows]

    def latest_samples(self) -> list[Sample]:
        """The newest sample of every (account, scope), ordered by account and scope."""
        with self._guard("read the samples"):
            rows = self.db.query(
                "SELECT s.* FROM samples s JOIN (SELECT account, scope, max(at) AS at FROM samples GROUP BY account, scope) m "
                "ON s.account = m.account AND s.scope = m.scope AND s.at = m.at ORDER BY s.account, s.scope, s.id"
            )
            latest: dict[tuple[str, str], Sample] = {}
            for row in rows:
                latest[(row["account"], row["scope"])] = self._sample(row)
            return list(latest.values())

    def trend_bases(self, since: datetime, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[float, int]]:
        """For each (account, scope) of `keys` with a finite margin ratio since `since`: the oldest
        such ratio and how many there are, counted up to 2 — what a trend needs. One index seek
        per scope, whatever the length of the history."""
        since_text = format_at(since)
        bases = {}
        with self._guard("read the samples"):
            for account, scope in keys:
                rows = self.db.execute(
                    "SELECT margin_ratio FROM samples WHERE account = ? AND scope = ? AND at >= ? "
                    "AND margin_ratio_inf = 0 AND margin_ratio IS NOT NULL ORDER BY at, id LIMIT 2",
                    [account, scope, since_text],
                ).fetchall()
                if rows:
                    bases[(account, scope)] = (rows[0][0], len(rows))
        return bases

    def prune_samples(self, before: datetime) -> int:
        self.ensure_file()
        with self._guard("prune old samples"), self.db.atomic():
            self.db.execute("DELETE FROM poll_errors WHERE at < ?", [format_at(before)])
            return self.db.execute("DELETE FROM samples WHERE at < ?", [format_at(before)]).rowcount

    # ------------------------------------------------------------ snapshots

    def snapshots(self) -> dict[str, AccountSnapshot]:
        """account → its last full snapshot (for `whatif`). A row that cannot be read is a
        StoreError naming the table, never a traceback."""
        with self._guard("read the snapshots"):
            try:
                return load_snapshots(self.db)
            except (ValueError, TypeError, KeyError) as e:
                raise StoreError(f"{self.path}: a stored snapshot cannot be read ({type(e).__name__}: {e}); "
                                 f"the next full poll replaces it") from None

    # ------------------------------------------------------------ notices

    def last_notice_at(self, account: str, reason: str) -> datetime | None:
        """When an exchange's notice saying `reason` was last recorded for `account` (None:
        never), so a restarted daemon does not tell it again before its repeat is due."""
        with self._guard("read the history"):
            rows = self.db.execute("SELECT created_at, payload FROM alerts WHERE account = ? AND kind = ? ORDER BY created_at DESC",
                                   [account, str(AlertKind.NOTICE)]).fetchall()
        return next((parse_at(at) for at, payload in rows if alert_from_json(payload).reason == reason), None)
