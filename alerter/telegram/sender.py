"""One alert message to [telegram]'s chats, through the Bot API (`api_url`), as the channel named
"telegram" (alerter.notify.Notifier hands this channel's messages here, apprise never sees them).

A message whose alerts include a CALL or CRITICAL (raised or repeated) carries an "Acknowledge 1h"
button per such scope; the button's data names the scope by a short digest (`scope_key`), which
the bot resolves against the scopes it knows (a button's data is at most 64 bytes, and an account
name may be longer).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from alerter import secrets
from alerter.display import where
from alerter.models import Level

MAX_TEXT = 4096  # Telegram's limit on one message's text
ACK_FOR_H = 1  # the button's acknowledgement, in hours
ACK_PREFIX = "ack1h:"


def scope_key(account: str, scope: str) -> str:
    """A short, stable name of (account, scope) for a button's callback data."""
    return hashlib.sha256(f"{account}\0{scope}".encode()).hexdigest()[:20]


def ack_buttons(ackable: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(label, callback data) per scope: "Acknowledge 1h", naming the scope when there are several."""
    label = f"Acknowledge {ACK_FOR_H}h"
    return [(label if len(ackable) == 1 else f"{label} · {where(account, scope)}", ACK_PREFIX + scope_key(account, scope))
            for account, scope in ackable]


def split(text: str, limit: int = MAX_TEXT) -> list[str]:
    """`text` in parts of at most `limit` characters, cut at line ends where it can be."""
    parts: list[str] = []
    current = ""
    for line in text.splitlines():
        while len(line) > limit:  # a single line longer than a message: cut it hard
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            parts.append(current)
            current = line
        else:
            current = candidate
    if current or not parts:
        parts.append(current)
    return parts


class BotSender:
    """Sends one alert message to every chat of a `TelegramConfig`."""

    def __init__(self, config) -> None:
        self.token = config.token.get_secret_value()
        self.api_url = config.api_url
        self.chats: tuple[int, ...] = tuple(config.chats)
        secrets.remember(secrets.of(config.token))

    async def send(self, title: str, body: str, *, level: Level = Level.OK, ackable: Iterable[tuple[str, str]] = (),
                   timeout_s: float = 15.0) -> tuple[bool, str | None, float | None]:
        """(delivered, error without secrets, Telegram's retry-after in seconds). Every chat gets
        every part; a failure stops the round (the outbox retries the whole message)."""
        from alerter.telegram.api import BotApi, TelegramError

        text = f"{title}\n\n{body}".strip() if body else title
        ackable = [a for a in ackable]
        buttons = ack_buttons(ackable) if level >= Level.CALL and ackable else []
        parts = split(text)
        try:
            async with BotApi(self.token, self.api_url) as api:
                for chat in self.chats:
                    for i, part in enumerate(parts):
                        await api.send_message(chat, part, buttons=buttons if i == len(parts) - 1 else [])
        except TelegramError as e:
            return False, secrets.mask(str(e)), e.retry_after_s
        return True, None, None
