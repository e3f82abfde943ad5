"""Concurrency: one polling cycle of N accounts at 200 ms exchange latency.

    python bench/concurrency.py            # N = 1, 10, 50; 5 timed cycles each (~1 min)
    python bench/concurrency.py --quick    # N = 1, 5; 2 timed cycles each (~5 s)

One simulator (real ccxt binanceusdm → aiohttp on 127.0.0.1) holds 50 accounts with distinct API
keys, each with BTC + ETH cross and SOL isolated positions; every exchange request is delayed
200 ms (`sim.set_latency(0.2)`). For each N a fresh daemon is built with `build_daemon` (real
sources, SQLite store in a temporary directory, no channels), then:

  warm-up   one cycle: asyncio.gather(Pipeline.poll_account(name) for every account) — loads
            the markets (each account has its own ccxt instance) and creates the states;
  fetch     timed cycles of asyncio.gather(fetch_health(...)) — the exchange part only;
  poll      timed cycles of asyncio.gather(Pipeline.poll_account(...)) — fetch + health + policy +
            the SQLite commit, i.e. what the daemon's poll jobs do when they coincide.

Reported: median cycle seconds per N, its ratio to N = 1, and exchange API requests per account
per cycle (from the simulator's counters; warm-up separate; private = carrying an API key).
Goal: the 50-account poll cycle ≤ 2 × the 1-account poll cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import account_config, bench_account, median, table, verdict, wallet_for  # noqa: E402

from alerter.config import build_settings  # noqa: E402
from alerter.pipeline import fetch_health  # noqa: E402
from alerter.runtime import build_daemon  # noqa: E402
from alerter.simulator import run_simulator  # noqa: E402

LATENCY_S = 0.2
GOAL_RATIO = 2.0


def split(before: dict, after: dict) -> tuple[int, int]:
    """(private, public) requests between two request_counts() readings."""
    private = public = 0
    for key, n in after.items():
        d = n - before.get(key, 0)
        if key[0] is None:
            public += d
        else:
            private += d
    return private, public


def paths(before: dict, after: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, n in after.items():
        if n - before.get(key, 0):
            out[key[1]] = out.get(key[1], 0) + n - before.get(key, 0)
    return out


async def measure(sim, keys: list[str], n: int, cycles: int, workdir: Path) -> dict:
    names = [f"account-{k}" for k in keys[:n]]
    settings = build_settings({
        "daemon": {"database": str(workdir / f"n{n}.db"), "request_timeout": "10s"},
        "accounts": [account_config(name, key, sim.ccxt_config()) for name, key in zip(names, keys[:n])],
    })
    daemon = build_daemon(settings)
    try:
        c0 = sim.request_counts()
        started = time.perf_counter()
        await asyncio.gather(*(daemon.pipeline.poll_account(name) for name in names))
        warm_s = time.perf_counter() - started
        c1 = sim.request_counts()
        warm = split(c0, c1)
        warm_paths = paths(c0, c1)

        async def fetch_cycle():
            polls = await asyncio.gather(*(fetch_health(daemon.plans[name], daemon.sources[name]) for name in names))
            errors = [p.error for p in polls if p.error]
            if errors:
                raise SystemExit(f"N={n}: poll errors: {errors[:3]}")

        async def poll_cycle():
            await asyncio.gather(*(daemon.pipeline.poll_account(name) for name in names))
            if daemon.pipeline.unsaved:
                raise SystemExit(f"N={n}: store errors")

        result = {"n": n, "warm_s": warm_s, "warm": warm, "warm_paths": warm_paths}
        for kind, cycle in (("fetch", fetch_cycle), ("poll", poll_cycle)):
            times = []
            before = sim.request_counts()
            for _ in range(cycles):
                started = time.perf_counter()
                await cycle()
                times.append(time.perf_counter() - started)
            after = sim.request_counts()
            result[kind] = times
            result[f"{kind}_req"] = split(before, after)
            result[f"{kind}_paths"] = paths(before, after)
        # the blind counter must not have moved: every poll succeeded
        failures = [s.failures for name in names for s in daemon.store.load_states(name).values() if s.failures]
        if failures:
            raise SystemExit(f"N={n}: {len(failures)} scopes with failed polls")
        return result
    finally:
        await asyncio.gather(*(s.close() for s in daemon.sources.values()))
        daemon.store.close()


async def run(ns: list[int], cycles: int) -> list[dict]:
    keys = [f"cc-{i:02d}" for i in range(max(ns))]
    async with run_simulator({"name": "concurrency", "accounts": [bench_account(k) for k in keys]}) as sim:
        for k in keys:
            wallet_for(sim.state, 0.30, k)  # every account safe: no alerts, nothing to deliver
        sim.set_latency(LATENCY_S)
        with tempfile.TemporaryDirectory(prefix="alerter-concurrency-") as tmp:
            return [await measure(sim, keys, n, cycles, Path(tmp)) for n in ns]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N = 1, 5; 2 timed cycles")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    ns, cycles = ([1, 5], 2) if args.quick else ([1, 10, 50], 5)
    results = asyncio.run(run(ns, cycles))

    base = median(results[0]["poll"])
    base_fetch = median(results[0]["fetch"])
    rows = []
    for r in results:
        n = r["n"]
        fetch, poll = median(r["fetch"]), median(r["poll"])
        wp, wq = r["warm"]
        pp, pq = r["poll_req"]
        rows.append([
            n, f"{r['warm_s']:.3f}", f"{fetch:.3f}", f"{fetch / base_fetch:.2f}", f"{poll:.3f}", f"{min(r['poll']):.3f}",
            f"{max(r['poll']):.3f}", f"{poll / base:.2f}", f"{pp / (n * cycles):.1f}/{pq / (n * cycles):.1f}",
            f"{wp / n:.1f}/{wq / n:.1f}",
        ])
    print(f"one cycle of N accounts polled concurrently, {LATENCY_S * 1000:.0f} ms latency per request, median of {cycles} timed cycles")
    print(table(["N", "warm-up s", "fetch s", "fetch ×", "poll s", "poll min", "poll max", "poll ×N=1",
                 "req/acct/cycle priv/pub", "warm-up req/acct priv/pub"], rows))
    last = results[-1]
    print(f"\nrequests per cycle at N={last['n']} (all {cycles} poll cycles): "
          + ", ".join(f"{p} {c}" for p, c in sorted(last["poll_paths"].items())))
    print(f"warm-up requests at N={last['n']}: " + ", ".join(f"{p} {c}" for p, c in sorted(last["warm_paths"].items())))
    ratio = median(last["poll"]) / base
    print(f"\ngoal: {last['n']}-account cycle ≤ {GOAL_RATIO:g}× 1-account cycle: {verdict(ratio <= GOAL_RATIO)} "
          f"({ratio:.2f}×: {median(last['poll']):.3f} s vs {base:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
