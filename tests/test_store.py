"""store.py against real SQLite files in tmp_path."""

from __future__ import annotations

import inspect
import math
import os
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerter.codec import alert_from_json, alert_to_json
from alerter.errors import StoreError
from alerter.models import Ack, Alert, AlertKind, Health, Level, PositionRisk, ScopeState
from alerter.outbox import Overlay
from alerter.schema import SCHEMA_VERSION
from alerter.store import Store

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ISO = "isolated:ETH/USDT:USDT:short"


def make_alert(kind=AlertKind.RAISED, level=Level.CALL, account="binance-main", scope="account", at=T0, **kw) -> Alert:
    values = dict(
        exchange="binanceusdm", margin_ratio=0.78, threshold=0.70, equity=10_000.0, maintenance_margin=7_800.0,
        deposit_needed=9_500.0, target=0.40, liquidation_move=-0.123,
        top_positions=(PositionRisk("BTC/USDT:USDT", "long", 50_000.0, 400.0, 60_000.0, 52_000.5, -0.1333),),
        since_at=at,
    )
    values.update(kw)
    return Alert(kind=kind, level=level, account=account, scope=scope, created_at=at, **values)


def make_health(scope="account", ratio=0.78, account="binance-main", **kw) -> Health:
    values = dict(equity=10_000.0, maintenance_margin=7_800.0, deposit_needed=9_500.0, liquidation_move=-0.123)
    values.update(kw)
    return Health(account=account, exchange="binanceusdm", scope=scope, margin_ratio=ratio, **values)


@pytest.fixture
def store(db_path):
    s = Store(db_path)
    yield s
    s.close()


# ---------------------------------------------------------------- opening

def test_new_file_gets_schema_and_wal(db_path):
    with Store(db_path) as s:
        assert s.schema_version == SCHEMA_VERSION == 5
        assert set(s.db.table_names()) >= {"scope_state", "samples", "alerts", "deliveries", "snapshots", "acks", "digests", "poll_errors"}
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert {i.name for i in s.db["samples"].indexes} >= {"samples_account_scope_at", "samples_at"}
    with Store(db_path) as s:  # reopening migrates nothing and keeps the data
        assert s.schema_version == SCHEMA_VERSION


def test_migrates_an_existing_empty_file(db_path):
    db_path.write_bytes(b"")
    with Store(db_path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.pending_count() == 0


def test_migrates_a_first_release_database_keeping_its_data(db_path):
    import sqlite_utils

    from alerter.schema import MIGRATIONS

    db = sqlite_utils.Database(db_path)
    MIGRATIONS[0](db)  # the schema as the first release wrote it
    db.execute("PRAGMA user_version = 1")
    row = ScopeState("binance-main", "account", Level.CALL, since_at=T0, notified_at=T0, peak=Level.CALL).to_dict()
    del row["absent"]  # added by migration 3
    db["scope_state"].insert(row)
    db.close()
    with Store(db_path) as s:
        assert s.schema_version == SCHEMA_VERSION
        assert s.load_states("binance-main")["account"].level == Level.CALL
        assert s.load_states("binance-main")["account"].absent == 0
        assert "snapshots" in s.db.table_names()


def test_newer_schema_is_refused(db_path):
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match=r"newer alerter \(schema version 99"):
        Store(db_path)


def test_corrupt_file_raises_store_error_naming_the_path(db_path):
    db_path.write_bytes(b"this is not a database, just some text\n" * 200)
    with pytest.raises(StoreError) as e:
        Store(db_path)
    assert str(db_path) in str(e.value)
    assert "not a SQLite database" in str(e.value)
    assert "\n" not in str(e.value)


def test_directory_that_cannot_hold_a_file_raises_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open"):
        Store(blocker / "alerter.db")
    with pytest.raises(StoreError, match="/proc/alerter-test.db"):
        Store("/proc/alerter-test.db")  # nobody, not even root, can create files there


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_file_raises_store_error(db_path):
    Store(db_path).close()
    db_path.chmod(0o444)
    try:
        with pytest.raises(StoreError, match="read-only"):
            s = Store(db_path)
            s.commit_poll("a", {}, [make_health(account="a")], [], {}, T0)
    finally:
        db_path.chmod(0o644)


def test_read_only_connection_write_raises_store_error(db_path):
    """What a read-only file looks like to SQLite, reproducible as root: writes are refused."""
    Store(db_path).close()
    s = Store(db_path)
    s.db.conn.close()
    s.db.conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    with pytest.raises(StoreError, match="read-only") as e:
        s.commit_poll("a", {}, [make_health(account="a")], [], {}, T0)
    assert str(db_path) in str(e.value)


