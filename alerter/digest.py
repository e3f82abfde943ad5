"""The daily digest: one message a day per channel with `digest = "08:00"` (in its `timezone`),
sent even when all is quiet, so it proves the daemon alive and gives a morning look at the risk.

    every account the channel hears: its ratio and level now (and its acknowledgement), the
    lowest and highest ratio of the last 24 h, failed polls in 24 h, and how long ago the last
    good poll was; its isolated positions or pools that alert (the rest counted);
    the alerts of the last 24 h, newest last.

`gather` reads the database (the I/O edge); `build` and `render` are pure. `Digests` schedules
it (APScheduler's cron trigger in the channel's time zone), sends it, and records each digest sent
in the database by the channel's local date, so a restart never sends one twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from alerter import display, metrics
from alerter.errors import StoreError
from alerter.models import ACCOUNT_SCOPE, Ack, Alert, Level

WINDOW = timedelta(hours=24)
MAX_SCOPES = 5  # isolated positions or pools named per account: those that alert or are acknowledged
MAX_ALERTS = 20  # alerts listed; the rest counted
MAX_HEADLINE = 160  # characters of an alert's headline in the list (a blind reason can be long)
MAX_BODY = 3_800  # characters of the message (Telegram refuses more than 4,096)
GRACE = timedelta(hours=1)  # a digest up to this late (the daemon was down at its time) still goes out
RETRY = timedelta(minutes=5)  # after a failed send, until the channel's day ends

logger = logging.getLogger(__name__)


def local_day(now: datetime, timezone: str) -> date:
    """The channel's date at `now`: a digest is sent once per such day."""
    return now.astimezone(ZoneInfo(timezone)).date()


@dataclass(frozen=True)
class ScopeLine:
    scope: str
    margin_ratio: float | None  # of the last good poll; None without one
    level: Level | None
    since_at: datetime | None
    low: float | None  # the lowest and highest ratio of the window
    high: float | None
    ack: Ack | None = None


@dataclass(frozen=True)
class AccountLine:
    account: str
    scopes: list[ScopeLine]  # the account scope (or the pools) first, then the isolated ones that matter
    more: dict[str, int] = field(default_factory=dict)  # level → isolated scopes not named
    last_poll_at: datetime | None = None
    failing: int = 0  # failed polls in a row now
    blind: bool = False
    errors: dict[str, int] = field(default_factory=dict)  # kind → failed polls in the window


@dataclass(frozen=True)
class Digest:
    channel: str
    now: datetime
    timezone: str
    accounts: list[AccountLine]
    alerts: list[Alert]  # of the window, oldest first

    @property
    def worst(self) -> tuple[Level, str] | None:
        """The highest level now and the first account at it; None when all are ok."""
        levels = [(s.level, a.account) for a in self.accounts for s in a.scopes if s.level]
        return max(levels, key=lambda x: x[0]) if levels else None


def _named(scope: str) -> bool:
    return not scope.startswith("isolated:")


