"""The Telegram bot against the loopback Bot API (alerter.simulator.telegram_api), driven as a
phone would: a real daemon polls the simulated exchange, delivers to [telegram]'s chats through
the bot, and the bot answers the owner's commands, buttons and replies."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import pytest
from hypothesis import given, strategies as st

from helpers import Clock, Harness, SCENARIO, price_for, query, run, until

OWNER = 4242
STRANGER = 777
TOKEN = "123456:AAE-secret-token-of-the-test-bot"


def settings_with_bot(sim, tmp_path, api_url, *, token=TOKEN, channels=(), **telegram):
    from alerter.config import build_settings

    ccxt = sim.ccxt_config()
    return build_settings({
        "daemon": {"database": str(tmp_path / "alerter.db"), "request_timeout": "3s"},
        "repeat": {"warning": "6h", "call": "30m", "critical": "5m"},
        "accounts": [
            {"name": "main", "exchange": "binanceusdm", "api_key": "main-key", "secret": "main-secret", "ccxt": ccxt},
            {"name": "second", "exchange": "binanceusdm", "api_key": "second-key", "secret": "second-secret", "ccxt": ccxt},
        ],
        "channels": list(channels),
        "telegram": {"token": token, "chats": [OWNER], "api_url": api_url, **telegram},
    })


@asynccontextmanager
async def phone(tmp_path, *, token=TOKEN, start_bot=True, **telegram):
    """(the loopback Bot API, the daemon's harness, the bot) with the bot's loop running."""
    from alerter.simulator import run_simulator
    from alerter.simulator.telegram_api import run_telegram_api
    from alerter.telegram.bot import Bot

    async with run_simulator(SCENARIO) as sim, run_telegram_api(TOKEN) as tg:
        h = Harness(sim, settings_with_bot(sim, tmp_path, tg.url, token=token, **telegram), Clock())
        bot = Bot(h.settings.telegram, h.daemon)
        task = asyncio.create_task(bot.run()) if start_bot else None
        try:
            if task is not None and token == TOKEN:
                await until(lambda: bot.up, 10)
            yield tg, h, bot
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            await h.close()


async def command(tg, text, chat=OWNER, **kw):
    """Send `text` from `chat` and return the bot's first answer to it."""
    after = len(tg.sent)
    tg.say(chat, text, **kw)
    return await tg.wait_sent(lambda s: s.chat_id == chat, after=after)


def acks_in(db):
    return query(db, "SELECT account, scope, level FROM acks")


# ---------------------------------------------------------------- alerts and the one-tap acknowledgement

def test_a_call_carries_the_button_and_one_tap_stops_its_repeats_while_critical_still_breaks_through(tmp_path):
    async def go():
        async with phone(tmp_path) as (tg, h, bot):
            await h.step(0.75)
            call = await tg.wait_sent(lambda s: s.text.startswith("CALL"))
            assert call.chat_id == OWNER and "main" in call.text
            assert [b["text"] for b in call.buttons] == ["Acknowledge 1h"]

            after = len(tg.sent)
            tg.press(call)
            answer = await tg.wait_sent(lambda s: "Acknowledged" in s.text, after=after)
            assert answer.text.startswith("Acknowledged main · account at CALL: its repeats are held back until 13:01 UTC or the resolution")
            assert tg.answered and tg.answered[-1]["text"].startswith("Acknowledged main")
            assert acks_in(h.settings.daemon.database) == [("main", "account", "call")]

            await h.daemon.delivery.deliver_once()  # the announcement, as the CLI's: to the channels that hear CALL
            announced = await tg.wait_sent(lambda s: s.text.startswith("CALL acknowledged"), after=after)
            assert "repeats held back until 13:01 UTC or the resolution" in announced.text
            assert not announced.buttons  # an acknowledgement never asks for one

            before = len(tg.messages())
            await h.step(0.75, minutes=31)  # the call's repeat is due (30m) but held back
            assert [s.text.split(" ·")[0] for s in tg.messages()[before:]] == []

            await h.step(0.9)  # CRITICAL breaks through at once, with its own button
            critical = await tg.wait_sent(lambda s: s.text.startswith("CRITICAL"), after=after)
            assert [b["text"] for b in critical.buttons] == ["Acknowledge 1h"]

    run(go())


def test_a_reply_ack_to_an_alert_acknowledges_its_scope(tmp_path):
    async def go():
        async with phone(tmp_path) as (tg, h, bot):
            await h.step(0.9)
            critical = await tg.wait_sent(lambda s: s.text.startswith("CRITICAL"))
            answer = await command(tg, "ack", reply_to=critical)
            assert answer.text.startswith("Acknowledged main · account at CRITICAL")
            assert answer.raw.get("reply_to_message_id") == critical.message_id
            assert acks_in(h.settings.daemon.database) == [("main", "account", "critical")]

            help_reply = await command(tg, "ack", reply_to=answer)  # a message without a button
            assert help_reply.text.startswith("that message has no CALL or CRITICAL alert to acknowledge")

    run(go())


def test_a_warning_has_no_button(tmp_path):
    async def go():
        async with phone(tmp_path) as (tg, h, bot):
            await h.step(0.6)
            warning = await tg.wait_sent(lambda s: s.text.startswith("WARNING"))
            assert warning.buttons == []

    run(go())


# ---------------------------------------------------------------- the commands

def test_status_lists_every_scope_worst_first(tmp_path):
    async def go():
        async with phone(tmp_path) as (tg, h, bot):
            await h.step(0.75)
            await h.daemon.pipeline.poll_account("second")
            status = await command(tg, "/status")
            assert status.raw.get("parse_mode") == "HTML" and status.text.startswith("<pre>margin health · 12:01 UTC")
            rows = status.text.removeprefix("<pre>").removesuffix("</pre>").splitlines()
            assert rows[1].split() == ["account", "·", "scope", "ratio", "level", "to", "liq.", "deposit"]
            assert rows[2].startswith("main") and " CALL " in rows[2] and "USDT" in rows[2]  # worst first, with a deposit
            assert rows[3].startswith("second") and " OK " in rows[3]
            assert TOKEN not in status.text

    run(go())


def test_ack_and_unack_take_the_clis_scope_names_and_announce(tmp_path):
    async def go():
        from alerter.telegram.bot import Bucket

        async with phone(tmp_path) as (tg, h, bot):
            bot.bucket = Bucket(burst=100)  # more commands than a person sends at once
            await h.step(0.75)
            await h.daemon.pipeline.poll_account("second")
            answer = await command(tg, "/ack main account 2h adding margin")
            assert answer.text.startswith("Acknowledged main · account at CALL: its repeats are held back until 14:01 UTC")
            assert "Announced to telegram" in answer.text
            assert query(h.settings.daemon.database, "SELECT note FROM acks") == [("adding margin",)]
            status = await command(tg, "/status")
            assert "CALL*" in status.text and "adding margin" in status.text

            after = len(tg.sent)
            answer = await command(tg, "/unack main")
            assert answer.text.startswith("main · account: acknowledgement removed; call repeats resume")
            await h.daemon.delivery.deliver_once()
            await tg.wait_sent(lambda s: "CALL acknowledgement removed · main" in s.text, after=after)
            assert acks_in(h.settings.daemon.database) == []

            assert (await command(tg, "/ack nobody")).text.startswith("no account named 'nobody'")
            assert (await command(tg, "/ack main ETH/USDT long")).text.startswith("main: no scope 'ETH/USDT long'")
            assert (await command(tg, "/ack")).text == "usage: /ack ACCOUNT [SCOPE] [DURATION] [NOTE] (e.g. /ack main 2h adding margin)"
            assert (await command(tg, "/ack second")).text.startswith("second · account is ok: nothing to acknowledge")

    run(go())


def test_history_comes_as_a_photo(tmp_path):
    async def go():
        async with phone(tmp_path) as (tg, h, bot):
            for ratio in (0.3, 0.6, 0.75):
                await h.step(ratio)
            photo = await command(tg, "/history main 6h")
            assert photo.method == "sendPhoto" and photo.photo.startswith(b"\x89PNG")
            assert photo.text.startswith("main · last 6h")
            assert (await command(tg, "/history")).text.startswith("usage: /history ACCOUNT [24h]")
            assert (await command(tg, "/history nobody")).text.startswith("no account named 'nobody'")

    run(go())


def test_whatif_runs_the_stress_test_on_the_last_snapshot(tmp_path):
    async def go():
        async with phone(tmp_path) as (tg, h, bot):
            await h.step(0.3)
            answer = await command(tg, "/whatif main -10%")
            text = answer.text.removeprefix("<pre>").removesuffix("</pre>")
            assert text.startswith("what if · main")
            lines = text.splitlines()
            assert lines[1].startswith("BTC/USDT ") and "→" in lines[1]
            # the test account at 30 %: a 10 % fall of BTC takes it past its liquidation
            assert lines[3].split() == ["account", "30%", "∞", "LIQUIDATED"]
            assert (await command(tg, "/whatif main")).text.startswith("usage: /whatif ACCOUNT -10%")
            assert (await command(tg, "/whatif main fall")).text.startswith("expected a move like -20% or +5%")

    run(go())


def test_digest_help_and_unknown_commands(tmp_path):
    async def go():
        async with phone(tmp_path) as (tg, h, bot):
            await h.step(0.6)
            digest = await command(tg, "/digest")
            assert "main" in digest.text
            assert (await command(tg, "/help")).text.splitlines()[1].startswith("/status · every account")
            assert (await command(tg, "/frobnicate")).text == "unknown command /frobnicate: try /help"
            assert (await command(tg, "/status@alerter_test_bot")).text.startswith("<pre>margin health")
            assert [c["command"] for c in tg.commands] == ["status", "ack", "unack", "history", "whatif", "digest", "help"]

    run(go())


# ---------------------------------------------------------------- only the owner

def test_a_strangers_chat_gets_nothing_changes_nothing_and_is_logged_once(tmp_path, caplog):
    async def go():
        async with phone(tmp_path) as (tg, h, bot):
            await h.step(0.75)
            call = await tg.wait_sent(lambda s: s.text.startswith("CALL"))
            after = len(tg.sent)
            tg.say(STRANGER, "/status")
            tg.say(STRANGER, "/ack main")
            tg.press(call, chat_id=STRANGER)
            tg.say(OWNER, "/help")  # handled after the stranger's three
            await tg.wait_sent(lambda s: s.chat_id == OWNER, after=after)
            assert [s for s in tg.sent[after:] if s.chat_id == STRANGER or s.method == "answerCallbackQuery"] == []
            assert tg.answered == []
            assert acks_in(h.settings.daemon.database) == []

    with caplog.at_level(logging.WARNING, logger="alerter.telegram.bot"):
        run(go())
    lines = [r.getMessage() for r in caplog.records if "not in [telegram] chats" in r.getMessage()]
    assert lines == [f"telegram: ignored a message from chat {STRANGER}, which is not in [telegram] chats "
                     "(add it there to let it command alerter)"]


def test_a_flood_of_commands_is_rate_limited(tmp_path):
    from alerter.telegram.bot import BURST

    async def go():
        async with phone(tmp_path) as (tg, h, bot):
            after = len(tg.sent)
            for _ in range(BURST + 10):
                tg.say(OWNER, "/help")
            await until(lambda: tg.pending_updates() == 0 and bot.handled >= BURST + 10, 10)
            await asyncio.sleep(0.2)
            texts = [s.text for s in tg.sent[after:]]
            assert texts.count(texts[0]) == BURST  # /help answered BURST times
            assert [t for t in texts if t.startswith("too many commands")] == [texts[BURST]]
            assert len(texts) == BURST + 1

    run(go())


# ---------------------------------------------------------------- outages and a refused token

def test_the_bot_goes_down_and_comes_back(tmp_path, caplog):
    async def go():
        async with phone(tmp_path) as (tg, h, bot):
            tg.down = True
            await until(lambda: bot.up is False, 10)
            started = asyncio.get_running_loop().time()
            await h.step(0.75)  # a poll and a delivery while Telegram is down: neither waits for it
            assert asyncio.get_running_loop().time() - started < 10  # the Bot API timeout is 15 s: nothing waited for it
            assert query(h.settings.daemon.database, "SELECT status FROM deliveries WHERE channel = 'telegram'")[0][0] == "pending"
            tg.down = False
            await until(lambda: bot.up, 10)
            assert (await command(tg, "/help")).text.startswith("alerter answers")
            h.clock.advance(minutes=5)
            await h.daemon.delivery.deliver_once()  # the outbox retries the alert
            await tg.wait_sent(lambda s: s.text.startswith("CALL"))

            tg.fail_next(1, status=429, retry_after=1, method="getUpdates")
            # a message ends the long poll held open, so the next getUpdates meets the 429
            assert (await command(tg, "/help")).text.startswith("alerter answers")
            await until(lambda: not tg.failures, 10)
            asked = asyncio.get_running_loop().time()
            answer = await command(tg, "/help")
            assert answer.text.startswith("alerter answers")
            assert asyncio.get_running_loop().time() - asked < 10

    with caplog.at_level(logging.INFO, logger="alerter.telegram.bot"):
        run(go())
    said = [r.getMessage() for r in caplog.records if r.name == "alerter.telegram.bot"]
    assert any(m.startswith("telegram bot down: getUpdates: Telegram answered 502") for m in said)
    assert any(m.startswith("telegram bot back as @alerter_test_bot") for m in said)
    assert any("Telegram asks to slow down (429, retry after 1 s)" in m for m in said)
    assert not any(TOKEN in m for m in said)


def test_a_refused_token_is_one_clear_line_and_never_a_traceback(tmp_path, caplog):
    async def go():
        async with phone(tmp_path, token="999:refused-token-of-nobody") as (tg, h, bot):
            await until(lambda: tg.refused >= 1 and bot.up is False, 10)
            await h.step(0.3)  # polls go on

    with caplog.at_level(logging.INFO, logger="alerter.telegram.bot"):
        run(go())
    said = [r for r in caplog.records if r.name == "alerter.telegram.bot"]
    assert [r.getMessage() for r in said] == [
        "telegram bot not connected: Telegram refused the bot token (401 Unauthorized): check [telegram] token "
        "(BotFather's /token); retrying in 300 s (polls and other channels are not affected)"]
    assert said[0].exc_info is None


def test_validate_says_when_telegram_refuses_the_token(tmp_path):
    import subprocess
    import sys

    from alerter.simulator.telegram_api import run_telegram_api

    async def go():
        async with run_telegram_api(TOKEN) as tg:
            config = tmp_path / "alerter.toml"
            results = {}
            for token in (TOKEN, "999:refused-token-of-nobody"):
                config.write_text(f'[daemon]\ndatabase = "{tmp_path / "a.db"}"\n\n[telegram]\ntoken = "env:TG_TOKEN"\n'
                                  f'chats = [{OWNER}]\napi_url = "{tg.url}"\n')
                proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "alerter", "validate", "--config", str(config),
                                                            env={**__import__("os").environ, "TG_TOKEN": token},
                                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                out, err = await proc.communicate()
                results[token] = (proc.returncode, out.decode(), err.decode())
            return results

    results = run(go())
    code, out, err = results[TOKEN]
    assert code == 0, err
    assert "telegram             the bot, 1 chat(s)  warning and above, all accounts" in out and TOKEN not in out + err
    code, out, err = results["999:refused-token-of-nobody"]
    assert code != 0
    assert err.strip().splitlines() == [
        "error: telegram.token: Telegram refused the bot token (401 Unauthorized): check [telegram] token (BotFather's /token)"]
    assert "Traceback" not in err and "refused-token-of-nobody" not in out + err


# ---------------------------------------------------------------- pieces

@pytest.mark.parametrize("limit", [10, 50, 4096])
def test_split_keeps_every_part_under_the_limit_and_loses_nothing(limit):
    from alerter.telegram.sender import split

    text = "\n".join(f"line {i} " + "x" * (i % 37) for i in range(400)) + "\n" + "y" * (limit * 2 + 3)
    parts = split(text, limit)
    assert all(0 < len(p) <= limit for p in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")


def test_parse_ack_reads_scope_duration_and_note():
    from datetime import timedelta

    from alerter.telegram.commands import parse_ack

    assert parse_ack(["main"]) == ("main", None, None, "")
    assert parse_ack(["main", "BTC/USDT", "long"]) == ("main", "BTC/USDT long", None, "")
    assert parse_ack(["main", "2h", "adding", "margin"]) == ("main", None, timedelta(hours=2), "adding margin")
    assert parse_ack(["main", "BTC", "cross", "30m"]) == ("main", "BTC cross", timedelta(minutes=30), "")


# ---------------------------------------------------------------- inside the running daemon

def test_the_running_daemon_starts_the_bot_alerts_through_it_and_stops_it(tmp_path):
    """`Daemon.run()` as `alerter run` runs it: the bot is one more task on its loop; the CALL goes
    out through the bot with its button, one tap acknowledges it (the daemon's channel worker
    announces it), and a stop ends the bot with the daemon."""
    from alerter import metrics
    from alerter.runtime import build_daemon
    from alerter.simulator import run_simulator
    from alerter.simulator.telegram_api import run_telegram_api

    async def go():
        async with run_simulator(SCENARIO) as sim, run_telegram_api(TOKEN) as tg:
            sim.set_prices({"BTCUSDT": price_for(sim, 0.75)})
            settings = settings_with_bot(sim, tmp_path, tg.url)
            settings.daemon.poll_interval = __import__("datetime").timedelta(seconds=1)
            daemon = build_daemon(settings)
            running = asyncio.create_task(daemon.run())
            try:
                call = await tg.wait_sent(lambda s: s.text.startswith("CALL"), timeout=30)
                assert tg.commands  # the bot told Telegram its commands
                up = metrics.METRICS.exposition().decode()
                assert 'alerter_stream_up{account="",exchange="telegram",kind="bot"} 1.0' in up
                tg.press(call)
                await tg.wait_sent(lambda s: s.text.startswith("CALL acknowledged"), timeout=15)  # sent by the channel worker
                status = await command(tg, "/status")
                assert "CALL*" in status.text
            finally:
                daemon.stop()
                await asyncio.wait_for(running, 30)
            assert 'exchange="telegram"' not in metrics.METRICS.exposition().decode()

    run(go())


@given(st.text(alphabet=st.sampled_from("ab \n€"), max_size=300), st.integers(min_value=1, max_value=40))
def test_split_property(text, limit):
    from alerter.telegram.sender import split

    parts = split(text, limit)
    assert all(len(p) <= limit for p in parts)
    assert "".join(parts).replace("\n", "") == text.replace("\n", "").replace("\r", "")


def test_every_command_is_documented():
    from pathlib import Path

    from alerter.telegram.commands import COMMANDS, USAGE

    page = (Path(__file__).resolve().parent.parent / "docs" / "telegram.md").read_text()
    for name, _, _ in COMMANDS:
        assert f"### {USAGE[name]}" in page, name


def test_the_telegram_section_is_checked_like_every_section(monkeypatch):
    from alerter.config import build_settings, literal_secret_paths
    from alerter.errors import ConfigError

    monkeypatch.setenv("TG_TOKEN", TOKEN)
    account = {"name": "main", "exchange": "binanceusdm", "api_key": "k", "secret": "s"}

    def problems(telegram, channels=()):
        try:
            build_settings({"accounts": [account], "channels": list(channels), "telegram": telegram})
        except ConfigError as e:
            return e.problems
        return []

    assert problems({"token": "env:TG_TOKEN", "chats": [OWNER]}) == []
    assert problems({"token": "env:TG_TOKEN", "chats": []}) == ["telegram.chats: List should have at least 1 item after validation, not 0"]
    assert problems({"token": "env:TG_TOKEN", "chats": [True]}) == ["telegram.chats[0]: expected a whole number, got True"]
    assert problems({"token": "env:NOPE", "chats": [1]}) == ["telegram.token: environment variable NOPE is not set"]
    assert problems({"token": "env:TG_TOKEN", "chats": [1], "chat": 1}) == ["telegram.chat: unknown key (did you mean 'chats'?)"]
    assert problems({"token": "env:TG_TOKEN", "chats": [1], "api_url": "api.telegram.org"}) == [
        "telegram.api_url: expected an http(s) URL such as 'https://api.telegram.org', got 'api.telegram.org'"]
    assert problems({"token": "env:TG_TOKEN", "chats": [1], "accounts": ["nobody"]}) == ["telegram.accounts: no account named 'nobody'"]
    assert problems({"token": "env:TG_TOKEN", "chats": [1]}, [{"name": "telegram", "url": "json://127.0.0.1/x"}]) == [
        "channels: the name 'telegram' is [telegram]'s channel: rename the [[channels]] entry"]

    settings = build_settings({"accounts": [account], "telegram": {"token": "env:TG_TOKEN", "chats": [1], "min_level": "call"}})
    assert [(c.name, c.min_level) for c in settings.channels] == [("telegram", "call")]
    assert literal_secret_paths({"telegram": {"token": TOKEN}}) == ["telegram.token"]
    assert literal_secret_paths({"telegram": {"token": "env:TG_TOKEN"}}) == []


def test_alerter_run_with_a_refused_token_says_so_in_one_line_and_keeps_polling(tmp_path, webhook):
    """`alerter run` as a process: Telegram (the loopback receiver answering 401 as Telegram does)
    refuses the token; the daemon logs one clear line, no traceback, and polls on."""
    import signal

    from helpers import DaemonRuns, simulator_thread, to_toml, wait_until

    webhook.fail_next(50, status=401, body=b'{"ok": false, "error_code": 401, "description": "Unauthorized"}')
    with simulator_thread(SCENARIO) as sim:
        path = tmp_path / "alerter.toml"
        path.write_text(to_toml({
            "daemon": {"database": str(tmp_path / "alerter.db"), "poll_interval": "0.5s", "price_interval": "0", "request_timeout": "2s"},
            "accounts": [{"name": "main", "exchange": "binanceusdm", "api_key": "main-key", "secret": "main-secret",
                          "ccxt": sim.sim.ccxt_config()}],
            "telegram": {"token": "env:TG_TOKEN", "chats": [OWNER], "api_url": f"http://{webhook.url}"},
        }))
        daemons = DaemonRuns(path, tmp_path / "logs", env={"TG_TOKEN": "999:refused-token-of-nobody"})
        proc = daemons.start()
        try:
            daemons.wait_ready(proc)
            wait_until(lambda: len(query(tmp_path / "alerter.db", "SELECT DISTINCT at FROM samples")) >= 3, 20, daemons.tail)
            wait_until(lambda: "Telegram refused" in daemons.stderr().read_text(), 10, daemons.tail)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
    log = daemons.stderr().read_text()
    lines = [line for line in log.splitlines() if "telegram" in line.lower()]
    assert len(lines) == 1 and lines[0].endswith(
        "telegram bot not connected: Telegram refused the bot token (401 Unauthorized): check [telegram] token "
        "(BotFather's /token); retrying in 300 s (polls and other channels are not affected)"), log
    assert "Traceback" not in log and "refused-token-of-nobody" not in log
    assert webhook.requests[0]["path"].endswith("/getMe")


def test_a_message_with_several_calls_has_one_button_per_scope_naming_it():
    from alerter.telegram.sender import ACK_PREFIX, ack_buttons, scope_key

    one = ack_buttons([("main", "account")])
    assert one == [("Acknowledge 1h", ACK_PREFIX + scope_key("main", "account"))]
    two = ack_buttons([("main", "account"), ("main", "isolated:BTC/USDT:USDT:long")])
    assert [label for label, _ in two] == ["Acknowledge 1h · main · account", "Acknowledge 1h · main · BTC/USDT long"]
    assert all(len(data.encode()) <= 64 for _, data in two)  # Telegram's limit on a button's data
    assert len({data for _, data in two}) == 2
