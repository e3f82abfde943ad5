"""Prometheus metrics and the heartbeat: how an outside monitor sees that alerter itself works.

Metrics live in their own `CollectorRegistry` (never prometheus-client's global one), served
at ``/metrics`` by a small aiohttp app. Label sets stay bounded: ``scope`` is ``account`` or
the isolated position's ``isolated:SYMBOL:SIDE`` (the scope string alerts and the database
use), never an order or position id; a scope that disappears (position closed) is removed.

    alerter_margin_ratio{account,scope}             maintenance ÷ equity (+Inf: equity ≤ 0)
    alerter_equity{account,scope}                   equity (isolated: the position's collateral)
    alerter_maintenance_margin{account,scope}
    alerter_level{account,scope}                    0 ok, 1 warning, 2 call, 3 critical
    alerter_last_poll_success_timestamp_seconds{account}
    alerter_poll_errors_total{account,kind}         kind: transient | credentials | data
    alerter_deliveries_total{channel,outcome}       outcome: sent | failed
    alerter_stream_up{exchange,kind,account}        1 while a websocket stream delivers; kind: prices
                                                    (one per exchange, account="") | account
    alerter_stream_last_message_age_seconds{exchange,kind,account}
    alerter_acknowledged{account,scope}             1 while an acknowledgement holds the scope's repeats back
    alerter_heartbeats_total{outcome}               heartbeat requests (heartbeat_url) by outcome: sent | failed
    alerter_last_heartbeat_success_timestamp_seconds

The daemon calls `observe_poll`, `observe_poll_error`, `observe_delivery` and `observe_heartbeat` (module-level,
on the default `METRICS`); tests make their own `Metrics()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from alerter.models import Ack, Health, ScopeState

logger = logging.getLogger(__name__)


class Metrics:
    """One registry and its metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        scope = ["account", "scope"]
        r = self.registry
        self.margin_ratio = Gauge("alerter_margin_ratio", "Maintenance margin ÷ equity (1 = liquidation)", scope, registry=r)
        self.equity = Gauge("alerter_equity", "Equity of the scope (isolated: the position's collateral), settle currency", scope, registry=r)
        self.maintenance_margin = Gauge("alerter_maintenance_margin", "Maintenance margin of the scope, settle currency", scope, registry=r)
        self.level = Gauge("alerter_level", "Alert level of the scope: 0 ok, 1 warning, 2 call, 3 critical", scope, registry=r)
        self.last_poll = Gauge("alerter_last_poll_success_timestamp_seconds", "Unix time of the last successful poll", ["account"], registry=r)
        self.poll_errors = Counter("alerter_poll_errors", "Failed polls by kind (transient, credentials, data)", ["account", "kind"], registry=r)
        self.deliveries = Counter("alerter_deliveries", "Delivery attempts by outcome (sent, failed)", ["channel", "outcome"], registry=r)
        stream = ["exchange", "kind", "account"]
        self.stream_up = Gauge("alerter_stream_up", "1 while the websocket stream delivers, 0 while it is down (REST meanwhile)", stream, registry=r)
        self.stream_age = Gauge("alerter_stream_last_message_age_seconds", "Seconds since the stream's last message", stream, registry=r)
        self.acknowledged = Gauge("alerter_acknowledged", "1 while an acknowledgement holds back the scope's repeats", scope, registry=r)
        self.heartbeats = Counter("alerter_heartbeats", "Heartbeat requests (heartbeat_url) by outcome (sent, failed)", ["outcome"], registry=r)
        self.last_heartbeat = Gauge("alerter_last_heartbeat_success_timestamp_seconds", "Unix time of the last heartbeat answered with success", registry=r)
        self._scopes: dict[str, set[str]] = {}
        self._acked: dict[str, set[str]] = {}

    def observe_poll(self, account: str, healths: Iterable[Health], states: Mapping[str, ScopeState], at: datetime | None = None, *, full: bool = True) -> None:
        """One successful poll: the health and level of every scope; scopes gone since the
        last poll of the account are removed. A re-priced estimate (`full=False`) updates the
        figures but not the time of the last successful poll."""
        seen = set()
        for h in healths:
            seen.add(h.scope)
            self.margin_ratio.labels(account, h.scope).set(h.margin_ratio)
            self.equity.labels(account, h.scope).set(h.equity)
            self.maintenance_margin.labels(account, h.scope).set(h.maintenance_margin)
            state = states.get(h.scope)
            if state is not None:
                self.level.labels(account, h.scope).set(int(state.level))
        for gone in self._scopes.get(account, set()) - seen:
            for gauge in (self.margin_ratio, self.equity, self.maintenance_margin, self.level):
                try:
                    gauge.remove(account, gone)
                except KeyError:
                    pass
        self._scopes[account] = seen
        if full:
            self.last_poll.labels(account).set(at.timestamp() if at is not None else time.time())

    def observe_poll_error(self, account: str, kind: str) -> None:
        self.poll_errors.labels(account, kind).inc()

    def observe_acks(self, account: str, acks: Iterable[Ack]) -> None:
        """The account's acknowledgements in force after a decision; the ended ones are removed."""
        acked = {ack.scope for ack in acks}
        for scope in acked:
            self.acknowledged.labels(account, scope).set(1)
        for scope in self._acked.get(account, set()) - acked:
            try:
                self.acknowledged.remove(account, scope)
            except KeyError:
                pass
        self._acked[account] = acked

    def observe_delivery(self, channel: str, ok: bool) -> None:
        self.deliveries.labels(channel, "sent" if ok else "failed").inc()

    def observe_stream(self, exchange: str, kind: str, account: str, up: bool | None, age: Callable[[], float] | None = None) -> None:
        """A stream's state (None: the stream ended, its series are removed); `age` is read at
        every scrape."""
        if up is None:
            for gauge in (self.stream_up, self.stream_age):
                try:
                    gauge.remove(exchange, kind, account)
                except KeyError:
                    pass
            return
        self.stream_up.labels(exchange, kind, account).set(int(up))
        if age is not None:
            self.stream_age.labels(exchange, kind, account).set_function(age)

    def observe_heartbeat(self, ok: bool, at: float | None = None) -> None:
        self.heartbeats.labels("sent" if ok else "failed").inc()
        if ok:
            self.last_heartbeat.set(at if at is not None else time.time())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


