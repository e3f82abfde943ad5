"""What is a secret, and how it is masked: the one rule for logs, alerts, source errors and
`validate`.

A secret is the value of any ``SecretStr`` in the settings (`of` walks the models, so a new
secret field is covered the day it is added): account keys, channel URLs, the heartbeat URL.
A secret that is a URL also hides its credential parts (`url_parts`): apprise and urllib3 log a
bot token or a webhook path on its own, and a mail password after ``user:``.

Masking (`mask`) replaces every known secret by ``***``, longest first (a secret that contains
another goes whole). Values shorter than MIN_LENGTH are left alone: they would mask ordinary
words, and a minimum above the mask's own length makes masking end with no secret in its result.
Exchange error messages also lose their URL query strings and signed parameters (`strip_query`).

The secrets of the settings in use are `remember`ed once (at start and on each reload), so that
`mask(text)` anywhere hides them all. Pure apart from that registry: imports no I/O module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

from pydantic import BaseModel, SecretStr

MASK = "***"
MIN_LENGTH = 4  # above len(MASK): each replacement shortens the text, so masking until nothing changes ends
TOKEN_LENGTH = 8  # a piece of a URL this long (not a host, not a plain word) is a credential

# every remembered secret: longest first, and as a set; replaced whole, so threads see either
_known: tuple[tuple[str, ...], frozenset[str]] = ((), frozenset())


# ---------------------------------------------------------------- what is a secret

def of(*objects: object) -> frozenset[str]:
    """Every secret in `objects` (settings, any part of them, lists of them, SecretStr values):
    each SecretStr's value, and the credential parts of those that are URLs."""
    found: set[str] = set()
    stack = list(objects)
    while stack:
        item = stack.pop()
        if isinstance(item, SecretStr):
            value = item.get_secret_value()
            found.add(value)
            if "://" in value:
                found |= url_parts(value)
        elif isinstance(item, BaseModel):
            stack += [getattr(item, name) for name in type(item).model_fields]
        elif isinstance(item, dict):
            stack += item.values()
        elif isinstance(item, list | tuple | set | frozenset):
            stack += item
    return frozenset(s for s in found if len(s) >= MIN_LENGTH)


def url_parts(url: str) -> set[str]:
    """The parts of a URL (an apprise channel, a push URL) that give it away: the whole URL, the
    URL without its scheme, its password, and every token-like piece (TOKEN_LENGTH or more
    characters, not a host name, not a plain lowercase word), each also %-quoted and unquoted.
    ``tgram://123456789:AAHtoken/987654`` → the bot id and token, not the short chat id."""
    parts = {url}
    rest = url.split("://", 1)[-1]
    parts.add(rest)
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password:
        parts.add(password)
    for piece in re.split(r"[/:@?&=#,;+\s]+", rest):
        if len(piece) < TOKEN_LENGTH or "." in piece or (piece.isalpha() and piece.islower()):
            continue
        parts.add(piece)
    for piece in list(parts):
        parts |= {unquote(piece), quote(piece, safe="")}
    return {p for p in parts if len(p) >= MIN_LENGTH}


def remember(secrets: Iterable[str | None]) -> None:
    """Hide these secrets (values, not settings: pass `of(settings)`) from every `mask` from now
    on. Called when settings are loaded and reloaded; a secret is never forgotten."""
    global _known
    known = _known[1] | {s for s in secrets if s and len(s) >= MIN_LENGTH}
    if len(known) > len(_known[1]):
        _known = (tuple(sorted(known, key=len, reverse=True)), known)


def known() -> bool:
    """True once any secret is remembered (logging skips the work until then)."""
    return bool(_known[0])


# ---------------------------------------------------------------- how it is masked

def mask(text: str, extra: Iterable[str | None] = ()) -> str:
    """`text` with every remembered secret, and every one of `extra`, replaced by ``***``,
    longest first. Repeated until nothing is left to replace, so no secret of MIN_LENGTH or more
    survives (not even one that a replacement pieced together)."""
    secrets, known = _known
    extra = {s for s in extra if s and len(s) >= MIN_LENGTH} - known
    if extra:
        secrets = tuple(sorted({*secrets, *extra}, key=len, reverse=True))
    while True:
        before = text
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        if text == before:
            return text


_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*")
_SIGNED_PARAM = re.compile(r"\b(signature|sign|timestamp|apiKey|api_key|recvWindow)=([^\s&\"']+)", re.IGNORECASE)


def strip_query(text: str) -> str:
    """`text` without the query strings of its http(s) URLs and without the values of signed
    request parameters (``signature=…``, ``apiKey=…``): ccxt quotes the signed request URL in
    its error messages."""
    return _SIGNED_PARAM.sub(r"\1=…", _QUERY.sub(r"\1", text))
