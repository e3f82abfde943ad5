"""Footprint: CLI start-up time and the daemon's memory, against the simulator.

    python bench/footprint.py            # full run, ~11-12 min
    python bench/footprint.py --quick    # ~40 s: 3 start-ups each, daemons for 30 s
    --keep DIR: work in DIR (kept) to read the daemon logs afterwards
    --minutes M: run the daemons M minutes instead of 10 (a soak test for RSS creep)

1. Start-up: wall time of `alerter --help` and `alerter validate --config config.example.toml`
   (BINANCE_API_KEY, BINANCE_API_SECRET, ALERTER_TELEGRAM_URL set to dummies) as subprocesses,
   median of 10 (goal ≤ 0.3 s for --help; ≤ 2 s for validate, which imports apprise and ccxt to
   make run's start-up checks).
2. Baselines, peak RSS (VmHWM): `python -c pass`; `python -c "import ccxt.async_support as c;
   c.binanceusdm()"` (THE baseline of the goal).
3. What the daemon's imports cost: a fresh process makes the baseline's import, then loads what a
   one-account daemon loads, step by step through the daemon's own functions (the parser, the
   config, the daemon, the store, apprise with the channel's plugin, the account's ccxt.pro class,
   the scheduler); VmRSS and wall time after each step (median of 3 processes). What the daemon
   peaks at above their sum is its run time: markets, sockets, buffers.
4. Two daemons, `python -m alerter run --config X`, run CONCURRENTLY for 10 minutes (quick: 30 s)
   against one simulator served by this process: one with 1 account, one with 20 accounts
   (each account: BTC + ETH cross, SOL isolated), poll_interval 5 s, price_interval 1 s, a
   loopback json:// webhook as the channel, websocket streams on (the default, set explicitly:
   the simulator pushes Binance's mark prices and account events; a daemon whose streams do not
   come up fails the run). The clock starts once both daemons watch their accounts. BTC swings between a 40 % and a 56 % margin ratio
   every 2 minutes, so every account raises WARNING and RESOLVED repeatedly: the alert, outbox
   and delivery paths are exercised as well as polling and re-pricing. VmRSS is sampled every
   10 s (quick: 5 s); VmHWM is read just before SIGTERM.
   Goals: 1-account daemon peak RSS ≤ 1.3 × the ccxt baseline; RSS does not grow (last-minute
   sample ≤ first-minute sample + 5 %). Reported: growth per extra account = (HWM20 − HWM1) / 19,
   and the RSS slope after the first minute (MB/min, least squares) — a steady creep shows there
   even when the 5 % limit holds over 10 minutes.

Everything stays on 127.0.0.1; files go to a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, VENV_BIN, Webhook, account_config, bench_account, median, price_for, proc_status, table, verdict, wallet_for, write_config  # noqa: E402

PY = sys.executable
STARTUP_GOAL_S = 0.3
VALIDATE_GOAL_S = 2.0  # validate makes run's start-up checks: it imports apprise and ccxt (~1 s)
RSS_GOAL_RATIO = 1.3
GROWTH_LIMIT = 0.05
DUMMY_ENV = {
    "BINANCE_API_KEY": "bench-key-0123456789",
    "BINANCE_API_SECRET": "bench-secret-0123456789",
    "ALERTER_TELEGRAM_URL": "tgram://123456789:AAbenchTOKENabcdefghijklmnopqrstuvw/12345",
}
HWM_SNIPPET = "import re;print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
BASELINE = "import ccxt.async_support + binanceusdm()  (baseline)"
BASELINES = {
    "python -c pass": "pass",
    BASELINE: "import ccxt.async_support as c; c.binanceusdm()",
}
# What a one-account binanceusdm daemon with a json:// channel loads, in the order it loads it,
# through the daemon's own functions (so that what they leave unloaded stays unloaded here too).
IMPORT_STEPS = [
    ("ccxt.async_support + binanceusdm()  (baseline)", "import ccxt.async_support as c; c.binanceusdm()"),
    ("alerter's parser: every command module", "import alerter.cli; alerter.cli.build_parser()"),
    ("pydantic + pydantic-settings", "import pydantic, pydantic_settings"),
    ("alerter.config: the venue registry, every venue", "import alerter.config"),
    ("alerter.runtime: daemon, policy, metrics (prometheus-client)", "import alerter.runtime"),
    ("apprise + the json:// plugin (check_url)", "from alerter.notify import check_url; check_url('json://127.0.0.1:9/x')"),
    ("alerter.store: sqlite-utils", "import alerter.store"),
    ("the account's ccxt.pro class (exchange_class)", "from alerter.sources.exchange import exchange_class; exchange_class('binanceusdm', streaming=True)"),
    ("apscheduler: the scheduler, its triggers", "import apscheduler.schedulers.asyncio, apscheduler.triggers.interval, apscheduler.triggers.cron, apscheduler.triggers.date"),
]
STEP_SNIPPET = """
import re, sys, time, json
def rss():
    return int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read()).group(1))
