"""On-chain accounts: block-to-alert latency, requests per block, memory per account, import cost.

    python bench/onchain.py            # 1, 100 and 1 000 accounts on one endpoint (daemon: 1 and 200), 20 blocks each
    python bench/onchain.py --quick    # 1 and 100 accounts (daemon: 1 and 50), 5 blocks
    python bench/onchain.py --heads    # newHeads: block N served → alert at the webhook, running daemon, 20 blocks

The loopback chain (alerter.simulator.chain) serves synthetic Aave positions (1 ETH against
1,200–2,400 USD of debt, so some accounts cross a level at each step). Each block moves the ETH
price; the clock starts when the block is served (set_price returns), and stops when the last
account's alert decision exists: the shared reader's round (eth_chainId + latest block, then one
eth_call batch for every account) → decode → health → policy. The store and the channels are
the daemon's and are measured by bench/detection.py; this is what the chain read adds. Then the
same through the daemon's own pipeline (build_daemon, pipeline.poll_account for every account at
once: fetch with the per-asset detail → health → decide → record in SQLite), in a fresh
interpreter per size, with the resident memory after the first poll: the memory each on-chain
account costs is the difference between 1 and N accounts, ÷ (N − 1).
Goal (issue 21): a price update in block N is alerted within 1 s after block N is served.

With --heads, the daemon runs as `alerter run` does (scheduler, streams, SQLite, apprise, a
loopback webhook), its accounts given the endpoint's websocket (`ws_url`) and full polls an hour
apart: each block moves ETH between 4,000 USD (36 %, ok) and 1,700 USD (85 %, CRITICAL), so each
block is an alert (CRITICAL, then RESOLVED) for every account, and the clock runs from the block
served (set_price returns, the chain pushes its header) to the webhook POST that completes every
account's alert for it: the newHeads push → the reads at that block (account and per-asset
detail) → health → policy → SQLite → delivery → the webhook. p50 and p95 over the blocks.

Memory: tracemalloc's peak during one round, divided by the accounts (the batch's request and
answer bodies dominate), and the resident memory the on-chain modules add at import over what the
daemon holds anyway (pydantic, aiohttp), against
web3.py's figure measured for the choice of library (a throwaway venv: +19.4 MiB and 430 ms over
the daemon, against eth-abi with its keccak, which alerter uses: +7.5 MiB and 75 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import Webhook, median, percentile, table, verdict  # noqa: E402

from alerter.health import evaluate  # noqa: E402
from alerter.models import RepeatSchedule, Thresholds  # noqa: E402
from alerter.policy import decide  # noqa: E402
from alerter.simulator.chain import AavePosition, run_chain  # noqa: E402
from alerter.sources import aave  # noqa: E402
from alerter.sources.blockreader import release, shared_reader  # noqa: E402
from alerter.sources.chains import CHAINS  # noqa: E402

CHAIN = CHAINS["base"]
POOL = aave.AAVE["base"]
PRICES = [3000.0, 2600.0, 2200.0, 1900.0, 1700.0, 2100.0, 2500.0, 2900.0]


async def run(accounts: int, blocks: int) -> dict:
    users = [f"0x{i + 1:040x}" for i in range(accounts)]
    latencies, posts, peaks = [], [], []
    async with run_chain(CHAIN) as chain:
        for i, user in enumerate(users):
            chain.aave(POOL.pool, AavePosition(user, collateral_eth=1.0, eth_price=3000.0, debt_usd=1200.0 + 1200.0 * i / max(1, accounts)))
        readers = [shared_reader(chain.url, CHAIN, timeout_s=30.0) for _ in users]
        states: dict[str, object] = {}
        now = datetime(2026, 1, 1, tzinfo=UTC)
        try:
            for b in range(blocks):
                before = chain.posts
                chain.set_price(PRICES[b % len(PRICES)])
                traced = b == blocks - 1  # the last block measures memory (tracemalloc slows the round)
                if traced:
                    tracemalloc.start()
                start = time.perf_counter()
                results = await asyncio.gather(*(r.read(aave.account_call(POOL, u)) for r, u in zip(readers, users)))
                for user, (_, raw) in zip(users, results):
                    health = evaluate(aave.snapshot(user, "aave", aave.decode(raw, user), positions=()), target=0.4)[0]
                    states[user], _ = decide(states.get(user), health, Thresholds(), RepeatSchedule(), now + timedelta(seconds=b))
                if traced:
                    peaks.append(tracemalloc.get_traced_memory()[1])
                    tracemalloc.stop()
                else:
                    latencies.append(time.perf_counter() - start)
                posts.append(chain.posts - before)
        finally:
            for r in readers:
                await release(r)
    return {"latency": median(latencies), "worst": max(latencies), "posts": median(posts), "peak_per_account": median(peaks) / accounts}


def rss_mib() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20


async def through_daemon(accounts: int, blocks: int, workdir: str) -> dict:
    """The daemon's own pipeline (fetch → health → decide → record in SQLite) for `accounts` Aave
    accounts on one endpoint: the time from a block served to every account's poll recorded, and
    the resident memory after the first poll of all."""
    from alerter.config import build_settings
    from alerter.runtime import build_daemon

    users = [f"0x{i + 1:040x}" for i in range(accounts)]
    async with run_chain(CHAIN) as chain:
        for i, user in enumerate(users):
            chain.aave(POOL.pool, AavePosition(user, collateral_eth=1.0, eth_price=3000.0, debt_usd=1200.0 + 1200.0 * i / max(1, accounts)),
                       data_provider=POOL.data_provider, oracle=POOL.oracle)
        settings = build_settings({"daemon": {"database": f"{workdir}/alerter-{accounts}.db"}, "accounts": [
            {"name": f"aave-{i}", "exchange": "aave", "chain": "base", "wallet_address": user, "rpc_url": chain.url + "/v2/BENCHKEY0123456789"}
            for i, user in enumerate(users)]})
        daemon = build_daemon(settings)
        latencies = []
        try:
            for b in range(blocks):
                chain.set_price(PRICES[b % len(PRICES)])
                start = time.perf_counter()
                await asyncio.gather(*(daemon.pipeline.poll_account(f"aave-{i}") for i in range(accounts)))
                latencies.append(time.perf_counter() - start)
                if b == 0:
                    rss = rss_mib()
        finally:
            await asyncio.gather(*(s.close() for s in daemon.sources.values()))
            daemon.store.close()
    return {"latency": median(latencies[1:]), "worst": max(latencies[1:]), "rss": rss}


async def through_heads(accounts: int, blocks: int, workdir: str) -> list[float]:
    """Seconds from each block served to the webhook POST that completes its alerts, with the
    daemon running and following the endpoint's new blocks."""
    import re

    from alerter.config import build_settings
    from alerter.runtime import build_daemon

    users = [f"0x{i + 1:040x}" for i in range(accounts)]
    webhook = Webhook()

    def told(title: str) -> int:
        """The alerts a message carries: "CRITICAL · aave-3 · …" one, "50 alerts: …" fifty
        (its text lists the first few)."""
        many = re.match(r"(\d+) alerts: ", title)
        return int(many.group(1)) if many else int(bool(re.match(r"(?:CRITICAL|RESOLVED) · aave-\d+ ·", title)))
    async with run_chain(CHAIN) as chain:
        for user in users:
            chain.aave(POOL.pool, AavePosition(user, collateral_eth=1.0, eth_price=3000.0, debt_usd=1200.0),
                       data_provider=POOL.data_provider, oracle=POOL.oracle)
        settings = build_settings({
            "daemon": {"database": f"{workdir}/heads-{accounts}.db", "poll_interval": "1h"},
            "accounts": [{"name": f"aave-{i}", "exchange": "aave", "chain": "base", "wallet_address": user,
                          "rpc_url": chain.url + "/v2/BENCHKEY0123456789", "ws_url": chain.url.replace("http", "ws") + "/ws/BENCHKEY0123456789"}
                         for i, user in enumerate(users)],
            "channels": [{"name": "hook", "url": webhook.url()}]})
        daemon = build_daemon(settings)
        runner = asyncio.create_task(daemon.run())
        latencies = []
        try:
            (stream,) = await wait_for(lambda: list(daemon.streams.heads.values()), 20)
            await wait_for(lambda: stream.link.up and len(daemon.pipeline.confirmed) == accounts, 20)
            await asyncio.sleep(0.5)  # the first polls' deliveries (none: all ok) are done
            for b in range(blocks):
                seen = webhook.count()
                chain.set_price(1700.0 if b % 2 == 0 else 4000.0)
                served = time.monotonic()

                def complete(seen=seen):
                    got = webhook.since(seen)
                    alerts = sum(told(body.get("title", "")) for _, _, body in got)
                    return got[-1][0] if alerts >= accounts else None

                latencies.append(await wait_for(complete, 10) - served)
                await asyncio.sleep(0.2)  # blocks a little apart, as a chain makes them
        finally:
            daemon.stop()
            await asyncio.wait_for(runner, 10)
            webhook.close()
    return latencies