def build(channel: str, timezone: str, accounts: list[str], latest, ranges, states, acks, alerts, errors, now: datetime) -> Digest:
    """Pure. `accounts`: the names the channel hears, in configuration order; `latest`: the last
    sample of every scope (`Store.latest_samples`); `ranges`: (account, scope) → (low, high) over
    the window; `states`: account → scope → `ScopeState`; `acks`: (account, scope) → `Ack` in
    force; `alerts`: the window's alerts; `errors`: account → kind → failed polls."""
    lines = []
    for name in accounts:
        samples = [s for s in latest if s.account == name]
        last = max((s.at for s in samples), default=None)
        samples = [s for s in samples if s.at == last]  # the scopes of the last good poll
        account_states = states.get(name, {})
        scopes = []
        for s in sorted(samples, key=lambda s: (s.scope != ACCOUNT_SCOPE, not _named(s.scope), s.scope)):
            state = account_states.get(s.scope)
            low, high = ranges.get((name, s.scope), (None, None))
            scopes.append(ScopeLine(s.scope, s.margin_ratio, state.level if state else s.level, state.since_at if state else None,
                                    low, high, acks.get((name, s.scope))))
        head = [s for s in scopes if _named(s.scope)]
        isolated = sorted((s for s in scopes if not _named(s.scope)),
                          key=lambda s: (-(int(s.level) if s.level else 0), -(s.margin_ratio if s.margin_ratio is not None else 0)))
        shown = [s for s in isolated if (s.level and s.level > Level.OK) or s.ack][:MAX_SCOPES]
        more: dict[str, int] = {}
        for s in isolated:
            if s not in shown:
                key = s.level.label if s.level is not None else "unknown"
                more[key] = more.get(key, 0) + 1
        account_state = account_states.get(ACCOUNT_SCOPE)
        lines.append(AccountLine(
            name, head + shown, more, last,
            failing=account_state.failures if account_state else 0, blind=bool(account_state and account_state.blind),
            errors=dict(errors.get(name, {})),
        ))
    heard = set(accounts)
    window = sorted((a for a in alerts if a.account in heard and a.created_at >= now - WINDOW), key=lambda a: a.created_at)
    return Digest(channel, now, timezone, lines, window)


# ---------------------------------------------------------------- rendering

def _range(low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return "—"
    if display.ratio(low) == display.ratio(high):
        return display.ratio(low)
    return f"{display.ratio(low)} – {display.ratio(high)}"


def _cut(text: str, limit: int = MAX_HEADLINE) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _scope_text(s: ScopeLine, now: datetime) -> str:
    level = s.level.label if s.level is not None else "?"
    if s.level and s.level > Level.OK and s.since_at is not None:
        level += f" since {display.time_of_day(s.since_at, now)}"
    text = f"margin ratio {display.ratio(s.margin_ratio)} · {level} · 24 h: {_range(s.low, s.high)}"
    if s.ack is not None:
        from alerter.acks import ack_text

        text += f" · {ack_text(s.ack, now)}"
    return text


def _poll_text(a: AccountLine, now: datetime) -> str:
    good = f"last good poll {display.age(now - a.last_poll_at)} ago" if a.last_poll_at else "no good poll yet"
    total = sum(a.errors.values())
    if total:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(a.errors.items()))
        errors = f"{total} failed poll{'s' if total != 1 else ''} in 24 h ({kinds})"
    else:
        errors = "no failed polls in 24 h"
    now_failing = f" · failing now ({a.failing} in a row)" if a.failing else ""
    return f"{good} · {errors}{now_failing}" + (" · BLIND" if a.blind else "")


def title(d: Digest) -> str:
    local = d.now.astimezone(ZoneInfo(d.timezone))
    worst = d.worst
    state = f"worst: {worst[0].name} ({worst[1]})" if worst and worst[0] > Level.OK else "all ok"
    count = len(d.alerts)
    return (f"alerter daily digest · {local:%Y-%m-%d %H:%M} {d.timezone} · {len(d.accounts)} account{'s' if len(d.accounts) != 1 else ''}, "
            f"{state} · {count} alert{'s' if count != 1 else ''} in 24 h")


def _badness(a: AccountLine) -> tuple:
    return (a.blind, max((int(s.level) for s in a.scopes if s.level), default=0), a.failing > 0)


def render(d: Digest, *, markdown: bool, max_chars: int = MAX_BODY) -> tuple[str, str]:
    """(title, body) of the digest message: the accounts worst first (blind, then by level),
    then the alerts. Kept under `max_chars` (chat services refuse longer messages: Telegram takes
    4,096 characters): fewer alerts listed first, then the last accounts only named."""
    accounts = sorted(d.accounts, key=_badness, reverse=True)
    sections = _account_sections(d, accounts, markdown)
    for listed in (MAX_ALERTS, 5, 0):
        alerts = _alert_section(d, markdown, listed)
        kept = list(sections)
        while kept and len("\n\n".join([*kept, _more(accounts[len(kept):]), alerts])) > max_chars:
            kept.pop()
        if len(kept) == len(sections) or listed == 0:
            break
    body = "\n\n".join(filter(None, [*kept, _more(accounts[len(kept):]), alerts]))
    return title(d), body[:max_chars]


