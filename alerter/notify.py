"""Channels: which alert goes where (`route`), what the message says (`render`), and the
thin wrapper around apprise that sends it (`Notifier`).

This is the only module that sends through apprise, and it imports apprise only inside the
functions and classes that send or check URLs, so `render` and `route` cost nothing to import.
Before apprise looks a channel's scheme up, alerter.lazy registers the one plugin that serves it
(apprise itself would import all of its plugins, 9 MB).

Secrets: a channel URL usually *is* a credential (a bot token, a webhook path, a password).
apprise masks passwords when it logs a URL but not tokens in the host or path, and at DEBUG
level it (and urllib3 under it) logs the full request URL. Every channel URL is therefore
remembered by alerter.secrets before apprise sees it, apprise's and urllib3's loggers are masked,
and every error text we return goes through the same `secrets.mask`.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from alerter import display, secrets
from alerter.models import Alert, AlertKind, Level

logger = logging.getLogger(__name__)

TEXT_SCHEMES = frozenset({"mailto", "mailtos", "email", "smtp", "smtps"})


# ---------------------------------------------------------------- secrets

def _hide(url: str) -> None:
    """Mask this URL's secrets (alerter.secrets) in every log and text from now on, apprise's
    and urllib3's DEBUG records included."""
    from alerter.logs import mask_library_logs

    secrets.remember(secrets.of(SecretStr(url)))
    mask_library_logs()


# ---------------------------------------------------------------- routing

def route(alert: Alert, channels: Iterable) -> list[str]:
    """Names of the channels that get `alert`, of those that hear its account (`channels`: the
    account's, alerter.plan.AccountPlan.channels). RAISED/REPEAT/RESOLVED need the channel's
    min_level ≤ alert.level (a resolved alert carries its episode's peak, so a channel that heard
    the escalation hears the resolution); BLIND/RESTORED go to every one."""
    names = []
    for channel in channels:
        if alert.kind in (AlertKind.BLIND, AlertKind.RESTORED) or alert.level >= channel.level:
            names.append(channel.name)
    return names


def route_all(alerts: Iterable[Alert], channels: Sequence) -> dict[str, list[str]]:
    """{alert.key: channel names} for `Store.commit_poll`."""
    return {alert.key: route(alert, channels) for alert in alerts}


def message_level(alerts: Iterable[Alert | Folded]) -> Level:
    """The level that picks a message's URL (`url_by_level`, picked by `Notifier.send`): the highest
    level among its entries' current alerts — a raised or repeated alert's level, a resolved
    alert's episode peak (the all-clear reaches the device that was paged), a blind or restored
    alert's scope level (ok when the scope was ok). An acknowledgement counts as ok: it is what the
    user just did, so it never pages. Alerts folded under a newer one of their scope do not count:
    they are no longer true."""
    current = (item.alert if isinstance(item, Folded) else item for item in alerts)
    return max((Level.OK if a.kind in ACK_KINDS else a.level for a in current), default=Level.OK)


def markdown_for(url: str) -> bool:
    """Chat services get Markdown; e-mail gets plain text."""
    return url.split("://", 1)[0].lower() not in TEXT_SCHEMES


# ---------------------------------------------------------------- rendering

def _where(alert: Alert) -> str:
    label = display.scope_label(alert.scope)
    return f"{alert.account} · {label}" if label else alert.account


def _ratio_text(alert: Alert) -> str:
    """"margin ratio 88.7 %", with the exchange's own figure beside it where it has one:
    "margin ratio 88.7 % = margin level 1.24 (call at 70 % = margin level 1.57)"."""
    text = f"margin ratio {display.ratio(alert.margin_ratio)}" + (f" = {alert.figure}" if alert.figure else "")
    if alert.threshold is not None and alert.level != Level.OK:
        own = f" = {alert.figure_threshold}" if alert.figure_threshold else ""
        text += f" ({alert.level.label} at {display.ratio(alert.threshold)}{own})"
    return text + _qualifiers(alert)


