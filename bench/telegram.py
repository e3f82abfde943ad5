"""The Telegram bot: its memory in the daemon and a command's response time.

    python bench/telegram.py            # 40 rounds of each command
    python bench/telegram.py --quick    # 10 rounds

The simulator and a daemon (in this process, as tests/helpers.Harness builds it: ccxt, the store)
record a few polls; then the bot starts against the loopback Bot API
(alerter.simulator.telegram_api) and the phone sends each command ROUNDS times, one at a time.
A response time is from the message reaching the Bot API to the bot's answer reaching it: the long
poll's hand-over, the command's database read in a worker thread, the rendering and sendMessage.
Memory is the process's RSS before the bot's modules are imported, after the bot is up, after the
text commands, and after /history (which loads matplotlib). The import of the bot's modules is
also timed in a fresh interpreter. Goal: a text command answers within 1 s (p95).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _common import median, percentile, table, verdict  # noqa: E402

GOAL_S = 1.0
COMMANDS = ("/status", "/help", "/whatif main -10%", "/ack main 30m", "/unack main", "/digest", "/history main 1h")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def import_time_s() -> float:
    code = "import time; t = time.perf_counter(); import alerter.telegram.bot, alerter.telegram.commands; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


async def measure(rounds: int, folder: Path) -> tuple[dict[str, list[float]], list[tuple[str, float]]]:
    from helpers import SCENARIO, Clock, Harness
    from test_telegram import OWNER, TOKEN, settings_with_bot

    from alerter.simulator import run_simulator
    from alerter.simulator.telegram_api import run_telegram_api

    memory = []
    async with run_simulator(SCENARIO) as sim, run_telegram_api(TOKEN) as tg:
        h = Harness(sim, settings_with_bot(sim, folder, tg.url), Clock())
        for ratio in (0.3, 0.6, 0.75):
            await h.step(ratio)
        await h.daemon.poll_account("second")
        memory.append(("daemon, before the bot", rss_mb()))
        from alerter.telegram.bot import Bot, Bucket

        bot = Bot(h.settings.telegram, h.daemon)
        bot.bucket = Bucket(burst=10**6)  # the rate limit is not what is measured
        task = asyncio.create_task(bot.run())
        while not bot.up:
            await asyncio.sleep(0.01)
        memory.append(("bot up (connected, commands set)", rss_mb()))
        times: dict[str, list[float]] = {c: [] for c in COMMANDS}
        async def ask(command: str) -> None:
            after = len(tg.sent)
            tg.say(OWNER, command)
            asked = time.monotonic()
            answer = await tg.wait_sent(lambda s: s.chat_id == OWNER, after=after, timeout=60)
            times[command].append(answer.at - asked)

        for _ in range(rounds):  # every text command in turn (each /ack undone by the /unack after it)
            for command in COMMANDS[:-1]:
                await ask(command)
        memory.append(("after the text commands", rss_mb()))
        for _ in range(max(3, rounds // 5)):
            await ask(COMMANDS[-1])
        memory.append(("after /history (matplotlib)", rss_mb()))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await h.close()
    return times, memory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 rounds instead of 40")
    args = parser.parse_args()
    rounds = 10 if args.quick else 40
    imported = median([import_time_s() for _ in range(3)])
    with tempfile.TemporaryDirectory(prefix="alerter-bench-telegram-") as folder:
        times, memory = asyncio.run(measure(rounds, Path(folder)))
    print(f"Telegram bot · {rounds} rounds per text command · loopback Bot API on 127.0.0.1\n")
    rows = [[c, len(t), f"{median(t) * 1000:.0f}", f"{percentile(t, 95) * 1000:.0f}", f"{max(t) * 1000:.0f}"] for c, t in times.items()]
    print(table(["command", "n", "median ms", "p95 ms", "max ms"], rows))
    print()
    base = memory[0][1]
    print(table(["process RSS", "MB", "Δ MB"], [[what, f"{mb:.1f}", f"{mb - base:+.1f}"] for what, mb in memory]))
    print(f"\nimport of alerter.telegram.bot + commands in a fresh interpreter: {imported * 1000:.0f} ms (median of 3)")
    text = [t for c, ts in times.items() if not c.startswith("/history") for t in ts]
    ok = percentile(text, 95) <= GOAL_S
    print(f"goal: a text command answers within {GOAL_S:g} s (p95): {percentile(text, 95) * 1000:.0f} ms · {verdict(ok)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
