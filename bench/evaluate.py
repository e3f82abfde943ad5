"""Evaluate: health + policy and the history write for 10 000 positions across 1 000 accounts.

    python bench/evaluate.py            # 1 000 accounts, 9 cycles per measurement (~1-2 min)
    python bench/evaluate.py --quick    # 1 000 accounts, 3 cycles; store variants on 200 accounts

Synthetic AccountSnapshots (seeded): 10 positions per account on 10 symbols, 7 cross + 3
isolated in most accounts, 10 cross or 6/4 in others; wallets chosen so that ~70 % of accounts are
ok, ~15 % warning, ~10 % call, ~5 % critical. Every cycle moves every mark by a seeded random
step (σ 0.4 %), so levels change and alerts are raised and resolved as in real polling.

1. Compute: `evaluate(snapshot, target)` + `decide_account(previous, healths, …)` for all
   accounts, the states carried from cycle to cycle (the daemon's steady state). Median over
   the cycles. Goal ≤ 50 ms per cycle.
2. History write, each variant in its own fresh SQLite file in a temporary directory:
   a. `Store.commit_poll` per account exactly as the daemon calls it after a full poll (state,
      samples, alerts + outbox rows, the snapshot): one transaction per account;
   b. the same without the snapshot (what an estimate between polls writes at most);
   c. all of (a) inside ONE outer `with store.db.atomic():` (commit_poll nests as savepoints);
   d. the health samples only, in ONE transaction: `with store.db.atomic(): insert_all` into `samples`.
   Each variant with the Store as it opens itself (WAL, synchronous=FULL: the SQLite default)
   and with `PRAGMA synchronous=NORMAL` set by this script (the common WAL setting), to show
   what fsync per commit costs. Goal ≤ 50 ms per cycle for the daemon's own write (a, FULL).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import median, table, verdict  # noqa: E402

from alerter.health import evaluate  # noqa: E402
from alerter.models import AccountSnapshot, Alert, Position, RepeatSchedule, Thresholds  # noqa: E402
from alerter.policy import decide_account  # noqa: E402
from alerter.codec import format_at  # noqa: E402
from alerter.store import Store  # noqa: E402

GOAL_MS = 50.0
SYMBOLS = {  # symbol → base mark
    "BTC/USDT:USDT": 60_000.0, "ETH/USDT:USDT": 3_000.0, "SOL/USDT:USDT": 150.0, "XRP/USDT:USDT": 0.6,
    "DOGE/USDT:USDT": 0.15, "ADA/USDT:USDT": 0.45, "AVAX/USDT:USDT": 35.0, "LINK/USDT:USDT": 15.0,
    "DOT/USDT:USDT": 7.0, "LTC/USDT:USDT": 80.0,
}
MAINT_RATE = 0.005
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def build_books(accounts: int, rng: random.Random) -> list[dict]:
    """Per account: name, cross wallet, positions as (symbol, side, contracts, entry, isolated wallet | None)."""
    books = []
    symbols = list(SYMBOLS)
    for i in range(accounts):
        isolated = (3, 0, 4)[i % 3]
        positions = []
        for j, symbol in enumerate(symbols):
            entry = SYMBOLS[symbol] * rng.uniform(0.97, 1.03)
            notional = rng.uniform(5_000, 50_000)
            side = "long" if rng.random() < 0.6 else "short"
            iso_wallet = notional * rng.uniform(0.02, 0.2) if j < isolated else None
            positions.append((symbol, side, notional / entry, entry, iso_wallet))
        books.append({"name": f"acct-{i:04d}", "positions": positions})
    # the cross wallet that gives the wanted ratio at the base marks
    for book in books:
        wanted = rng.choices([rng.uniform(0.15, 0.45), rng.uniform(0.50, 0.69), rng.uniform(0.70, 0.84), rng.uniform(0.85, 0.95)],
                             weights=[70, 15, 10, 5])[0]
        snap = snapshot_of(book, SYMBOLS, wallet=0.0)
        book["wallet"] = snap.maintenance_margin / wanted - snap.equity
    return books


def snapshot_of(book: dict, marks: dict[str, float], wallet: float | None = None) -> AccountSnapshot:
    positions = []
    cross_pnl = cross_mm = 0.0
    for symbol, side, contracts, entry, iso_wallet in book["positions"]:
        mark = marks[symbol]
        sign = 1 if side == "long" else -1
        notional = contracts * mark
        pnl = sign * contracts * (mark - entry)
        mm = notional * MAINT_RATE
        positions.append(Position(
            symbol=symbol, side=side, contracts=contracts, entry_price=entry, mark_price=mark, notional=notional,
            unrealized_pnl=pnl, maintenance_margin=mm, margin_mode="isolated" if iso_wallet is not None else "cross",
            collateral=None if iso_wallet is None else iso_wallet + pnl, initial_margin=notional / 10, maintenance_rate=MAINT_RATE,
        ))
        if iso_wallet is None:
            cross_pnl += pnl
            cross_mm += mm
    w = book["wallet"] if wallet is None else wallet
    return AccountSnapshot(
        account=book["name"], exchange="binanceusdm", equity=w + cross_pnl, maintenance_margin=cross_mm,
        wallet_balance=w, positions=tuple(positions), fetched_at=T0,
    )


def cycle_snapshots(books: list[dict], cycles: int, rng: random.Random) -> list[list[AccountSnapshot]]:
    marks = dict(SYMBOLS)
    out = []
    for c in range(cycles):
        marks = {s: m * math.exp(rng.gauss(0, 0.004)) for s, m in marks.items()}
        at = T0 + timedelta(minutes=c + 1)
        out.append([replace(snapshot_of(b, marks), fetched_at=at) for b in books])
    return out


def compute(snapshots: list[AccountSnapshot], previous: dict, thresholds: Thresholds, repeat: RepeatSchedule, now: datetime):
    results = []
    for snap in snapshots:
        healths = evaluate(snap, thresholds.target)
        states, alerts = decide_account(previous.get(snap.account, {}), healths, thresholds, repeat, now)
        previous[snap.account] = states
        results.append((snap, healths, states, alerts))
    return results


def sample_rows(results, at: datetime) -> list[dict]:
    """The samples rows exactly as Store.commit_poll builds them."""
    rows = []
    at_text = format_at(at)
    for _, healths, states, _ in results:
        for h in healths:
            infinite = math.isinf(h.margin_ratio)
            state = states.get(h.scope)
            rows.append({
                "account": h.account, "scope": h.scope, "at": at_text, "margin_ratio": None if infinite else h.margin_ratio,
                "margin_ratio_inf": int(infinite), "equity": h.equity, "maintenance_margin": h.maintenance_margin,
                "liquidation_move": h.liquidation_move, "level": state.level.label if state else None, "estimated": int(h.estimated),
            })
    return rows


def write(store: Store, variant: str, results, at: datetime) -> None:
    def routes(alerts: list[Alert]) -> dict[str, list[str]]:
        return {a.key: ["hook"] for a in alerts}

    if variant in ("a", "b"):
        for snap, healths, states, alerts in results:
            store.commit_poll(snap.account, states, healths, alerts, routes(alerts), at, snapshot=snap if variant == "a" else None)
    elif variant == "c":
        with store.db.atomic():
            for snap, healths, states, alerts in results:
                store.commit_poll(snap.account, states, healths, alerts, routes(alerts), at, snapshot=snap)
    else:
        rows = sample_rows(results, at)
        with store.db.atomic():
            store.db["samples"].insert_all(rows)


VARIANTS = {
    "a": "commit_poll per account (daemon, full poll)",
    "b": "commit_poll per account, no snapshot",
    "c": "commit_poll ×N inside one transaction",
    "d": "samples only, one transaction insert_all",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 cycles; the store variants on 200 accounts")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    cycles = 3 if args.quick else 9
    write_accounts = 200 if args.quick else args.accounts
    rng = random.Random(args.seed)
    thresholds, repeat = Thresholds(), RepeatSchedule()

    books = build_books(args.accounts, rng)
    per_cycle = cycle_snapshots(books, cycles + 1, rng)  # +1: a warm-up cycle that creates the states
    positions = sum(len(s.positions) for s in per_cycle[0])
    isolated = sum(1 for s in per_cycle[0] for p in s.positions if p.isolated)

    # ---- 1. health + policy
    previous: dict = {}
    compute(per_cycle[0], previous, thresholds, repeat, T0 + timedelta(minutes=1))
    times, results_by_cycle, levels = [], [], []
    for c in range(1, cycles + 1):
        now = T0 + timedelta(minutes=c + 1)
        started = time.perf_counter()
        results = compute(per_cycle[c], previous, thresholds, repeat, now)
        times.append(time.perf_counter() - started)
        results_by_cycle.append((now, results))
    scopes = sum(len(r[1]) for r in results_by_cycle[-1][1])
    alerts = [sum(len(r[3]) for r in results) for _, results in results_by_cycle]
    for _, results in results_by_cycle[-1:]:
        for _, _, states, _ in results:
            levels += [s.level.label for s in states.values()]
    mix = {lvl: levels.count(lvl) for lvl in ("ok", "warning", "call", "critical")}
    compute_ms = median(times) * 1000
    print(f"{args.accounts} accounts, {positions} positions ({isolated} isolated) → {scopes} scopes; {cycles} cycles")
    print(f"level mix in the last cycle: {', '.join(f'{k} {v}' for k, v in mix.items())}; alerts per cycle: {', '.join(map(str, alerts))}\n")
    print(table(["stage", "median ms", "min ms", "max ms", "µs/account", "goal ms", "verdict"], [[
        "evaluate + decide_account, all accounts", f"{compute_ms:.1f}", f"{min(times) * 1000:.1f}", f"{max(times) * 1000:.1f}",
        f"{compute_ms * 1000 / args.accounts:.0f}", f"{GOAL_MS:.0f}", verdict(compute_ms <= GOAL_MS),
    ]]))

    # ---- 2. history write
    rows = []
    write_ms: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="alerter-evaluate-") as tmp:
        for sync in ("FULL", "NORMAL"):
            for variant, label in VARIANTS.items():
                store = Store(Path(tmp) / f"{variant}-{sync}.db")
                if sync == "NORMAL":
                    store.db.execute("PRAGMA synchronous=NORMAL")
                wtimes = []
                for now, results in results_by_cycle:
                    chosen = results[:write_accounts]
                    started = time.perf_counter()
                    write(store, variant, chosen, now)
                    wtimes.append(time.perf_counter() - started)
                n_samples = store.db["samples"].count // len(results_by_cycle)
                store.close()
                ms = median(wtimes) * 1000
                write_ms[(variant, sync)] = ms
                transactions = write_accounts if variant in ("a", "b") else 1
                scaled = ms * args.accounts / write_accounts
                rows.append([f"{variant}. {label}", sync, transactions, n_samples, f"{ms:.1f}", f"{min(wtimes) * 1000:.1f}",
                             f"{max(wtimes) * 1000:.1f}", f"{scaled:.1f}", verdict(scaled <= GOAL_MS)])
    print(f"\nhistory write per cycle ({write_accounts} accounts written per cycle, median of {cycles}; "
          f"'ms @{args.accounts}' scales linearly to {args.accounts} accounts)")
    print(table(["variant", "sync", "txns", "samples", "median ms", "min ms", "max ms", f"ms @{args.accounts}", "≤50 ms"], rows))

    daemon_ms = write_ms[("a", "FULL")] * args.accounts / write_accounts
    one_txn_ms = write_ms[("d", "FULL")] * args.accounts / write_accounts
    print()
    print(f"goal: evaluate + decide_account for {args.accounts} accounts ≤ {GOAL_MS:.0f} ms: {verdict(compute_ms <= GOAL_MS)} ({compute_ms:.1f} ms)")
    print(f"goal: samples in one transaction ≤ {GOAL_MS:.0f} ms: {verdict(one_txn_ms <= GOAL_MS)} ({one_txn_ms:.1f} ms)")
    print(f"goal: history write as the daemon does it (commit_poll ×{args.accounts}) ≤ {GOAL_MS:.0f} ms: "
          f"{verdict(daemon_ms <= GOAL_MS)} ({daemon_ms:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