def _qualifiers(alert: Alert) -> str:
    """" (estimated)" from mark prices, " (approximate)" from ccxt's unified fields, or both."""
    words = [w for w, on in (("estimated", alert.estimated), ("approximate", alert.approximate)) if on]
    return f" ({', '.join(words)})" if words else ""


def tag(alert: Alert) -> str:
    """The short word a message starts with: CRITICAL, CALL, WARNING, RESOLVED, BLIND, RESTORED,
    EXCHANGE (the exchange's own notice), "CALL acknowledged" or "CALL acknowledgement removed"."""
    if alert.kind in (AlertKind.RAISED, AlertKind.REPEAT):
        return alert.level.name
    if alert.kind == AlertKind.NOTICE:
        return "EXCHANGE"
    if alert.kind == AlertKind.ACKNOWLEDGED:
        return f"{alert.level.name} acknowledged"
    if alert.kind == AlertKind.UNACKNOWLEDGED:
        return f"{alert.level.name} acknowledgement removed"
    return alert.kind.name


def ack_terms(alert: Alert) -> str:
    """How long an acknowledgement holds: "until 15:05 UTC or the resolution", "until the resolution"."""
    if alert.until_at is None:
        return "until the resolution"
    return f"until {display.time_of_day(alert.until_at, alert.created_at)} or the resolution"


def headline(alert: Alert) -> str:
    """One line: what happened, where, and the number that matters."""
    where = _where(alert)
    if alert.kind == AlertKind.NOTICE:  # "EXCHANGE · main · Binance margin call: ETHUSDT cross, maint 1.61"
        return f"EXCHANGE · {alert.account} · {alert.reason}"
    if alert.kind == AlertKind.RAISED:
        return f"{tag(alert)} · {where} · {_ratio_text(alert)}"
    if alert.kind == AlertKind.REPEAT:
        return f"{tag(alert)} still active · {where} · {_ratio_text(alert)} since {display.time_of_day(alert.since_at)}"
    if alert.kind == AlertKind.RESOLVED:
        own = f" = {alert.figure}" if alert.figure else ""
        what = alert.reason if alert.reason else f"margin ratio {display.ratio(alert.margin_ratio)}{own}{_qualifiers(alert)}"
        return f"RESOLVED · {where} · {what} (was {alert.level.name})"
    if alert.kind == AlertKind.BLIND:
        if alert.scope.startswith("isolated:") and alert.reason:  # a position the profile cannot evaluate
            return f"BLIND · {where} · {alert.reason}"
        polls = f"{alert.failures} poll{'s' if alert.failures != 1 else ''}"
        return f"BLIND · {where} · no data for {polls}" + (f": {alert.reason}" if alert.reason else "")
    if alert.kind == AlertKind.ACKNOWLEDGED:
        return f"{tag(alert)} · {where} · {_ratio_text(alert)} · repeats held back {ack_terms(alert)}"
    if alert.kind == AlertKind.UNACKNOWLEDGED:
        return f"{tag(alert)} · {where} · {_ratio_text(alert)} · repeats resume"
    return f"RESTORED · {where} · {alert.reason or 'data flowing again'}"


