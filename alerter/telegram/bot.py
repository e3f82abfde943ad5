"""The bot's loop inside the daemon: long polling (`getUpdates`, so no public endpoint is
needed), each update answered in turn.

- Only the owner is obeyed: an update from a chat not in [telegram] chats gets no answer and
  changes nothing; it is logged once per chat, with the chat id, so the owner can add it.
- A flood is rate-limited (`Bucket`): beyond it the bot says so once and then ignores commands
  until the bucket refills. Commands that read the database run in a worker thread, so neither
  they nor a Telegram outage ever hold up a poll or an alert (the daemon's own tasks).
- Telegram down (5xx, no connection), a 429 or a refused token: the loop waits (backoff, the
  `retry_after`, or TOKEN_RETRY) and tries again; it logs going down and coming back once each
  and shows as a stream in the metrics (alerter_stream_up{exchange="telegram",kind="bot"}).

`host` is the daemon (anything with `settings`, `plans`, `store_thread`, `clock()`, `wake()`):
the bot reads the settings it has now, so a reload's accounts and chats apply at once; its token
and api_url are those it started with.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from alerter import metrics, secrets
from alerter.telegram import CHANNEL, commands
from alerter.telegram.api import BotApi, TelegramError
from alerter.telegram.sender import ACK_FOR_H, ACK_PREFIX, split

logger = logging.getLogger(__name__)

LONG_POLL_S = 25  # getUpdates' timeout: Telegram holds the request this long when nothing comes
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
TOKEN_RETRY_S = 300.0  # a refused token is retried this often (it may be fixed by a reload or at BotFather)
BURST = 6  # commands in a row before the rate limit bites
REFILL_S = 5.0  # then one command every REFILL_S seconds
MAX_STRANGERS = 1000  # chats logged once each; beyond, a spammer's chats are not logged at all


class Bucket:
    """A token bucket: `take()` is True while a command may run."""

    def __init__(self, burst: int = BURST, refill_s: float = REFILL_S, clock=time.monotonic) -> None:
        self.burst, self.refill_s, self.clock = burst, refill_s, clock
        self.tokens = float(burst)
        self.at = clock()
        self.told = False  # the chat was told about the limit since it last ran dry

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.at) / self.refill_s)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.told = False
            return True
        return False

    def wait_s(self) -> float:
        return max(0.0, (1 - self.tokens) * self.refill_s)


class Bot:
    def __init__(self, config, host) -> None:
        self.config = config
        self.host = host
        self.api = BotApi(config.token.get_secret_value(), config.api_url)
        self.offset: int | None = None
        self.up: bool | None = None  # None: not connected yet
        self.last_ok = time.monotonic()
        self.strangers: set[int] = set()  # chats logged once
        self.bucket = Bucket()
        self.username = ""
        self.handled = 0  # updates handled (the benchmark and tests read it)
        secrets.remember(secrets.of(config.token))

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        delay = BACKOFF_FIRST_S
        metrics.observe_stream("telegram", "bot", "", False, self.age)
        try:
            while True:
                try:
                    if self.up is not True:
                        await self.connect()
                    updates = await self.api.get_updates(self.offset, LONG_POLL_S)
                    self.last_ok = time.monotonic()
                    delay = BACKOFF_FIRST_S
                    for update in updates:
                        self.offset = max(self.offset or 0, int(update.get("update_id", 0)) + 1)  # confirmed even if it fails
                        try:
                            await self.handle(update)
                        except Exception:  # a bug in one answer must not end the bot
                            logger.exception("telegram: an update could not be handled")
                except TelegramError as e:
                    wait = self.down(e, delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
                    await asyncio.sleep(wait)
                except Exception:  # an answer Telegram never gives (not JSON as documented): log, back off, go on
                    logger.exception("telegram bot: unexpected failure; retrying in %g s", delay)
                    self.up = False
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
        finally:
            metrics.observe_stream("telegram", "bot", "", None)
            await self.api.close()

    def age(self) -> float:
        return time.monotonic() - self.last_ok

    async def connect(self) -> None:
        me = await self.api.get_me()
        self.username = str(me.get("username") or "")
        await self.api.set_commands([(name, what) for name, what, _ in commands.COMMANDS])
        logger.info("telegram bot %s as @%s: obeying %d chat(s)", "back" if self.up is False else "up", self.username, len(self.chats))
        self.up = True
        self.last_ok = time.monotonic()
        metrics.observe_stream("telegram", "bot", "", True, self.age)

    def down(self, error: TelegramError, delay: float) -> float:
        """Log the failure (once per outage) and return how long to wait before trying again."""
        if error.kind == "token":
            wait = TOKEN_RETRY_S
        elif error.kind == "rate" and error.retry_after_s:
            wait = error.retry_after_s
        else:
            wait = delay
        if self.up is not False or error.kind == "token":
            level = logging.ERROR if error.kind == "token" else logging.WARNING
            logger.log(level, "telegram bot %s: %s; retrying in %s (polls and other channels are not affected)",
                       "down" if self.up else "not connected", secrets.mask(str(error)), f"{wait:g} s")
        self.up = False
        metrics.observe_stream("telegram", "bot", "", False, self.age)
        return wait

    # ------------------------------------------------------------ one update

    async def handle(self, update: dict) -> None:
        self.handled += 1
        if "callback_query" in update:
            await self.on_button(update["callback_query"])
        elif isinstance(update.get("message"), dict):
            await self.on_message(update["message"])

    @property
    def chats(self) -> frozenset[int]:
        """The chats obeyed: the current settings' (a reload changes them; without [telegram], none)."""
        config = self.host.settings.telegram
        return frozenset(config.chats) if config is not None else frozenset()

    def obeyed(self, chat_id) -> bool:
        if chat_id in self.chats:
            return True
        if chat_id not in self.strangers and len(self.strangers) < MAX_STRANGERS:
            self.strangers.add(chat_id)
            logger.warning("telegram: ignored a message from chat %s, which is not in [telegram] chats "
                           "(add it there to let it command alerter)", chat_id)
        return False

    async def on_message(self, message: dict) -> None:
        chat_id = (message.get("chat") or {}).get("id")
        if not self.obeyed(chat_id):
            return
        text = str(message.get("text") or "").strip()
        parsed = commands.parse(text)
        replied = message.get("reply_to_message")
        if parsed is None and isinstance(replied, dict) and text.split()[:1] and text.split()[0].lower() == "ack":
            if not self.allowed(chat_id):
                return
            await self.ack_reply(chat_id, replied)
            return
        if parsed is None:
            if text and self.allowed(chat_id):
                await self.say(chat_id, commands.Reply("send a command, e.g. /status; /help lists them"))
            return
        if not self.allowed(chat_id):
            await self.tell_limit(chat_id)
            return
        name, args = parsed
        addressed = text.split()[0].partition("@")[2]
        if addressed and self.username and addressed.lower() != self.username.lower():
            return  # "/status@another_bot" in a group: not ours
        if name == "digest":
            reply = await self.digest(args)
        else:
            reply = await self.answer(name, args)
        await self.say(chat_id, reply)

    def allowed(self, chat_id) -> bool:
        return self.bucket.take()

    async def tell_limit(self, chat_id) -> None:
        if not self.bucket.told:
            self.bucket.told = True
            await self.say(chat_id, commands.Reply(f"too many commands: the next one is taken in {self.bucket.wait_s():.0f} s"))

    async def answer(self, name: str, args: list[str]) -> commands.Reply:
        now = self.host.clock()
        try:
            reply = await asyncio.to_thread(commands.dispatch, self.host.settings, name, args, now)
        except Exception as e:  # a bug in one command must not end the bot
            logger.exception("telegram: /%s failed", name)
            return commands.Reply(f"/{name} failed: {type(e).__name__} (see the daemon's log)")
        if reply.wake:
            self.host.wake()
        return reply

    async def digest(self, args: list[str]) -> commands.Reply:
        """Today's digest of the telegram channel (alerter.digest), now; not recorded as the daily one."""
        from alerter import digest

        if args:
            return commands.Reply("usage: /digest (no arguments)")
        channel = next((c for c in self.host.settings.channels if c.name == CHANNEL), None)
        timezone = channel.timezone if channel is not None else "UTC"
        try:
            data = await digest.gather(self.host.store_thread, self.host.plans, CHANNEL, timezone, self.host.clock())
        except Exception as e:  # noqa: BLE001 — the store's errors, said in one line
            return commands.Reply(f"cannot read the database: {e}")
        title, body = digest.render(data, markdown=False)
        return commands.Reply(f"{title}\n\n{body}")

    async def on_button(self, query: dict) -> None:
        message = query.get("message") or {}
        chat_id = (message.get("chat") or {}).get("id")
        if not self.obeyed(chat_id):
            return
        data = str(query.get("data") or "")
        if not data.startswith(ACK_PREFIX):
            await self.answer_button(query, "this button is no longer supported")
            return
        if not self.allowed(chat_id):
            await self.answer_button(query, f"too many commands: try again in {self.bucket.wait_s():.0f} s")
            return
        reply = await self.ack_key(data.removeprefix(ACK_PREFIX))
        await self.answer_button(query, reply.text)
        await self.say(chat_id, reply, reply_to=message.get("message_id"))

    async def ack_reply(self, chat_id, replied: dict) -> None:
        """A reply 'ack' to an alert: acknowledge the scopes its buttons name."""
        markup = replied.get("reply_markup") or {}
        keys = [b.get("callback_data", "") for row in markup.get("inline_keyboard", []) for b in row]
        keys = [k.removeprefix(ACK_PREFIX) for k in keys if k.startswith(ACK_PREFIX)]
        if not keys:
            await self.say(chat_id, commands.Reply("that message has no CALL or CRITICAL alert to acknowledge; use "
                                                   + commands.usage("ack").removeprefix("usage: ")))
            return
        for key in keys:
            await self.say(chat_id, await self.ack_key(key), reply_to=replied.get("message_id"))

    async def ack_key(self, key: str) -> commands.Reply:
        now = self.host.clock()
        try:
            reply = await asyncio.to_thread(commands.ack_by_key, self.host.settings, key, now, timedelta(hours=ACK_FOR_H))
        except (ValueError, LookupError) as e:  # ConfigError is a ValueError: nothing to acknowledge, a gone scope
            return commands.Reply(commands._one_line(e))
        except Exception as e:
            logger.exception("telegram: the acknowledgement failed")
            return commands.Reply(f"not acknowledged: {type(e).__name__} (see the daemon's log)")
        if reply.wake:
            self.host.wake()
        return reply

    # ------------------------------------------------------------ answers

    async def say(self, chat_id: int, reply: commands.Reply, *, reply_to: int | None = None) -> None:
        """Send a reply; a failure is logged, never raised (the user can ask again)."""
        try:
            if reply.photo is not None:
                await self.api.send_photo(chat_id, reply.photo, secrets.mask(reply.text))
                return
            limit = 4000 if reply.monospace else 4096  # <pre></pre> and escapes take room
            for part in split(secrets.mask(reply.text), limit):
                await self.api.send_message(chat_id, part, monospace=reply.monospace, reply_to=reply_to)
        except TelegramError as e:
            logger.warning("telegram: could not answer chat %s: %s", chat_id, secrets.mask(str(e)))

    async def answer_button(self, query: dict, text: str) -> None:
        try:
            await self.api.answer_callback(str(query.get("id")), secrets.mask(text))
        except TelegramError as e:
            logger.warning("telegram: could not answer a button: %s", secrets.mask(str(e)))