def _more(rest: list[AccountLine]) -> str:
    if not rest:
        return ""
    names = ", ".join(a.account for a in rest)
    return _cut(f"… and {len(rest)} more account{'s' if len(rest) != 1 else ''} (alerter status shows them): {names}", 400)


def _alert_section(d: Digest, markdown: bool, listed: int) -> str:
    from alerter.notify import headline

    bold = (lambda s: f"**{s}**") if markdown else (lambda s: s)
    if not d.alerts:
        return "No alerts in the last 24 h."
    shown = d.alerts[-listed:] if listed else []
    lines = [f"- {display.time_of_day(a.created_at, d.now)} {_cut(headline(a))}" for a in shown]
    if len(d.alerts) > len(shown):
        lines.insert(0, f"- … {len(d.alerts) - len(shown)} {'earlier ' if shown else ''}(alerter history shows them all)")
    return "\n".join([bold(f"Alerts in the last 24 h ({len(d.alerts)}):"), *lines])


def _account_sections(d: Digest, accounts: list[AccountLine], markdown: bool) -> list[str]:
    bold = (lambda s: f"**{s}**") if markdown else (lambda s: s)
    sections = []
    for a in accounts:
        lines = []
        head = next((s for s in a.scopes if s.scope == ACCOUNT_SCOPE), None)
        if not a.scopes:
            lines.append(f"{bold(a.account)}: no data yet")
        elif head is not None:
            lines.append(f"{bold(a.account)}: {_scope_text(head, d.now)}")
        else:
            lines.append(bold(a.account))
        for s in a.scopes:
            if s is not head:
                lines.append(f"- {display.scope_label(s.scope, short=True)}: {_scope_text(s, d.now)}")
        if a.more:
            count = sum(a.more.values())
            lines.append(f"- +{count:,} more isolated ({', '.join(f'{n:,} {level}' for level, n in a.more.items())})")
        lines.append(_poll_text(a, d.now))
        sections.append("\n".join(lines))
    if not d.accounts:
        sections.append("No account is routed to this channel.")
    return sections


# ---------------------------------------------------------------- reading

async def gather(store, plans: dict, channel: str, timezone: str, now: datetime) -> Digest:
    """The digest's data from the database (`store`: the daemon's StoreThread, or anything with
    the same methods); the accounts are the plans whose channels include `channel`."""
    accounts = [p.name for p in plans.values() if channel in p.channels]
    since = now - WINDOW
    heard = set(accounts)
    latest = [s for s in await store.latest_samples() if s.account in heard]
    states = {name: await store.load_states(name) for name in accounts}
    acks = {(a.account, a.scope): a for a in await store.acks() if a.until_at is None or a.until_at > now}
    alerts = [e.alert for e in await store.history(since=since)]
    errors = await store.poll_errors(since)
    shown = build(channel, timezone, accounts, latest, {}, states, acks, alerts, errors, now)  # which scopes it names
    ranges = await store.ratio_ranges(since, [(a.account, s.scope) for a in shown.accounts for s in a.scopes])
    return build(channel, timezone, accounts, latest, ranges, states, acks, alerts, errors, now)


# ---------------------------------------------------------------- sending

