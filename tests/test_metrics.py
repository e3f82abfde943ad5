"""The metrics endpoint scraped over real loopback HTTP, and the heartbeat against a real server."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from alerter import metrics as metrics_module
from alerter.metrics import Metrics, parse_address, send_heartbeat, start_metrics_server
from alerter.models import Health, Level, ScopeState

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ISO = "isolated:BTC/USDT:USDT:long"


def health(scope: str, ratio: float, equity: float = 1000.0) -> Health:
    return Health(account="demo", exchange="binanceusdm", scope=scope, margin_ratio=ratio, equity=equity,
                  maintenance_margin=ratio * equity if math.isfinite(ratio) else 50.0, deposit_needed=0.0, liquidation_move=None)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


def test_scrape_over_http():
    m = Metrics()

    async def scenario():
        server = await start_metrics_server("127.0.0.1:0", m)
        try:
            assert server.port > 0
            states = {"account": ScopeState("demo", "account", level=Level.CALL), ISO: ScopeState("demo", ISO)}
            m.observe_poll("demo", [health("account", 0.72), health(ISO, math.inf, equity=-5.0)], states, at=AT)
            m.observe_poll_error("demo", "transient")
            m.observe_poll_error("demo", "transient")
            m.observe_poll_error("other", "credentials")
            m.observe_delivery("phone", True)
            m.observe_delivery("phone", False)
            m.observe_delivery("phone", True)
            first = await scrape(server.url)
            # the isolated position is closed: its series go away
            m.observe_poll("demo", [health("account", 0.40)], {"account": ScopeState("demo", "account")}, at=AT)
            second = await scrape(f"http://127.0.0.1:{server.port}/metrics")
            missing = await scrape(f"http://127.0.0.1:{server.port}/other")
            return first, second, missing
        finally:
            await server.close()

    (status, content_type, text), (_, _, text2), missing = asyncio.run(scenario())
    assert status == 200 and content_type.startswith("text/plain")
    assert missing[0] == 404
    values = samples(text)
    acct = (("account", "demo"), ("scope", "account"))
    iso = (("account", "demo"), ("scope", ISO))
    assert values[("alerter_margin_ratio", acct)] == pytest.approx(0.72)
    assert values[("alerter_margin_ratio", iso)] == math.inf
    assert "+Inf" in text
    assert values[("alerter_equity", iso)] == -5.0
    assert values[("alerter_maintenance_margin", acct)] == pytest.approx(720.0)
    assert values[("alerter_level", acct)] == 2 and values[("alerter_level", iso)] == 0
    assert values[("alerter_last_poll_success_timestamp_seconds", (("account", "demo"),))] == AT.timestamp()
    assert values[("alerter_poll_errors_total", (("account", "demo"), ("kind", "transient")))] == 2
    assert values[("alerter_poll_errors_total", (("account", "other"), ("kind", "credentials")))] == 1
    assert values[("alerter_deliveries_total", (("channel", "phone"), ("outcome", "sent")))] == 2
    assert values[("alerter_deliveries_total", (("channel", "phone"), ("outcome", "failed")))] == 1
    after = samples(text2)
    assert ("alerter_margin_ratio", iso) not in after and ("alerter_level", iso) not in after
    assert after[("alerter_margin_ratio", acct)] == pytest.approx(0.40)
    assert after[("alerter_level", acct)] == 0


def test_heartbeats_are_counted_and_the_last_success_kept():
    m = Metrics()
    assert m.registry.get_sample_value("alerter_last_heartbeat_success_timestamp_seconds") == 0  # never yet
    m.observe_heartbeat(True, at=AT.timestamp())
    m.observe_heartbeat(False, at=AT.timestamp() + 60)
    values = samples(m.exposition().decode())
    assert values[("alerter_heartbeats_total", (("outcome", "sent"),))] == 1
    assert values[("alerter_heartbeats_total", (("outcome", "failed"),))] == 1
    assert values[("alerter_last_heartbeat_success_timestamp_seconds", ())] == AT.timestamp()  # a failure keeps it


def test_own_registry_not_the_global_one():
    from prometheus_client import REGISTRY

    m = Metrics()
    m.observe_poll_error("demo", "data")
    assert m.registry is not REGISTRY
    assert REGISTRY.get_sample_value("alerter_poll_errors_total", {"account": "demo", "kind": "data"}) is None
    assert m.registry.get_sample_value("alerter_poll_errors_total", {"account": "demo", "kind": "data"}) == 1


def test_module_level_functions_use_the_default_metrics():
    before = metrics_module.METRICS.registry.get_sample_value("alerter_deliveries_total", {"channel": "t-mod", "outcome": "failed"}) or 0
    metrics_module.observe_delivery("t-mod", False)
    metrics_module.observe_poll("t-mod", [health("account", 0.1)], {})
    metrics_module.observe_poll_error("t-mod", "data")
    reg = metrics_module.METRICS.registry
    assert reg.get_sample_value("alerter_deliveries_total", {"channel": "t-mod", "outcome": "failed"}) == before + 1
    assert reg.get_sample_value("alerter_margin_ratio", {"account": "t-mod", "scope": "account"}) == pytest.approx(0.1)


def test_address_in_use_raises_oserror():
    async def scenario():
        first = await start_metrics_server("127.0.0.1:0", Metrics())
        try:
            with pytest.raises(OSError):
                await start_metrics_server(f"127.0.0.1:{first.port}", Metrics())
        finally:
            await first.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("text, expected", [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:0", ("::1", 0)), (":9464", ("0.0.0.0", 9464)), ("9464", ("127.0.0.1", 9464)),
])
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["localhost", "host:port", "1.2.3.4:70000"])
def test_parse_address_rejects(text):
    with pytest.raises(ValueError):
        parse_address(text)


# ---------------------------------------------------------------- heartbeat

async def _with_server(handler, body):
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        return await body(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def test_heartbeat_ok_and_http_error(caplog):
    hits = []

    async def handler(request):
        hits.append(request.path_qs)
        return web.Response(status=200 if request.path.startswith("/ping") else 503, text="ok")

    async def body(port):
        ok = await send_heartbeat(f"http://127.0.0.1:{port}/ping/SECRET-UUID?token=SECRET", timeout=5)
        bad = await send_heartbeat(f"http://127.0.0.1:{port}/down/SECRET-UUID", timeout=5)
        return ok, bad

    with caplog.at_level(logging.WARNING, logger="alerter.metrics"):
        ok, bad = asyncio.run(_with_server(handler, body))
    assert ok is True and bad is False
    assert hits == ["/ping/SECRET-UUID?token=SECRET", "/down/SECRET-UUID"]
    assert "heartbeat to 127.0.0.1 failed: HTTP 503" in caplog.text
    assert "SECRET" not in caplog.text


def test_heartbeat_timeout_and_refused_never_raise(caplog, closed_port):
    release = None

    async def slow(request):
        await release.wait()
        return web.Response(text="late")

    async def body(port):
        nonlocal release
        release = asyncio.Event()
        try:
            return await send_heartbeat(f"http://127.0.0.1:{port}/SECRET", timeout=0.2)
        finally:
            release.set()

    with caplog.at_level(logging.WARNING, logger="alerter.metrics"):
        assert asyncio.run(_with_server(slow, body)) is False
        assert asyncio.run(send_heartbeat(f"http://127.0.0.1:{closed_port}/SECRET", timeout=2)) is False
        assert asyncio.run(send_heartbeat("not a url SECRET", timeout=2)) is False
    assert caplog.text.count("heartbeat to") == 3
    assert "SECRET" not in caplog.text