rows, before = [], rss()
for code in sys.argv[1:]:
    started = time.perf_counter()
    exec(code)
    rows.append((rss() - before, time.perf_counter() - started))
    before = rss()
print(json.dumps(rows))
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTER_")}
    return {**env, **extra}


def time_command(argv: list[str], runs: int, env: dict[str, str], cwd: Path) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[:500]}")
    return times


def baseline_hwm_kb(code: str, runs: int) -> int:
    values = []
    for _ in range(runs):
        out = subprocess.run([PY, "-c", f"{code}\n{HWM_SNIPPET}"], env=clean_env(), capture_output=True, text=True, check=True)
        values.append(int(out.stdout.split()[-1]))
    return int(median(values))


def mb(kb: float) -> str:
    return f"{kb / 1024:.1f}"


def import_costs(runs: int) -> list[tuple[str, float, float]]:
    """(step, kB, seconds) of IMPORT_STEPS in a fresh process each run; the median per step."""
    import json

    samples = []
    for _ in range(runs):
        out = subprocess.run([PY, "-c", STEP_SNIPPET, *(code for _, code in IMPORT_STEPS)], env=clean_env(),
                             capture_output=True, text=True, check=True)
        samples.append(json.loads(out.stdout.splitlines()[-1]))
    return [(label, median([s[i][0] for s in samples]), median([s[i][1] for s in samples])) for i, (label, _) in enumerate(IMPORT_STEPS)]


