"""The daemon's real parts, assembled from the settings: the SQLite store, apprise, one ccxt
source per account — and the checks that need those heavy libraries before anything starts."""

from __future__ import annotations

import logging

from alerter.config import Settings
from alerter.daemon import Daemon, utcnow
from alerter.models import Alert, AlertKind, Level

logger = logging.getLogger(__name__)


def preflight(settings: Settings) -> None:
    """What `validate` cannot check without the heavy libraries: apprise can use every channel
    URL, and ccxt's exchange classes can report balances and positions. Raises ConfigError."""
    from alerter.config import ConfigError
    from alerter.notify import check_url
    from alerter.sources import check_capabilities

    problems = []
    for i, channel in enumerate(settings.channels):
        error = check_url(channel.url.get_secret_value())
        if error:
            problems.append(f"channels[{i}].url: {error}")
    for i, account in enumerate(settings.accounts):
        problems += [f"accounts[{i}].exchange: {p}" for p in check_capabilities(account.exchange)]
    if problems:
        raise ConfigError(problems)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings, for the log redactor."""
    values = [c.url.get_secret_value() for c in settings.channels]
    if settings.daemon.heartbeat_url is not None:
        values.append(settings.daemon.heartbeat_url.get_secret_value())
    for a in settings.accounts:
        values += [s.get_secret_value() for s in (a.api_key, a.secret, a.password, a.uid) if s is not None]
    return values


async def announce_failure(settings: Settings, reason: str) -> None:
    """Tell every channel that alerter cannot work (e.g. its database cannot be opened), without
    the database. Best effort: failures are logged."""
    from alerter.notify import Notifier, render

    notifier = Notifier(settings.channels)
    notice = Alert(kind=AlertKind.BLIND, level=Level.OK, account="alerter", scope="database", created_at=utcnow(), reason=reason)
    for channel in settings.channels:
        title, body = render([notice], markdown=notifier.markdown(channel.name))
        outcome = await notifier.send(channel.name, title, body)
        if not outcome.ok:
            logger.error("channel %s: failure notice not delivered: %s", channel.name, outcome.error)


def build_daemon(settings: Settings, **kwargs) -> Daemon:
    """The daemon with its real parts: the SQLite store, apprise, one ccxt source per account."""
    from alerter.notify import Notifier
    from alerter.sources import SharedMarkets, build_source
    from alerter.store import Store

    store = Store(settings.daemon.database)
    timeout = settings.daemon.request_timeout.total_seconds()
    markets = SharedMarkets()
    sources = {a.name: build_source(a, timeout_s=timeout, shared=markets) for a in settings.accounts}
    return Daemon(settings, store=store, notifier=Notifier(settings.channels), sources=sources, **kwargs)