async def wait_for(condition, timeout: float):
    """condition()'s first truthy value, checked every millisecond; TimeoutError after `timeout`."""
    async with asyncio.timeout(timeout):
        while not (value := condition()):
            await asyncio.sleep(0.001)
    return value


def heads_main(sizes: tuple[int, ...], blocks: int) -> None:
    import logging
    import tempfile

    logging.getLogger().addHandler(logging.NullHandler())  # the daemon's alert log lines stay out of the table

    rows, worst_p95 = [], 0.0
    for n in sizes:
        with tempfile.TemporaryDirectory() as d:
            latencies = asyncio.run(through_heads(n, blocks, d))
        p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
        worst_p95 = max(worst_p95, p95)
        rows.append([f"{n}", f"{len(latencies)}", f"{p50 * 1000:.0f} ms", f"{p95 * 1000:.0f} ms", f"{max(latencies) * 1000:.0f} ms"])
    print(table(["accounts (one endpoint)", "blocks", "block served → alert at the webhook (p50)", "p95", "worst"], rows))
    print(f"\n{verdict(worst_p95 <= 1.0)}: p95 block-to-alert through the daemon following newHeads "
          f"{worst_p95 * 1000:.0f} ms (goal: within 1 s)")


def import_cost() -> tuple[float, float]:
    """(MiB, ms) the on-chain modules, with the eth-abi and keccak they load at the first answer,
    add to a fresh interpreter that holds what the daemon holds anyway (the config with pydantic,
    aiohttp, health, policy, the source errors)."""
    code = ("import time, aiohttp, alerter.config, alerter.health, alerter.policy, alerter.sources.fields\n"
            "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096 / 2**20\n"
            "r0, t0 = rss(), time.perf_counter()\n"
            "import alerter.sources.aave, alerter.sources.aavedetail, alerter.sources.compound, alerter.sources.morpho, alerter.sources.blockreader\n"
            "import eth_abi, eth_utils; eth_utils.keccak(b'')  # what the first answer and checksum load\n"
            "print(rss() - r0, (time.perf_counter() - t0) * 1000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])}).stdout.split()
    return float(out[0]), float(out[1])


def daemon_figures(accounts: int, blocks: int) -> dict:
    """through_daemon in a fresh interpreter (so its resident memory is its own)."""
    code = (f"import asyncio, json, sys, tempfile; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
            f"from onchain import through_daemon\n"
            f"with tempfile.TemporaryDirectory() as d: print(json.dumps(asyncio.run(through_daemon({accounts}, {blocks}, d))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(__file__).resolve().parents[1]), "PATH": "/usr/bin:/bin"}).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--heads", action="store_true", help="block served → alert at the webhook, through the daemon following newHeads")
    args = parser.parse_args()
    if args.heads:
        heads_main((1, 10) if args.quick else (1, 50), 6 if args.quick else 20)
        return
    sizes, blocks = ((1, 100), 5) if args.quick else ((1, 100, 1000), 20)
    daemon_sizes = (1, 50) if args.quick else (1, 200)
    figures_by_size = {n: daemon_figures(n, blocks) for n in daemon_sizes}
    small, large = figures_by_size[daemon_sizes[0]], figures_by_size[daemon_sizes[1]]
    print(table(["accounts (daemon)", "block → every poll recorded (median)", "worst", "resident memory"],
                [[f"{n}", f"{f['latency'] * 1000:.0f} ms", f"{f['worst'] * 1000:.0f} ms", f"{f['rss']:.0f} MiB"] for n, f in figures_by_size.items()]))
    per_account = (large["rss"] - small["rss"]) / (daemon_sizes[1] - daemon_sizes[0]) * 1024
    print(f"memory per on-chain account in the daemon: {per_account:.0f} KiB "
          f"(({large['rss']:.1f} − {small['rss']:.1f} MiB) ÷ {daemon_sizes[1] - daemon_sizes[0]})\n")
    daemon_ok = large["worst"] < 1.0
    rows = []
    for n in sizes:
        figures = asyncio.run(run(n, blocks))
        rows.append([f"{n}", f"{figures['latency'] * 1000:.1f} ms", f"{figures['worst'] * 1000:.1f} ms", f"{figures['posts']:.0f}",
                     f"{figures['peak_per_account'] / 1024:.1f} KiB"])
        worst = figures["worst"]
    print(table(["accounts", "block → decision (median)", "worst", "HTTP requests per block", "peak memory per account"], rows))
    mib, ms = import_cost()
    print(f"\nimport of the on-chain modules over what the daemon already holds: +{mib:.1f} MiB, {ms:.0f} ms\n"
          "(for the choice of library, measured in a throwaway venv over the daemon: web3.py +19.4 MiB, 430 ms; eth-abi +7.5 MiB, 75 ms)")
    print(f"\n{verdict(worst < 1.0)}: worst block-to-decision {worst * 1000:.0f} ms for {sizes[-1]} accounts (goal: under 1 s)")
    print(f"{verdict(daemon_ok)}: worst block-to-recorded-alert through the daemon {large['worst'] * 1000:.0f} ms "
          f"for {daemon_sizes[1]} accounts (goal: under 1 s)")


if __name__ == "__main__":
    main()
