"""Detection: time from a price move across `call` (or a new position that takes the account
to CRITICAL) to the alert arriving at a webhook, in three modes side by side: streams (mark
prices and account events pushed over websockets, the default where supported), the REST fast
path (streams off), and full polls only.

    python bench/detection.py            # real defaults: poll 60 s, price 5 s, marks pushed every 1 s; 20 trials per mode (~20 min)
    python bench/detection.py --quick    # poll 4 s, price 1 s; 3 trials per mode, footprint 20 s (~2 min)
    options: --trials N (per mode), --seed S, --poll SECONDS, --price SECONDS, --lanes-on L, --lanes-off L,
             --footprint SECONDS (the CPU/RSS daemons' run; 0 skips them)

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

Streams: `[daemon] streams = true`, the simulator pushing `<symbol>@markPrice@1s` every second
(Binance's cadence) and the listen-key user-data stream. Fast path ON: streams off, price_interval
as given (default 5 s). Fast path OFF: streams off, price_interval = "off" (full polls only).

Position trials (streams and fast path on; with the fast path off a position change waits for the
same full poll as with it on): the account at 30 % gets a BTC position 5 × larger, which takes it
above critical (85 %); time until CRITICAL arrives; then back, and wait for RESOLVED.

CPU and RSS: four daemons (`python -m alerter run`) run concurrently against one simulator for
--footprint seconds (default 300; quick 20): streams on and off, with 1 and 20 accounts (poll
interval and price interval as above); CPU % = (user + system time) ÷ wall time over the run
after a 10 s warm-up, RSS = VmHWM at the end. To keep the wall time down, independent LANES run concurrently in one event loop,
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

from _common import Webhook, account_config, bench_account, median, percentile, price_for, proc_status, table, verdict, wallet_for, write_config  # noqa: E402

from alerter.config import build_settings  # noqa: E402
from alerter.runtime import build_daemon  # noqa: E402
from alerter.simulator import run_simulator  # noqa: E402

SAFE, CALL = 0.30, 0.78
GROWTH = 5  # the BTC position grows this many times in a position trial (30 % → above critical)


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


def grown(sim, key: str) -> list:
    from dataclasses import replace

    return [replace(p, size=p.size * GROWTH) if p.symbol == "BTCUSDT" else p for p in sim.state.accounts[key].positions]


async def lane(index: int, trials: int, poll_s: float, price: str, seed: int, webhook: Webhook, workdir: Path,
               streams: bool = False, kind: str = "price") -> dict:
    key = f"det-{index}"
    path = f"/lane{index}"
    rng = random.Random(seed * 1000 + index)
    async with run_simulator({"name": "detection", "accounts": [bench_account(key)]}, mark_cadence=1.0) as sim:
        wallet_for(sim.state, SAFE, key)
        p_safe = sim.prices()["BTCUSDT"]
        p_call = price_for(sim.state, CALL, key)
        base, big = list(sim.state.accounts[key].positions), grown(sim, key)
        assert sim.state.risk(key, {**sim.prices()}).cross_margin_ratio < 0.5
        sim.state.accounts[key].positions = big
        assert sim.state.risk(key).cross_margin_ratio > 0.85, "GROWTH too small for CRITICAL"
        sim.state.accounts[key].positions = base
        settings = build_settings({
            "daemon": {"database": str(workdir / f"lane{index}-{price}-{streams}-{kind}.db"), "poll_interval": f"{poll_s:g}s",
                       "price_interval": price, "request_timeout": "10s", "streams": streams},
            "accounts": [account_config("main", key, sim.ccxt_config())],
            "channels": [{"name": "hook", "url": webhook.url(path.lstrip("/"))}],
        })
        daemon = build_daemon(settings)
        runner = asyncio.create_task(daemon.run())
        out = {"latencies": [], "estimated": 0, "titles": []}
        try:
            while "main" not in daemon.pipeline.confirmed:  # steady: the first full poll (markets loaded) is done
                await asyncio.sleep(0.05)
            sim.reset_counts()
            counted_from = time.monotonic()
            for _ in range(trials):
                await asyncio.sleep(rng.uniform(0, poll_s))
                index_before = webhook.count()
                moved_at = time.monotonic()
                if kind == "price":
                    sim.set_prices({"BTCUSDT": p_call})
                else:
                    sim.set_account(key, positions=big)
                arrived, title = await wait_for_title(webhook, path, index_before, "CALL" if kind == "price" else "CRITICAL", 3 * poll_s + 10)
                out["latencies"].append(arrived - moved_at)
                print(f"    {'streams' if streams else 'price ' + price} {kind}, lane {index}: trial {len(out['latencies'])}/{trials} "
                      f"{arrived - moved_at:.2f} s", file=sys.stderr, flush=True)  # a mode runs for minutes: show it moving
                out["estimated"] += "(estimated)" in title
                out["titles"].append(title)
                index_before = webhook.count()
                if kind == "price":
                    sim.set_prices({"BTCUSDT": p_safe})
                else:
                    sim.set_account(key, positions=base)
                await wait_for_title(webhook, path, index_before, "RESOLVED", 3 * poll_s + 10)
            # end the count right after a full poll, as it began: no edge bias in the request rates
            last_poll = daemon.pipeline.confirmed["main"][0]
            while daemon.pipeline.confirmed["main"][0] == last_poll:
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


async def run_mode(lanes: int, trials: int, poll_s: float, price: str, seed: int, webhook: Webhook, streams: bool = False, kind: str = "price") -> dict:
    per_lane = [trials // lanes + (1 if i < trials % lanes else 0) for i in range(lanes)]
    with tempfile.TemporaryDirectory(prefix="alerter-detection-") as tmp:
        started = time.monotonic()
        results = await asyncio.gather(*(lane(i, n, poll_s, price, seed, webhook, Path(tmp), streams, kind) for i, n in enumerate(per_lane) if n))
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


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of stat)


async def footprint(seconds: float, poll_s: float, price_s: float) -> dict:
    """CPU % and peak RSS of four daemons run concurrently: streams on/off × 1/20 accounts."""
    import os
    import signal
    import subprocess

    keys = [f"fp-{i}" for i in range(42)]
    out = {}
    async with run_simulator({"name": "footprint", "accounts": [bench_account(k) for k in keys]}, mark_cadence=1.0) as sim:
        webhook = Webhook()
        procs = {}
        with tempfile.TemporaryDirectory(prefix="alerter-detection-fp-") as tmp:
            try:
                groups = {("on", 1): keys[:1], ("on", 20): keys[1:21], ("off", 1): keys[21:22], ("off", 20): keys[22:42]}
                for (mode, n), names in groups.items():
                    folder = Path(tmp) / f"{mode}-{n}"
                    folder.mkdir()
                    config = write_config(folder / "config.toml", {
                        "daemon": {"database": str(folder / "alerter.db"), "poll_interval": f"{poll_s:g}s", "price_interval": f"{price_s:g}s",
                                   "request_timeout": "10s", "streams": mode == "on"},
                        "accounts": [account_config(f"account-{k}", k, sim.ccxt_config()) for k in names],
                        "channels": [{"name": "hook", "url": webhook.url(f"fp-{mode}-{n}")}],
                    })
                    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTER_")}
                    procs[(mode, n)] = await asyncio.create_subprocess_exec(
                        sys.executable, "-m", "alerter", "run", "--config", str(config), cwd=folder, env=env,
                        stdout=subprocess.DEVNULL, stderr=(folder / "log").open("w"))
                await asyncio.sleep(10)  # start-up and first polls: not part of the steady state
                start = {k: (time.monotonic(), cpu_ticks(p.pid)) for k, p in procs.items()}
                await asyncio.sleep(seconds)
                ticks_s = os.sysconf("SC_CLK_TCK")
                for k, p in procs.items():
                    if p.returncode is not None:
                        raise SystemExit(f"daemon {k} exited early: {(Path(tmp) / f'{k[0]}-{k[1]}' / 'log').read_text()[-2000:]}")
                    wall = time.monotonic() - start[k][0]
                    out[k] = {"cpu": 100 * (cpu_ticks(p.pid) - start[k][1]) / ticks_s / wall, "hwm_kb": proc_status(p.pid).get("VmHWM", 0)}
            finally:
                for p in procs.values():
                    if p.returncode is None:
                        p.send_signal(signal.SIGTERM)
                for p in procs.values():
                    try:
                        await asyncio.wait_for(p.wait(), 20)
                    except TimeoutError:
                        p.kill()
                webhook.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="poll 4 s, price 1 s, 3 trials per mode")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--poll", type=float, help="poll_interval seconds (default 60; quick 4)")
    parser.add_argument("--price", type=float, help="price_interval seconds (default 5; quick 1)")
    parser.add_argument("--lanes-on", type=int, help="concurrent lanes with streams or the fast path on (default 4; quick 1)")
    parser.add_argument("--lanes-off", type=int, help="concurrent lanes for full-poll-only and position trials (default 10; quick 3)")
    parser.add_argument("--footprint", type=float, help="seconds the CPU/RSS daemons run (default 300; quick 20; 0: skip)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    poll_s = args.poll or (4.0 if args.quick else 60.0)
    price_s = args.price or (1.0 if args.quick else 5.0)
    trials = args.trials or (3 if args.quick else 20)
    lanes_on = args.lanes_on or (1 if args.quick else 4)
    lanes_off = args.lanes_off or (3 if args.quick else 10)
    fp_s = args.footprint if args.footprint is not None else (20.0 if args.quick else 300.0)
    price = f"{price_s:g}s"

    webhook = Webhook()
    runs = {}
    try:
        print(f"poll_interval {poll_s:g} s, price_interval {price_s:g} s, marks pushed every 1 s; {trials} trials per mode; seed {args.seed}", flush=True)
        plan = [
            ("streams", "price", lanes_on, price, True, price_s),
            ("fast path on", "price", lanes_on, price, False, price_s),
            ("fast path off", "price", lanes_off, "off", False, poll_s),
            ("streams", "position", lanes_on, price, True, poll_s),
            ("fast path on", "position", lanes_off, price, False, poll_s),
        ]
        for i, (label, kind, lanes, interval, streams, _) in enumerate(plan):
            runs[(label, kind)] = asyncio.run(run_mode(lanes, trials, poll_s, interval, args.seed + i, webhook, streams, kind))
            print(f"  {label}, {kind} trials: {runs[(label, kind)]['wall']:.0f} s wall", flush=True)
    finally:
        webhook.close()

    rows = []
    for label, kind, _, _, _, interval in plan:
        r = runs[(label, kind)]
        lat = r["latencies"]
        rows.append([f"{label} ({kind})", len(lat), r["lanes"], f"{median(lat):.2f}", f"{percentile(lat, 95):.2f}", f"{max(lat):.2f}",
                     f"{min(lat):.2f}", r["estimated"], f"{r['private_h']:.0f}", f"{r['public_h']:.0f}"])
    print()
    print(table(["mode (trials)", "trials", "lanes", "p50 s", "p95 s", "max s", "min s", "via estimate",
                 "private req/h/acct", "public req/h/acct"], rows))
    for label, kind, *_ in plan:
        print(f"requests per hour per account, {label} ({kind}): "
              + ", ".join(f"{p} {n:.0f}" for p, n in sorted(runs[(label, kind)]["paths_h"].items())))
    stream_p95 = percentile(runs[("streams", "price")]["latencies"], 95)
    position_p95 = percentile(runs[("streams", "position")]["latencies"], 95)
    on = runs[("fast path on", "price")]
    print(f"\ngoal: p95 price step → webhook with streams ≤ 1.5 s: {verdict(stream_p95 <= 1.5)} (p95 {stream_p95:.2f} s; "
          f"fast path on {percentile(on['latencies'], 95):.2f} s)")
    print(f"goal: p95 position change → webhook with streams ≤ 2 s: {verdict(position_p95 <= 2.0)} (p95 {position_p95:.2f} s)")
    streams_private = runs[("streams", "price")]["private_h"]
    print(f"private requests per hour per account: streams {streams_private:.0f}, fast path on {on['private_h']:.0f}")

    if fp_s > 0:
        print(f"\nCPU and peak RSS, {fp_s:g} s after a 10 s warm-up, four daemons at once:", flush=True)
        fp = asyncio.run(footprint(fp_s, poll_s, price_s))
        print(table(["daemon", "CPU %", "peak RSS MB"],
                    [[f"streams {mode}, {n} account{'s' if n > 1 else ''}", f"{v['cpu']:.1f}", f"{v['hwm_kb'] / 1024:.1f}"]
                     for (mode, n), v in sorted(fp.items(), key=lambda kv: (kv[0][1], kv[0][0]))]))
        for n in (1, 20):
            ratio = fp[("on", n)]["hwm_kb"] / fp[("off", n)]["hwm_kb"]
            print(f"goal: RSS with streams ≤ 1.10 × without, {n} account(s): {verdict(ratio <= 1.10)} ({ratio:.3f} ×)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
