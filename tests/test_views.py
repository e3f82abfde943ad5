"""status, history and whatif end to end: a recorded crash in a real tmp SQLite file, read back
through the real command-line parser."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from alerter import commands
from alerter.cli import build_parser
from alerter.health import evaluate, liquidation_move, move_prices
from alerter.models import AccountSnapshot, Position, RepeatSchedule, Thresholds
from alerter.policy import decide_account
from alerter.snapshots import load_snapshots, save_snapshot, snapshot_from_dict, snapshot_to_dict
from alerter.store import Store
from alerter.health import move_to_ratio
from alerter.stress import parse_fraction

END = datetime(2024, 5, 1, 12, 2, 30, tzinfo=UTC)  # the last poll of the recorded crash
START = END - timedelta(seconds=150)
NOW = END + timedelta(seconds=10)
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"
RATE = 0.0067


def position(symbol, side, contracts, entry, mark, *, rate=RATE, isolated_wallet=None) -> Position:
    sign = 1 if side == "long" else -1
    pnl = sign * contracts * (mark - entry)
    return Position(
        symbol=symbol, side=side, contracts=contracts, entry_price=entry, mark_price=mark, notional=contracts * mark,
        unrealized_pnl=pnl, maintenance_margin=rate * contracts * mark,
        margin_mode="isolated" if isolated_wallet is not None else "cross",
        collateral=isolated_wallet + pnl if isolated_wallet is not None else None,
    )


def demo_snapshot(btc: float, eth: float, at: datetime) -> AccountSnapshot:
    """The demo's pair trade: long 5 BTC, short 106 ETH, 13 800 USDT: 30 % → 91 % → 32 %."""
    positions = (position(BTC, "long", 5, 60_000, btc), position(ETH, "short", 106, 3_000, eth))
    return AccountSnapshot(
        account="demo", exchange="binanceusdm", wallet_balance=13_800,
        equity=13_800 + sum(p.unrealized_pnl for p in positions),
        maintenance_margin=sum(p.maintenance_margin for p in positions), positions=positions, fetched_at=at,
    )


def iso_snapshot(btc: float, eth: float, at: datetime) -> AccountSnapshot:
    positions = (
        position(BTC, "long", 1, 60_000, btc, rate=0.005, isolated_wallet=18_400),
        position(ETH, "short", 10, 3_000, eth, rate=0.005, isolated_wallet=3_000),
    )
    return AccountSnapshot(account="demo-iso", exchange="binanceusdm", wallet_balance=5_000, equity=5_000,
                           maintenance_margin=0.0, positions=positions, fetched_at=at)


def prices(t: float) -> tuple[float, float]:
    """The demo scenario's path: calm, crash over 90 s, hold, partial recovery."""
    def lerp(a, b, f):
        return a + (b - a) * f
    if t <= 10:
        return 60_000, 3_000
    if t <= 100:
        f = (t - 10) / 90
        return lerp(60_000, 42_000, f), lerp(3_000, 2_250, f)
    if t <= 110:
        return 42_000, 2_250
    f = min(1.0, (t - 110) / 40)
    return lerp(42_000, 51_000, f), lerp(2_250, 2_600, f)


def record_crash(store: Store, step: int = 2) -> None:
    """Poll the crash every `step` seconds through the real health + policy + store stages."""
    thresholds, repeat = Thresholds(), RepeatSchedule()
    for make in (demo_snapshot, iso_snapshot):
        states = {}
        for t in range(0, 151, step):
            at = START + timedelta(seconds=t)
            snapshot = make(*prices(t), at)
            healths = evaluate(snapshot, thresholds.target)
            states, alerts = decide_account(states, healths, thresholds, repeat, at)
            store.commit_poll(snapshot.account, states, healths, alerts, {a.key: ["phone"] for a in alerts}, at)
            save_snapshot(store.db, snapshot)
    # the first two alerts got through, the rest are still in the outbox
    sent = [d.alert_id for d in store.deliveries()][:2]
    store.mark_sent(sent, "phone", END)
    # an account whose polls stopped 20 minutes ago
    old = demo_snapshot(60_000, 3_000, NOW - timedelta(minutes=20))
    old = AccountSnapshot(**{**old.__dict__, "account": "old"})
    healths = evaluate(old, thresholds.target)
    states, alerts = decide_account({}, healths, thresholds, repeat, old.fetched_at)
    store.commit_poll("old", states, healths, alerts, {}, old.fetched_at)


