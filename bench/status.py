"""Status with 5,000 positions: how long `alerter status` takes, and how long the poll log line is.

    python bench/status.py            # 5 000 isolated positions, a poll a minute for an hour (~1 min)
    python bench/status.py --quick    # the same positions, 12 polls

One account holds POSITIONS isolated positions (plus a few cross ones) on synthetic symbols. The
real pipeline records POLLS full polls of it, a minute apart (the default poll interval), ending
now: `evaluate` →
`decide_account` → `Store.commit_poll` (state, samples, snapshot), so the trend window holds
POLLS × (POSITIONS + 1) samples. Then `alerter status` and `alerter status --json` run in this
process (output to /dev/null), and `python -m alerter status` as a process, each timed as the
median of 3 runs. Goal: ≤ 1 s. The daemon's INFO line for such a poll (`daemon.describe`) is
measured too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import median, table, verdict  # noqa: E402

from alerter.cli import main  # noqa: E402
from alerter.pipeline import describe  # noqa: E402
from alerter.health import evaluate  # noqa: E402
from alerter.models import AccountSnapshot, Position, RepeatSchedule, Thresholds  # noqa: E402
from alerter.policy import decide_account  # noqa: E402
from alerter.store import Store  # noqa: E402

GOAL_S = 1.0
MAINT_RATE = 0.005
THRESHOLDS = Thresholds(warning=0.5, call=0.7, critical=0.85, hysteresis=0.05, target=0.4)
REPEAT = RepeatSchedule(warning=timedelta(hours=6), call=timedelta(minutes=30), critical=timedelta(minutes=5), blind=timedelta(hours=1))


def snapshot(positions: int, at: datetime, rng: random.Random) -> AccountSnapshot:
    out = []
    for i in range(positions + 3):
        isolated = i < positions
        mark = 100.0 * rng.uniform(0.9, 1.1)
        contracts = rng.uniform(1, 50)
        notional = contracts * mark
        pnl = contracts * (mark - 100.0)
        mm = notional * MAINT_RATE
        out.append(Position(
            symbol=f"C{i:05d}/USDT:USDT", side="long", contracts=contracts, entry_price=100.0, mark_price=mark,
            notional=notional, unrealized_pnl=pnl, maintenance_margin=mm, margin_mode="isolated" if isolated else "cross",
            collateral=mm / rng.uniform(0.2, 0.95) if isolated else None, initial_margin=notional / 10, maintenance_rate=MAINT_RATE,
        ))
    cross_mm = sum(p.maintenance_margin for p in out if not p.isolated)
    return AccountSnapshot(account="big", exchange="binanceusdm", equity=cross_mm / 0.3, maintenance_margin=cross_mm,
                           wallet_balance=cross_mm / 0.3, positions=tuple(out), fetched_at=at)


def build(db: Path, positions: int, polls: int, now: datetime) -> str:
    """Record the polls; returns the daemon's log line for the last one."""
    rng = random.Random(7)
    states: dict = {}
    line = ""
    with Store(db) as store:
        for k in range(polls):
            at = now - timedelta(minutes=polls - 1 - k)
            snap = snapshot(positions, at, rng)
            healths = evaluate(snap, THRESHOLDS.target)
            states, alerts = decide_account(states, healths, THRESHOLDS, REPEAT, at)
            store.commit_poll("big", states, healths, alerts, {}, at, snapshot=snap)
            line = f"big: {describe(healths, states)}"
    return line


def timed_status(config: Path, *args: str) -> float:
    runs = []
    for _ in range(3):
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            start = time.perf_counter()
            code = main(["status", "--config", str(config), *args])
            runs.append(time.perf_counter() - start)
        assert code == 0, code
    return median(runs)


def timed_process(config: Path) -> float:
    """`python -m alerter status` as a user runs it: interpreter start and imports included."""
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "alerter", "status", "--config", str(config)], check=True,
                       stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
        runs.append(time.perf_counter() - start)
    return median(runs)


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=5000)
    parser.add_argument("--polls", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="12 polls instead of 60")
    args = parser.parse_args()
    if args.quick:
        args.polls = 12
    with tempfile.TemporaryDirectory(prefix="alerter-bench-status-") as tmp:
        db = Path(tmp) / "alerter.db"
        config = Path(tmp) / "config.toml"
        config.write_text(f'[daemon]\ndatabase = "{db}"\n[[accounts]]\nname = "big"\nexchange = "binanceusdm"\n'
                          'api_key = "k"\nsecret = "s"\n')
        config.chmod(0o600)
        start = time.perf_counter()
        line = build(db, args.positions, args.polls, datetime.now(UTC))
        print(f"recorded {args.polls} polls of {args.positions:,} isolated positions in {time.perf_counter() - start:.1f} s "
              f"({db.stat().st_size / 1e6:.1f} MB)")
        text, as_json = timed_status(config), timed_status(config, "--json")
        process = timed_process(config)
    print(table(["measure", "value", "goal", ""], [
        ["alerter status (process)", f"{process:.2f} s", f"≤ {GOAL_S:g} s", verdict(process <= GOAL_S)],
        ["alerter status (table)", f"{text:.2f} s", f"≤ {GOAL_S:g} s", verdict(text <= GOAL_S)],
        ["alerter status --json", f"{as_json:.2f} s", f"≤ {GOAL_S:g} s", verdict(as_json <= GOAL_S)],
        ["poll log line", f"{len(line):,} chars", "bounded", ""],
    ]))


if __name__ == "__main__":
    main_bench()
