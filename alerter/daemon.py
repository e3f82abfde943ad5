"""The daemon: APScheduler jobs that poll each account, and the delivery loop.

`poll_account` is the one place that sees every stage, in order:
fetch snapshot → health → decide (with the stored state) → store state + outbox (one
transaction) → wake the delivery loop. Nothing is sent before it is recorded — unless the
database fails: then the poll's alerts go out directly and the state waits in memory.

The store is only reached through `StoreThread` (one thread of its own), so a locked or slow
database delays no poll, no delivery and no watchdog ping.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from alerter import display, metrics, sdnotify
from alerter.config import Settings
from alerter.errors import StoreError
from alerter.health import evaluate, reprice
from alerter.models import ACCOUNT_SCOPE, AccountSnapshot, Alert, AlertKind, Health
from alerter.plan import AccountPlan, plans
from alerter.policy import decide_account, decide_failure, decide_store_failure, settle_acks
from alerter.storethread import StoreThread

logger = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


DESCRIBE_ISOLATED = 5  # isolated positions named in a poll's log line (the worst); the rest counted


def describe(healths: list[Health], states) -> str:
    """One poll's log line: the account scope and the worst few isolated positions, then how many
    more there are per level ("+4,995 more isolated (12 call, 4,983 ok)"), so 5,000 positions make
    a short line, not 150 kB."""

    def level(h: Health):
        return states[h.scope].level if h.scope in states else None

    def part(h: Health) -> str:
        ratio = display.ratio(h.margin_ratio)
        name = "account" if h.scope == ACCOUNT_SCOPE else h.scope.removeprefix("isolated:")
        return f"{name} {ratio} {level(h).label if level(h) is not None else '?'}{' (est.)' if h.estimated else ''}"

    isolated = [h for h in healths if h.scope.startswith("isolated:")]
    worst = sorted(isolated, key=lambda h: (-1 if level(h) is None else int(level(h)), h.margin_ratio), reverse=True)
    named = {id(h) for h in worst[:DESCRIBE_ISOLATED]}
    parts = [part(h) for h in healths if not h.scope.startswith("isolated:") or id(h) in named]  # every cross scope
    rest = worst[DESCRIBE_ISOLATED:]
    if rest:
        counts: dict[str, int] = {}
        for h in rest:  # worst first, so the counts are too
            key = level(h).label if level(h) is not None else "?"
            counts[key] = counts.get(key, 0) + 1
        parts.append(f"+{len(rest):,} more isolated ({', '.join(f'{n:,} {key}' for key, n in counts.items())})")
    return ", ".join(parts)


DIGEST_GRACE = timedelta(hours=1)  # a digest up to this late (the daemon was down at its time) still goes out
DIGEST_RETRY = timedelta(minutes=5)  # after a failed send, until the channel's day ends
MAX_PAUSE = timedelta(hours=1)  # the longest Retry-After honoured: monitoring resumes after at most this


def span(seconds: float) -> str:
    """"24 h", "1.5 h", "15 min", "40 s"."""
    if seconds >= 3600:
        return f"{seconds / 3600:.3g} h"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    return f"{seconds:.3g} s"


def pause_note(asked_s: float, until: datetime) -> str:
    """What a blind alert says about a Retry-After pause."""
    capped = f" (capped at {span(MAX_PAUSE.total_seconds())})" if asked_s > MAX_PAUSE.total_seconds() else ""
    return f"rate limited by the exchange: it asked for a pause of {span(asked_s)}; no poll before {until:%H:%M:%S} UTC{capped}"


async def cancel_all(tasks, what: str, *, patience: float = 2.0) -> None:
    """Cancel `tasks` and wait for them to end. A task that lets a cancel pass (a library that
    catches it; Python 3.11's wait_for when its awaitable completes at the same moment) is
    cancelled again, and one still running after that is logged and left: a stop must end."""
    pending = {t for t in tasks if not t.done()}
    for _ in range(3):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=patience)
    if pending:
        logger.warning("stopping: %d %s task(s) did not end when cancelled; left behind", len(pending), what)


@dataclass(frozen=True)
class Poll:
    """What one poll of one account found: its healths, or why there are none."""

    account: str
    healths: list[Health] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None  # transient | credentials | data
    snapshot: AccountSnapshot | None = None
    basis: AccountSnapshot | None = None  # an estimate: the confirmed snapshot it re-prices
    retry_after_s: float | None = None  # the exchange asked for a pause (HTTP 429/503 Retry-After)
    notices: tuple[Alert, ...] = ()  # the exchange's own notices that prompted this poll (alerter.streams)

    @property
    def estimated(self) -> bool:
        return self.snapshot is not None and self.snapshot.estimated


async def fetch_health(plan: AccountPlan, source) -> Poll:
    from alerter.sources import SourceError

    try:
        snapshot = await source.fetch_snapshot()
        return Poll(plan.name, evaluate(snapshot, plan.thresholds.target), snapshot=snapshot)
    except SourceError as e:
        return Poll(plan.name, error=f"{e.kind}: {e}", error_kind=e.kind, retry_after_s=e.retry_after_s)
    except ValueError as e:  # non-finite figures: never a false "ok"
        return Poll(plan.name, error=f"data: {e}", error_kind="data")


class Daemon:
    """Owns the store, the notifier and one source per account; `run()` until stopped. Each
    account's rules come from its plan (`self.plans`, alerter.plan), made from the settings here
    and on reload."""

    def __init__(self, settings: Settings, *, store, notifier, sources: dict, clock: Callable[[], datetime] = utcnow):
        self.settings = settings
        self.plans = plans(settings)
        self.store = store  # the Store itself: used from the event loop only when the thread is idle (tests)
        self.store_thread = StoreThread(store)
        self.notifier = notifier
        self.sources = sources
        self.clock = clock
        self.stopping = asyncio.Event()
        self.wakes: dict[str, asyncio.Event] = {}  # per channel worker
        self.polls = 0
        self.last_loop_at = clock()
        self.unsaved: dict[str, dict] = {}  # account → states the database could not take
        self.unrecorded: list[tuple[Alert, dict[str, datetime | None]]] = []  # sent directly: (alert, channel → sent at)
        self.confirmed: dict[str, tuple[datetime, AccountSnapshot]] = {}  # last full poll per account
        self.polled: set[str] = set()  # accounts polled successfully since the last heartbeat
        self.metrics_server = None
        self.jobs: set[asyncio.Task] = set()  # scheduled polls and price checks in flight
        self.store_blind_at: datetime | None = None
        self.account_locks: dict[str, asyncio.Lock] = {}  # one decision per account at a time
        self.in_flight: set[str] = set()  # accounts whose full poll is in flight (see reprice_from)
        self.priced_at: dict[str, float] = {}  # account → how new (loop time) the marks of its last estimate were
        # reload (SIGHUP) and signals: see "reload and signals" below
        self.parts = None  # runtime.Parts: rebuilds sources and the notifier on reload
        self.scheduler = None
        self.workers: dict[str, asyncio.Task] = {}  # channel → its delivery worker
        self.reloading = asyncio.Lock()
        self.reloads: set[asyncio.Task] = set()
        self.stop_reason: str | None = None
        self.exit_code = 0
        self.paused: dict[str, tuple[datetime, str]] = {}  # account → (no poll before, why): Retry-After
        self.streams = None  # alerter.streams.Streams while running
        self._spawned: set[asyncio.Task] = set()

    # ------------------------------------------------------------ stages

    def channels_of(self, plan: AccountPlan) -> list:
        """The configured channels that hear the account."""
        return [c for c in self.settings.channels if c.name in plan.channels]

    async def poll_account(self, name: str, notices: tuple[Alert, ...] | list[Alert] = ()) -> list[Alert]:
        """One poll of one account: fetch, evaluate, decide, record. Never raises for exchange,
        data or database problems (they count towards "monitoring blind"). `notices`: the
        exchange's own notices that asked for this poll, recorded and sent with it."""
        now = self.clock()
        until, note = self.paused.get(name, (now, ""))
        if now < until:  # the exchange asked for a pause: no request, and a poll missed is a failed poll
            return await self.handle(Poll(name, error=f"transient: {note}", error_kind="transient", notices=tuple(notices)))
        self.paused.pop(name, None)
        plan = self.plans[name]
        self.in_flight.add(name)
        try:
            return await self._poll_account(name, plan, notices)
        finally:
            self.in_flight.discard(name)

    async def _poll_account(self, name: str, plan: AccountPlan, notices) -> list[Alert]:
        started = asyncio.get_running_loop().time()
        poll = replace(await fetch_health(plan, self.sources[name]), notices=tuple(notices))
        if poll.retry_after_s is not None and poll.retry_after_s > plan.poll_interval.total_seconds():
            until = self.clock() + min(timedelta(seconds=poll.retry_after_s), MAX_PAUSE)
            note = pause_note(poll.retry_after_s, until)
            self.paused[name] = (until, note)
            poll = replace(poll, error=f"{poll.error}; {note}")
        if poll.snapshot is not None:
            self.confirmed[name] = (self.clock(), poll.snapshot)
            # its marks are at least as new as its request: marks asked for before are older
            self.priced_at[name] = max(self.priced_at.get(name, started), started)
            if self.streams is not None:
                self.streams.polled(name)
        else:  # a failed full poll: no estimates until one succeeds (they would "restore" a blind account)
            self.confirmed.pop(name, None)
        return await self.handle(poll)

    def fresh_snapshots(self, names: list[str]) -> dict[str, AccountSnapshot]:
        """The last confirmed snapshot of each of these accounts that is a basis for an estimate
        (positions older than a few polls are not)."""
        now = self.clock()
        fresh = {}
        for name in names:
            if name in self.confirmed and name in self.plans:
                at, snapshot = self.confirmed[name]
                if now - at <= 3 * self.plans[name].poll_interval:
                    fresh[name] = snapshot
        return fresh

    def account_config(self, name: str):
        return next(a for a in self.settings.accounts if a.name == name)

    async def check_prices(self, names: list[str]) -> int:
        """The fast path between full polls: one public mark-price request for every position of
        these accounts (all on one exchange), then each account's last confirmed snapshot is
        re-priced and goes through the policy as an estimate. Accounts whose mark prices arrive
        by stream (alerter.streams) are left out while their stream is up. Returns how many
        were evaluated."""
        from alerter.sources import SourceError

        if self.streams is not None:
            names = [name for name in names if not self.streams.prices_live(name)]
        fresh = self.fresh_snapshots(names)
        symbols = sorted({p.symbol for s in fresh.values() for p in s.positions})
        if not symbols:
            return 0
        asker = next(iter(fresh))  # an account with a fresh poll: never one the exchange paused
        asked_at = asyncio.get_running_loop().time()
        try:
            marks = await self.sources[asker].fetch_marks(symbols)
        except SourceError as e:  # full polls decide about blindness; a missed price check is logged
            logger.info("mark prices for %s: %s", ", ".join(names), e)
            return 0
        return await self.reprice_from(list(fresh), marks, asked_at)

    async def reprice_from(self, names: list[str], marks: dict[str, float], as_of: float) -> int:
        """Re-price these accounts' last confirmed snapshots at `marks` (from REST or a stream) and
        run each estimate through the policy. Returns how many were evaluated.

        `as_of`: the loop time the marks are at least as new as (a REST request's start, a stream
        tick's arrival). Marks older than the ones an account was last estimated or polled at are
        dropped: a REST answer asked for before a stream's tick arrived (or before a full poll
        started), taken after it, would take the level back to where the market was (a false
        RESOLVED, and the CALL again at the next tick).

        An account whose full poll is in flight is not estimated: whether these marks or the
        poll's answer is the newer cannot be told, and the older one recorded last would take the
        level back down (and the next one raise it again, a duplicate). The poll answers for them;
        the next marks are estimated on its answer."""
        names = [n for n in names if n not in self.in_flight and self.priced_at.get(n, as_of) <= as_of]
        for name in names:
            self.priced_at[name] = as_of
        fresh = self.fresh_snapshots(names)
        estimates = []
        for name, snapshot in fresh.items():
            repriced = reprice(snapshot, marks)
            try:
                healths = evaluate(repriced, self.plans[name].thresholds.target)
            except ValueError as e:
                logger.warning("%s: cannot re-price: %s", name, e)
                continue
            estimates.append(Poll(name, healths, snapshot=repriced, basis=snapshot))
        await asyncio.gather(*(self.handle(poll) for poll in estimates))  # one slow record holds up no other account
        return len(fresh)

    async def handle(self, poll: Poll) -> list[Alert]:
        # One account's polls are decided, recorded and sent one at a time, in order: recording
        # awaits the store's thread, and two decisions from the same previous state would repeat
        # or contradict each other.
        async with self.account_locks.setdefault(poll.account, asyncio.Lock()):
            if poll.basis is not None and self.confirmed.get(poll.account, (None, None))[1] is not poll.basis:
                logger.debug("%s: estimate dropped, a full poll came in meanwhile", poll.account)
                return []  # re-priced from positions a newer full poll (or its failure) has replaced
            alerts, store_error = await self.record(poll)
            if store_error is not None:
                await self.deliver_unrecorded(self.plans[poll.account], alerts, store_error)
            elif alerts:
                self.wake()
        await self.heartbeat()
        return alerts

    async def heartbeat(self) -> None:
        """After a cycle in which every account was polled, tell the dead man's switch."""
        url = self.settings.daemon.heartbeat_url
        if url is None or not self.polled >= self.plans.keys():
            return
        self.polled.clear()
        ok = await metrics.send_heartbeat(url.get_secret_value(), timeout=self.settings.daemon.request_timeout.total_seconds())
        metrics.observe_heartbeat(ok)

    async def record(self, poll: Poll) -> tuple[list[Alert], StoreError | None]:
        """Decide and record one poll. When the database fails, the decided state is kept in
        memory (so the next poll neither repeats nor forgets) and the error is returned."""
        from alerter.notify import route_all

        name = poll.account
        plan = self.plans[name]
        error = None
        previous = self.unsaved.get(name)
        acks = {}  # written by `alerter ack` at any time: read afresh with the states at every decision
        if previous is None:  # (while the database fails, none: repeats are not held back, the safe side)
            try:
                previous, acked = await self.store_thread.load_decision(name)
                acks = {ack.scope: ack for ack in acked}
            except StoreError as e:
                previous, error = {}, e  # unknown history: re-announcing beats staying silent
        ended: dict[str, str] = {}
        now = self.clock()
        if poll.error is not None:
            state, alerts = decide_failure(
                previous.get(ACCOUNT_SCOPE), name, now, poll.error,
                immediate=poll.error_kind == "credentials", blind_after=self.settings.daemon.blind_after,
                repeat=plan.repeat, exchange=plan.exchange,
            )
            states, samples = {**previous, ACCOUNT_SCOPE: state}, []
            logger.warning("%s: poll failed (%d in a row): %s", name, state.failures, poll.error)
            metrics.observe_poll_error(name, poll.error_kind or "data")
        else:
            # positions the profile cannot evaluate blind their own scopes only (policy.decide_account)
            unreadable = poll.snapshot.unreadable if poll.snapshot is not None else ()
            states, alerts = decide_account(previous, poll.healths, plan.thresholds, plan.repeat, now, unreadable, acks)
            ended = settle_acks(acks, states, alerts, now)
            for scope, why in ended.items():
                logger.info("%s: acknowledgement of %s ended: %s", name, display.scope_label(scope, short=True) or ACCOUNT_SCOPE, why)
            metrics.observe_acks(name, [ack for scope, ack in acks.items() if scope not in ended])
            # estimates between polls are kept in the history only when they change something
            samples = poll.healths if not poll.estimated or alerts else []
            logger.log(logging.DEBUG if poll.estimated and not alerts else logging.INFO, "%s: %s%s", name, describe(poll.healths, states),
                       "".join(f", {scope.removeprefix('isolated:')} blind (cannot evaluate)" for scope, _ in unreadable))
            metrics.observe_poll(name, poll.healths, states, now, full=not poll.estimated)
            if not poll.estimated:
                self.polled.add(name)
        alerts = [*poll.notices, *alerts]
        if error is None:
            try:
                confirmed = poll.snapshot if poll.snapshot is not None and not poll.estimated else None
                routes = route_all(alerts, self.channels_of(plan))
                await self.store_thread.commit_poll(name, states, samples, alerts, routes, now, snapshot=confirmed,
                                                    ended_acks=[acks[scope] for scope in ended],
                                                    poll_error=(poll.error_kind or "data", poll.error) if poll.error is not None else None)
                self.unsaved.pop(name, None)
            except StoreError as e:
                error = e
        if error is None and self.unrecorded:
            await self.record_unrecorded(now)
        if error is not None:
            self.unsaved[name] = states
        self.polls += 1
        for a in alerts:
            logger.log(logging.WARNING if a.kind in (AlertKind.RAISED, AlertKind.REPEAT, AlertKind.BLIND) else logging.INFO,
                       "%s: alert %s %s (%s)", name, a.kind, a.level.label, a.scope)
        return alerts, error

    async def deliver_unrecorded(self, plan: AccountPlan, alerts: list[Alert], error: StoreError) -> None:
        """The database cannot take the poll: send its alerts straight away, and to every channel
        the notice that the database is failing when the policy says it is due."""
        from alerter.notify import message_level, render, route_all

        now = self.clock()
        logger.error("database failing, alerts sent without being recorded: %s", error)
        routes = route_all(alerts, self.channels_of(plan))
        outbox = {c.name: [a for a in alerts if c.name in routes[a.key]] for c in self.settings.channels}
        self.store_blind_at, notices = decide_store_failure(self.store_blind_at, f"database failing, alerts are not being recorded: {error}",
                                                            plan.repeat, now)
        for channel_alerts in outbox.values():
            channel_alerts[:0] = notices

        outcomes: dict[str, dict[str, datetime | None]] = {a.key: {} for a in alerts}

        async def send(channel: str, group: list[Alert]) -> None:
            level = message_level(group)
            title, body = render(group, markdown=self.notifier.markdown(channel, level))
            outcome = await self.notifier.send(channel, title, body, level=level)
            if not outcome.ok:
                logger.error("channel %s: unrecorded alert not delivered (kept for the outbox): %s", channel, outcome.error)
            for a in group:
                if a.key in outcomes:
                    outcomes[a.key][channel] = self.clock() if outcome.ok else None

        await asyncio.gather(*(send(name, group) for name, group in outbox.items() if group))
        self.unrecorded += [(a, outcomes[a.key]) for a in alerts]

    async def record_unrecorded(self, now: datetime) -> None:
        """The database takes writes again: record the alerts that went out without it, so the
        history is whole and a channel that missed one gets it from the outbox."""
        batch, self.unrecorded = self.unrecorded, []  # taken: other accounts' polls go on meanwhile
        try:
            await self.store_thread.record_sent(batch, now)
        except StoreError as e:
            logger.error("cannot yet record the alerts sent without the database: %s", e)
            self.unrecorded[:0] = batch
            return
        logger.warning("recorded %d alert(s) sent while the database was failing", len(batch))
        self.wake()

    async def deliver_once(self, channel: str | None = None) -> None:
        from alerter.delivery import deliver_due

        await deliver_due(self.store_thread, self.notifier, self.settings.channels, self.clock(),
                          expiry=self.settings.daemon.alert_expiry, channel=channel)

    async def delivery_loop(self, idle: float = 1.0) -> None:
        """One worker per channel, so a slow or failing channel never holds up another; and a
        tick that shows the event loop turns (the watchdog's proof of life)."""
        await asyncio.gather(self.tick(idle), *(self.channel_worker(c.name, idle) for c in self.settings.channels))

    async def tick(self, idle: float) -> None:
        while not self.stopping.is_set():
            self.last_loop_at = self.clock()
            await asyncio.sleep(idle)

    async def channel_worker(self, channel: str, idle: float) -> None:
        """Deliver what is due to one channel; wake at once when a poll records alerts."""
        wake = self.wakes.setdefault(channel, asyncio.Event())
        self.workers[channel] = asyncio.current_task()
        while not self.stopping.is_set() and self.wakes.get(channel) is wake:  # a reload removes a channel's wake
            try:
                await self.deliver_once(channel)
            except StoreError as e:
                logger.error("cannot read the outbox: %s", e)
            except Exception:  # a delivery bug must not stop polling; the outbox keeps the alerts
                logger.exception("delivery to %s failed; the alerts stay in the outbox", channel)
            wake.clear()
            try:
                async with asyncio.timeout(idle):  # not wait_for (see PriceStream.run)
                    await wake.wait()
            except TimeoutError:
                pass

    async def send_digest(self, name: str) -> bool:
        """The channel's daily digest (alerter.digest), unless today's (in the channel's time zone)
        was sent: a restart or a late retry never sends it twice. A failed send is tried again
        every DIGEST_RETRY until it goes out or the day ends. Returns whether it was sent."""
        from alerter import digest
        from alerter.notify import Notifier

        channel = next((c for c in self.settings.channels if c.name == name and c.digest), None)
        if channel is None:  # removed by a reload
            return False
        now = self.clock()
        day = digest.local_day(now, channel.timezone).isoformat()
        try:
            sent_at = await self.store_thread.digest_sent(name, day)
            if sent_at is not None:
                logger.info("digest for %s: already sent for %s (at %s)", name, day, display.time_of_day(sent_at))
                return False
            data = await digest.gather(self.store_thread, self.plans, name, channel.timezone, now)
        except StoreError as e:
            logger.error("digest for %s: cannot read the database: %s", name, e)
            self.retry_digest(channel, day)
            return False
        notifier: Notifier = self.notifier
        title, body = digest.render(data, markdown=notifier.markdown(name))

        async def send_and_record() -> bool:
            outcome = await notifier.send(name, title, body, notify_type="info")
            metrics.observe_delivery(name, outcome.ok)
            if not outcome.ok:
                logger.warning("digest for %s not delivered: %s", name, outcome.error)
                self.retry_digest(channel, day)
                return False
            try:
                await self.store_thread.record_digest(name, day, self.clock())
            except StoreError as e:
                logger.error("digest for %s sent but not recorded (a restart today may send it again): %s", name, e)
            logger.info("digest sent to %s", name)
            return True

        # a stop while it is being sent waits for it to be recorded (the stop waits for self.jobs):
        # cut between the two, a restart would send it again
        task = asyncio.ensure_future(send_and_record())
        self.jobs.add(task)
        task.add_done_callback(self.jobs.discard)
        return await asyncio.shield(task)

    def retry_digest(self, channel, day: str) -> None:
        from apscheduler.triggers.date import DateTrigger

        from alerter.digest import local_day

        if self.scheduler is None or local_day(self.clock() + DIGEST_RETRY, channel.timezone).isoformat() != day:
            return  # the next digest is the next day's
        self.scheduler.add_job(self.run_job, DateTrigger(datetime.now(UTC) + DIGEST_RETRY), args=[self.send_digest, channel.name], id=f"digest-retry:{channel.name}",
                               replace_existing=True, misfire_grace_time=int(DIGEST_GRACE.total_seconds()))

    async def housekeeping(self) -> None:
        try:
            removed = await self.store_thread.prune_samples(self.clock() - self.settings.daemon.history_retention)
        except StoreError as e:
            logger.error("cannot prune history: %s", e)
            return
        if removed:
            logger.info("pruned %d health samples older than %s", removed, self.settings.daemon.history_retention)

    # ------------------------------------------------------------ scheduling

    def schedule(self, scheduler) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        start = datetime.now(UTC)
        for i, plan in enumerate(self.plans.values()):
            self.schedule_poll(scheduler, plan, start + timedelta(milliseconds=50 * i))
        self.schedule_prices(scheduler, start)
        self.schedule_digests(scheduler, start)
        scheduler.add_job(self.housekeeping, IntervalTrigger(hours=1), id="housekeeping", next_run_time=start + timedelta(minutes=1))

    def schedule_digests(self, scheduler, now: datetime) -> None:
        """One cron job per channel with a digest, at its time in its time zone. A digest whose
        time passed less than DIGEST_GRACE ago (the daemon was down, or restarted, or the digest
        was just configured) runs at once: it is sent unless today's already was."""
        from apscheduler.triggers.cron import CronTrigger

        from alerter.config import clock_time

        for job in scheduler.get_jobs():
            if job.id.startswith("digest:"):
                job.remove()
        for channel in self.settings.channels:
            if not channel.digest:
                continue
            hour, minute, second = clock_time(channel.digest)
            tz = ZoneInfo(channel.timezone)
            trigger = CronTrigger(hour=hour, minute=minute, second=second, timezone=tz)
            local = now.astimezone(tz)
            last = local.replace(hour=hour, minute=minute, second=second, microsecond=0)
            if last > local:
                last -= timedelta(days=1)
            first = now if now - last < DIGEST_GRACE else trigger.get_next_fire_time(None, now)
            scheduler.add_job(self.run_job, trigger, args=[self.send_digest, channel.name], id=f"digest:{channel.name}",
                              name=f"digest {channel.name}", next_run_time=first, max_instances=1, coalesce=True,
                              misfire_grace_time=int(DIGEST_GRACE.total_seconds()))

    def schedule_poll(self, scheduler, plan: AccountPlan, first_at: datetime) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        interval = plan.poll_interval
        jitter = min(5.0, interval.total_seconds() * 0.1)
        scheduler.add_job(
            self.run_job, IntervalTrigger(seconds=interval.total_seconds(), jitter=jitter),
            args=[self.poll_account, plan.name], id=f"poll:{plan.name}", name=f"poll {plan.name}",
            next_run_time=first_at, max_instances=1, coalesce=True,
            misfire_grace_time=max(1, int(interval.total_seconds())),
        )

    def schedule_prices(self, scheduler, start: datetime) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        price_interval = self.settings.daemon.price_interval
        for i, names in enumerate(self.price_groups()):
            scheduler.add_job(
                self.run_job, IntervalTrigger(seconds=price_interval.total_seconds()), args=[self.check_prices, names],
                id=f"prices:{i}", name=f"mark prices {', '.join(names)}",
                next_run_time=start + price_interval, max_instances=1, coalesce=True,
                misfire_grace_time=max(1, int(price_interval.total_seconds())),
            )

    def spawn(self, job, *args) -> None:
        """Run a job now, outside the schedule (a stream's fallback, a poll a stream asked for),
        tracked like a scheduled one."""
        task = asyncio.get_running_loop().create_task(self.run_job(job, *args))
        self._spawned.add(task)
        task.add_done_callback(self._spawned.discard)

    async def run_job(self, job, *args):
        """A scheduled coroutine. A stop cancels the jobs in flight (APScheduler's shutdown), which
        APScheduler would log as a failed job with a traceback: that is an ordinary end here.
        Nothing is left half-recorded: the store's transaction runs whole on the store's thread
        (a cancelled await does not cancel it, and the close queues behind it). Jobs in
        flight are tracked, so a stop waits for them before it closes their exchanges."""
        task = asyncio.current_task()
        self.jobs.add(task)
        try:
            return await job(*args)
        except asyncio.CancelledError:
            if not self.stopping.is_set():
                raise
            logger.info("%s%s cut short by the stop", job.__name__, args)
            return None
        finally:
            self.jobs.discard(task)

    def price_groups(self) -> list[list[str]]:
        """Accounts that re-price between polls, grouped by their market key (the exchange and
        how it is reached): one public mark-price request serves a whole group."""
        groups: dict[str, list[str]] = {}
        for plan in self.plans.values():
            if plan.repricing:
                groups.setdefault(plan.market_key, []).append(plan.name)
        return list(groups.values())

    async def run(self, *, on_ready: Callable[[], None] | None = None) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self.handle_signals(asyncio.get_running_loop())
        await self.serve_metrics()
        scheduler = self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.schedule(scheduler)
        scheduler.start()
        from alerter.streams import Streams

        self.streams = Streams(self)
        self.streams.start()
        delivery = asyncio.create_task(self.delivery_loop(), name="delivery")
        watchdog = asyncio.create_task(self.watchdog(scheduler), name="watchdog")
        logger.info("watching %d account(s), delivering to %d channel(s)", len(self.plans), len(self.settings.channels))
        sdnotify.notify("READY=1")
        if on_ready:
            on_ready()
        try:
            await self.stopping.wait()
        finally:
            logger.log(logging.WARNING if self.exit_code else logging.INFO, "stopping%s", f" ({self.stop_reason})" if self.stop_reason else "")
            sdnotify.notify("STOPPING=1")
            scheduler.shutdown(wait=False)
            if self.streams is not None:
                await self.streams.close()
            if self.jobs:  # polls in flight end (cancelled, bounded) before their exchanges close
                await asyncio.wait(set(self.jobs), timeout=self.settings.daemon.request_timeout.total_seconds() + 1)
            await cancel_all((delivery, watchdog, *self.reloads, *self.workers.values()), "delivery")
            await asyncio.gather(*(s.close() for s in self.sources.values()), return_exceptions=True)
            if self.metrics_server is not None:
                await self.metrics_server.close()
            await self.store_thread.close()

    def alive(self, scheduler, now: datetime) -> bool:
        """The scheduler runs and the delivery loop came round recently."""
        return scheduler.running and (now - self.last_loop_at) < timedelta(seconds=30)

    async def watchdog(self, scheduler) -> None:
        """Ping systemd's watchdog only while the daemon's loops are alive: a hung event loop
        (or a dead delivery loop) stops the pings and systemd restarts the service."""
        interval = sdnotify.watchdog_interval()
        if interval is None:
            return
        while True:
            if self.alive(scheduler, self.clock()):
                sdnotify.notify("WATCHDOG=1")
            else:
                logger.error("delivery loop or scheduler stalled: not pinging the watchdog")
            await asyncio.sleep(interval)

    def wake(self) -> None:
        for event in self.wakes.values():
            event.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake()

    # ------------------------------------------------------------ reload and signals

    def handle_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGTERM and SIGINT stop; SIGHUP reloads the configuration; every other signal that would
        end the process silently (FATAL_SIGNALS) is logged and stops it just as cleanly, with exit
        status 128 + its number, so a supervisor sees a failure (systemd's Restart=on-failure
        restarts the service) rather than a clean exit."""
        handlers = {sig: self.on_stop_signal for sig in (*STOP_SIGNALS, *FATAL_SIGNALS)}
        handlers[signal.SIGHUP] = self.on_reload_signal
        for sig, handler in handlers.items():
            try:
                loop.add_signal_handler(sig, handler, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or not on this platform
                pass

    def on_stop_signal(self, sig: int) -> None:
        if self.stopping.is_set():
            return
        if sig in STOP_SIGNALS:
            self.stop_reason = signal_name(sig)
        else:
            self.exit_code = 128 + sig
            self.stop_reason = f"{signal_name(sig)}: not a signal alerter acts on; exit status {self.exit_code}"
        self.stop()

    def on_reload_signal(self, sig: int) -> None:
        if self.stopping.is_set():
            return
        task = asyncio.get_running_loop().create_task(self.reload_from_file(), name="reload")
        self.reloads.add(task)
        task.add_done_callback(self.reloads.discard)

    async def reload_from_file(self) -> bool:
        """Re-read the configuration file the daemon started with, check it as `run` does at start,
        and apply it. On any problem the running configuration stays (one log line per problem).
        systemd hears RELOADING=1 … READY=1 around it (sd_notify(3)), so `systemctl reload` waits."""
        import time

        from alerter.errors import ConfigError

        async with self.reloading:
            sdnotify.notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
            where = self.parts.config if self.parts is not None else None
            try:
                logger.info("reload: re-reading %s", where or "the configuration")
                try:
                    if where is None:
                        raise ConfigError("no configuration file to re-read (this daemon was not started from one)")
                    new = await asyncio.to_thread(self.parts.load)
                except ConfigError as e:
                    for problem in e.problems:
                        logger.error("reload refused: %s", problem)
                    count = len(e.problems)
                    logger.error("reload: still running the previous configuration (%d problem%s in %s)", count, "s" if count != 1 else "", where)
                    return False
                return await self.reload(new)
            except Exception:  # a reload bug must not end the monitoring
                logger.exception("reload failed; the daemon keeps running")
                return False
            finally:
                sdnotify.notify("READY=1")

    async def reload(self, new: Settings) -> bool:
        """Apply a validated configuration while running. Kept: the store (state, history, outbox),
        the sources of accounts whose connection settings did not change, the scheduled polls of
        unchanged accounts. Closed: the sources of removed accounts and of accounts whose
        exchange, keys, ccxt options or streams (on or off) changed (rebuilt). Rebuilt: the
        notifier; channel workers start for added channels and end for removed ones (whose
        pending deliveries stay in the outbox, see note_removed_channels). Accounts added,
        changed, or with new thresholds are polled at once. Returns False when refused (the
        database cannot change without a restart)."""
        from alerter.changes import describe_changes

        old = self.settings
        if new.daemon.database != old.daemon.database:
            logger.error("reload refused: daemon.database: switching from %s to %s needs a restart", old.daemon.database, new.daemon.database)
            logger.error("reload: still running the previous configuration")
            return False
        new_plans = plans(new)
        changes = describe_changes(old, new, self.plans, new_plans)
        before, after = {a.name: a for a in old.accounts}, {a.name: a for a in new.accounts}

        def connection(settings: Settings, account, plans: dict[str, AccountPlan]) -> tuple:
            # streams: a streaming account's source is built from ccxt.pro's class (runtime.Parts.source)
            return (settings.daemon.request_timeout, plans[account.name].streams,
                    account.connection())

        fresh = {name: self.parts.source(new, account) for name, account in after.items()
                 if name not in before or connection(old, before[name], self.plans) != connection(new, account, new_plans)}
        retired = [name for name in before if name not in after or name in fresh]
        scheduler = self.scheduler
        if scheduler is not None and retired:
            # no new poll (or price check) may start with a source about to close ...
            for name in retired:
                if scheduler.get_job(f"poll:{name}") is not None:
                    scheduler.remove_job(f"poll:{name}")
            for job in scheduler.get_jobs():
                if job.id.startswith("prices:"):
                    job.remove()
            # ... and those in flight end with the parts they started with
            if self.jobs:
                timeout = 3 * old.daemon.request_timeout.total_seconds() + 15
                _, late = await asyncio.wait(set(self.jobs), timeout=timeout)
                if late:
                    logger.warning("reload: %d poll(s) still running after %g s; applying the new configuration anyway", len(late), timeout)
        if self.stopping.is_set():
            await asyncio.gather(*(s.close() for s in fresh.values()), return_exceptions=True)
            return False
        # the swap: no await until every part runs on the new settings
        sources, old_plans = self.sources, self.plans
        self.settings, self.plans = new, new_plans
        self.sources = {name: fresh.get(name) or sources[name] for name in after}
        self.notifier = self.parts.notifier(new)
        self.parts.log_level(new)
        for name in retired:
            self.confirmed.pop(name, None)  # a snapshot taken with other keys is no basis for estimates
        for name in before.keys() - after.keys():
            self.unsaved.pop(name, None)
            self.polled.discard(name)
        if scheduler is not None:
            self.reschedule(scheduler, old_plans)
        logger.info("reload: %s", ", ".join(changes) if changes else "no changes")
        await self.note_removed_channels(old)
        if new.daemon.metrics != old.daemon.metrics:
            if self.metrics_server is not None:
                await self.metrics_server.close()
                self.metrics_server = None
            await self.serve_metrics()
        if scheduler is not None:
            await self.sync_workers(old)

        def streaming(settings: Settings, plans: dict[str, AccountPlan]) -> tuple:
            return (settings.daemon.stream_timeout, settings.daemon.price_interval,
                    sorted((p.name, p.market_key, p.repricing, p.poll_interval) for p in plans.values() if p.streams))

        if self.streams is not None and (retired or streaming(old, old_plans) != streaming(new, new_plans)):
            await self.streams.restart()  # accounts, keys or intervals changed: the streams afresh
        await asyncio.gather(*(sources[name].close() for name in retired), return_exceptions=True)
        return True

    def reschedule(self, scheduler, before: dict[str, AccountPlan]) -> None:
        """The poll jobs for the new plans: unchanged accounts keep their job and its timing."""
        now = datetime.now(UTC)
        for i, plan in enumerate(self.plans.values()):
            job_id, was = f"poll:{plan.name}", before.get(plan.name)
            first_at = now + timedelta(milliseconds=50 * i)
            if scheduler.get_job(job_id) is None:  # added, or its source was rebuilt
                self.schedule_poll(scheduler, plan, first_at)
            elif was.poll_interval != plan.poll_interval:
                scheduler.remove_job(job_id)
                self.schedule_poll(scheduler, plan, first_at)
            elif was.thresholds != plan.thresholds:
                scheduler.modify_job(job_id, next_run_time=first_at)  # the new thresholds apply now
        for name in before.keys() - self.plans.keys():
            if scheduler.get_job(f"poll:{name}") is not None:
                scheduler.remove_job(f"poll:{name}")
        for job in scheduler.get_jobs():
            if job.id.startswith("prices:"):
                job.remove()
        self.schedule_prices(scheduler, now)
        self.schedule_digests(scheduler, now)

    async def note_removed_channels(self, old: Settings) -> None:
        """A removed channel's pending deliveries are neither sent elsewhere nor dropped: they stay
        in the outbox, go out if a channel of that name comes back before they expire
        (alert_expiry), and expire as usual otherwise. Say so when there are some."""
        from alerter.changes import show

        names = {c.name for c in self.settings.channels}
        for channel in old.channels:
            if channel.name in names:
                continue
            try:
                pending = len(await self.store_thread.deliveries(channel=channel.name, status="pending"))
            except StoreError as e:
                logger.error("reload: cannot count the pending alerts of %s: %s", channel.name, e)
                continue
            if pending:
                logger.warning("reload: %d alert(s) pending for the removed channel %s stay in the outbox: sent if it is "
                               "configured again within %s (alert_expiry), else they expire", pending, channel.name, show(self.settings.daemon.alert_expiry))

    async def sync_workers(self, old: Settings) -> None:
        """One delivery worker per configured channel: a removed channel's worker ends after its
        current round; an added channel gets one (after the old one, if it was removed and added
        back, has ended: never two workers sending one channel's alerts)."""
        names = [c.name for c in self.settings.channels]
        previous = {c.name for c in old.channels}
        for name in previous - set(names):
            wake = self.wakes.pop(name, None)
            if wake is not None:
                wake.set()
        for name in names:
            if name in previous:
                continue
            worker = self.workers.get(name)
            if worker is not None and not worker.done():
                await asyncio.wait({worker}, timeout=60)
            if self.stopping.is_set():
                return
            self.wakes[name] = asyncio.Event()
            self.workers[name] = asyncio.create_task(self.channel_worker(name, 1.0), name=f"deliver {name}")

    async def serve_metrics(self) -> None:
        address = self.settings.daemon.metrics
        if not address:
            return
        try:
            self.metrics_server = await metrics.start_metrics_server(address)
            logger.info("metrics on %s", self.metrics_server.url)
        except (OSError, ValueError) as e:
            logger.error("metrics: cannot serve on %s: %s", address, e)


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:  # real-time signals have no name of their own
        return f"SIGRTMIN+{sig - signal.SIGRTMIN}"


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Signals whose default action ends the process without a word. Python already ignores SIGPIPE
# and SIGXFSZ; the synchronous faults (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) cannot be handled
# on the event loop: `alerter run` enables faulthandler for those.
FATAL_SIGNALS = tuple(getattr(signal, name) for name in (
    "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM", "SIGPROF", "SIGXCPU", "SIGIO", "SIGPWR", "SIGSTKFLT",
) if hasattr(signal, name)) + tuple(range(getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", -1) + 1))
