"""HTTP 429 with a Retry-After: the account pauses (no request until then, capped at 1 h), the
pause counts as failed polls, the blind alert names it, and other accounts are unaffected."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from helpers import DaemonRuns, inline_toml, simulator_thread, wait_until
from helpers import SCENARIO, harness, run, titles

from alerter.config import build_settings
from alerter.display import duration
from alerter.pipeline import pause_note
from alerter.simulator import run_simulator
from alerter.sources import RetryPolicy, SourceError, build_source


def private_requests(counts: dict, api_key: str) -> int:
    return sum(n for (key, _), n in counts.items() if key == api_key)


def test_a_day_long_retry_after_pauses_the_account_for_an_hour_and_says_so(tmp_path, webhook):
    """The real daemon (test clock, real ccxt, the simulator's http429): Retry-After 86400."""
    async def scenario():
        async with harness(tmp_path, [{"name": "hook", "url": f"json://{webhook.url}/hook"}]) as h:
            sim = h.sim
            await h.step(0.3)  # 12:01, ok
            sim.inject("http429", count=None, seconds=86400, api_key="main-key")
            sim.reset_counts()
            await h.step()  # 12:02: 429 → paused until 13:02 (capped)
            after_429 = private_requests(sim.request_counts(), "main-key")
            for _ in range(5):  # 12:03 … 12:07: not polled; the second failure in a row makes it blind (blind_after 3)
                await h.step()
                assert await h.step(account="second", minutes=0) == []  # the other account polls on
            skipped = private_requests(sim.request_counts(), "main-key") - after_429
            second = private_requests(sim.request_counts(), "second-key")
            sim.clear_faults()
            h.clock.advance(minutes=54)
            await h.step(0.3)  # 13:02: polled again, data flows
            return after_429, skipped, second, h.daemon.store.load_states("main")["account"]

    after_429, skipped, second, state = run(scenario())
    assert after_429 >= 1 and skipped == 0 and second >= 5
    assert [t.split(" · ")[0] for t in titles(webhook)] == ["BLIND", "RESTORED"]
    assert titles(webhook)[0] == ("BLIND · main · no data for 3 polls: transient: rate limited by the exchange: it asked for "
                                  "a pause of 1d; no poll before 13:02:00 UTC (capped at 1h)")
    assert not state.blind and state.failures == 0


def test_a_retry_after_longer_than_a_retry_waits_is_not_retried_within_the_fetch():
    async def scenario():
        async with run_simulator(SCENARIO) as sim:
            account = {"name": "main", "exchange": "binanceusdm", "api_key": "main-key", "secret": "s", "ccxt": sim.ccxt_config()}
            settings = build_settings({"accounts": [account]})
            async with build_source(settings.accounts[0], retry=RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.5)) as source:
                source.exchange.timeout_on_exit = 0
                await source.fetch_snapshot()  # markets loaded
                sim.inject("http429", count=None, seconds=2, api_key="main-key")
                sim.reset_counts()
                started = time.monotonic()
                with pytest.raises(SourceError) as caught:
                    await source.fetch_snapshot()
                return caught.value, time.monotonic() - started, Counter({p: n for (k, p), n in sim.request_counts().items() if k == "main-key"})

    error, elapsed, counts = asyncio.run(scenario())
    assert error.kind == "transient" and error.retry_after_s == 2
    # one ask each of the balance and the positions (concurrent), no second ask 0.5 s into a 2 s pause
    assert sum(counts.values()) == 2 and elapsed < 1, counts


@pytest.mark.parametrize("asked, text", [
    (86400, "it asked for a pause of 1d; no poll before 13:00:00 UTC (capped at 1h)"),
    (90, "it asked for a pause of 90s; no poll before 12:01:30 UTC"),
    (3600, "it asked for a pause of 1h; no poll before 13:00:00 UTC"),
])
def test_pause_note(asked, text):
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    until = start + min(timedelta(seconds=asked), timedelta(hours=1))
    assert pause_note(asked, until) == "rate limited by the exchange: " + text
    assert duration(timedelta(seconds=40)) == "40s"


def test_the_daemon_process_waits_out_the_retry_after(tmp_path, webhook):
    """`alerter run` against the simulator: after the 429 (Retry-After 6 s) the account is not
    polled until the pause ends, the blind alert names the pause, then it is restored."""
    pause = 6.0
    with simulator_thread(SCENARIO) as running:
        sim = running.sim
        ccxt = inline_toml(sim.ccxt_config())
        config = tmp_path / "c.toml"
        config.write_text(
            f'[daemon]\ndatabase = "{tmp_path / "a.db"}"\npoll_interval = "0.5s"\nprice_interval = 0\nblind_after = 2\nrequest_timeout = "3s"\n'
            f'[[accounts]]\nname = "main"\nexchange = "binanceusdm"\napi_key = "main-key"\nsecret = "s"\nccxt = {ccxt}\n'
            f'[[accounts]]\nname = "second"\nexchange = "binanceusdm"\napi_key = "second-key"\nsecret = "s"\nccxt = {ccxt}\n'
            f'[[channels]]\nname = "hook"\nurl = "json://{webhook.url}/hook"\n'
        )
        config.chmod(0o600)
        runs = DaemonRuns(config, tmp_path / "logs")
        proc = runs.start()
        try:
            runs.wait_ready(proc)
            wait_until(lambda: private_requests(running.call(sim.request_counts), "main-key") > 0, 20, runs.tail)
            injected_at = time.monotonic()  # the 429 comes after this, the next request ≥ pause after it
            running.call(sim.inject, "http429", None, pause, "main-key")
            wait_until(lambda: "rate limited" in runs.stderr().read_text(), 20, runs.tail)
            running.call(sim.clear_faults)  # the exchange would answer now: the daemon must still wait
            at_429 = private_requests(running.call(sim.request_counts), "main-key")
            second_at_429 = private_requests(running.call(sim.request_counts), "second-key")
            blind = wait_until(lambda: [t for t in titles(webhook) if t.startswith("BLIND")], 20, runs.tail)
            wait_until(lambda: private_requests(running.call(sim.request_counts), "main-key") > at_429, 20, runs.tail)
            resumed_after = time.monotonic() - injected_at
            second_polls = private_requests(running.call(sim.request_counts), "second-key") - second_at_429
            wait_until(lambda: any(t.startswith("RESTORED") for t in titles(webhook)), 20, runs.tail)
        finally:
            proc.terminate()
            proc.wait(20)
    assert resumed_after >= pause, resumed_after  # not polled again before the pause ended
    assert second_polls >= 4  # the other account kept its 0.5 s polls
    assert "rate limited by the exchange: it asked for a pause of 6s; no poll before" in blind[0]
    assert "Traceback" not in runs.stderr().read_text()
