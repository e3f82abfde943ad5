"""Detection: time from a price move across `call` to the CALL alert arriving at a webhook.

    /work/venv/bin/python bench/detection.py            # real defaults: poll 60 s, price 5 s; 20 + 20 trials (~9 min)
    /work/venv/bin/python bench/detection.py --quick    # poll 4 s, price 1 s; 3 + 3 trials (~30 s)
    options: --trials N (per mode), --seed S, --poll SECONDS, --price SECONDS, --lanes-on L, --lanes-off L

The real daemon (`build_daemon` + `Daemon.run()`: APScheduler, real ccxt binanceusdm, SQLite,
apprise) runs against the simulator with one account (BTC + ETH cross, SOL isolated; 30 %
margin ratio) and a loopback json:// webhook as its only channel. A trial:

  1. the account sits at 30 % (safe) and the daemon is steady (first full poll done, and the
     previous trial's RESOLVED has arrived);
  2. wait a random delay, uniform in [0, poll_interval) (seeded), so the move lands at a random
     phase of both the poll and the price-check schedules;
  3. step BTC's mark so the account is at 78 % (above call 70 %, below critical 85 %) and time
     until the CALL message arrives at the webhook (arrival time taken in the receiver);
  4. step back to 30 % and wait for RESOLVED (below warning − hysteresis).

Fast path ON: price_interval as given (default 5 s). Fast path OFF: price_interval = "off" (full
polls only). To keep the wall time down, independent LANES run concurrently in one event loop,
each its own simulator + daemon + webhook path (a lane is "a fresh account"): default 4 lanes × 5
trials with the fast path on, 10 lanes × 2 trials with it off (a fast-path-off trial costs two
poll intervals: detection, then the wait for RESOLVED). The lanes share one event loop, which adds
at most milliseconds to a latency measured in seconds.

Exchange API requests per hour per account in both modes are counted by the simulators over each
mode's whole run, from just after the first full poll (load_markets excluded) to just after the
first full poll that follows the last trial (so the window holds whole poll intervals), private
(carrying an API key) vs public. Goal: p95 detection latency ≤ price_interval + 1 s with the fast path on.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Webhook, account_config, bench_account, median, percentile, price_for, table, verdict, wallet_for  # noqa: E402

from alerter.config import build_settings  # noqa: E402
from alerter.runtime import build_daemon  # noqa: E402
from alerter.simulator import run_simulator  # noqa: E402

SAFE, CALL = 0.30, 0.78


async def wait_for_title(webhook: Webhook, path: str, start_index: int, prefix: str, timeout: float) -> tuple[float, str]:
    """(arrival time, title) of the first message on `path` after `start_index` whose title starts with `prefix`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for arrived, p, body in webhook.since(start_index):
            title = body.get("title", "") if isinstance(body, dict) else ""
            if p == path and title.startswith(prefix):
                return arrived, title
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{path}: no {prefix} message within {timeout:.0f} s")


async def lane(index: int, trials: int, poll_s: float, price: str, seed: int, webhook: Webhook, workdir: Path) -> dict:
    key = f"det-{index}"
    path = f"/lane{index}"
    rng = random.Random(seed * 1000 + index)
    async with run_simulator({"name": "detection", "accounts": [bench_account(key)]}) as sim:
        wallet_for(sim.state, SAFE, key)
        p_safe = sim.prices()["BTCUSDT"]
        p_call = price_for(sim.state, CALL, key)
        settings = build_settings({
            "daemon": {"database": str(workdir / f"lane{index}-{price}.db"), "poll_interval": f"{poll_s:g}s",
                       "price_interval": price, "request_timeout": "10s"},
            "accounts": [account_config("main", key, sim.ccxt_config())],
            "channels": [{"name": "hook", "url": webhook.url(path.lstrip("/"))}],
        })
        daemon = build_daemon(settings)
        runner = asyncio.create_task(daemon.run())
        out = {"latencies": [], "estimated": 0, "titles": []}
        try:
            while "main" not in daemon.confirmed:  # steady: the first full poll (markets loaded) is done
                await asyncio.sleep(0.05)
            sim.reset_counts()
            counted_from = time.monotonic()
            for _ in range(trials):
                await asyncio.sleep(rng.uniform(0, poll_s))
                index_before = webhook.count()
                moved_at = time.monotonic()
                sim.set_prices({"BTCUSDT": p_call})
                arrived, title = await wait_for_title(webhook, path, index_before, "CALL", 3 * poll_s + 10)
                out["latencies"].append(arrived - moved_at)
                out["estimated"] += "(estimated)" in title
                out["titles"].append(title)
                index_before = webhook.count()
                sim.set_prices({"BTCUSDT": p_safe})
                await wait_for_title(webhook, path, index_before, "RESOLVED", 3 * poll_s + 10)
            # end the count right after a full poll, as it began: no edge bias in the request rates
            last_poll = daemon.confirmed["main"][0]
            while daemon.confirmed["main"][0] == last_poll:
                await asyncio.sleep(0.05)
            out["seconds"] = time.monotonic() - counted_from
            counts = sim.request_counts()
            out["private"] = sum(n for (k, _), n in counts.items() if k is not None)
            out["public"] = sum(n for (k, _), n in counts.items() if k is None)
            out["paths"] = {}
            for (_, p), n in counts.items():
                out["paths"][p] = out["paths"].get(p, 0) + n
        finally:
            daemon.stop()
            await asyncio.wait_for(runner, 15)
        return out


