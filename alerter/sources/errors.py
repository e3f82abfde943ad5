"""SourceError and the mapping of ccxt's exceptions onto its three kinds.

Kinds:
- ``transient``: try again later (network, timeouts, rate limits, maintenance, 5xx);
- ``credentials``: the key, secret, passphrase, permissions or IP whitelist are wrong;
- ``data``: the exchange answered, but not with something we can turn into margin health.

Messages are masked: ccxt puts the request URL (with ``timestamp``/``signature`` query
parameters) and sometimes the API key into its messages, so query strings are dropped and the
account's secrets are masked (both by alerter.secrets) before a message leaves this package.

ccxt is never imported here: a ccxt exception can only exist if ccxt was already imported, so
``classify`` looks the module up in ``sys.modules``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable

from alerter.secrets import mask, strip_query

KINDS = ("transient", "credentials", "data")
MAX_MESSAGE = 300

CREDENTIALS_HINT = (
    "check api_key/secret (and password/passphrase where the exchange has one); "
    "the key may lack futures/derivatives read permission, or the IP is not whitelisted"
)


class SourceError(Exception):
    """A failed fetch or an unusable answer. `kind` is one of KINDS; the message holds no secret."""

    def __init__(self, kind: str, message: str, *, retry_after_s: float | None = None, http_status: int | None = None):
        if kind not in KINDS:
            raise ValueError(f"SourceError kind must be one of {KINDS}, not {kind!r}")
        self.kind = kind
        self.message = message
        self.retry_after_s = retry_after_s
        self.http_status = http_status
        super().__init__(message)

    @property
    def transient(self) -> bool:
        return self.kind == "transient"

    def __repr__(self) -> str:
        return f"SourceError({self.kind!r}, {self.message!r})"


_SPACE = re.compile(r"\s+")


def one_line(text: str) -> str:
    """`text` as a message: an HTML error page named, not quoted; one line; at most MAX_MESSAGE
    characters. Mask it first (a cut secret would no longer be found)."""
    if "<html" in text.lower() or "<!doctype" in text.lower():
        text = re.sub(r"<(!doctype|html).*", "(HTML page)", text, flags=re.IGNORECASE | re.DOTALL)
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def describe(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """What `exc` says, fit for a message: no query string, no secret (`secrets` besides those
    alerter.secrets remembers), one short line; its type's name if it says nothing."""
    return one_line(mask(strip_query(str(exc)), secrets)) or type(exc).__name__


def classify(
    exc: BaseException,
    *,
    secrets: Iterable[str | None] = (),
    http_status: int | None = None,
    retry_after_s: float | None = None,
    server_error: bool = False,
) -> SourceError:
    """The SourceError for an exception raised while fetching or normalising.

    `http_status` is the status of the last HTTP response of the failed call, if known: ccxt's
    exceptions do not carry it, and some exchanges (Bybit) turn a 5xx with a JSON body into a
    plain ExchangeError, which is a server-side failure and so transient. `server_error` says the
    body carried an exchange code known to mean "system error, try again" (Bybit 10016, which
    ccxt maps to a plain ExchangeError even on HTTP 200).
    """
    if isinstance(exc, SourceError):
        return exc
    name = type(exc).__name__
    detail = describe(exc, secrets)

    def error(kind: str, message: str) -> SourceError:
        return SourceError(kind, message, retry_after_s=retry_after_s if kind == "transient" else None, http_status=http_status)

    ccxt = sys.modules.get("ccxt")
    if ccxt is not None and isinstance(exc, ccxt.BaseError):
        if isinstance(exc, ccxt.AuthenticationError):
            return error("credentials", f"{name}: {detail} ({CREDENTIALS_HINT})")
        if isinstance(exc, ccxt.InvalidNonce):
            return error("transient", f"{name}: {detail} (is the system clock in sync?)")
        if isinstance(exc, ccxt.NetworkError):
            # RequestTimeout, ExchangeNotAvailable, OnMaintenance, DDoSProtection, RateLimitExceeded
            return error("transient", f"{name}: {detail}")
        if isinstance(exc, ccxt.BadResponse):  # and NullResponse
            return error("data", f"{name}: unreadable answer: {detail}")
        if isinstance(exc, ccxt.OperationFailed):
            # Binance's -1000/-1001 ("internal error, try again") come as a bare OperationFailed
            return error("transient", f"{name}: {detail}")
        if server_error or (http_status is not None and http_status >= 500):
            status = f" (HTTP {http_status})" if http_status else ""
            return error("transient", f"{name}{status}: {detail}")
        return error("data", f"{name}: {detail}")
    if isinstance(exc, KeyError | ValueError | TypeError | ArithmeticError | IndexError):
        return error("data", f"cannot read the exchange's answer ({name}: {detail})")
    if isinstance(exc, TimeoutError | ConnectionError):
        return error("transient", f"{name}: {detail}")
    return error("data", f"{name}: {detail}")