def test_full_disk_raises_store_error(store, db_path):
    page_count = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {page_count + 2}")
    samples = [make_health(scope=f"isolated:S{i}:long", account="a") for i in range(2000)]
    with pytest.raises(StoreError, match="disk is full") as e:
        store.commit_poll("a", {}, samples, [], {}, T0)
    assert str(db_path) in str(e.value)


# ---------------------------------------------------------------- state

def test_states_round_trip_and_replace(store):
    a = ScopeState("binance-main", "account", Level.CALL, since_at=T0, notified_at=T0 + timedelta(minutes=1), peak=Level.CRITICAL, failures=2, blind=True, blind_notified_at=T0)
    b = ScopeState("binance-main", ISO, Level.WARNING, since_at=T0, peak=Level.WARNING, absent=1)
    other = ScopeState("bybit-1", "account")
    store.commit_poll("binance-main", {"account": a, ISO: b}, [], [], {}, T0)
    store.commit_poll("bybit-1", {"account": other}, [], [], {}, T0)
    assert store.load_states("binance-main") == {"account": a, ISO: b}
    store.commit_poll("binance-main", {"account": a}, [], [], {}, T0)  # the isolated position closed
    assert store.load_states("binance-main") == {"account": a}
    assert store.load_states("bybit-1") == {"account": other}
    assert store.load_states("nobody") == {}


def test_state_filed_under_wrong_account_is_refused(store):
    with pytest.raises(ValueError):
        store.commit_poll("a", {"account": ScopeState("b", "account")}, [], [], {}, T0)


# ---------------------------------------------------------------- samples

def test_samples_round_trip_with_infinite_ratio(store):
    states = {"account": ScopeState("a", "account", Level.CRITICAL)}
    store.commit_poll("a", states, [make_health(account="a", ratio=math.inf, equity=-5.0, liquidation_move=None)], [], {}, T0)
    store.commit_poll("a", states, [make_health(account="a", ratio=0.5, estimated=True)], [], {}, T0 + timedelta(minutes=1))
    first, second = store.samples(account="a")
    assert first.margin_ratio == math.inf and first.equity == -5.0 and first.liquidation_move is None
    assert first.level == Level.CRITICAL and not first.estimated
    assert second.margin_ratio == 0.5 and second.estimated and second.at == T0 + timedelta(minutes=1)
    row = store.db.execute("SELECT margin_ratio, margin_ratio_inf FROM samples ORDER BY id LIMIT 1").fetchone()
    assert row == (None, 1)  # stored as NULL + flag: the table stays valid JSON for any reader
    assert store.latest_samples() == [second]


def test_latest_samples_and_prune(store):
    for minutes in range(5):
        store.commit_poll("a", {}, [make_health(account="a", ratio=0.1 * minutes), make_health(account="a", scope=ISO, ratio=0.2)], [], {}, T0 + timedelta(minutes=minutes))
    latest = store.latest_samples()
    assert [(s.scope, s.margin_ratio, s.at) for s in latest] == [
        ("account", pytest.approx(0.4), T0 + timedelta(minutes=4)), (ISO, 0.2, T0 + timedelta(minutes=4))
    ]
    assert latest[0].level is None  # no state recorded for it
    assert store.prune_samples(T0 + timedelta(minutes=3)) == 6
    assert len(store.samples()) == 4
    assert len(store.samples(since=T0 + timedelta(minutes=4))) == 2


# ---------------------------------------------------------------- alerts and outbox

def test_alert_json_round_trip_with_inf_and_none():
    alert = make_alert(
        margin_ratio=math.inf, deposit_needed=math.inf, liquidation_move=None, equity=-1.5,
        top_positions=(PositionRisk("X/USDT:USDT", "short", 1e6, 5e3, 0.00012345, None, None),),
        estimated=True, reason="equity ≤ 0",
    )
    text = alert_to_json(alert)
    assert "Infinity" not in text and "NaN" not in text
    assert alert_from_json(text) == alert


finite = st.floats(allow_nan=False, allow_infinity=True) | st.none()


@settings(max_examples=60, deadline=None)
@given(ratio=finite, move=finite, deposit=finite, kind=st.sampled_from(AlertKind), level=st.sampled_from(Level),
       minutes=st.integers(0, 10**6), text=st.text(max_size=20))