async def run_daemons(workdir: Path, duration_s: float, sample_every_s: float) -> dict:
    from alerter.simulator import run_simulator

    keys = [f"fp-{i}" for i in range(21)]
    async with run_simulator({"name": "footprint", "accounts": [bench_account(k) for k in keys]}) as sim:
        # every account identical: cross ratio 40 % at 60 000, a BTC path that swings to 56 % and back
        wallet = wallet_for(sim.state, 0.40, keys[0])
        p_safe = sim.prices()["BTCUSDT"]
        p_warn = price_for(sim.state, 0.56, keys[0])
        path, t = [], 0.0
        while t < duration_s + 120:
            path += [{"at": t + 40, "prices": {"BTCUSDT": p_warn}}, {"at": t + 60, "prices": {"BTCUSDT": p_warn}},
                     {"at": t + 100, "prices": {"BTCUSDT": p_safe}}, {"at": t + 120, "prices": {"BTCUSDT": p_safe}}]
            t += 120
        sim.load({"name": "footprint", "accounts": [bench_account(k, wallet) for k in keys], "path": path})
        webhook = Webhook()
        ccxt = sim.ccxt_config()
        daemons = {}
        try:
            for label, names in (("1 account", keys[:1]), ("20 accounts", keys[1:])):
                folder = workdir / label.replace(" ", "-")
                folder.mkdir()
                config = write_config(folder / "config.toml", {
                    "daemon": {"database": str(folder / "alerter.db"), "poll_interval": "5s", "price_interval": "1s",
                               "log_level": "info", "request_timeout": "5s", "streams": True},
                    "accounts": [account_config(f"account-{n}", n, ccxt) for n in names],
                    "channels": [{"name": "hook", "url": webhook.url(label.split()[0])}],
                })
                log = (folder / "daemon.log").open("w")
                proc = await asyncio.create_subprocess_exec(
                    PY, "-m", "alerter", "run", "--config", str(config), cwd=folder, env=clean_env(),
                    stdout=log, stderr=subprocess.STDOUT,
                )
                daemons[label] = {"proc": proc, "log": log, "path": folder / "daemon.log", "samples": [], "accounts": len(names)}
            # the run's clock starts once both daemons watch their accounts: a slow start-up on a busy
            # machine must not count as growth between the first and the last window
            up_by = time.monotonic() + 120
            while not all("watching " in d["path"].read_text() for d in daemons.values()):
                for d in daemons.values():
                    if d["proc"].returncode is not None:
                        raise SystemExit(f"daemon exited early ({d['proc'].returncode}); see {d['path']}:\n{d['path'].read_text()[-2000:]}")
                if time.monotonic() > up_by:
                    raise SystemExit("the daemons did not start within 120 s")
                await asyncio.sleep(0.2)
            started = time.monotonic()
            next_at = started + sample_every_s
            while True:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                elapsed = time.monotonic() - started
                for d in daemons.values():
                    if d["proc"].returncode is not None:
                        raise SystemExit(f"daemon exited early ({d['proc'].returncode}); see {d['path']}:\n{d['path'].read_text()[-2000:]}")
                    d["samples"].append((elapsed, proc_status(d["proc"].pid)))
                if elapsed >= duration_s - 0.5:
                    break
                next_at += sample_every_s
            for d in daemons.values():
                d["hwm"] = proc_status(d["proc"].pid).get("VmHWM", 0)
            requests = sim.request_total()
        finally:
            for d in daemons.values():
                if d["proc"].returncode is None:
                    d["proc"].send_signal(signal.SIGTERM)
            for d in daemons.values():
                try:
                    d["rc"] = await asyncio.wait_for(d["proc"].wait(), 20)
                except TimeoutError:
                    d["proc"].kill()
                    d["rc"] = "killed"
                d["log"].close()
            alerts = {path: 0 for path in ("/1", "/20")}
            for _, path, _ in webhook.since(0):
                alerts[path] = alerts.get(path, 0) + 1
            webhook.close()
        for label, d in daemons.items():
            text = d["path"].read_text()
            d["full_polls"] = sum(1 for line in text.splitlines() if " INFO " in line and ": account " in line)
            d["errors"] = [line for line in text.splitlines() if " ERROR " in line][:3]
            d["error_count"] = sum(1 for line in text.splitlines() if " ERROR " in line)
            d["webhook_posts"] = alerts["/" + label.split()[0]]
            d["streams_up"] = sum(1 for line in text.splitlines() if line.endswith(" stream up") or " stream up (" in line)
        return {"daemons": daemons, "requests": requests, "duration_s": duration_s}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 start-ups each, daemons for 30 s")
    parser.add_argument("--minutes", type=float, help="daemon run length (default 10; a soak test: e.g. 240)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep the daemons' logs and databases")
    args = parser.parse_args()
    runs = 3 if args.quick else 10
    duration = args.minutes * 60 if args.minutes else (30.0 if args.quick else 600.0)
    sample_every = 5.0 if args.quick else 10.0
    window = 10.0 if args.quick else 60.0  # the "first minute" / "last minute" windows

    goals: list[tuple[str, bool]] = []
    with tempfile.TemporaryDirectory(prefix="alerter-footprint-") as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        alerter_bin = str(VENV_BIN / "alerter")
        env = clean_env(**DUMMY_ENV)
        help_t = time_command([alerter_bin, "--help"], runs, env, workdir)
        validate_t = time_command([alerter_bin, "validate", "--config", str(ROOT / "config.example.toml")], runs, env, workdir)
        print(f"start-up, {runs} runs each (wall seconds, subprocess incl. interpreter start)")
        rows = []
        for name, times, goal in (("alerter --help", help_t, STARTUP_GOAL_S),
                                  ("alerter validate --config config.example.toml", validate_t, VALIDATE_GOAL_S)):
            rows.append([name, f"{median(times):.3f}", f"{min(times):.3f}", f"{max(times):.3f}", f"{goal:.1f}", verdict(median(times) <= goal)])
            goals.append((f"{name.split(' --config')[0]} median {median(times):.3f} s ≤ {goal} s", median(times) <= goal))
        print(table(["command", "median s", "min s", "max s", "goal s", "verdict"], rows))

        baselines = {label: baseline_hwm_kb(code, 3) for label, code in BASELINES.items()}
        print("\nbaseline peak RSS (VmHWM, median of 3)")
        print(table(["process", "VmHWM MB"], [[label, mb(kb)] for label, kb in baselines.items()]))
        base = baselines[BASELINE]

        costs = import_costs(3)
        print("\nwhat a one-account daemon imports, in its order (VmRSS added and wall ms per step; median of 3 processes)")
        print(table(["step", "MB", "ms"], [[label, mb(kb), f"{s * 1000:.0f}"] for label, kb, s in costs]
                    + [["total", mb(sum(kb for _, kb, _ in costs)), f"{sum(s for _, _, s in costs) * 1000:.0f}"]]))

        print(f"\nrunning the 1- and 20-account daemons concurrently for {duration:.0f} s "
              f"(poll 5 s, price 1 s; RSS sampled every {sample_every:.0f} s) ...", flush=True)
        result = asyncio.run(run_daemons(workdir, duration, sample_every))
        d1, d20 = result["daemons"]["1 account"], result["daemons"]["20 accounts"]

        print("\nVmRSS over the run (MB)")
        rows = []
        for (t, s1), (_, s20) in zip(d1["samples"], d20["samples"]):
            if args.quick or round(t) % 60 == 0:
                rows.append([f"{t:.0f}", mb(s1.get("VmRSS", 0)), mb(s20.get("VmRSS", 0))])
        print(table(["t s", "1 account", "20 accounts"], rows))

        def window_rss(d: dict, first: bool) -> float:
            """Median VmRSS of the samples in the first (last) window of the run."""
            if first:
                chosen = [s["VmRSS"] for t, s in d["samples"] if t <= window + 0.5]
            else:
                chosen = [s["VmRSS"] for t, s in d["samples"] if t >= duration - window - 0.5]
            return median(chosen)

        def slope_mb_per_min(d: dict) -> float:
            """Least-squares slope of VmRSS after the first window (MB per minute)."""
            pts = [(t / 60, s["VmRSS"] / 1024) for t, s in d["samples"] if t > window + 0.5] or [(0.0, 0.0), (1.0, 0.0)]
            mt, mr = sum(t for t, _ in pts) / len(pts), sum(r for _, r in pts) / len(pts)
            var = sum((t - mt) ** 2 for t, _ in pts)
            return sum((t - mt) * (r - mr) for t, r in pts) / var if var else 0.0

        print(f"\ndaemon footprint after {duration:.0f} s")
        rows = []
        for label, d in result["daemons"].items():
            first, last = window_rss(d, True), window_rss(d, False)
            growth = (last - first) / first
            rows.append([label, mb(d["hwm"]), f"{d['hwm'] / base:.2f}", mb(first), mb(last), f"{growth * 100:+.1f}%",
                         f"{slope_mb_per_min(d):+.3f}", d["full_polls"], d["webhook_posts"], d["streams_up"], d["rc"]])
            goals.append((f"{label}: streams up ({d['streams_up']} stream-up log lines)", d["streams_up"] > 0))
            goals.append((f"{label}: RSS last {window:.0f} s vs first {window:.0f} s {growth * 100:+.1f}% ≤ +{GROWTH_LIMIT * 100:.0f}%", growth <= GROWTH_LIMIT))
        print(table(["daemon", "VmHWM MB", "× base", "first MB", "last MB", "growth", "MB/min", "full polls", "webhook posts", "streams up", "exit"], rows))
        imported = sum(kb for _, kb, _ in costs) + baselines["python -c pass"]
        print(f"\n1-account daemon: {mb(imported)} MB its imports (the table above plus the interpreter), "
              f"{mb(d1['hwm'] - imported)} MB at run time (markets, sockets, buffers)")
        per_account = (d20["hwm"] - d1["hwm"]) / 19
        print(f"\ngrowth per extra account (HWM20 − HWM1) / 19: {per_account / 1024:.2f} MB"
              f"; exchange requests served: {result['requests']} in {duration:.0f} s")
        for label, d in result["daemons"].items():
            if d["error_count"]:
                print(f"  {label}: {d['error_count']} ERROR lines in the log, e.g.:")
                for line in d["errors"]:
                    print(f"    {line[:300]}")
        ratio = d1["hwm"] / base
        goals.insert(2, (f"1-account daemon peak RSS {mb(d1['hwm'])} MB ≤ {RSS_GOAL_RATIO}× baseline {mb(base)} MB ({ratio:.2f}×)", ratio <= RSS_GOAL_RATIO))

    print()
    for text, ok in goals:
        print(f"goal: {text}: {verdict(ok)}")
    failed = [text for text, ok in goals if not ok]
    print(f"goal: footprint overall: {verdict(not failed)} ({len(goals) - len(failed)}/{len(goals)} goals met)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
