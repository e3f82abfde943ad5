"""One immutable plan per account, worked out once from the settings (and again on reload).

    plans(settings)["main"].thresholds      # the account's overrides over the global thresholds
    plans(settings)["main"].poll_interval   # full polls, shortened to price_interval for "poll"
    plans(settings)["main"].market_key      # accounts with equal keys share markets and mark prices
    plans(settings)["main"].channels        # the channels whose `accounts` filter lets it through

Pure: settings in, plans out. The daemon, `check` and the views read the plans; nothing below
them goes back to the settings for an account's rule. Built from validated settings only (every
account has a profile).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta

from alerter.config import AccountConfig, Settings
from alerter.models import OwnFigure, RepeatSchedule, Thresholds
from alerter.sources.profile import Profile
from alerter.sources.registry import profile_for


@dataclass(frozen=True)
class AccountPlan:
    name: str
    exchange: str  # the ccxt id
    profile: Profile
    thresholds: Thresholds
    repeat: RepeatSchedule
    poll_interval: timedelta  # between full polls
    between_polls: str  # "reprice" | "poll" | "off": asked for, or the profile's default
    repricing: bool  # re-priced from mark prices every [daemon] price_interval
    market_key: str  # equal for accounts that can share one markets download and one mark-price request
    channels: tuple[str, ...]  # the channels that hear it (their `accounts` filter); levels are per alert
    streams: bool = False  # websocket streams (alerter.streams): asked for ([daemon] or its own) and supported
    own_figure: OwnFigure | None = None  # the exchange's own risk figure for this account's mode, if it has one
    approximate: bool = False  # profile = "generic": ccxt's unified figures, not the exchange's own


def market_key(account: AccountConfig) -> str:
    """The exchange and how it is reached (its URLs and options): the markets it lists and the
    mark prices it quotes are the same for every account with the same key."""
    return json.dumps([account.exchange, account.ccxt.get("urls"), account.options], sort_keys=True, default=str)


def plan(settings: Settings, account: AccountConfig) -> AccountPlan:
    profile = profile_for(account)
    price_interval = settings.daemon.price_interval
    between = account.between_polls or ("reprice" if profile.reprice else "off")
    interval = account.poll_interval or settings.daemon.poll_interval
    if between == "poll" and price_interval:
        interval = min(interval, price_interval)
    return AccountPlan(
        name=account.name,
        exchange=account.exchange,
        profile=profile,
        thresholds=account.thresholds.over(settings.thresholds.value()),
        repeat=settings.repeat.schedule(),
        poll_interval=interval,
        between_polls=between,
        repricing=between == "reprice" and price_interval is not None,
        market_key=market_key(account),
        channels=tuple(c.name for c in settings.channels if c.accounts is None or account.name in c.accounts),
        streams=(settings.daemon.streams if account.streams is None else account.streams) and profile.stream is not None
        and profile.stream.available(account),
        own_figure=profile.figure_of(account.options),
        approximate=account.approximate,
    )


def plans(settings: Settings) -> dict[str, AccountPlan]:
    """Every configured account's plan, in the configuration's order."""
    return {account.name: plan(settings, account) for account in settings.accounts}