def test_alert_json_round_trip_property(ratio, move, deposit, kind, level, minutes, text):
    alert = make_alert(kind=kind, level=level, margin_ratio=ratio, liquidation_move=move, deposit_needed=deposit,
                       at=T0 + timedelta(minutes=minutes, microseconds=minutes), reason=text, since_at=None)
    assert alert_from_json(alert_to_json(alert)) == alert


def test_commit_poll_records_alerts_and_pending_deliveries(store):
    crit = make_alert(level=Level.CRITICAL, margin_ratio=math.inf)
    blind = make_alert(kind=AlertKind.BLIND, level=Level.OK, failures=3, reason="timeout", margin_ratio=None)
    new = store.commit_poll("binance-main", {}, [], [crit, blind], {crit.key: ["tg", "mail"], blind.key: ["tg"]}, T0)
    assert len(new) == 2
    due = store.pending_deliveries(T0)
    assert sorted((d.channel, d.alert.kind) for d in due) == [("mail", "raised"), ("tg", "blind"), ("tg", "raised")]
    assert all(d.status == "pending" and d.attempts == 0 for d in due)
    assert [d.alert for d in due if d.channel == "mail"] == [crit]
    assert store.pending_deliveries(T0 - timedelta(seconds=1)) == []
    assert store.pending_count() == 3
    [entry1, entry2] = store.history()
    assert entry1.alert in (crit, blind) and entry1.deliveries


def test_duplicate_alert_key_is_ignored(store):
    alert = make_alert()
    store.commit_poll("binance-main", {}, [], [alert], {alert.key: ["tg"]}, T0)
    again = store.commit_poll("binance-main", {}, [], [alert], {alert.key: ["tg", "mail"]}, T0)
    assert again == []
    assert store.db["alerts"].count == 1
    assert [(d.channel, d.alert_id) for d in store.pending_deliveries(T0)] == [("tg", 1)]


def test_commit_poll_is_one_transaction(store):
    good = make_alert()
    store.commit_poll("a", {"account": ScopeState("a", "account", Level.WARNING)}, [make_health(account="a")], [], {}, T0)
    before = {t: store.db[t].count for t in ("scope_state", "samples", "alerts", "deliveries")}

    bad = make_health(account="a", ratio="not a number")  # fails after the state rows were written
    with pytest.raises(TypeError):
        store.commit_poll(
            "a", {"account": ScopeState("a", "account", Level.CRITICAL)}, [make_health(account="a"), bad],
            [good], {good.key: ["tg"]}, T0 + timedelta(minutes=1),
        )
    assert {t: store.db[t].count for t in before} == before
    assert store.load_states("a")["account"].level == Level.WARNING


def test_commit_poll_rolls_back_on_a_database_error(store, db_path):
    alert = make_alert(account="a")
    store.db.execute("CREATE TRIGGER no_blue AFTER INSERT ON deliveries WHEN new.channel = 'blue' BEGIN SELECT RAISE(ABORT, 'no blue'); END")
    with pytest.raises(StoreError, match="no blue"):
        store.commit_poll("a", {"account": ScopeState("a", "account")}, [make_health(account="a")], [alert], {alert.key: ["red", "blue"]}, T0)
    assert [store.db[t].count for t in ("scope_state", "samples", "alerts", "deliveries")] == [0, 0, 0, 0]


def test_mark_sent_failed_and_expire(store):
    old = make_alert(level=Level.CRITICAL, at=T0)
    new = make_alert(level=Level.WARNING, at=T0 + timedelta(hours=2))
    store.commit_poll("binance-main", {}, [], [old], {old.key: ["tg", "mail"]}, T0)
    store.commit_poll("binance-main", {}, [], [new], {new.key: ["tg"]}, T0 + timedelta(hours=2))
    now = T0 + timedelta(hours=2)
    ids = {d.alert.key: d.alert_id for d in store.pending_deliveries(now)}
    store.mark_sent([ids[old.key]], "mail", now)
    store.mark_failed([ids[old.key], ids[new.key]], "tg", "HTTP 500", now + timedelta(minutes=1))
    assert store.pending_deliveries(now) == []
    [retry_old, retry_new] = store.pending_deliveries(now + timedelta(minutes=1))
    assert (retry_old.attempts, retry_old.last_error, retry_old.status) == (1, "HTTP 500", "pending")
    [sent] = store.deliveries(status="sent")
    assert (sent.channel, sent.sent_at, sent.attempts) == ("mail", now, 1)

    expired = store.expire(T0 + timedelta(hours=25), timedelta(hours=24))
    assert [(d.alert.key, d.channel, d.status) for d in expired] == [(old.key, "tg", "expired")]
    assert store.expire(T0 + timedelta(hours=25), timedelta(hours=24)) == []
    assert [d.alert for d in store.expired_unreported("tg")] == [old]
    assert store.expired_unreported("mail") == []
    store.mark_reported([ids[old.key]], "tg")
    assert store.expired_unreported("tg") == []
    assert store.pending_count() == 1
    history = store.history(account="binance-main")
    assert [h.deliveries for h in history] == [{"mail": "sent", "tg": "expired"}, {"tg": "pending"}]
    assert store.history(since=T0 + timedelta(hours=1))[0].alert == new
    assert store.history(account="other") == []