class Digests:
    """The daily digest jobs of a daemon. `live`: the running configuration
    (alerter.pipeline.Pipeline: `settings`, `plans`, `notifier`, `store`, `clock`); `run_job`
    runs a scheduled coroutine (the daemon's, which ends it quietly at a stop); `jobs`: the
    set of tasks a stop waits for."""

    def __init__(self, live, run_job, jobs: set) -> None:
        self.live, self.run_job, self.jobs = live, run_job, jobs
        self.scheduler = None  # the daemon's, once `schedule` ran: retries go there

    def schedule(self, scheduler, now: datetime) -> None:
        """One cron job per channel with a digest, at its time in its time zone. A digest whose
        time passed less than GRACE ago (the daemon was down, or restarted, or the digest was just
        configured) runs at once: it is sent unless today's already was."""
        from apscheduler.triggers.cron import CronTrigger

        from alerter.values import clock_time

        self.scheduler = scheduler
        for job in scheduler.get_jobs():
            if job.id.startswith("digest:"):
                job.remove()
        for channel in self.live.settings.channels:
            if not channel.digest:
                continue
            hour, minute, second = clock_time(channel.digest)
            tz = ZoneInfo(channel.timezone)
            trigger = CronTrigger(hour=hour, minute=minute, second=second, timezone=tz)
            local = now.astimezone(tz)
            last = local.replace(hour=hour, minute=minute, second=second, microsecond=0)
            if last > local:
                last -= timedelta(days=1)
            first = now if now - last < GRACE else trigger.get_next_fire_time(None, now)
            scheduler.add_job(self.run_job, trigger, args=[self.send, channel.name], id=f"digest:{channel.name}",
                              name=f"digest {channel.name}", next_run_time=first, max_instances=1, coalesce=True,
                              misfire_grace_time=int(GRACE.total_seconds()))

    async def send(self, name: str) -> bool:
        """The channel's daily digest, unless today's (in the channel's time zone) was sent: a
        restart or a late retry never sends it twice. A failed send is tried again every RETRY
        until it goes out or the day ends. Returns whether it was sent."""
        live = self.live
        channel = next((c for c in live.settings.channels if c.name == name and c.digest), None)
        if channel is None:  # removed by a reload
            return False
        now = live.clock()
        day = local_day(now, channel.timezone).isoformat()
        try:
            sent_at = await live.store.digest_sent(name, day)
            if sent_at is not None:
                logger.info("digest for %s: already sent for %s (at %s)", name, day, display.time_of_day(sent_at))
                return False
            data = await gather(live.store, live.plans, name, channel.timezone, now)
        except StoreError as e:
            logger.error("digest for %s: cannot read the database: %s", name, e)
            self.retry(channel, day)
            return False
        notifier = live.notifier
        title, body = render(data, markdown=notifier.markdown(name))

        async def send_and_record() -> bool:
            outcome = await notifier.send(name, title, body, notify_type="info")
            metrics.observe_delivery(name, outcome.ok)
            if not outcome.ok:
                logger.warning("digest for %s not delivered: %s", name, outcome.error)
                self.retry(channel, day)
                return False
            try:
                await live.store.record_digest(name, day, live.clock())
            except StoreError as e:
                logger.error("digest for %s sent but not recorded (a restart today may send it again): %s", name, e)
            logger.info("digest sent to %s", name)
            return True

        # a stop while it is being sent waits for it to be recorded (the stop waits for `jobs`):
        # cut between the two, a restart would send it again
        task = asyncio.ensure_future(send_and_record())
        self.jobs.add(task)
        task.add_done_callback(self.jobs.discard)
        return await asyncio.shield(task)

    def retry(self, channel, day: str) -> None:
        from apscheduler.triggers.date import DateTrigger

        if self.scheduler is None or local_day(self.live.clock() + RETRY, channel.timezone).isoformat() != day:
            return  # the next digest is the next day's
        self.scheduler.add_job(self.run_job, DateTrigger(datetime.now(UTC) + RETRY), args=[self.send, channel.name],
                               id=f"digest-retry:{channel.name}", replace_existing=True, misfire_grace_time=int(GRACE.total_seconds()))