METRICS = Metrics()


def observe_poll(account: str, healths: Iterable[Health], states: Mapping[str, ScopeState], at: datetime | None = None, *, full: bool = True) -> None:
    METRICS.observe_poll(account, healths, states, at, full=full)


def observe_poll_error(account: str, kind: str) -> None:
    METRICS.observe_poll_error(account, kind)


def observe_delivery(channel: str, ok: bool) -> None:
    METRICS.observe_delivery(channel, ok)


def observe_stream(exchange: str, kind: str, account: str, up: bool | None, age: Callable[[], float] | None = None) -> None:
    METRICS.observe_stream(exchange, kind, account, up, age)


def observe_acks(account: str, acks: Iterable[Ack]) -> None:
    METRICS.observe_acks(account, acks)


def observe_heartbeat(ok: bool) -> None:
    METRICS.observe_heartbeat(ok)


# ---------------------------------------------------------------- HTTP endpoint

def parse_address(address: str) -> tuple[str, int]:
    """"127.0.0.1:9464", "[::1]:9464", ":9464" (all interfaces) or "9464" → (host, port)."""
    text = address.strip()
    if text.isdigit():
        return "127.0.0.1", int(text)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT like 127.0.0.1:9464, got {address!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


@dataclass
class MetricsServer:
    runner: object
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_metrics_server(address: str, metrics: Metrics | None = None) -> MetricsServer:
    """Serve ``/metrics`` on `address` ("127.0.0.1:9464"; port 0 picks a free port) until
    `close()`. Raises OSError when the address cannot be bound, ValueError when malformed."""
    from aiohttp import web

    host, port = parse_address(address)
    source = metrics or METRICS

    async def handle_metrics(request: web.Request) -> web.Response:
        return web.Response(body=source.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    logger.info("metrics on http://%s:%d/metrics", host, bound)
    return MetricsServer(runner=runner, host=host, port=bound)


# ---------------------------------------------------------------- heartbeat

async def send_heartbeat(url: str, timeout: float) -> bool:
    """GET `url` (a dead man's switch: healthchecks.io, Uptime Kuma push, …). True on a 2xx/3xx
    answer. Never raises; a failure is logged with the URL's host only (the path and query
    of a push URL are its secret)."""
    import aiohttp

    host = urlsplit(url).hostname or "?"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(url, allow_redirects=True) as response:
                await response.read()
                if response.status >= 400:
                    logger.warning("heartbeat to %s failed: HTTP %d", host, response.status)
                    return False
                return True
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
        # aiohttp's messages may quote the whole URL: name only the error type and the host
        logger.warning("heartbeat to %s failed: %s", host, type(e).__name__)
        return False