def test_naive_datetimes_are_refused(store):
    with pytest.raises(ValueError, match="naive"):
        store.pending_deliveries(datetime(2024, 1, 1))


# ---------------------------------------------------------------- the file deleted under an open store

def test_deleted_file_is_recreated_from_the_open_copy_with_a_note(db_path):
    with Store(db_path) as s:
        alert = make_alert()
        s.commit_poll(alert.account, {}, [make_health()], [alert], {alert.key: ["hook"]}, T0)
        assert s.ensure_file() is None  # in place: nothing to do
        os.unlink(db_path)  # `rm alerter.db`: the -wal and -shm stay behind
        s.commit_poll(alert.account, {}, [make_health()], [], {}, T0 + timedelta(minutes=1))
        assert db_path.exists()
        (at, text), = s.notes()
        assert text.startswith("database file deleted while the daemon ran; recreated at ") and text.endswith("nothing lost")
    with Store(db_path) as s:  # the new file holds everything, the note included
        assert [e.alert for e in s.history()] == [alert]
        assert [d.status for d in s.deliveries()] == ["pending"]
        assert len(s.samples()) == 2 and len(s.notes()) == 1


def test_replaced_file_is_moved_aside_not_overwritten(db_path):
    with Store(db_path) as s:
        s.commit_poll("main", {}, [make_health(account="main")], [], {}, T0)
        other = db_path.with_name("other.db")
        other.write_bytes(b"someone else's file")
        os.replace(other, db_path)
        note = s.ensure_file()
        assert "replaced by another file" in note and ".replaced-" in note
        assert len(s.samples()) == 1
    (aside,) = db_path.parent.glob("alerter.db.replaced-*")
    assert aside.read_bytes() == b"someone else's file"


def test_a_database_without_notes_has_none(store):
    assert store.notes() == []


# ---------------------------------------------------------------- every write checks the file first

def _seeded(path):
    """A store with one alert pending on "hook" (created at T0), a sample, an acknowledgement."""
    s = Store(path)
    alert = make_alert()
    (alert_id,) = s.commit_poll(alert.account, {}, [make_health()], [alert], {alert.key: ["hook"]}, T0)
    s.save_ack(Ack(alert.account, "account", Level.CALL, acked_at=T0), make_alert(kind=AlertKind.ACKNOWLEDGED, at=T0), [])
    return s, alert_id


def _calls(alert_id: int) -> dict[str, tuple[tuple, dict]]:
    """Every public method of `Store` with arguments that make it do its work on `_seeded`."""
    later = T0 + timedelta(days=2)
    keys = [("binance-main", "account")]
    writes = {
        "commit_poll": (("binance-main", {}, [make_health()], [make_alert(at=later)], {}, later), {}),
        "record_sent": (([(make_alert(scope="other"), {"hook": T0})], T0), {}),
        "mark_sent": (([alert_id], "hook", later), {}),
        "mark_failed": (([alert_id], "hook", "refused", later), {}),
        "mark_reported": (([alert_id], "hook"), {}),
        "expire": ((later, timedelta(hours=1)), {}),
        "prune_samples": ((later,), {}),
        "save_ack": ((Ack("binance-main", "other", Level.CALL, acked_at=later), make_alert(kind=AlertKind.ACKNOWLEDGED, at=later), ["hook"]), {}),
        "remove_ack": (("binance-main", "account"), {}),
        "record_digest": (("hook", "2024-05-01", later), {}),
    }
    reads = {
        "load_states": (("binance-main",), {}), "load_decision": (("binance-main",), {}), "acks": ((), {}),
        "digest_sent": (("hook", "2024-05-01"), {}), "poll_errors": ((T0,), {}), "ratio_ranges": ((T0, keys), {}),
        "trend_bases": ((T0, keys), {}), "pending_deliveries": ((later,), {}), "deliveries": ((), {}),
        "expired_unreported": (("hook",), {}), "pending_count": ((), {}), "history": ((), {}), "samples": ((), {}),
        "latest_samples": ((), {}), "snapshots": ((), {}), "notes": ((), {}),
        "last_notice_at": (("binance-main", "Binance margin call"), {}),
    }
    return {"writes": writes, "reads": reads}


