"""The SQLite file: scope state, history and the delivery outbox, behind one `Store`.

sqlite-utils only; no decisions. Every public method either works or raises `StoreError`
with one line naming the file. The tables and their migrations are in `alerter.schema`, how a
value is written in `alerter.codec`, the outbox's statements in `alerter.outbox`.

Every write goes through `Store._write`: it checks that the file at the path is still the one
opened (`ensure_file`), then runs one transaction. The file deleted (or replaced) under an open
store: `ensure_file` notices it (the path's inode is not the one opened), copies what the open
connection still sees into a new file at the path, and writes a note there.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from alerter import outbox
from alerter import samples as sample_table
from alerter.codec import alert_from_json, format_at, parse_at
from alerter.errors import StoreError
from alerter.lazy import import_sqlite_utils
from alerter.models import AccountSnapshot, Ack, Alert, AlertKind, Health, Level, ScopeState
from alerter.outbox import Delivery, HistoryEntry
from alerter.samples import Sample
from alerter.schema import SCHEMA_VERSION, migrate
from alerter.snapshots import load_snapshots, save_snapshot

if TYPE_CHECKING:
    import sqlite_utils

logger = logging.getLogger(__name__)


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
                self.db = import_sqlite_utils().Database(conn)
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
                migrate(self.db, version, self.path)
                self.inode = _inode(self.path)
        except StoreError:
            if conn is not None:
                conn.close()
            raise

    # ------------------------------------------------------------ plumbing

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """SQLite and OS errors become one `StoreError` line naming the file and `action`."""
        try:
            yield
        except (sqlite3.Error, OSError) as e:
            raise StoreError(f"{self.path}: cannot {action}: {_reason(e)}") from e

    @contextmanager
    def _write(self, action: str) -> Iterator[None]:
        """The one way to write: first make sure the file at the path is still the one opened
        (`ensure_file`), then one transaction under `_guard`."""
        self.ensure_file()
        with self._guard(action), self.db.atomic():
            yield

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
        with self._write("record the poll"):
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
            if rows := sample_table.rows(samples, states, at_text):
                _insert_rows(self.db, "samples", rows)
            for alert in alerts:
                alert_id = outbox.insert_alert(self.db, alert, routes.get(alert.key, []), at_text)
                if alert_id is not None:
                    new_ids.append(alert_id)
            for ack in ended_acks:
                self.db.execute("DELETE FROM acks WHERE account = ? AND scope = ? AND acked_at = ?",
                                [ack.account, ack.scope, format_at(ack.acked_at)])
            if poll_error is not None:
                self.db.execute("INSERT INTO poll_errors (account, at, kind, error) VALUES (?, ?, ?, ?)", [account, at_text, *poll_error])
        return new_ids

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
        with self._write("record the acknowledgement"):
            self.db.execute(
                "INSERT OR REPLACE INTO acks (account, scope, level, acked_at, until_at, note) VALUES (?, ?, ?, ?, ?, ?)",
                [ack.account, ack.scope, ack.level.label, format_at(ack.acked_at), ack.until_at and format_at(ack.until_at), ack.note],
            )
            outbox.insert_alert(self.db, announcement, channels, format_at(announcement.created_at))

    def remove_ack(self, account: str, scope: str, announcement: Alert | None = None, channels: Iterable[str] = ()) -> Ack | None:
        """Delete a scope's acknowledgement; returns it (None when there was none). `announcement`
        (of the acknowledgement read before, `since_at` its acked_at) is recorded with one pending
        delivery per channel in the same transaction, only if that acknowledgement is the one
        deleted (the daemon may have ended it, or another written a newer one, meanwhile)."""
        with self._write("remove the acknowledgement"):
            row = next(iter(self.db.query("SELECT * FROM acks WHERE account = ? AND scope = ?", [account, scope])), None)
            if row is None:
                return None
            ack = self._ack(row)
            if announcement is not None and announcement.since_at != ack.acked_at:
                return None
            self.db.execute("DELETE FROM acks WHERE account = ? AND scope = ?", [account, scope])
            if announcement is not None:
                outbox.insert_alert(self.db, announcement, channels, format_at(announcement.created_at))
            return ack

    # ------------------------------------------------------------ daily digest

    def digest_sent(self, channel: str, day: str) -> datetime | None:
        """When the digest of `day` (the channel's local date, ISO) went to `channel`, if it did."""
        with self._guard("read the digests"):
            row = self.db.execute("SELECT sent_at FROM digests WHERE channel = ? AND day = ?", [channel, day]).fetchone()
            return parse_at(row[0]) if row else None

    def record_digest(self, channel: str, day: str, at: datetime) -> None:
        with self._write("record the digest"):
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
        with self._guard("read the samples"):
            return sample_table.ratio_ranges(self.db, since, keys)

    def record_sent(self, alerts: Iterable[tuple[Alert, dict[str, datetime | None]]], at: datetime) -> list[int]:
        """Record alerts that went out while the database could not take them, with each routed
        channel's outcome: sent at that time, or None (pending, due at `at`: the outbox retries
        it). An alert whose key exists is skipped. Returns the ids of the alerts recorded."""
        with self._write("record the alerts sent without the database"):
            return outbox.record_sent(self.db, alerts, at)

    # ------------------------------------------------------------ outbox (its statements: alerter.outbox)

    def pending_deliveries(self, due_by: datetime | None = None, channel: str | None = None) -> list[Delivery]:
        """Every pending delivery of each channel that has at least one due by `due_by` (of
        every channel with any pending when None), by channel, then oldest alert first. The
        backoff belongs to the channel: once one of its rows is due, all of them go out."""
        with self._guard("read the outbox"):
            return outbox.pending(self.db, due_by, channel)

    def deliveries(self, *, channel: str | None = None, status: str | None = None) -> list[Delivery]:
        with self._guard("read the outbox"):
            return outbox.deliveries(self.db, channel, status)

    def mark_sent(self, alert_ids: Iterable[int], channel: str, at: datetime, *, folded: Iterable[int] = ()) -> None:
        """Record a delivered message: `alert_ids` were told in full ('sent'); `folded` ones only
        mentioned under a newer alert of their scope ('folded'). One transaction, so a crash can
        never leave a superseded alert pending, to be told after the state that replaced it."""
        alert_ids, folded = list(alert_ids), list(folded)
        if not alert_ids and not folded:
            return
        with self._write("record a delivery"):
            outbox.mark_sent(self.db, alert_ids, channel, at, folded)

    def mark_failed(self, alert_ids: Iterable[int], channel: str, error: str, next_attempt_at: datetime | None) -> None:
        """Record a failed attempt; the rows stay pending until `next_attempt_at`, or become
        failed for good when it is None."""
        alert_ids = list(alert_ids)
        if not alert_ids:
            return
        with self._write("record a failed delivery"):
            outbox.mark_failed(self.db, alert_ids, channel, error, next_attempt_at)

    def expire(self, now: datetime, expiry: timedelta) -> list[Delivery]:
        """Pending deliveries of alerts created before now − expiry become expired; returns them."""
        with self._write("expire old deliveries"):
            return outbox.expire(self.db, now, expiry)

    def expired_unreported(self, channel: str) -> list[Delivery]:
        """Expired deliveries of `channel` not yet mentioned in a message to it, oldest first."""
        with self._guard("read the outbox"):
            return outbox.expired_unreported(self.db, channel)

    def mark_reported(self, alert_ids: Iterable[int], channel: str) -> None:
        alert_ids = list(alert_ids)
        if not alert_ids:
            return
        with self._write("record a report"):
            outbox.mark_reported(self.db, alert_ids, channel)

    def pending_count(self) -> int:
        with self._guard("read the outbox"):
            return outbox.pending_count(self.db)

    # ------------------------------------------------------------ history

    def history(self, account: str | None = None, since: datetime | None = None) -> list[HistoryEntry]:
        """Alerts, oldest first, with each channel's delivery status."""
        with self._guard("read the history"):
            return outbox.history(self.db, account, since)

    def samples(self, account: str | None = None, scope: str | None = None, since: datetime | None = None) -> list[Sample]:
        with self._guard("read the samples"):
            return sample_table.select(self.db, account, scope, since)

    def latest_samples(self) -> list[Sample]:
        """The newest sample of every (account, scope), ordered by account and scope."""
        with self._guard("read the samples"):
            return sample_table.latest(self.db)

    def trend_bases(self, since: datetime, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[float, int]]:
        """For each (account, scope) of `keys` with a finite margin ratio since `since`: the oldest
        such ratio and how many there are, counted up to 2 — what a trend needs. One index seek
        per scope, whatever the length of the history."""
        with self._guard("read the samples"):
            return sample_table.trend_bases(self.db, since, keys)

    def prune_samples(self, before: datetime) -> int:
        with self._write("prune old samples"):
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