@pytest.fixture
def config(tmp_path, monkeypatch):
    db = tmp_path / "alerter.db"
    path = tmp_path / "alerter.toml"
    path.write_text(textwrap.dedent(f"""
        [daemon]
        database = "{db}"
        poll_interval = "60s"

        [[accounts]]
        name = "demo"
        exchange = "binanceusdm"
        api_key = "k"
        secret = "s"

        [[accounts]]
        name = "demo-iso"
        exchange = "binanceusdm"
        api_key = "k"
        secret = "s"

        [[accounts]]
        name = "old"
        exchange = "binanceusdm"
        api_key = "k"
        secret = "s"
        poll_interval = "2m"

        [[channels]]
        name = "phone"
        url = "json://127.0.0.1:9/hook"
    """))
    path.chmod(0o600)
    monkeypatch.setattr(commands, "now", lambda: NOW)
    return path, db


@pytest.fixture
def recorded(config):
    path, db = config
    with Store(db) as store:
        record_crash(store)
    return path, db


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- status

def test_status_json_shape_and_values(recorded, capsys):
    path, db = recorded
    code, out, err = run(["status", "--config", str(path), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["generated_at"] == NOW.isoformat()
    assert [a["account"] for a in data["accounts"]] == ["demo", "demo-iso", "old"]
    demo, iso, old = data["accounts"]
    assert demo["last_poll_at"] == END.isoformat() and demo["last_poll_age_seconds"] == 10
    assert demo["stale"] is False and old["stale"] is True and old["poll_interval_seconds"] == 120
    assert demo["thresholds"]["target"] == 0.4
    with Store(db) as store:
        pending = [d.alert.account for d in store.deliveries(status="pending")]
    assert (demo["pending_deliveries"], iso["pending_deliveries"], old["pending_deliveries"]) == (
        pending.count("demo"), pending.count("demo-iso"), 0)
    assert demo["pending_deliveries"] >= 1
    (scope,) = demo["scopes"]
    assert scope["scope"] == "account" and scope["level"] == "ok"
    assert scope["margin_ratio"] == pytest.approx(0.317, abs=0.005)
    # deposit: maintenance / target − equity, clamped at 0 (32 % is under the 40 % target)
    assert scope["deposit_needed"] == 0
    # trend over the last hour: from ≈ 30 % to ≈ 32 %
    first = demo_snapshot(60_000, 3_000, START)
    assert scope["trend_1h"] == pytest.approx(scope["margin_ratio"] - first.maintenance_margin / first.equity)
    assert scope["liquidation_move"] > 0  # net short: rising prices liquidate
    assert [s["scope"] for s in iso["scopes"]] == ["account", f"isolated:{BTC}:long", f"isolated:{ETH}:short"]


def test_status_deposit_and_levels_at_the_low(config, capsys):
    path, db = config
    with Store(db) as store:
        thresholds = Thresholds()
        snapshot = demo_snapshot(42_000, 2_250, END)
        healths = evaluate(snapshot, thresholds.target)
        states, alerts = decide_account({}, healths, thresholds, RepeatSchedule(), END)
        store.commit_poll("demo", states, healths, alerts, {a.key: ["phone"] for a in alerts}, END)
    code, out, _ = run(["status", "--config", str(path), "--json"], capsys)
    demo = json.loads(out)["accounts"][0]
    scope = demo["scopes"][0]
    assert scope["level"] == "critical" and scope["since_at"] == END.isoformat()
    assert scope["deposit_needed"] == pytest.approx(snapshot.maintenance_margin / 0.4 - snapshot.equity)
    assert scope["trend_1h"] is None  # one sample: no trend
    assert demo["pending_deliveries"] == 1
    assert json.loads(out)["accounts"][2]["last_poll_at"] is None  # "old" never polled here


def test_status_table(recorded, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    path, _ = recorded
    code, out, _ = run(["status", "--config", str(path)], capsys)
    assert code == 0
    assert "demo" in out and "└ BTC/USDT long" in out
    assert "stale 20m" in out
    assert "↑ +" in out  # the demo account's ratio rose over the hour
    assert "31.7 %" in out  # as alerts print a ratio


def test_status_marks_every_row_of_an_approximate_account(recorded, capsys, monkeypatch):
    """An account read through `profile = "generic"`: its name and each of its rows say so."""
    monkeypatch.setenv("COLUMNS", "160")
    path, _ = recorded
    text = path.read_text()
    generic = 'name = "demo-iso"\nexchange = "kraken"\nprofile = "generic"\nbalance_includes_pnl = true\n'
    path.write_text(text.replace('name = "demo-iso"\nexchange = "binanceusdm"\n', generic))
    assert path.read_text() != text
    code, out, _ = run(["status", "--config", str(path), "--json"], capsys)
    assert code == 0
    assert [(a["account"], a["approximate"]) for a in json.loads(out)["accounts"]] == [("demo", False), ("demo-iso", True), ("old", False)]
    code, out, _ = run(["status", "--config", str(path)], capsys)
    lines = out.splitlines()
    iso_rows = [line for line in lines if line.lstrip().startswith(("demo-iso", "└ BTC", "└ ETH"))]
    assert len(iso_rows) == 3 and "demo-iso (approximate)" in iso_rows[0]
    assert all("≈" in row for row in iso_rows)
    assert not any("≈" in line for line in lines if line.lstrip().startswith(("demo ", "old ")))
    assert '≈ approximate: ccxt\'s unified figures (profile = "generic"), not the exchange\'s own' in " ".join(out.split())


def test_status_without_database_is_one_line_error(config, capsys):
    path, db = config
    code, out, err = run(["status", "--config", str(path)], capsys)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "no database yet" in err and str(db) in err
    assert not db.exists()


def test_status_imports_no_exchange_notification_or_plot_library(recorded):
    path, _ = recorded
    script = textwrap.dedent(f"""
        import sys
        from alerter.cli import build_parser
        p = build_parser()
        for argv in (['status', '--config', {str(path)!r}], ['whatif', '--config', {str(path)!r}, '--all', '-10%'],
                     ['history', '--config', {str(path)!r}, '--since', '100000d']):
            args = p.parse_args(argv)
            assert args.func(args) == 0
        loaded = [m for m in ('ccxt', 'apprise', 'matplotlib') if m in sys.modules]
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- history

def test_history_json_has_the_crash_and_its_alerts(recorded, capsys):
    path, _ = recorded
    code, out, _ = run(["history", "demo", "--config", str(path), "--since", "100000d", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    (series,) = data["series"]
    assert (series["account"], series["scope"]) == ("demo", "account")
    ratios = [s["margin_ratio"] for s in series["samples"]]
    assert len(ratios) == 76
    assert ratios[0] == pytest.approx(0.30, abs=0.01) and max(ratios) == pytest.approx(0.91, abs=0.01)
    assert ratios[-1] == pytest.approx(0.317, abs=0.005)
    fired = [(a["kind"], a["level"]) for a in series["alerts"]]
    assert fired == [("raised", "warning"), ("raised", "call"), ("raised", "critical"), ("resolved", "critical")]
    assert series["alerts"][0]["deliveries"] == {"phone": "sent"}
    assert series["alerts"][-1]["deliveries"] == {"phone": "pending"}
    assert series["thresholds"]["critical"] == 0.85


def test_history_since_filters(recorded, capsys):
    path, _ = recorded
    code, out, _ = run(["history", "--config", str(path), "--since", "30s", "--json"], capsys)
    data = json.loads(out)
    assert data["since"] == (NOW - timedelta(seconds=30)).isoformat()
    for s in data["series"]:
        assert all(x["at"] >= data["since"] for x in s["samples"])
    assert {s["account"] for s in data["series"]} == {"demo", "demo-iso"}


def test_history_text_chart(recorded, capsys):
    path, _ = recorded
    code, out, _ = run(["history", "demo", "--config", str(path), "--since", "100000d"], capsys)
    assert code == 0
    assert "critical 85 %" in out and "call 70 %" in out and "warning 50 %" in out
    assert "W warning" in out and "X critical" in out and "R resolved" in out
    assert "12:00:00" in out and "12:02:30 UTC" in out
    assert "raised critical" in out and "phone pending" in out


def test_history_unknown_account(recorded, capsys):
    path, _ = recorded
    code, _, err = run(["history", "nope", "--config", str(path)], capsys)
    assert code == 2 and "no account named 'nope'" in err and "demo" in err


def test_history_bad_since(recorded, capsys):
    path, _ = recorded
    code, _, err = run(["history", "--config", str(path), "--since", "yesterday"], capsys)
    assert code == 2 and err.startswith("error: --since:")


def test_history_plot_png(recorded, capsys, tmp_path):
    from matplotlib import image

    path, _ = recorded
    png = tmp_path / "crash.png"
    code, out, err = run(["history", "--config", str(path), "--since", "100000d", "--plot", str(png)], capsys)
    assert code == 0, err
    assert out.strip() == f"wrote {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000
    height, width, _ = image.imread(png).shape
    assert (width, height) == (1320, 660)


def test_history_plot_without_matplotlib(recorded, capsys, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    path, _ = recorded
    code, out, err = run(["history", "--config", str(path), "--plot", str(tmp_path / "x.png")], capsys)
    assert code == 2
    assert err == "error: matplotlib is not installed: pip install 'alerter[plot]'\n"
    assert not (tmp_path / "x.png").exists()


# ---------------------------------------------------------------- snapshots

finite = st.floats(min_value=1e-3, max_value=1e7, allow_nan=False)
positions = st.builds(
    Position, symbol=st.sampled_from([BTC, ETH, "SOL/USDT:USDT"]), side=st.sampled_from(["long", "short"]),
    contracts=finite, entry_price=finite, mark_price=finite, notional=finite,
    unrealized_pnl=st.floats(min_value=-1e7, max_value=1e7), maintenance_margin=finite,
    margin_mode=st.sampled_from(["cross", "isolated"]), collateral=st.none() | finite,
    liquidation_price=st.none() | finite | st.just(math.inf), initial_margin=st.none() | finite,
    maintenance_rate=st.none() | st.floats(min_value=0, max_value=0.5),
)
snapshots = st.builds(
    AccountSnapshot, account=st.text(min_size=1, max_size=20), exchange=st.just("okx"),
    equity=st.floats(min_value=-1e7, max_value=1e7), maintenance_margin=finite, wallet_balance=finite,
    positions=st.lists(positions, max_size=4).map(tuple), initial_margin=finite, currency=st.sampled_from(["USDT", "USDC"]),
    fetched_at=st.datetimes(timezones=st.just(UTC)), estimated=st.booleans(),
)


@given(snapshots)
def test_snapshot_dict_round_trip(snapshot):
    assert snapshot_from_dict(json.loads(json.dumps(snapshot_to_dict(snapshot), allow_nan=False))) == snapshot


def test_save_and_load_snapshots(db_path):
    with Store(db_path) as store:
        assert load_snapshots(store.db) == {}
        assert store.db["snapshots"].count == 0  # migration 2 made the table; nothing saved yet
        first = demo_snapshot(60_000, 3_000, START)
        save_snapshot(store.db, first)
        save_snapshot(store.db, iso_snapshot(60_000, 3_000, START))
        latest = demo_snapshot(42_000, 2_250, END)
        save_snapshot(store.db, latest)  # replaces the account's row
        loaded = load_snapshots(store.db)
        assert loaded == {"demo": latest, "demo-iso": iso_snapshot(60_000, 3_000, START)}
        assert store.db["snapshots"].pks == ["account"]
        assert store.db["snapshots"].count == 2
        with pytest.raises(ValueError, match="timezone-aware"):
            save_snapshot(store.db, AccountSnapshot("x", "okx", 1.0, 0.0, 1.0))


# ---------------------------------------------------------------- whatif

def test_whatif_moves_json(recorded, capsys):
    path, _ = recorded
    code, out, err = run(["whatif", "--config", str(path), "--json", "--move", "BTC=-20%", "--move", "eth=-30%"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data["moves"] == {"BTC": -0.2, "ETH": -0.3} and data["default"] is None
    demo = next(a for a in data["accounts"] if a["account"] == "demo")
    assert demo["snapshot_at"] == END.isoformat()
    assert demo["prices"] == [{"symbol": BTC, "before": 51_000, "after": pytest.approx(40_800)},
                              {"symbol": ETH, "before": 2_600, "after": pytest.approx(1_820)}]
    # the same numbers as health.evaluate(health.move_prices(...)) — one implementation
    expected = evaluate(move_prices(demo_snapshot(51_000, 2_600, END), {"BTC": -0.2, "ETH": -0.3}), 0.4)[0]
    (scope,) = demo["scopes"]
    assert scope["after"]["margin_ratio"] == pytest.approx(expected.margin_ratio)
    assert scope["after"]["deposit_needed"] == pytest.approx(expected.deposit_needed)
    assert scope["after"]["level"] == "ok"  # the ETH short gains more than the BTC long loses
    iso = next(a for a in data["accounts"] if a["account"] == "demo-iso")
    assert [s["scope"] for s in iso["scopes"]] == ["account", f"isolated:{BTC}:long", f"isolated:{ETH}:short"]


def test_whatif_all_with_negative_move_and_table(recorded, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    path, _ = recorded
    code, out, err = run(["whatif", "demo", "--config", str(path), "--all", "-15%"], capsys)
    assert code == 0, err
    assert "BTC/USDT 51,000.00 → 43,350.00" in out
    code, out, err = run(["whatif", "demo", "--config", str(path), "--json", "--move", "BTC=+20%", "--all=-0.1"], capsys)
    data = json.loads(out)
    assert data["default"] == -0.1
    assert [p["after"] for p in data["accounts"][0]["prices"]] == [pytest.approx(61_200), pytest.approx(2_340)]


def test_whatif_levels(recorded, capsys):
    path, _ = recorded
    code, out, err = run(["whatif", "--config", str(path), "--levels", "--json"], capsys)
    assert code == 0, err
    rows = {a["account"]: a for a in json.loads(out)["accounts"]}
    (demo,) = rows["demo"]["scopes"]
    moves = demo["moves"]
    assert set(moves) == {"warning", "call", "critical", "liquidation"}
    snapshot = demo_snapshot(51_000, 2_600, END)
    # the pair trade is net short: rising prices hurt, and liquidation comes last
    assert 0 < moves["warning"] < moves["call"] < moves["critical"] < moves["liquidation"]
    assert moves["liquidation"] == pytest.approx(liquidation_move(snapshot.equity, snapshot.maintenance_margin, snapshot.positions))
    for name, ratio in (("warning", 0.5), ("call", 0.7), ("critical", 0.85), ("liquidation", 1.0)):
        moved = evaluate(move_prices(snapshot, {}, default=moves[name]), 0.4)[0]
        assert moved.margin_ratio == pytest.approx(ratio)
    iso = {s["scope"]: s for s in rows["demo-iso"]["scopes"]}
    assert iso["account"]["moves"] == {"warning": None, "call": None, "critical": None, "liquidation": None}
    assert iso[f"isolated:{BTC}:long"]["moves"]["liquidation"] < 0
    code, out, _ = run(["whatif", "--config", str(path)], capsys)  # --levels is the default
    assert "reached" not in out and "never" in out and "warning" in out


def test_whatif_errors(config, recorded, capsys):
    path, _ = recorded
    assert run(["whatif", "--config", str(path), "--move", "BTC=-20"], capsys)[0] == 2
    assert run(["whatif", "--config", str(path), "--all", "-150%"], capsys)[0] == 2
    code, _, err = run(["whatif", "--config", str(path), "--move", "XRP=-5%"], capsys)
    assert code == 0 and "warning: no position in XRP" in err
    code, _, err = run(["whatif", "nope", "--config", str(path)], capsys)
    assert code == 2 and "no account named 'nope'" in err


@pytest.mark.parametrize("payload", ["{not json", '{"account": "demo", "equity": "lots"}', '{"account": "demo", "positions": [{"x": 1}]}'])
def test_whatif_with_a_corrupt_snapshot_row_is_one_line_and_exit_1(recorded, capsys, payload):
    from alerter.cli import main

    path, db = recorded
    with Store(db) as store:
        store.db.execute("UPDATE snapshots SET payload = ?", [payload])
        store.db.conn.commit()
    code = main(["whatif", "--config", str(path), "--all", "-10%"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "a stored snapshot cannot be read" in err, err


def test_whatif_without_snapshots(config, capsys):
    path, db = config
    Store(db).close()
    code, _, err = run(["whatif", "--config", str(path), "--all", "-10%"], capsys)
    assert code == 1 and "no position snapshot recorded yet" in err


@pytest.mark.parametrize("text, value", [("-20%", -0.2), ("+5%", 0.05), ("-0.2", -0.2), (".5%", 0.005), ("−12.5%", -0.125)])
def test_parse_fraction(text, value):
    assert parse_fraction(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["-20", "x%", "-100%", "", "5%%"])
def test_parse_fraction_rejects(text):
    with pytest.raises(ValueError):
        parse_fraction(text)


# ---------------------------------------------------------------- move_to_ratio

rates = st.floats(min_value=0.001, max_value=0.05)


@st.composite
def cross_books(draw):
    n = draw(st.integers(1, 4))
    book = []
    for i in range(n):
        mark = draw(st.floats(min_value=1, max_value=1e5))
        contracts = draw(st.floats(min_value=1e-3, max_value=1e3))
        side = draw(st.sampled_from(["long", "short"]))
        rate = draw(rates)
        book.append(Position(symbol=f"C{i}/USDT:USDT", side=side, contracts=contracts, entry_price=mark, mark_price=mark,
                             notional=contracts * mark, unrealized_pnl=0.0, maintenance_margin=rate * contracts * mark))
    return tuple(book)


@settings(max_examples=300, deadline=None)
@given(cross_books(), st.floats(min_value=1.02, max_value=50), st.floats(min_value=0.05, max_value=1.0))
def test_move_to_ratio_reaches_the_ratio_when_prices_move(book, headroom, target_ratio):
    maintenance = sum(p.maintenance_margin for p in book)
    equity = maintenance * headroom
    snapshot = AccountSnapshot("a", "okx", equity=equity, maintenance_margin=maintenance, wallet_balance=equity, positions=book)
    m = move_to_ratio(equity, maintenance, book, target_ratio)
    current = maintenance / equity
    if current >= target_ratio:
        assert m == 0.0
        return
    if m is None:
        return
    assume(abs(m) > 1e-9)
    moved = evaluate(move_prices(snapshot, {}, default=m), 0.4)[0]
    assert moved.margin_ratio == pytest.approx(target_ratio, rel=1e-6)
    # and it is the first crossing: half way there the ratio is still below it
    half = evaluate(move_prices(snapshot, {}, default=m / 2), 0.4)[0]
    assert half.margin_ratio < target_ratio or half.margin_ratio == pytest.approx(target_ratio, rel=1e-9)  # rounding at a flat ratio


@settings(max_examples=200, deadline=None)
@given(cross_books(), st.floats(min_value=1.02, max_value=50), st.sampled_from([0.5, 0.7, 0.85, 1.0]))
def test_move_to_ratio_of_an_isolated_position(book, headroom, target_ratio):
    p = book[0]
    collateral = p.maintenance_margin * headroom
    iso = Position(**{**p.__dict__, "margin_mode": "isolated", "collateral": collateral})
    snapshot = AccountSnapshot("a", "okx", equity=1000.0, maintenance_margin=0.0, wallet_balance=1000.0, positions=(iso,))
    m = move_to_ratio(collateral, iso.maintenance_margin, [iso], target_ratio)
    if m is None or m == 0.0:
        assert m == 0.0 or (iso.sign == 1 and target_ratio * headroom > 1)  # a long's maintenance falls with its price
        return
    moved = evaluate(move_prices(snapshot, {iso.symbol: m}), 0.4)[1]
    assert moved.margin_ratio == pytest.approx(target_ratio, rel=1e-6)


def test_move_to_ratio_at_one_is_the_liquidation_move():
    book = demo_snapshot(51_000, 2_600, END)
    assert move_to_ratio(book.equity, book.maintenance_margin, book.positions, 1.0) == pytest.approx(
        liquidation_move(book.equity, book.maintenance_margin, book.positions))


def test_move_to_ratio_edges():
    p = position(BTC, "long", 1, 100, 100, rate=0.01)
    assert move_to_ratio(100, 80, [p], 0.5) == 0.0  # already above
    assert move_to_ratio(-5, 1, [p], 0.5) == 0.0  # equity gone
    assert move_to_ratio(100, 1, [], 0.5) is None  # nothing moves
    assert move_to_ratio(100, 0.0, [], 0.5) is None
    with pytest.raises(ValueError):
        move_to_ratio(100, 1, [p], 0)


# ---------------------------------------------------------------- the exchange's own figure
def one_account(tmp_path, monkeypatch, name: str, exchange: str, credentials: str = 'api_key = "k"\n        secret = "s"'):
    """A configuration with one account (and a channel), the clock at NOW; returns (config path, db)."""
    db = tmp_path / "alerter.db"
    path = tmp_path / "alerter.toml"
    path.write_text(textwrap.dedent(f"""
        [daemon]
        database = "{db}"
        [[accounts]]
        name = "{name}"
        exchange = "{exchange}"
        {credentials}
        [[channels]]
        name = "phone"
        url = "json://127.0.0.1:9/hook"
    """))
    path.chmod(0o600)
    monkeypatch.setattr(commands, "now", lambda: NOW)
    return path, db


def record_poll(db, snapshot):
    """One full poll of `snapshot` through health, policy and the store, as the daemon records it."""
    healths = evaluate(snapshot, 0.4)
    with Store(db) as store:
        states, alerts = decide_account({}, healths, Thresholds(), RepeatSchedule(), snapshot.fetched_at)
        store.commit_poll(snapshot.account, states, healths, alerts, {}, snapshot.fetched_at)
        save_snapshot(store.db, snapshot)
    return healths


def test_status_whatif_and_validate_show_the_exchanges_own_figure(tmp_path, capsys, monkeypatch):
    """An OKX account: OKX states mgnRatio (1 ÷ alerter's ratio), so every view shows it beside the ratio."""
    path, db = one_account(tmp_path, monkeypatch, "okx-main", "okx", 'api_key = "k"\n        secret = "s"\n        password = "p"')
    snapshot = AccountSnapshot(**{**demo_snapshot(51_000, 2_600, NOW - timedelta(seconds=30)).__dict__, "account": "okx-main", "exchange": "okx"})
    healths = record_poll(db, snapshot)
    own = f"OKX margin ratio {100 / healths[0].margin_ratio:,.0f} %"  # 1 ÷ ratio, as OKX states mgnRatio
    code, out, err = run(["status", "--config", str(path), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["accounts"][0]["scopes"][0]["exchange_figure"] == own
    monkeypatch.setenv("COLUMNS", "400")
    code, out, err = run(["status", "--config", str(path)], capsys)
    assert own in out
    code, out, err = run(["whatif", "--config", str(path), "--levels"], capsys)
    assert code == 0, err
    assert own in out
    assert "call 70 % = OKX margin ratio 143 %" in out and "liquidation 100 % = OKX margin ratio 100 %" in out
    code, out, err = run(["validate", "--config", str(path)], capsys)
    assert code == 0, err
    assert "exchange's own figure: OKX margin ratio, liquidation at 100 %; your warning 50 % = OKX margin ratio 200 %" in out


def test_status_names_the_account_on_each_of_its_margin_coins(tmp_path, capsys, monkeypatch):
    """A COIN-M account has one cross scope per margin coin and no "account" row: each coin's row
    carries the account's name, and none is hidden among the isolated positions."""
    from alerter.models import Pool, cross_scope

    path, db = one_account(tmp_path, monkeypatch, "coinm", "binancecoinm")
    at = NOW - timedelta(seconds=30)
    snapshot = AccountSnapshot(account="coinm", exchange="binancecoinm", equity=2.0, maintenance_margin=1.5, wallet_balance=2.0,
                               currency="ETH", fetched_at=at,
                               pools=(Pool(cross_scope("BTC"), 0.5, 0.1, "BTC"), Pool(cross_scope("ETH"), 2.0, 1.5, "ETH")))
    record_poll(db, snapshot)
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = run(["status", "--config", str(path)], capsys)
    assert code == 0, err
    assert "coinm · BTC cross" in out and "coinm · ETH cross" in out
    rows = [line for line in out.splitlines() if "coinm" in line]
    assert "20 %" in rows[0] and "75 %" in rows[1]  # 0.1 ÷ 0.5 and 1.5 ÷ 2.0, in coin order
    # the deposit in the coin the pool is margined in: 1.5 ÷ 40 % − 2.0 ETH
    assert "1.75 ETH" in rows[1] and "—" in rows[0]
    code, out, err = run(["status", "--config", str(path), "--json"], capsys)
    scopes = json.loads(out)["accounts"][0]["scopes"]
    assert [(s["scope"], s["currency"], s["deposit_needed"]) for s in scopes] == [("cross:BTC", "BTC", 0), ("cross:ETH", "ETH", pytest.approx(1.75))]