def test_every_public_method_is_known_as_a_read_or_a_write():
    calls = _calls(1)
    public = {name for name, member in inspect.getmembers(Store, inspect.isfunction) if not name.startswith("_")}
    lifecycle = {"close", "ensure_file"}
    unknown = public - set(calls["writes"]) - set(calls["reads"]) - lifecycle
    assert not unknown, f"new Store methods {sorted(unknown)}: list them in _calls, as a read or as a write"
    assert public >= {"mark_sent", "mark_failed", "mark_reported", "commit_poll"}


@pytest.mark.parametrize("name", sorted(_calls(1)["writes"]))
def test_every_write_first_checks_the_file_is_the_one_opened(tmp_path, name):
    """Someone else's file put at the path of a live store: the write goes to a file at the path
    holding this store's data (the other file moved aside), never to the one no longer there."""
    path = tmp_path / "alerter.db"
    s, alert_id = _seeded(path)
    try:
        other = tmp_path / "other.db"
        sqlite3.connect(other).close()
        os.replace(other, path)
        args, kwargs = _calls(alert_id)["writes"][name]
        getattr(s, name)(*args, **kwargs)
        assert os.stat(path).st_ino == s.inode[1]
        before = s.db.conn.total_changes
    finally:
        s.close()
    assert before > 1, f"{name} wrote nothing: its arguments in _calls do not exercise it"  # the note is 1
    with Store(path) as fresh:  # what the next reader of the path sees
        (_, note), = fresh.notes()
        assert "replaced by another file" in note
        assert fresh.history()[0].alert == make_alert()  # the data came along
        if name == "mark_sent":
            assert [(d.alert_id, d.status) for d in fresh.deliveries()] == [(alert_id, "sent")]


@pytest.mark.parametrize("name", sorted(_calls(1)["reads"]))
def test_reads_write_nothing(tmp_path, name):
    s, alert_id = _seeded(tmp_path / "alerter.db")
    try:
        before = s.db.conn.total_changes
        args, kwargs = _calls(alert_id)["reads"][name]
        getattr(s, name)(*args, **kwargs)
        assert s.db.conn.total_changes == before, f"{name} writes: list it with the writes in _calls"
    finally:
        s.close()


# ---------------------------------------------------------------- the overlay reads as the outbox once written

def test_outcomes_laid_over_the_outbox_read_as_they_do_once_written(tmp_path):
    """The store thread's overlay (outcomes the database refused) must show the outbox as it
    will be: compare, for the same outcomes, the overlay's view with the written one."""
    def outbox_with_outcomes(path, write: bool):
        s = Store(path)
        alerts = [make_alert(scope=f"s{i}", at=T0 + timedelta(seconds=i)) for i in range(5)]
        routes = {a.key: ["hook", "mail"] for a in alerts}
        ids = s.commit_poll("binance-main", {}, [], alerts, routes, T0)
        with s.db.conn:
            s.db.execute("UPDATE deliveries SET status = 'expired' WHERE alert_id = ?", [ids[4]])
        outcomes = [
            ("mark_sent", {"alert_ids": [ids[0]], "channel": "hook", "at": T0, "folded": [ids[1]]}),
            ("mark_failed", {"alert_ids": [ids[2]], "channel": "hook", "error": "refused", "next_attempt_at": T0 + timedelta(minutes=5)}),
            ("mark_failed", {"alert_ids": [ids[3]], "channel": "mail", "error": "refused", "next_attempt_at": None}),
            ("mark_sent", {"alert_ids": [ids[2]], "channel": "mail", "at": T0}),
            ("mark_reported", {"alert_ids": [ids[4]], "channel": "hook"}),
        ]
        overlay = Overlay()
        for name, arguments in outcomes:
            if write:
                getattr(s, name)(**arguments)
            else:
                overlay.add(name, arguments)
        views = {}
        for due_by in (None, T0, T0 + timedelta(minutes=5)):
            views[due_by] = [(d.alert_id, d.channel, d.attempts, d.next_attempt_at)
                             for d in overlay.pending(s.pending_deliveries(due_by), due_by)]
        views["unreported"] = [(d.alert_id, d.channel) for channel in ("hook", "mail")
                               for d in overlay.unreported(s.expired_unreported(channel))]
        s.close()
        return views

    assert outbox_with_outcomes(tmp_path / "laid.db", write=False) == outbox_with_outcomes(tmp_path / "written.db", write=True)