async def run_mode(lanes: int, trials: int, poll_s: float, price: str, seed: int, webhook: Webhook) -> dict:
    per_lane = [trials // lanes + (1 if i < trials % lanes else 0) for i in range(lanes)]
    with tempfile.TemporaryDirectory(prefix="alerter-detection-") as tmp:
        started = time.monotonic()
        results = await asyncio.gather(*(lane(i, n, poll_s, price, seed, webhook, Path(tmp)) for i, n in enumerate(per_lane) if n))
        wall = time.monotonic() - started
    latencies = [x for r in results for x in r["latencies"]]
    hours = sum(r["seconds"] for r in results) / 3600  # account-hours: one account per lane
    paths: dict[str, int] = {}
    for r in results:
        for p, n in r["paths"].items():
            paths[p] = paths.get(p, 0) + n
    return {
        "latencies": latencies, "estimated": sum(r["estimated"] for r in results), "wall": wall,
        "private_h": sum(r["private"] for r in results) / hours, "public_h": sum(r["public"] for r in results) / hours,
        "account_hours": hours, "paths_h": {p: n / hours for p, n in paths.items()},
        "lanes": sum(1 for n in per_lane if n),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="poll 4 s, price 1 s, 3 trials per mode")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--poll", type=float, help="poll_interval seconds (default 60; quick 4)")
    parser.add_argument("--price", type=float, help="price_interval seconds (default 5; quick 1)")
    parser.add_argument("--lanes-on", type=int, help="concurrent lanes with the fast path on (default 4; quick 1)")
    parser.add_argument("--lanes-off", type=int, help="concurrent lanes with the fast path off (default 10; quick 3)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    poll_s = args.poll or (4.0 if args.quick else 60.0)
    price_s = args.price or (1.0 if args.quick else 5.0)
    trials = args.trials or (3 if args.quick else 20)
    lanes_on = args.lanes_on or (1 if args.quick else 4)
    lanes_off = args.lanes_off or (3 if args.quick else 10)

    webhook = Webhook()
    try:
        print(f"poll_interval {poll_s:g} s, price_interval {price_s:g} s; {trials} trials per mode; seed {args.seed}", flush=True)
        on = asyncio.run(run_mode(lanes_on, trials, poll_s, f"{price_s:g}s", args.seed, webhook))
        print(f"  fast path on: {on['wall']:.0f} s wall", flush=True)
        off = asyncio.run(run_mode(lanes_off, trials, poll_s, "off", args.seed + 1, webhook))
        print(f"  fast path off: {off['wall']:.0f} s wall\n", flush=True)
    finally:
        webhook.close()

    rows = []
    for label, r, interval in (("fast path on", on, price_s), ("fast path off", off, poll_s)):
        lat = r["latencies"]
        p50, p95, worst = median(lat), percentile(lat, 95), max(lat)
        rows.append([label, len(lat), r["lanes"], f"{p50:.2f}", f"{p95:.2f}", f"{worst:.2f}", f"{min(lat):.2f}",
                     f"{p95 / interval:.2f}", r["estimated"], f"{r['private_h']:.0f}", f"{r['public_h']:.0f}"])
    print(table(["mode", "trials", "lanes", "p50 s", "p95 s", "max s", "min s", "p95/interval", "via estimate",
                 "private req/h/acct", "public req/h/acct"], rows))
    print("\n(p95/interval: p95 ÷ price_interval with the fast path on, ÷ poll_interval with it off)")
    for label, r in (("on", on), ("off", off)):
        print(f"requests per hour per account, fast path {label}: "
              + ", ".join(f"{p} {n:.0f}" for p, n in sorted(r["paths_h"].items())))
    p95 = percentile(on["latencies"], 95)
    goal = price_s + 1.0
    print(f"\ngoal: p95 detection with the fast path on ≤ price_interval + 1 s = {goal:g} s: {verdict(p95 <= goal)} "
          f"(p95 {p95:.2f} s; off: p95 {percentile(off['latencies'], 95):.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
