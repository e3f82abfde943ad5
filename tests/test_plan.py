"""alerter.plan: what each account's plan says, from the settings alone (pure, no I/O)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerter.config import build_settings
from alerter.models import RepeatSchedule, Thresholds
from alerter.plan import plans
from alerter.sources.registry import GENERIC, PROFILES

KEYS = {"api_key": "k", "secret": "s"}


def account(name: str, exchange: str = "binanceusdm", **extra) -> dict:
    keys = {**KEYS, "password": "p"} if exchange == "okx" else KEYS
    return {"name": name, "exchange": exchange, **keys, **extra}


def plan_of(config: dict, name: str = "a"):
    return plans(build_settings(config))[name]


def test_defaults_are_the_models_defaults():
    p = plan_of({"accounts": [account("a")]})
    assert (p.name, p.exchange, p.profile) == ("a", "binanceusdm", PROFILES["binanceusdm"])
    assert p.thresholds == Thresholds() == Thresholds(warning=0.5, call=0.7, critical=0.85, hysteresis=0.05, target=0.4)
    assert p.repeat == RepeatSchedule() == RepeatSchedule(warning=timedelta(hours=6), call=timedelta(minutes=30),
                                                          critical=timedelta(minutes=5), blind=timedelta(hours=1))
    assert (p.poll_interval, p.between_polls, p.repricing, p.approximate) == (timedelta(seconds=60), "reprice", True, False)
    assert p.channels == ()


@pytest.mark.parametrize(("config", "expected"), [
    ({"thresholds": {"warning": "45%"}, "accounts": [account("a", "bybit", thresholds={"call": "60%"})]},
     Thresholds(warning=0.45, call=0.6, critical=0.85, hysteresis=0.05, target=0.4)),
    ({"accounts": [account("a", thresholds={"target": 0.3, "hysteresis": "2%"})]},
     Thresholds(warning=0.5, call=0.7, critical=0.85, hysteresis=0.02, target=0.3)),
    ({"thresholds": {"critical": 0.9}, "accounts": [account("a")]},
     Thresholds(warning=0.5, call=0.7, critical=0.9, hysteresis=0.05, target=0.4)),
], ids=["override-over-global", "override-only", "global-only"])
def test_an_accounts_thresholds_are_its_overrides_over_the_global_ones(config, expected):
    assert plan_of(config).thresholds == expected


def test_the_repeat_schedule_comes_from_the_config():
    p = plan_of({"repeat": {"warning": "never", "critical": "2m"}, "accounts": [account("a")]})
    assert p.repeat == RepeatSchedule(warning=None, call=timedelta(minutes=30), critical=timedelta(minutes=2), blind=timedelta(hours=1))


@pytest.mark.parametrize(("daemon", "extra", "interval", "between", "repricing"), [
    ({}, {}, 60, "reprice", True),
    ({"poll_interval": "2m"}, {"poll_interval": "30s"}, 30, "reprice", True),
    ({"price_interval": "5s"}, {"between_polls": "poll"}, 5, "poll", False),  # polls fully every price_interval
    ({"price_interval": "5s"}, {"between_polls": "poll", "poll_interval": "2s"}, 2, "poll", False),  # shorter already
    ({"price_interval": "off"}, {"between_polls": "poll"}, 60, "poll", False),  # no price interval: nothing to shorten to
    ({"price_interval": "off"}, {}, 60, "reprice", False),
    ({}, {"between_polls": "off"}, 60, "off", False),
], ids=["default", "account-interval", "poll", "poll-shorter", "poll-no-prices", "reprice-no-prices", "off"])
def test_poll_interval_and_between_polls(daemon, extra, interval, between, repricing):
    p = plan_of({"daemon": daemon, "accounts": [account("a", **extra)]})
    assert (p.poll_interval, p.between_polls, p.repricing) == (timedelta(seconds=interval), between, repricing)


def test_a_generic_account_is_approximate_and_not_repriced():
    p = plan_of({"accounts": [account("a", "kraken", profile="generic", balance_includes_pnl=True)]})
    assert (p.profile, p.approximate, p.between_polls, p.repricing) == (GENERIC, True, "off", False)


def test_the_market_key_is_shared_by_accounts_reached_the_same_way():
    urls = {"urls": {"api": {"public": "http://127.0.0.1:1/fapi/v1"}}}
    other = {"urls": {"api": {"public": "http://127.0.0.1:2/fapi/v1"}}}
    p = plans(build_settings({"accounts": [
        account("a", ccxt=urls), account("b", ccxt=urls),  # same exchange, same URLs
        account("c", ccxt=other),  # same exchange elsewhere
        account("d", "bybit", ccxt=urls),  # another exchange at the same URLs
        account("e", ccxt={**urls, "options": {"recvWindow": 10_000}}),  # other options
        account("f"), account("g"),  # both the exchange's own URLs
    ]}))
    assert p["a"].market_key == p["b"].market_key
    assert p["f"].market_key == p["g"].market_key
    keys = [p[n].market_key for n in "acdef"]
    assert len(set(keys)) == len(keys)


def test_channels_hear_the_accounts_their_filter_names():
    p = plans(build_settings({
        "accounts": [account("a"), account("b"), account("c")],
        "channels": [
            {"name": "all", "url": "json://127.0.0.1:9/all"},
            {"name": "only-a", "url": "json://127.0.0.1:9/a", "accounts": ["a"]},
            {"name": "a-and-b", "url": "json://127.0.0.1:9/ab", "accounts": ["b", "a"], "min_level": "critical"},
        ],
    }))
    assert {name: plan.channels for name, plan in p.items()} == {
        "a": ("all", "only-a", "a-and-b"),
        "b": ("all", "a-and-b"),  # the level filter is per alert (notify.route), not in the plan
        "c": ("all",),
    }


def test_no_accounts_no_plans_and_the_plans_keep_the_configured_order():
    assert plans(build_settings({})) == {}
    assert list(plans(build_settings({"accounts": [account("z"), account("a"), account("m")]}))) == ["z", "a", "m"]
