"""The Source: one account on its venue, built by `build_source` from the account's profile (ccxt's
async class, or the venue's own client), fetched by the profile's `fetch` (the Source is its
FetchContext: calls classified and scrubbed, answers checked, retries of what is transient, the
markets loaded once and shared), normalised by the profile into an AccountSnapshot.

ccxt is imported only inside functions (``import ccxt`` costs ~0.5 s and ~80 MB), so importing
this module is cheap and commands that never talk to an exchange never pay for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from alerter.errors import ConfigError
from alerter.models import AccountSnapshot
from alerter.sources.errors import SourceError, classify
from alerter.sources.fields import BodyCheck, Normaliser
from alerter.sources.profile import Account, Profile, Raw, fetch_account, options_of

logger = logging.getLogger(__name__)

MARKETS_TTL_S = 24 * 3600

# the last HTTP response of the current task's ccxt call: ccxt's exceptions carry neither the
# status nor the headers, and concurrent calls each run in their own task. A call whose answers
# the snapshot depends on also collects every (status, path, raw body) in `bodies`.
_last_response: contextvars.ContextVar[dict | None] = contextvars.ContextVar("alerter_last_response", default=None)


def deep_merge(base: Mapping, override: Mapping) -> dict:
    """A new dict: `override` over `base`, merging nested dicts key by key (other values replace)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of transient failures inside one fetch: `attempts` in all, waiting base × 2ⁿ (or the
    server's Retry-After) capped at `max_delay_s`, and never more than `budget_s` in total."""

    attempts: int = 3
    base_delay_s: float = 0.5
    max_delay_s: float = 5.0
    budget_s: float = 10.0

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        delay = self.base_delay_s * 2 ** (attempt - 1)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return min(delay, self.max_delay_s)


_SEVERITY = {"credentials": 0, "data": 1, "transient": 2}


class SharedMarkets:
    """Markets loaded once per exchange (and the URLs it is reached at) for every account on it:
    50 accounts on one exchange make one exchangeInfo request a day, not 50."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[float, dict, dict]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def get(self, key: str, ttl_s: float) -> tuple[float, dict, dict] | None:
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] >= ttl_s:
            return None
        return entry

    def put(self, key: str, loaded_at: float, markets: dict, currencies: dict | None) -> None:
        self._entries[key] = (loaded_at, markets, currencies or {})


class Source:
    """One account on one venue, read by its profile. Use `build_source`; close it (or `async
    with` it) when done. It is the FetchContext a profile's `fetch` works with."""

    def __init__(
        self,
        account_name: str,
        exchange: Any,
        profile: Profile,
        *,
        options: Mapping[str, Any] | None = None,
        normaliser: Normaliser | None = None,
        secrets: Iterable[str] = (),
        retry: RetryPolicy = RetryPolicy(),
        markets_ttl_s: float = MARKETS_TTL_S,
        shared: SharedMarkets | None = None,
        market_key: str | None = None,
    ):
        """`exchange`: the ccxt instance (or, for a profile with `connect`, the venue's own
        client); `options`: the account's ccxt options; `normaliser`: the profile's, with the
        account's settings it takes (build_source binds them)."""
        self.account_name = account_name
        self.exchange = exchange
        self.exchange_id: str = exchange.id
        self.profile = profile
        self.options: Mapping[str, Any] = options or {}
        self.normaliser = normaliser or profile.normalise
        self.own_figure = profile.figure_of(self.options)
        self.retry = retry
        self.markets_ttl_s = markets_ttl_s
        self.markets_reloaded = False
        self._secrets = tuple(s for s in secrets if s)
        self._markets_at: float | None = None
        self.shared = shared
        self.market_key = market_key or self.exchange_id
        if profile.connect is None:
            self._install_response_hook(profile.server_error)

    def _install_response_hook(self, server_error: Callable[[str], bool] | None) -> None:
        """Records each ccxt response's status, Retry-After and (for a checked call) body in the
        current call's record; `server_error`: the profile's "system error, try again" answer."""
        original = self.exchange.on_rest_response

        def on_rest_response(code, reason, url, method, headers, body, request_headers, request_body):
            record = _last_response.get()
            if record is not None:
                retry_after = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
                record.update(status=code, retry_after_s=parse_retry_after(retry_after),
                              server_error=server_error is not None and isinstance(body, str) and server_error(body))
                if "bodies" in record:
                    record["bodies"].append((code, urlsplit(str(url)).path, body))
            return original(code, reason, url, method, headers, body, request_headers, request_body)

        self.exchange.on_rest_response = on_rest_response

    async def __aenter__(self) -> Source:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.exchange.close()

    # ------------------------------------------------------------ calls

    async def call(self, method: Callable[..., Awaitable[Any]], *args: Any, check: bool = False) -> Any:
        """One ccxt call; any failure comes out as a classified, scrubbed SourceError. With
        `check`, every successful HTTP answer of the call must be complete JSON of the shape the
        exchange documents (ccxt reads a cut body as text, and a cut list as no positions)."""
        record: dict = {"bodies": []} if check else {}
        token = _last_response.set(record)
        try:
            result = await method(*args)
            if check:
                self._check_bodies(record["bodies"])
            return result
        except SourceError:
            raise
        except Exception as e:  # ccxt errors, and parse errors inside ccxt's own parsers
            if check:  # a cut answer that ccxt choked on: say so (error codes are classify's)
                self._check_bodies(record["bodies"], shapes=False)
            raise classify(
                e,
                secrets=self._secrets,
                http_status=record.get("status"),
                retry_after_s=record.get("retry_after_s"),
                server_error=record.get("server_error", False),
            ) from None
        finally:
            _last_response.reset(token)

    def _check_bodies(self, bodies: list[tuple[Any, str, Any]], *, shapes: bool = True) -> None:
        for status, path, body in bodies:
            if isinstance(status, int) and not 200 <= status < 300:
                continue  # an error answer: ccxt raises for it, and classify() names it
            check_body(self.exchange_id, path, body, self.profile.check_body if shapes else None)

    async def _with_retry(self, attempt_once: Callable[[], Awaitable[Any]]) -> Any:
        waited = 0.0
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return await attempt_once()
            except SourceError as e:
                if not e.transient or attempt >= self.retry.attempts:
                    raise
                if e.retry_after_s is not None and e.retry_after_s > self.retry.max_delay_s:
                    raise  # asked for a longer pause than a retry waits: asking sooner only earns more 429s
                delay = self.retry.delay(attempt, e.retry_after_s)
                if waited + delay > self.retry.budget_s:
                    raise
                logger.info("%s: %s; retry %d/%d in %.1fs", self.account_name, e.message, attempt, self.retry.attempts - 1, delay)
                await asyncio.sleep(delay)
                waited += delay
        raise AssertionError("unreachable")  # pragma: no cover

    async def _ensure_markets(self) -> None:
        now = time.monotonic()
        if self._markets_at is not None and now - self._markets_at < self.markets_ttl_s:
            return
        if self.shared is not None:
            async with self.shared.lock(self.market_key):
                cached = self.shared.get(self.market_key, self.markets_ttl_s)
                if cached is not None:  # another account on this exchange loaded them
                    loaded_at, markets, currencies = cached
                    self.exchange.set_markets(markets, currencies)
                    self._markets_at = loaded_at
                    return
                await self._load_markets(now)
                if self._markets_at == now:
                    self.shared.put(self.market_key, now, self.exchange.markets, self.exchange.currencies)
            return
        await self._load_markets(now)

    async def _load_markets(self, now: float) -> None:
        if self._markets_at is None:
            await self.call(self.exchange.load_markets)
        else:
            try:
                await self.call(self.exchange.load_markets, True)
            except SourceError as e:
                # stale markets still parse positions; try again on the next call
                logger.warning("%s: refreshing markets failed, keeping the old ones: %s", self.account_name, e.message)
                return
        if not self.exchange.markets:
            # a cut or empty answer parses as "no markets" in ccxt: never keep that for a day
            self.exchange.markets = None
            raise SourceError("transient", "the exchange listed no markets (empty or malformed answer)")
        self._markets_at = now
        self.markets_reloaded = True

    async def gather(self, *calls: Awaitable[Any]) -> list[Any]:
        return await _gather(*calls)

    async def _fetch_raw(self) -> Raw:
        self.markets_reloaded = False
        if self.profile.connect is None:
            await self._ensure_markets()
        return await (self.profile.fetch or fetch_account)(self)

    # ------------------------------------------------------------ public

    @property
    def markets(self) -> dict:
        """ccxt's markets as last loaded ({} before, and for a venue reached by its own client)."""
        return (self.exchange.markets or {}) if self.profile.connect is None else {}

    async def fetch_snapshot(self) -> AccountSnapshot:
        """Balance and positions, fetched concurrently, normalised; `fetched_at` is now (UTC)."""
        balance, positions = await self._with_retry(self._fetch_raw)
        try:
            snapshot = self.normaliser(self.account_name, self.exchange_id, balance, positions, self.markets)
        except SourceError:
            raise
        except (KeyError, ValueError, TypeError, ArithmeticError, IndexError, AttributeError) as e:
            # an answer of an unexpected shape (AttributeError: a str where an object belongs)
            raise SourceError("data", f"cannot read the exchange's answer: {classify(e, secrets=self._secrets).message}") from None
        return replace(snapshot, fetched_at=datetime.now(UTC), own_figure=snapshot.own_figure or self.own_figure)

    async def fetch_marks(self, symbols: Iterable[str]) -> dict[str, float]:
        """Mark prices (public endpoints), for re-pricing between full polls. Unknown symbols are left out."""
        wanted = sorted(set(symbols))
        if not wanted:
            return {}

        async def attempt() -> dict:
            await self._ensure_markets()
            known = [s for s in wanted if s in (self.exchange.markets or {})]
            if not known:
                return {}
            if self.exchange.has.get("fetchMarkPrices"):
                return await self.call(self.exchange.fetch_mark_prices, known)
            return await self.call(self.exchange.fetch_tickers, known)

        tickers = await self._with_retry(attempt)
        marks = {}
        for symbol in wanted:
            mark = (tickers.get(symbol) or {}).get("markPrice")
            if isinstance(mark, int | float) and math.isfinite(mark) and mark > 0:
                marks[symbol] = float(mark)
        return marks


async def _gather(*calls: Awaitable[Any]) -> list[Any]:
    """The results of concurrent calls; when any failed, the gravest SourceError (credentials
    before data before transient) once all have ended."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        for error in errors:
            if not isinstance(error, SourceError):
                raise error
        raise min(errors, key=lambda e: _SEVERITY[e.kind])
    return results


def check_body(exchange_id: str, path: str, body: Any, shape: BodyCheck | None = None) -> Any:
    """The parsed JSON of one raw HTTP answer, or SourceError("data") naming the endpoint when
    it is not complete JSON or (`shape`, the exchange's own check) not of the documented shape."""
    if not isinstance(body, str | bytes | bytearray):
        raise SourceError("data", f"{exchange_id} {path}: no answer body")
    try:
        data = json.loads(body)
    except ValueError:  # also a cut UTF-8 sequence (UnicodeDecodeError)
        raise SourceError("data", f"{exchange_id} {path}: the answer is not complete JSON ({len(body.encode(errors='replace') if isinstance(body, str) else body)} bytes: cut short or garbled)") from None
    if shape is not None:
        shape(path, data)
    return data


def exchange_class(exchange_id: str, *, streaming: bool = False) -> Any:
    """ccxt's async exchange class for an id, or None. With `streaming`, ccxt.pro's class for it:
    the same REST methods plus the websocket ones, so that one instance (one HTTP session, one
    TLS context, one rate limiter) serves both an account's polls and its private stream."""
    if streaming:
        from alerter.lazy import load_pro_exchange

        return load_pro_exchange(exchange_id)  # that one class, not ccxt.pro's every exchange
    import ccxt.async_support as module

    if exchange_id not in module.exchanges:
        return None
    return getattr(module, exchange_id, None)


# ccxt's names for the account's credentials, in its constructor's table
CCXT_CREDENTIALS = {"api_key": "apiKey", "secret": "secret", "password": "password", "uid": "uid", "wallet_address": "walletAddress"}


def ccxt_config(account: Account, timeout_s: float, *, keys: bool = True) -> dict[str, Any]:
    """The ccxt constructor's table: the account's credentials (`keys`: False for a public
    connection), rate limiting, the timeout, the profile's defaults and the account's `ccxt`
    table deep-merged over them."""
    config: dict[str, Any] = {"enableRateLimit": True, "timeout": int(timeout_s * 1000)}
    if keys:
        config |= {CCXT_CREDENTIALS[key]: value for key, value in account.credentials().items() if key in CCXT_CREDENTIALS}
    return deep_merge(deep_merge(account_profile(account).ccxt_defaults, config), account.ccxt)


def account_profile(account: Account) -> Profile:
    # the registry is imported here, not with this module: alerter.sources imports this module,
    # and `python -m alerter.sources.registry` must find the registry not yet imported
    from alerter.sources.registry import profile_for

    try:
        return profile_for(account)
    except KeyError:
        raise ConfigError(f'account {account.name!r}: no profile for {account.exchange!r} (or set profile = "generic")') from None


def bound_normaliser(normalise: Normaliser, account: Account) -> Normaliser:
    """`normalise` with the account's settings it takes: its keyword-only parameters without a
    default are account settings by name (the generic profile's `balance_includes_pnl`)."""
    wanted = [p.name for p in inspect.signature(normalise).parameters.values() if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    return functools.partial(normalise, **{name: getattr(account, name) for name in wanted}) if wanted else normalise


def build_source(
    account: Account,
    *,
    timeout_s: float = 10,
    retry: RetryPolicy | None = None,
    markets_ttl_s: float = MARKETS_TTL_S,
    shared: SharedMarkets | None = None,
    market_key: str | None = None,
    streaming: bool = False,
) -> Source:
    """A Source for the account, read by its profile: ccxt's async exchange with the account's
    keys, rate limiting, the timeout, its profile's defaults and the account's `ccxt` table
    deep-merged over them (or, for a profile with `connect`, the venue's own client). With
    `shared`, its markets are shared with every source of the same `market_key`
    (alerter.plan.market_key: the exchange and how it is reached). With `streaming` (the account
    streams, alerter.sources.stream), the exchange is ccxt.pro's class with the stream's options,
    and the account's private stream opens on this same instance."""
    profile = account_profile(account)
    if profile.connect is not None:
        client = profile.connect(account, timeout_s)
    else:
        cls = exchange_class(account.exchange, streaming=streaming)
        if cls is None:
            raise ConfigError(f"account {account.name!r}: unknown ccxt exchange id {account.exchange!r}")
        config = ccxt_config(account, timeout_s)
        if streaming and profile.stream is not None:
            config = deep_merge(config, {"options": dict(profile.stream.options)})
        client = cls(config)
    return Source(
        account.name,
        client,
        profile,
        options=options_of(account.ccxt),
        normaliser=bound_normaliser(profile.normalise, account),
        secrets=account.credentials().values(),
        retry=retry or RetryPolicy(),
        markets_ttl_s=markets_ttl_s,
        shared=shared,
        market_key=market_key,
    )


def check_capabilities(exchange_id: str) -> list[str]:
    """What stops `exchange_id` from being monitored (empty when nothing). Imports ccxt, unless
    its profile reaches the venue by its own client (`connect`)."""
    from alerter.sources.registry import PROFILES

    if exchange_id in PROFILES and PROFILES[exchange_id].connect is not None:
        return []
    cls = exchange_class(exchange_id)
    if cls is None:
        return [f"unknown ccxt exchange id {exchange_id!r}"]
    has = cls().has  # no keys, no network: the class's capability table
    problems = []
    if not has.get("fetchBalance"):
        problems.append(f"ccxt's {exchange_id} cannot fetch balances (has.fetchBalance is false)")
    if not has.get("fetchPositions"):
        problems.append(f"ccxt's {exchange_id} cannot fetch positions (has.fetchPositions is false): no margin ratio possible")
    return problems
