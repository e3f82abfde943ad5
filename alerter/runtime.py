"""The daemon's real parts, assembled from the settings: the SQLite store, apprise, one ccxt
source per account — and the checks that need those heavy libraries before anything starts."""

from __future__ import annotations

import json
import logging

from typing import TYPE_CHECKING

from alerter.config import Settings
from alerter.models import Alert, AlertKind, Level
from alerter.pipeline import utcnow

if TYPE_CHECKING:
    from alerter.daemon import Daemon

logger = logging.getLogger(__name__)


def preflight(settings: Settings) -> None:
    """The start-up checks beyond the settings' own validation, shared by `run`, `check`, `demo`
    and `validate` (which must refuse everything `run` refuses): apprise can use every channel
    URL; ccxt's exchange classes can report balances and positions, and accept each account's
    `ccxt` table. Imports apprise when there are channels and ccxt when there are accounts (no
    network, no keys used). Raises ConfigError listing every problem."""
    from alerter.config import ConfigError

    problems = []
    if settings.channels:
        from alerter.notify import check_url

        for i, channel in enumerate(settings.channels):
            for key, url in channel.urls().items():
                error = check_url(url.get_secret_value())
                if error:
                    problems.append(f"channels[{i}].{key}: {error}")
    if settings.accounts:
        from alerter.sources import check_capabilities

        capabilities: dict[str, list[str]] = {}  # per exchange id: 10,000 accounts, one look each
        built: dict[str, str | None] = {}  # per distinct `ccxt` table
        for i, account in enumerate(settings.accounts):
            if account.exchange not in capabilities:
                capabilities[account.exchange] = check_capabilities(account.exchange)
            problems += [f"accounts[{i}].exchange: {p}" for p in capabilities[account.exchange]]
            if account.ccxt and not capabilities[account.exchange]:
                key = json.dumps([account.exchange, account.ccxt], sort_keys=True, default=repr)
                if key not in built:
                    built[key] = construction_problem(account)
                if built[key]:
                    problems.append(f"accounts[{i}].ccxt: {built[key]}")
    if problems:
        raise ConfigError(problems)


def construction_problem(account) -> str | None:
    """Why ccxt cannot build the account's exchange from its `ccxt` table (None if it can): a
    table such as `options = 5` or `rateLimit = -1` fails in ccxt's constructor, before any
    request. The message holds none of the account's secrets."""
    from alerter import secrets
    from alerter.sources import describe
    from alerter.sources.exchange import ccxt_config, exchange_class

    try:
        exchange_class(account.exchange)(ccxt_config(account, timeout_s=10))
    except Exception as e:  # whatever ccxt's constructor makes of a user's table
        return f"ccxt cannot build {account.exchange} with this table ({type(e).__name__}: {describe(e, secrets.of(account))})"
    return None


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
    Its secrets are remembered (masked in every log line) before anything about it can be logged."""
    from alerter import secrets
    from alerter.config import load_settings

    settings = load_settings(path)
    secrets.remember(secrets.of(settings))
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
        """The account's Source; for an account that streams (where its exchange's stream can
        share it), on ccxt.pro's class, whose one instance also carries the account's private
        stream (alerter.sources.stream.AccountFeed)."""
        from alerter.plan import plan
        from alerter.sources import build_source

        from alerter.sources.stream import shares_source

        account_plan = plan(settings, account)
        return build_source(account, timeout_s=settings.daemon.request_timeout.total_seconds(), shared=self.markets,
                            market_key=account_plan.market_key, streaming=account_plan.streams and shares_source(account.exchange))

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
    from alerter.daemon import Daemon
    from alerter.store import Store

    parts = Parts(config)
    store = Store(settings.daemon.database)
    sources = {a.name: parts.source(settings, a) for a in settings.accounts}
    daemon = Daemon(settings, store=store, notifier=parts.notifier(settings), sources=sources, **kwargs)
    daemon.parts = parts
    return daemon
