"""A loopback Telegram Bot API server, for the bot's tests and benchmark: it speaks Telegram's
JSON (`getMe`, `getUpdates` with long polling, `sendMessage`, `sendPhoto`, `answerCallbackQuery`,
`setMyCommands`), refuses any token but its own with 401, and can fail on purpose (a 5xx, a 429
with `retry_after`, going down and coming back). A test plays the phone through it:

    async with run_telegram_api(token="123:abc") as tg:
        # [telegram] api_url = tg.url
        tg.say(42, "/status")                       # the owner (chat 42) sends a command
        msg = await tg.wait_sent(lambda m: "CALL" in m.text)
        tg.press(msg)                               # taps the message's first button
        tg.say(42, "ack", reply_to=msg)             # or replies to it
        tg.fail_next(2, status=502)                 # the next two requests fail
        tg.fail_next(1, status=429, retry_after=3)  # Too Many Requests: retry after 3

Everything the bot sent is in `tg.sent` (`Sent`: method, chat, text, buttons, photo bytes).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from alerter.simulator.server import listen

OWNER_NAME = "trader"
BOT_USER = {"id": 999_000_111, "is_bot": True, "first_name": "alerter", "username": "alerter_test_bot"}
MAX_TEXT = 4096  # Telegram's limit on a message's text


@dataclass
class Sent:
    """One message the bot sent (or a callback it answered)."""

    method: str
    chat_id: int | None
    message_id: int | None = None
    text: str = ""
    buttons: list[dict] = field(default_factory=list)  # the inline keyboard's buttons, row by row flattened
    photo: bytes | None = None
    raw: dict = field(default_factory=dict)  # the request's parameters as received
    at: float = 0.0  # time.monotonic() when received

    @property
    def message(self) -> dict:
        """The message as Telegram would hand it back (to reply to, or with a button press)."""
        out: dict[str, Any] = {"message_id": self.message_id, "date": int(time.time()), "from": BOT_USER,
                               "chat": {"id": self.chat_id, "type": "private"}}
        if self.photo is not None:
            out["photo"] = [{"file_id": f"photo{self.message_id}", "width": 100, "height": 100}]
            if self.text:
                out["caption"] = self.text
        else:
            out["text"] = self.text
        if self.raw.get("reply_markup"):
            out["reply_markup"] = self.raw["reply_markup"]
        return out


@dataclass
class _Failure:
    status: int
    retry_after: int | None = None
    method: str | None = None  # only this method; None: any


class TelegramApi:
    """The server's state. Use `run_telegram_api` to start it."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.url = ""
        self.sent: list[Sent] = []
        self.requests: list[tuple[float, str]] = []  # (monotonic time, method) of every request with the right token
        self.refused = 0  # requests with a wrong token
        self.commands: list[dict] = []  # the last setMyCommands list
        self.answered: list[dict] = []  # answerCallbackQuery parameters
        self.failures: list[_Failure] = []
        self._down = False
        self._updates: list[dict] = []
        self._confirmed = 0  # the highest update_id the bot confirmed (offset - 1)
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._sent_event = asyncio.Event()

    # ------------------------------------------------------------ the phone

    def say(self, chat_id: int, text: str, *, reply_to: Sent | None = None, user_id: int | None = None) -> dict:
        """A message from `chat_id` (a private chat: the user is the chat), optionally a reply."""
        message: dict[str, Any] = {"message_id": next(self._message_ids), "date": int(time.time()),
                                   "from": {"id": user_id or chat_id, "is_bot": False, "first_name": OWNER_NAME},
                                   "chat": {"id": chat_id, "type": "private"}, "text": text}
        if text.startswith("/"):
            command = text.split()[0]
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        if reply_to is not None:
            message["reply_to_message"] = reply_to.message
        return self._push({"message": message})

    def press(self, sent: Sent, index: int = 0, *, chat_id: int | None = None) -> dict:
        """Tap the `index`-th inline button of a message the bot sent (in `chat_id`, default its chat)."""
        button = sent.buttons[index]
        chat = chat_id if chat_id is not None else sent.chat_id
        message = {**sent.message, "chat": {"id": chat, "type": "private"}}  # a stranger: as if the bot had sent it to them
        query = {"id": f"cb{next(self._update_ids)}", "from": {"id": chat, "is_bot": False, "first_name": OWNER_NAME},
                 "message": message, "chat_instance": "1", "data": button["callback_data"]}
        return self._push({"callback_query": query})

    def _push(self, update: dict) -> dict:
        update = {"update_id": next(self._update_ids), **update}
        self._updates.append(update)
        asyncio.get_running_loop().create_task(self._notify())
        return update

    @property
    def down(self) -> bool:
        """Every request answers 502 (Bad Gateway), as Telegram's front does in an outage; a long
        poll held open when it goes down ends with that answer at once, as a dropped front would."""
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        self._down = value
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------ the test's view

    def fail_next(self, count: int = 1, *, status: int = 500, retry_after: int | None = None, method: str | None = None) -> None:
        """The next `count` requests (of `method`, or any) fail with `status`; 429 carries `retry_after`."""
        self.failures += [_Failure(status, retry_after, method) for _ in range(count)]

    def messages(self, chat_id: int | None = None) -> list[Sent]:
        return [s for s in self.sent if s.method in ("sendMessage", "sendPhoto") and chat_id in (None, s.chat_id)]

    async def wait_sent(self, predicate: Callable[[Sent], bool] = lambda s: True, *, after: int = 0, timeout: float = 10.0) -> Sent:
        """The first message at index ≥ `after` of `sent` that matches; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            for s in self.sent[after:]:
                if s.method in ("sendMessage", "sendPhoto") and predicate(s):
                    return s
            left = deadline - time.monotonic()
            if left <= 0:
                shown = "\n".join(f"  {s.method} {s.chat_id}: {s.text[:120]!r}" for s in self.sent[after:]) or "  (nothing)"
                raise AssertionError(f"the bot sent no matching message within {timeout:g} s; it sent:\n{shown}")
            self._sent_event.clear()
            try:
                async with asyncio.timeout(min(left, 0.2)):
                    await self._sent_event.wait()
            except TimeoutError:
                pass

    def pending_updates(self) -> int:
        return len([u for u in self._updates if u["update_id"] > self._confirmed])

    # ------------------------------------------------------------ the API

    def app(self) -> web.Application:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            self.refused += 1
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params = await _params(request)
        self.requests.append((time.monotonic(), method))
        if self.down:
            return _bad_gateway()
        failure = next((f for f in self.failures if f.method in (None, method)), None)
        if failure is not None:
            self.failures.remove(failure)
            if failure.status == 429:
                return _error(429, f"Too Many Requests: retry after {failure.retry_after or 1}",
                              parameters={"retry_after": failure.retry_after or 1})
            return _error(failure.status, "Internal Server Error" if failure.status >= 500 else "Bad Request")
        handler = getattr(self, f"_m_{method}", None)
        if handler is None:
            return _error(404, "Not Found: method not found")
        return await handler(params)

    async def _m_getMe(self, params: dict) -> web.Response:  # noqa: N802 (Telegram's method names)
        return _ok(BOT_USER)

    async def _m_setMyCommands(self, params: dict) -> web.Response:  # noqa: N802
        self.commands = _json_field(params.get("commands")) or []
        return _ok(True)

    async def _m_getUpdates(self, params: dict) -> web.Response:  # noqa: N802
        offset = int(params.get("offset") or 0)
        if offset:
            self._confirmed = max(self._confirmed, offset - 1)
        timeout = min(float(params.get("timeout") or 0), 50.0)
        deadline = time.monotonic() + timeout
        while True:
            if self.down:
                return _bad_gateway()
            fresh = [u for u in self._updates if u["update_id"] > self._confirmed]
            if fresh or time.monotonic() >= deadline:
                return _ok(fresh[: int(params.get("limit") or 100)])
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())), self._changed:
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def _m_sendMessage(self, params: dict) -> web.Response:  # noqa: N802
        text = str(params.get("text") or "")
        if not text:
            return _error(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            return _error(400, "Bad Request: message is too long")
        return self._record("sendMessage", params, text=text)

    async def _m_sendPhoto(self, params: dict) -> web.Response:  # noqa: N802
        photo = params.get("photo")
        if not isinstance(photo, bytes) or not photo:
            return _error(400, "Bad Request: there is no photo in the request")
        return self._record("sendPhoto", params, text=str(params.get("caption") or ""), photo=photo)

    async def _m_answerCallbackQuery(self, params: dict) -> web.Response:  # noqa: N802
        self.answered.append(params)
        return _ok(True)

    def _record(self, method: str, params: dict, *, text: str, photo: bytes | None = None) -> web.Response:
        try:
            chat_id = int(params.get("chat_id"))
        except (TypeError, ValueError):
            return _error(400, "Bad Request: chat not found")
        markup = _json_field(params.get("reply_markup")) or {}
        buttons = [b for row in markup.get("inline_keyboard", []) for b in row]
        raw = {k: v for k, v in params.items() if k != "photo"}
        raw["reply_markup"] = markup or None
        sent = Sent(method, chat_id, next(self._message_ids), text, buttons, photo, raw, time.monotonic())
        self.sent.append(sent)
        self._sent_event.set()
        return _ok(sent.message)


async def _params(request: web.Request) -> dict:
    """A method's parameters, however the client sent them: query string, JSON, form or multipart."""
    params: dict[str, Any] = dict(request.query)
    if request.method != "POST":
        return params
    if request.content_type == "application/json":
        params.update(await request.json())
    elif request.content_type == "multipart/form-data":
        reader = await request.multipart()
        async for part in reader:
            data = await part.read()
            params[part.name] = bytes(data) if part.filename else data.decode()
    else:
        params.update(await request.post())
    return params


def _json_field(value: Any) -> Any:
    """A parameter that Telegram takes as JSON: an object in a JSON body, a string in a form."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _bad_gateway() -> web.Response:
    return web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")


def _error(code: int, description: str, *, parameters: dict | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)


@asynccontextmanager
async def run_telegram_api(token: str = "123456:TEST-token-for-the-loopback", *, port: int = 0) -> AsyncIterator[TelegramApi]:
    """The loopback Bot API on 127.0.0.1 (port 0: any free one); `api.url` is its base URL."""
    api = TelegramApi(token)
    runner, api.url = await listen(api.app(), "127.0.0.1", port)
    try:
        yield api
    finally:
        await runner.cleanup()
