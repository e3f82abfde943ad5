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


def load_checked(path) -> Settings:
    """The configuration file as `run` accepts it at start: parsed, validated and preflighted.
    Its secrets join the log redactor before anything about it can be logged."""
    from alerter.config import load_settings
    from alerter.logs import REDACTOR

    settings = load_settings(path)
    REDACTOR.add(secrets_of(settings))
    preflight(settings)
    return settings


class Parts:
    """Builds the daemon's real parts from settings. The daemon keeps it, to rebuild the parts a
    reload changes (`config`: the file to re-read; None when there is none, as in the demo)."""

    def __init__(self, config=None):
        from alerter.sources import SharedMarkets

        self.config = config
        self.markets = SharedMarkets()  # one markets download per exchange, for every account

    def load(self) -> Settings:
        from alerter.config import ConfigError

        if self.config is None:
            raise ConfigError("no configuration file to re-read (this daemon was not started from one)")
        return load_checked(self.config)

    def source(self, settings: Settings, account):
        from alerter.sources import build_source

        return build_source(account, timeout_s=settings.daemon.request_timeout.total_seconds(), shared=self.markets)

    def notifier(self, settings: Settings):
        from alerter.notify import Notifier

        return Notifier(settings.channels)

    def log_level(self, settings: Settings) -> None:
        root = logging.getLogger()
        root.setLevel(settings.daemon.log_level.upper())
        for name in ("apscheduler", "asyncio", "aiohttp.access"):  # as setup_logging: chatty libraries
            logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def build_daemon(settings: Settings, *, config=None, **kwargs) -> Daemon:
    """The daemon with its real parts: the SQLite store, apprise, one ccxt source per account.
    With `config` (the file it was loaded from), SIGHUP re-reads that file."""
    from alerter.store import Store

    parts = Parts(config)
    store = Store(settings.daemon.database)
    sources = {a.name: parts.source(settings, a) for a in settings.accounts}
    daemon = Daemon(settings, store=store, notifier=parts.notifier(settings), sources=sources, **kwargs)
    daemon.parts = parts
    return daemon
