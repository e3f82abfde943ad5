"""The Telegram Bot API over aiohttp (already the project's HTTP client through ccxt): the few
methods alerter uses, each one request, each answer checked.

Every failure is a `TelegramError` with a kind: "token" (401/404: Telegram refuses the token),
"rate" (429, with Telegram's `retry_after` in seconds), "transient" (5xx, a dropped connection,
a timeout) or "request" (400: the request itself is wrong). Its text never holds the token: the
token is in every request's URL, so URLs never go into a message.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from alerter.httpsession import LazySession

DEFAULT_API_URL = "https://api.telegram.org"
REQUEST_TIMEOUT_S = 15.0  # a request other than the long poll


class TelegramError(Exception):
    def __init__(self, kind: str, text: str, retry_after_s: float | None = None) -> None:
        super().__init__(text)
        self.kind = kind
        self.retry_after_s = retry_after_s


def refused_text(status: int, description: str) -> str:
    return f"Telegram refused the bot token ({status} {description or 'Unauthorized'}): check [telegram] token (BotFather's /token)"


class BotApi(LazySession):
    """One aiohttp session to `api_url`. Use as `async with BotApi(token, api_url) as api:` or
    call `close()`."""

    def __init__(self, token: str, api_url: str = DEFAULT_API_URL) -> None:
        self._base = f"{api_url.rstrip('/')}/bot{token}/"

    async def call(self, method: str, params: dict[str, Any] | None = None, *, timeout_s: float = REQUEST_TIMEOUT_S,
                   photo: bytes | None = None) -> Any:
        """The method's `result`; raises TelegramError."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        if photo is not None:
            data = aiohttp.FormData()
            for key, value in params.items():
                data.add_field(key, value if isinstance(value, str) else json.dumps(value))
            data.add_field("photo", photo, filename="chart.png", content_type="image/png")
            kwargs: dict[str, Any] = {"data": data}
        else:
            kwargs = {"json": params}
        try:
            async with asyncio.timeout(timeout_s):
                async with self._client().post(self._base + method, **kwargs) as response:
                    status = response.status
                    try:
                        body = await response.json(content_type=None)
                    except (ValueError, aiohttp.ContentTypeError):
                        body = None
        except TimeoutError:
            raise TelegramError("transient", f"{method}: no answer within {timeout_s:g} s") from None
        except aiohttp.ClientError as e:
            raise TelegramError("transient", f"{method}: {type(e).__name__} (cannot reach the Bot API)") from None
        if isinstance(body, dict) and body.get("ok") is True:
            return body.get("result")
        description = str(body.get("description") or "") if isinstance(body, dict) else ""
        code = int(body.get("error_code") or status) if isinstance(body, dict) else status
        if code == 401 or (code == 404 and method == "getMe"):  # 404: a token of the wrong form
            raise TelegramError("token", refused_text(code, description))
        if code == 429:
            retry = (body.get("parameters") or {}).get("retry_after") if isinstance(body, dict) else None
            retry_s = float(retry) if isinstance(retry, int | float) else 1.0
            raise TelegramError("rate", f"{method}: Telegram asks to slow down (429, retry after {retry_s:g} s)", retry_s)
        if code >= 500 or body is None:
            raise TelegramError("transient", f"{method}: Telegram answered {status}" + (f" ({description})" if description else ""))
        raise TelegramError("request", f"{method}: {code} {description}".strip())

    # ------------------------------------------------------------ the methods alerter uses

    async def get_me(self) -> dict:
        return await self.call("getMe")

    async def get_updates(self, offset: int | None, timeout_s: int) -> list[dict]:
        return await self.call("getUpdates", {"offset": offset, "timeout": timeout_s, "allowed_updates": ["message", "callback_query"]},
                               timeout_s=timeout_s + REQUEST_TIMEOUT_S)

    async def send_message(self, chat_id: int, text: str, *, buttons: list[tuple[str, str]] = (), monospace: bool = False,
                           reply_to: int | None = None) -> dict:
        """`buttons`: (label, callback data) pairs, one button per row. `monospace`: the text is
        sent as a <pre> block (HTML), which Telegram shows in a fixed-width font."""
        params: dict[str, Any] = {"chat_id": chat_id, "text": pre(text) if monospace else text,
                                  "disable_web_page_preview": True, "reply_markup": keyboard(buttons)}
        if monospace:
            params["parse_mode"] = "HTML"
        if reply_to is not None:
            params["reply_to_message_id"] = reply_to
        return await self.call("sendMessage", params)

    async def send_photo(self, chat_id: int, png: bytes, caption: str = "") -> dict:
        return await self.call("sendPhoto", {"chat_id": str(chat_id), "caption": caption[:1024] or None}, photo=png, timeout_s=60)

    async def answer_callback(self, query_id: str, text: str = "") -> None:
        await self.call("answerCallbackQuery", {"callback_query_id": query_id, "text": text[:200] or None})

    async def set_commands(self, commands: list[tuple[str, str]]) -> None:
        await self.call("setMyCommands", {"commands": [{"command": c, "description": d} for c, d in commands]})


async def token_problem(config, timeout_s: float = 10.0) -> str | None:
    """`validate`'s check: one line when Telegram refuses [telegram]'s token (getMe), else None.
    A Bot API that cannot be reached is not the token's fault: None (the bot retries it)."""
    from alerter import secrets

    async with BotApi(config.token.get_secret_value(), config.api_url) as api:
        try:
            async with asyncio.timeout(timeout_s):
                await api.get_me()
        except TelegramError as e:
            return secrets.mask(str(e)) if e.kind == "token" else None
        except TimeoutError:
            return None
    return None


def keyboard(buttons: list[tuple[str, str]] | tuple = ()) -> dict | None:
    if not buttons:
        return None
    return {"inline_keyboard": [[{"text": label, "callback_data": data}] for label, data in buttons]}


def pre(text: str) -> str:
    """Text in an HTML <pre> block, escaped (Telegram's HTML mode knows &lt; &gt; &amp;)."""
    return "<pre>" + text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") + "</pre>"
