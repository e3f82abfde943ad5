"""`alerter demo`: the real daemon against the built-in simulator and its scripted crash.

No account, no configuration: the simulator plays the demo scenario (BTC −30 % over ~90 s,
then a partial recovery), the daemon polls it through the real ccxt class, and alerts arrive
on the console channel (plus any apprise URL the user adds) — warning → call → critical →
resolved in about two and a half minutes (less with --speed).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from alerter.commands import EXIT_OK

logger = logging.getLogger(__name__)

HELP = "run the daemon against the built-in simulator's scripted crash (no account needed)"
DEMO_SPEEDS = (0.01, 100.0)  # a poll every 500 s … every 50 ms (the whole crash in about a second)
POLL_SECONDS = 5.0  # at speed 1
READY_TIMEOUT = 30.0  # the longest the crash waits for the daemon's first poll of every account
TAIL_SECONDS = 10.0  # after the scenario's last keyframe, so the recovery is polled


def speed_factor(text: str) -> float:
    """`demo --speed`: a number within DEMO_SPEEDS (the demo polls every 5 s ÷ speed)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 10, got {text!r}") from None
    low, high = DEMO_SPEEDS
    if not low <= value <= high:  # also NaN
        raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text!r}")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("--speed", type=speed_factor, default=1.0, help=f"play the scenario this many times faster (default 1; {DEMO_SPEEDS[0]:g} to {DEMO_SPEEDS[1]:g})")
    parser.add_argument("--channel", action="append", default=[], metavar="URL", help="also send the alerts to this apprise URL (repeatable)")
    parser.add_argument("--database", type=Path, help="keep the demo's SQLite file here (default: a temporary file)")


def run(args) -> int:
    import asyncio

    from alerter.notify import headline

    history = asyncio.run(run_demo(speed=args.speed, channels=args.channel, database=args.database))
    print(f"\ndemo over: {len(history)} alerts")
    for entry in history:
        outcome = ", ".join(f"{channel} {status}" for channel, status in entry.deliveries.items())
        print(f"  {entry.alert.created_at:%H:%M:%S}  {headline(entry.alert)}  [{outcome}]")
    return EXIT_OK


def demo_settings(ccxt_config: dict, database: Path, *, speed: float, channels: list[str]):
    from alerter.config import build_settings

    scale = 1.0 / speed
    return build_settings({
        "daemon": {"database": str(database), "poll_interval": POLL_SECONDS * scale, "request_timeout": "5s", "log_level": "info",
                   "stream_timeout": max(0.3, 3 * scale)},
        "repeat": {"warning": "never", "call": 60 * scale, "critical": 10 * scale, "blind": 60 * scale},
        "accounts": [
            {"name": "demo", "exchange": "binanceusdm", "api_key": "demo-key", "secret": "demo-secret", "ccxt": ccxt_config},
            {"name": "demo-iso", "exchange": "binanceusdm", "api_key": "demo-iso-key", "secret": "demo-secret", "ccxt": ccxt_config},
        ],
        "channels": [{"name": "console", "url": "console://"}]
        + [{"name": f"extra-{i + 1}", "url": url} for i, url in enumerate(channels)],
    })


async def run_demo(*, speed: float = 1.0, channels: list[str] = (), database: Path | None = None, duration: float | None = None) -> list:
    """Run the demo to its end; returns the alerts recorded (with their deliveries). Raises
    ConfigError for an apprise URL in `channels` that `alerter run` would refuse."""
    import asyncio
    import tempfile

    from alerter.logs import setup_logging
    from alerter.runtime import build_daemon, preflight
    from alerter.secrets import of as secrets_of
    from alerter.simulator import run_simulator

    if not 0 < speed < float("inf"):  # also NaN; every interval is divided by it
        raise ValueError(f"speed must be a finite number above 0, got {speed!r}")

    with tempfile.TemporaryDirectory(prefix="alerter-demo-") as tmp:
        db = database or Path(tmp) / "demo.db"
        async with run_simulator("demo", speed=speed, mark_cadence=1.0 / speed) as sim:  # Binance's 1 s, sped up
            settings = demo_settings(sim.ccxt_config(), db, speed=speed, channels=list(channels))
            preflight(settings)
            setup_logging(settings.daemon.log_level, secrets_of(settings))
            daemon = build_daemon(settings)
            for source in daemon.sources.values():  # ccxt waits 250 ms on close by default
                source.exchange.timeout_on_exit = 0
            path = sim.state.scenario.path
            seconds = duration if duration is not None else ((path[-1].at if path else 60) + TAIL_SECONDS) / speed
            logger.info("demo: %s — running for %.0f s (simulated price crash, alerts below)", sim.state.scenario.description, seconds)
            loop = asyncio.get_running_loop()
            running = asyncio.create_task(daemon.run())
            # the crash starts once the daemon watches every account: a slow start (a busy machine,
            # ccxt loading markets) must not eat the scenario, so the prices stay at its start until then
            ready_by = loop.time() + READY_TIMEOUT
            while len(daemon.pipeline.confirmed) < len(daemon.plans) and not running.done() and loop.time() < ready_by:
                sim.set_elapsed(0.0)
                await asyncio.sleep(0.02)
            sim.set_elapsed(0.0)
            stopper = loop.call_later(seconds, daemon.stop)
            try:
                await running
            finally:
                stopper.cancel()
            from alerter.store import Store

            with Store(db) as store:
                return store.history()