def details(alert: Alert, *, markdown: bool) -> list[str]:
    """The lines under the headline: the figures a person needs to act."""
    bold = (lambda s: f"**{s}**") if markdown else (lambda s: s)
    lines: list[str] = []
    cur = alert.currency
    if alert.kind == AlertKind.NOTICE:
        return [f"Pushed by {alert.exchange or 'the exchange'} at {display.time_of_day(alert.created_at)}; "
                "alerter polls the account at once."]
    if alert.kind == AlertKind.BLIND:
        if alert.since_at:
            if alert.scope.startswith("isolated:"):
                lines.append(f"Not evaluated since {display.time_of_day(alert.since_at)}; the position is not known to be safe.")
            else:
                lines.append(f"No fresh data since {display.time_of_day(alert.since_at)}; the account is not known to be safe.")
        return lines
    if alert.kind == AlertKind.ACKNOWLEDGED:
        if alert.reason:
            lines.append(f"Note: {alert.reason}")
        lines.append(f"Acknowledged at {display.time_of_day(alert.created_at)}: {alert.level.label} is not repeated {ack_terms(alert)}; "
                     "a higher level still alerts at once and ends the acknowledgement.")
        return lines
    if alert.kind == AlertKind.UNACKNOWLEDGED:  # since_at: when it had been acknowledged
        return [f"Acknowledged at {display.time_of_day(alert.since_at, alert.created_at)}, removed at "
                f"{display.time_of_day(alert.created_at)}: {alert.level.label} is repeated again on its schedule."]
    if alert.kind == AlertKind.RESTORED:
        if alert.margin_ratio is not None:
            lines.append(f"Margin ratio {display.ratio(alert.margin_ratio)}{_qualifiers(alert)}")
        return lines
    if alert.approximate:
        lines.append(f"Approximate: ccxt's unified figures for {alert.exchange or 'this exchange'} (profile = \"generic\"), "
                     "not the exchange's own margin figures")
    if alert.equity is not None and alert.maintenance_margin is not None:
        lines.append(f"Equity {display.money(alert.equity, cur)} · maintenance margin {display.money(alert.maintenance_margin, cur)}")
    if alert.kind == AlertKind.RESOLVED:
        if alert.since_at:
            lines.append(f"Episode started {display.time_of_day(alert.since_at)}")
        return lines
    if alert.deposit_needed and alert.deposit_needed > 0 and alert.target is not None:
        if alert.way_back:  # a lender that names its assets
            lines.append(bold(f"{alert.way_back} to get back to {display.ratio(alert.target)}"))
        elif alert.repay_needed is not None:  # a lender: more collateral, or less debt
            lines.append(bold(f"Add {display.money(alert.deposit_needed, cur)} of collateral or repay "
                              f"{display.money(alert.repay_needed, cur)} of the loan to get back to {display.ratio(alert.target)}"))
        else:
            lines.append(bold(f"Deposit {display.money(alert.deposit_needed, cur)} to get back to {display.ratio(alert.target)}"))
    if alert.liquidation_move is not None:
        lines.append(f"Liquidation at a {display.move(alert.liquidation_move)} move")
    if alert.distances:
        lines += alert.distances
    elif alert.top_positions:
        lines.append("Top positions:")
        for p in alert.top_positions:
            liq = f"liq. {display.price(p.liquidation_price)}" if p.liquidation_price else "liq. n/a"
            move = f" ({display.move(p.liquidation_move)})" if p.liquidation_move is not None else ""
            lines.append(f"- {p.symbol} {p.side} · {display.money(p.notional, p.currency or cur)} · {liq}{move}")
    return lines


GOOD_NEWS = (AlertKind.RESOLVED, AlertKind.RESTORED)
ACK_KINDS = (AlertKind.ACKNOWLEDGED, AlertKind.UNACKNOWLEDGED)  # what the user did: never pages
QUIET = (*GOOD_NEWS, *ACK_KINDS)  # listed after the alerts that call for action


# ---------------------------------------------------------------- folding

@dataclass(frozen=True)
class Folded:
    """One entry of a message: `alert`, the current state of its scope, and the `earlier` alerts
    of the same scope that it superseded before they could be delivered (oldest first)."""

    alert: Alert
    earlier: tuple[Alert, ...] = ()


def fold(alerts: Iterable[Alert]) -> list[Folded]:
    """The pending alerts of one channel as the entries of one message. Per scope (account and
    scope), the alerts of its newest instant are its current state, each an entry of its own (one
    poll can say "restored" and "critical" at once); every older alert of the scope is superseded
    and folded into the last of them, so no message ever headlines a state after a newer one.
    Pass the alerts in the order they were recorded (created_at, id): ties keep that order."""
    scopes: dict[tuple[str, str], list[Alert]] = {}
    for alert in alerts:
        scopes.setdefault((alert.account, alert.scope), []).append(alert)
    entries: list[Folded] = []
    for group in scopes.values():
        group.sort(key=lambda a: a.created_at)  # stable
        newest = group[-1].created_at
        current = [a for a in group if a.created_at == newest]
        entries += [Folded(a) for a in current[:-1]]
        entries.append(Folded(current[-1], tuple(a for a in group if a.created_at < newest)))
    return entries


