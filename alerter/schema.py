"""The SQLite file's schema and its forward migrations.

Schema version 5, kept in ``PRAGMA user_version``; `MIGRATIONS[i]` takes a file from version i
to i + 1, each in its own transaction. Times are text written by `codec.format_at`.

- ``scope_state`` (account, scope) PK + the `ScopeState` fields (levels as labels); ``absent``:
  full polls in a row that did not list an alerting scope (version 3).
- ``samples`` (id, account, scope, at, margin_ratio, margin_ratio_inf, equity,
  maintenance_margin, liquidation_move, level, estimated, currency). ``currency``: of equity and
  maintenance (version 5; NULL in rows written before). An infinite ratio (equity ≤ 0 with
  exposure) is stored as ``margin_ratio = NULL, margin_ratio_inf = 1`` so the table stays valid
  JSON for any reader; indexes on (account, scope, at) and (at).
- ``alerts`` (id, key UNIQUE, created_at, kind, level, account, scope, payload): ``payload`` is
  the whole `Alert` as JSON (`codec.alert_to_json`), rebuilt exactly.
- ``deliveries`` (alert_id, channel) PK: status pending|sent|folded|failed|expired, attempts,
  next_attempt_at, last_error, sent_at, reported (an expired row mentioned to its channel).
  ``failed`` is reserved for a delivery given up for good; a failed attempt stays ``pending``
  with a later ``next_attempt_at`` until it is sent or expires. ``folded``: delivered only as a
  mention ("earlier: …") under a newer alert of the same scope, in the same message.
- ``snapshots``: the last full snapshot of each account (version 2; see `alerter.snapshots`).
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
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from alerter.snapshots import ensure_table as ensure_snapshots_table

if TYPE_CHECKING:
    import sqlite_utils

logger = logging.getLogger(__name__)


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


def migrate(db: sqlite_utils.Database, version: int, path: Path) -> None:
    """Bring the file at `path`, at schema `version`, up to `SCHEMA_VERSION`: one transaction per step."""
    for target in range(version + 1, SCHEMA_VERSION + 1):
        with db.atomic():
            MIGRATIONS[target - 1](db)
            db.execute(f"PRAGMA user_version = {target}")
        logger.info("%s: migrated the schema to version %d", path, target)
