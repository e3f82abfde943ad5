"""Living with it: what acknowledgements add to every poll, and what the daily digest costs.

    python bench/living.py            # 100 accounts × 10 scopes, 24 h of polls a minute apart
    python bench/living.py --quick    # 20 accounts, 6 h

1. Per poll, the daemon now reads the account's acknowledgements (`Store.acks(account)`) before it
   decides: the median time of that read, with no acknowledgement and with one per scope.
2. The digest: `digest.gather` (latest samples, the 24 h ranges, states, acks, the alerts and
   failed polls of 24 h) and `digest.render` for one channel that hears every account, on a
   file with a sample per scope per minute for 24 h, every scope acknowledged (so each account
   names its isolated positions: the most range queries). Its reads run on the store's thread one
   call at a time, polls' commits in between: the longest single call is how long it can hold up a
   poll's commit once a day. Goal ≤ 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import median  # noqa: E402

from alerter import digest  # noqa: E402
from alerter.models import ACCOUNT_SCOPE, Level, ScopeState  # noqa: E402
from alerter.codec import format_at  # noqa: E402
from alerter.store import Store  # noqa: E402

NOW = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
GOAL_S = 1.0


class Plan:
    def __init__(self, name: str):
        self.name, self.channels = name, ("hook",)


def build(path: Path, accounts: int, scopes: int, minutes: int, rng: random.Random) -> list[str]:
    names = [f"acct-{i:04d}" for i in range(accounts)]
    with Store(path) as store, store.db.atomic():
        rows = []
        for name in names:
            for j in range(scopes):
                scope = ACCOUNT_SCOPE if j == 0 else f"isolated:SYM{j}/USDT:USDT:long"
                ratio = rng.uniform(0.1, 0.8)
                for m in range(minutes):
                    ratio = min(0.99, max(0.01, ratio + rng.gauss(0, 0.004)))
                    rows.append((name, scope, format_at(NOW - timedelta(minutes=minutes - m)), ratio, 0, 1000.0, ratio * 1000, -0.2, "ok", 0))
            states = [ScopeState(name, ACCOUNT_SCOPE, Level.WARNING, NOW - timedelta(hours=1), NOW - timedelta(hours=1), Level.WARNING).to_dict()]
            for state in states:
                state["blind"] = int(state["blind"])
                store.db["scope_state"].insert(state)
        store.db.conn.executemany(
            "INSERT INTO samples (account, scope, at, margin_ratio, margin_ratio_inf, equity, maintenance_margin, liquidation_move, level, estimated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return names


def time_acks(store: Store, names: list[str], repeats: int = 5) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for name in names:
            store.acks(name)
        runs.append((time.perf_counter() - start) / len(names))
    return median(runs)


class Direct:
    """The Store's methods as awaitables, as the daemon's StoreThread offers them; keeps the
    longest single call (how long the store's thread is held at once)."""

    def __init__(self, store: Store):
        self.store = store
        self.longest = (0.0, "")

    def __getattr__(self, name):
        method = getattr(self.store, name)

        async def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.longest = max(self.longest, (time.perf_counter() - start, name))

        return call


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    accounts, scopes, minutes = (20, 10, 360) if args.quick else (100, 10, 1440)
    rng = random.Random(15)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "living.db"
        start = time.perf_counter()
        names = build(path, accounts, scopes, minutes, rng)
        print(f"built {accounts} accounts × {scopes} scopes × {minutes} polls = {accounts * scopes * minutes:,} samples "
              f"in {time.perf_counter() - start:.1f} s")
        with Store(path) as store:
            none = time_acks(store, names)
            for name in names:
                for j in range(scopes):
                    scope = ACCOUNT_SCOPE if j == 0 else f"isolated:SYM{j}/USDT:USDT:long"
                    store.db["acks"].insert({"account": name, "scope": scope, "level": "warning", "acked_at": format_at(NOW),
                                             "until_at": None, "note": "bench"})
            some = time_acks(store, names)
            print(f"acks read per poll: {none * 1e6:.0f} µs with none, {some * 1e6:.0f} µs with {scopes} per account")
            plans = {name: Plan(name) for name in names}
            runs, renders, longest = [], [], []
            for _ in range(3):
                start = time.perf_counter()
                direct = Direct(store)
                data = asyncio.run(digest.gather(direct, plans, "hook", "Europe/Berlin", NOW))
                longest.append(direct.longest)
                runs.append(time.perf_counter() - start)
                start = time.perf_counter()
                title, body = digest.render(data, markdown=True)
                renders.append(time.perf_counter() - start)
            hold, what = max(longest)
            print(f"digest: gather {median(runs):.3f} s (its longest single store call {hold:.3f} s, {what}), "
                  f"render {median(renders) * 1000:.1f} ms; {len(body):,} characters for {accounts} accounts")
            print(f"goal: the digest holds the store's thread ≤ {GOAL_S:g} s at a time: {'pass' if hold <= GOAL_S else 'MISS'} ({hold:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