MAX_EARLIER = 4  # steps an "earlier: …" note names; the worst one is always among them


def earlier_note(entry: Folded) -> str | None:
    """"earlier: CRITICAL at 14:02 UTC, not delivered in time" for the alerts an entry folds.
    Consecutive alerts with one tag read as one step ("CRITICAL at 14:02 UTC (and 3 repeats)");
    a step that a repeated or blind headline continues is its "still active since" and is not
    named again; a long story keeps its worst step and its latest ones."""
    head = entry.alert
    steps: list[list[Alert]] = []
    for alert in entry.earlier:
        if steps and tag(steps[-1][0]) == tag(alert):
            steps[-1].append(alert)
        else:
            steps.append([alert])
    if steps and head.kind in (AlertKind.REPEAT, AlertKind.BLIND) and tag(steps[-1][0]) == tag(head):
        steps.pop()
    if not steps:
        return None
    shown = set(range(max(0, len(steps) - MAX_EARLIER), len(steps)))
    worst = max(range(len(steps)), key=lambda i: max((a.kind not in GOOD_NEWS, a.severity) for a in steps[i]))  # the first of the worst
    if worst not in shown:
        shown = {worst, *range(len(steps) - MAX_EARLIER + 1, len(steps))}
    parts: list[str] = []
    hidden = 0
    for i, step in enumerate(steps):
        if i not in shown:
            hidden += 1
            continue
        if hidden:
            parts.append(f"{hidden} more")
            hidden = 0
        repeats = len(step) - 1
        parts.append(f"{tag(step[0])} at {display.time_of_day(step[0].created_at, head.created_at)}"
                     + (f" (and {repeats} repeat{'s' if repeats != 1 else ''})" if repeats else ""))
    return f"earlier: {', '.join(parts)}, not delivered in time"


def entry_headline(entry: Folded) -> str:
    """The entry's headline, followed by what it folds: "RESOLVED · … (earlier: CRITICAL at …)"."""
    note = earlier_note(entry)
    return headline(entry.alert) + (f" ({note})" if note else "")


def _entries(items: Iterable[Alert | Folded]) -> list[Folded]:
    """The entries of a message, most severe first: blind, critical, call, warning
    (`Alert.severity`), then the good news and acknowledgements (resolved / restored /
    acknowledged, which `severity` alone would rank above a raised warning); oldest first within
    a rank. A plain alert is an entry folding nothing."""
    entries = [item if isinstance(item, Folded) else Folded(item) for item in items]
    return sorted(entries, key=lambda e: (e.alert.kind in QUIET, -e.alert.severity, e.alert.created_at))


def render(
    alerts: Sequence[Alert | Folded], *, markdown: bool, undelivered_note: str | None = None, max_detailed: int = 4, max_listed: int = 15
) -> tuple[str, str]:
    """(title, body) of ONE message for one channel: one alert, or several grouped; each alert
    may be a `Folded` entry, headlined with what it folds. A long group (after an outage) keeps
    its size bounded for chat services (Telegram: 4096 characters): the `max_detailed` most
    severe entries get their figures, the next `max_listed` one line each."""
    if not alerts:
        raise ValueError("render() needs at least one alert")
    ordered = _entries(alerts)
    note = f"⚠ {undelivered_note}\n\n" if undelivered_note else ""
    if len(ordered) == 1:
        entry = ordered[0]
        body = (note + "\n".join(details(entry.alert, markdown=markdown))).strip()
        return entry_headline(entry), body or headline(entry.alert)  # apprise refuses an empty body
    shown = [f"{tag(e.alert)} {e.alert.account}" for e in ordered[:2]]
    title = f"{len(ordered)} alerts: {', '.join(shown)}" + (", …" if len(ordered) > 2 else "")
    sections = []
    for entry in ordered[:max_detailed]:
        head = f"### {entry_headline(entry)}" if markdown else entry_headline(entry)
        sections.append("\n".join([head, *details(entry.alert, markdown=markdown)]))
    listed = ordered[max_detailed:max_detailed + max_listed]
    if listed:
        sections.append("\n".join(f"- {entry_headline(entry)}" for entry in listed))
    rest = len(ordered) - max_detailed - len(listed)
    if rest > 0:
        sections.append(f"… and {rest} more (alerter history shows them all)")
    return title, note + "\n\n".join(sections)


