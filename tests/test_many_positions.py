"""An account with 5,000 isolated positions: the daemon's poll log line stays short, and the
status table shows the worst positions and counts the rest (--json still lists every one).
(How long status takes is a figure of bench/status.py, not a timed test.)"""

from __future__ import annotations

import asyncio

import json
import logging
from datetime import UTC, datetime, timedelta

from alerter.cli import main
from alerter.config import build_settings
from alerter.pipeline import Pipeline, Poll, describe
from alerter.health import evaluate
from alerter.models import AccountSnapshot, Position, RepeatSchedule, Thresholds
from alerter.policy import decide_account
from alerter.store import Store
from alerter.storethread import StoreThread

POSITIONS = 5000
THRESHOLDS = Thresholds(warning=0.5, call=0.7, critical=0.85, hysteresis=0.05, target=0.4)
REPEAT = RepeatSchedule(warning=timedelta(hours=6), call=timedelta(minutes=30), critical=timedelta(minutes=5), blind=timedelta(hours=1))


def snapshot(at: datetime, worst: float = 0.95) -> AccountSnapshot:
    """POSITIONS isolated longs: position i at a margin ratio of 10 % + i × 0.01 % (10 % … 60 %),
    except the last one, at `worst`; plus one cross position at 30 %."""
    positions = []
    for i in range(POSITIONS):
        ratio = worst if i == POSITIONS - 1 else 0.10 + i * 0.0001
        positions.append(Position(symbol=f"C{i:04d}/USDT:USDT", side="long", contracts=1.0, entry_price=100.0, mark_price=100.0,
                                  notional=100.0, unrealized_pnl=0.0, maintenance_margin=0.5, margin_mode="isolated",
                                  collateral=0.5 / ratio, maintenance_rate=0.005))
    positions.append(Position(symbol="BTC/USDT:USDT", side="long", contracts=1.0, entry_price=100.0, mark_price=100.0, notional=100.0,
                              unrealized_pnl=0.0, maintenance_margin=0.5, maintenance_rate=0.005))
    return AccountSnapshot(account="big", exchange="binanceusdm", equity=0.5 / 0.3, maintenance_margin=0.5, wallet_balance=0.5 / 0.3,
                           positions=tuple(positions), fetched_at=at)


def test_the_poll_log_line_names_the_worst_and_counts_the_rest(tmp_path, caplog):
    """The real daemon records a poll of 5,000 positions; its INFO line is a few hundred characters."""
    settings = build_settings({"daemon": {"database": str(tmp_path / "a.db")},
                               "accounts": [{"name": "big", "exchange": "binanceusdm", "api_key": "k", "secret": "s"}]})
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)

    async def record_one_poll() -> None:
        pipeline = Pipeline(settings, sources={}, store=StoreThread(Store(tmp_path / "a.db")), clock=lambda: now)
        await pipeline.record(Poll("big", evaluate(snapshot(now), THRESHOLDS.target)))
        await pipeline.store.close()

    with caplog.at_level(logging.INFO, logger="alerter.pipeline"):
        asyncio.run(record_one_poll())
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("big: account")]
    assert len(line) < 600, line
    assert line.startswith("big: account 30 % ok, ")
    assert "C4999/USDT:USDT:long 95 % critical" in line  # the one critical position is named
    assert "C4998/USDT:USDT:long 60 % warning" in line  # then the next worst
    assert "C0000/USDT:USDT" not in line
    # 4,995 more: the 995 of 999 at warning (50 % to 60 %) that were not named, the 4,000 ok
    assert line.endswith("+4,995 more isolated (995 warning, 4,000 ok)"), line


def test_describe_of_a_small_account_names_every_scope():
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    small = snapshot(now)
    small = AccountSnapshot(**{**small.__dict__, "positions": small.positions[-3:]})
    healths = evaluate(small, THRESHOLDS.target)
    states, _ = decide_account({}, healths, THRESHOLDS, REPEAT, now)
    assert describe(healths, states) == "account 30 % ok, C4998/USDT:USDT:long 60 % warning, C4999/USDT:USDT:long 95 % critical"


def test_status_shows_the_worst_positions_and_counts_the_rest(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    db = tmp_path / "a.db"
    config = tmp_path / "c.toml"
    config.write_text(f'[daemon]\ndatabase = "{db}"\n[[accounts]]\nname = "big"\nexchange = "binanceusdm"\napi_key = "k"\nsecret = "s"\n')
    config.chmod(0o600)
    now = datetime.now(UTC)
    states: dict = {}
    with Store(db) as store:
        for minutes, worst in ((10, 0.90), (0, 0.95)):  # two polls: the worst position has a trend
            at = now - timedelta(minutes=minutes)
            healths = evaluate(snapshot(at, worst), THRESHOLDS.target)
            states, alerts = decide_account(states, healths, THRESHOLDS, REPEAT, at)
            store.commit_poll("big", states, healths, alerts, {}, at)

    assert main(["status", "--config", str(config)]) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if "└" in line and "isolated position" not in line]
    assert len(rows) == 21, table  # the 20 worst and one line for the rest
    worst = next(row for row in rows if "C4999/USDT long" in row)
    assert "95 %" in worst and "critical" in worst and "↑ +5.0" in worst  # 90 % → 95 %: +5 points
    assert "C0000/USDT" not in table
    assert rows[-1].strip() == "└ +4,980 more: 980 warning, 4,000 ok"  # 999 − 19 shown at warning
    assert "only the 20 worst isolated positions of an account are listed, --json lists all" in " ".join(table.split())

    assert main(["status", "--config", str(config), "--json"]) == 0
    (account,) = json.loads(capsys.readouterr().out)["accounts"]
    assert len(account["scopes"]) == POSITIONS + 1
    worst = next(s for s in account["scopes"] if s["scope"] == "isolated:C4999/USDT:USDT:long")
    assert worst["level"] == "critical" and abs(worst["trend_1h"] - 0.05) < 1e-9