def notify_type(alerts: Iterable[Alert | Folded]) -> str:
    """apprise's message type (colour/icon on most services) for a group of alerts: that of
    its most severe current state."""
    top = _entries(alerts)[0].alert
    if top.kind in (AlertKind.RESOLVED, AlertKind.RESTORED):
        return "success"
    if top.kind in ACK_KINDS:
        return "info"
    if top.kind == AlertKind.BLIND or top.level == Level.WARNING:
        return "warning"
    return "failure"


# ---------------------------------------------------------------- sending

@dataclass(frozen=True)
class Outcome:
    ok: bool
    error: str | None = None  # secrets removed
    retry_after: float | None = None  # seconds the service asked us to wait, when apprise shows it


_RETRY_AFTER = re.compile(r"retry[ _-]?after\D{0,3}(\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_retry_after(messages: Iterable[str]) -> float | None:
    """apprise never exposes response headers; some plugins (Telegram) put the service's
    "retry after N" into their warning. json://, form://, Slack, Discord… do not: None then."""
    for message in messages:
        match = _RETRY_AFTER.search(message)
        if match:
            return float(match.group(1))
    return None


CONSOLE = "console://"  # not apprise: prints the message on standard output (the demo, journald)


@dataclass
class _Target:
    apprise: object | None  # apprise.Apprise, or None when the URL could not be loaded
    markdown: bool
    error: str | None = None
    console: bool = False
    bot: object | None = None  # alerter.telegram.sender.BotSender: [telegram]'s channel, sent by the bot


class Notifier:
    """One apprise.Apprise per configured channel URL (its `url` and each of its `url_by_level`);
    `send` never raises."""

    def __init__(self, channels: Iterable, *, timeout: float = 30.0):
        self.timeout = timeout
        self._targets: dict[str, _Target] = {}  # channel → its `url`
        self._levels: dict[str, dict[Level, _Target]] = {}  # channel → its `url_by_level`
        for channel in channels:
            if getattr(channel, "bot", None) is not None:  # config.TelegramChannel
                from alerter.telegram.sender import BotSender

                self._targets[channel.name] = _Target(None, markdown=False, bot=BotSender(channel.bot))
                self._levels[channel.name] = {}
                continue
            self._targets[channel.name] = self._target(channel.url.get_secret_value(), channel.name)
            by_level = getattr(channel, "url_by_level", None)
            self._levels[channel.name] = {
                level: self._target(url.get_secret_value(), f"{channel.name} ({level.label})")
                for level in (Level.WARNING, Level.CALL, Level.CRITICAL)
                if (url := getattr(by_level, level.label, None)) is not None
            }

    def _target(self, url: str, label: str) -> _Target:
        import apprise

        from alerter.lazy import load_apprise_scheme

        if url.startswith(CONSOLE):
            return _Target(None, markdown=False, console=True)
        _hide(url)
        scheme, sep, _ = url.partition("://")
        if sep:
            load_apprise_scheme(scheme)
        asset = apprise.AppriseAsset(app_id="alerter", app_desc="alerter margin alerts", storage_mode="memory", service_timeout=self.timeout)
        target = apprise.Apprise(asset=asset)
        if target.add(url):
            return _Target(target, markdown_for(url))
        error = check_url(url) or "apprise cannot use this URL"
        return _Target(None, markdown_for(url), f"channel {label}: {error}")

    def _for(self, channel: str, level: Level) -> _Target | None:
        own = self._levels.get(channel, {}).get(level)
        return own if own is not None else self._targets.get(channel)

    def markdown(self, channel: str, level: Level = Level.OK) -> bool:
        target = self._for(channel, level)
        return target.markdown if target else True

    def via(self, channel: str, level: Level = Level.OK) -> str:
        """Which of the channel's URLs a message of `level` goes to: "url" or "url_by_level.critical"."""
        return f"url_by_level.{level.label}" if level in self._levels.get(channel, {}) else "url"

    async def send(self, channel: str, title: str, body: str, *, notify_type: str = "info", level: Level = Level.OK,
                   ackable: Sequence[tuple[str, str]] = ()) -> Outcome:
        """Send one message to `channel`, by the URL of `level` (`message_level`): the level's own
        URL when the channel has one, else its `url`. `ackable`: the (account, scope) of its CALL
        and CRITICAL alerts, which the Telegram bot's message offers to acknowledge."""
        from apprise import AppriseResultStatus, NotifyFormat

        target = self._for(channel, level)
        if target is None:
            return Outcome(False, f"no channel named {channel!r} is configured")
        if target.console:
            print(f"\n┏━ {title}\n" + "\n".join(f"┃ {line}" for line in body.splitlines()), flush=True)
            return Outcome(True)
        if target.bot is not None:
            ok, error, retry_after = await target.bot.send(title, body, level=level, ackable=ackable, timeout_s=self.timeout)
            return Outcome(ok, error, retry_after)
        if target.apprise is None:
            return Outcome(False, target.error)
        body_format = NotifyFormat.MARKDOWN if target.markdown else NotifyFormat.TEXT
        try:
            # apprise's own deadline first; ours a little later in case a plugin ignores it
            async with asyncio.timeout(self.timeout + 2):  # not wait_for: it can lose a stop's cancel on 3.11
                result = await target.apprise.async_notify(
                    body=body, title=title, body_format=body_format, notify_type=notify_type, timeout=self.timeout
                )
        except TimeoutError:
            return Outcome(False, f"timed out after {self.timeout:g} s")
        except Exception as e:  # noqa: BLE001 — a failed delivery is an outcome, never an exception into the scheduler
            return Outcome(False, secrets.mask(f"apprise failed: {type(e).__name__}: {e}"))
        with result:
            if result:
                return Outcome(True)
            messages = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")]
            if result.status == AppriseResultStatus.TIMEOUT:
                error = f"timed out after {self.timeout:g} s"
            else:
                error = "; ".join(dict.fromkeys(m.strip() for m in messages)) or f"apprise status {result.status.name.lower()}"
            return Outcome(False, secrets.mask(error), parse_retry_after(messages))


def check_url(url: str) -> str | None:
    """None when apprise can load `url`; else a one-line reason without the URL's secrets."""
    import apprise

    from alerter.lazy import apprise_schemes, load_apprise_scheme

    from alerter.telegram import BOT_URL

    if url.startswith(CONSOLE) or url == BOT_URL:
        return None
    _hide(url)
    scheme, sep, _ = url.partition("://")
    if not sep:
        return "not an apprise URL (expected scheme://…, e.g. json://host/path or tgram://token/chat)"
    if not load_apprise_scheme(scheme):
        known = apprise_schemes()
        close = difflib.get_close_matches(scheme.lower(), known, n=3, cutoff=0.6)
        return f"unknown apprise scheme {scheme}://" + (f" (did you mean {', '.join(c + '://' for c in close)}?)" if close else "")

    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    apprise_logger = logging.getLogger("apprise")
    apprise_logger.addHandler(handler)
    propagate, apprise_logger.propagate = apprise_logger.propagate, False  # the reason says it: not the log too
    try:
        plugin = apprise.Apprise.instantiate(url)
    finally:
        apprise_logger.removeHandler(handler)
        apprise_logger.propagate = propagate
    if plugin is not None:
        return None
    # apprise names the URL in its messages ("Unparseable Telegram URL tgram://…"): drop it
    reasons = [secrets.mask(re.sub(r"\S+://\S*|\*\*\*\S*", "", m)).strip().rstrip(":. ") for m in messages]
    reasons = list(dict.fromkeys(r for r in reasons if r))
    return f"apprise cannot use this {scheme}:// URL" + (f": {'; '.join(reasons)}" if reasons else " (check its format in the apprise documentation)")
