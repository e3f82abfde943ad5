"""One poll of one account, end to end: fetch → health → decide (with the stored state) →
store state + outbox (one transaction) → hand to delivery (`on_recorded` wakes the channel
workers). Nothing is sent before it is recorded — unless the database fails: then the poll's
alerts go out directly (`deliver_unrecorded`), the state waits in memory, and both are recorded
once the database takes writes again (`record_unrecorded`).

Between full polls the fast path re-prices each account's last confirmed snapshot at fresh mark
prices (`check_prices` by REST, `reprice_from` for a stream's ticks) and runs the estimate
through the same policy.

`Pipeline` holds the running configuration (settings, plans, sources, notifier); the daemon
swaps it on reload (`configure`). The store is reached only through `StoreThread`, so a locked or
slow database delays no poll. Without a store (`alerter check`), `fetch` still works and nothing
is recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from alerter import display, metrics
from alerter.errors import StoreError
from alerter.health import evaluate, reprice
from alerter.models import ACCOUNT_SCOPE, AccountSnapshot, Alert, AlertKind, Health
from alerter.plan import AccountPlan, plans as make_plans
from alerter.policy import (
    NOTICE_LEVEL, decide_account, decide_failure, decide_store_failure, notice_alert, notice_due, settle_acks,
)

if TYPE_CHECKING:
    from alerter.config import Settings
    from alerter.sources.stream import Notice
    from alerter.storethread import StoreThread

logger = logging.getLogger(__name__)

MAX_PAUSE = timedelta(hours=1)  # the longest Retry-After honoured: monitoring resumes after at most this
DESCRIBE_ISOLATED = 5  # isolated positions named in a poll's log line (the worst); the rest counted


def utcnow() -> datetime:
    return datetime.now(UTC)


def pause_note(asked_s: float, until: datetime) -> str:
    """What a blind alert says about a Retry-After pause."""
    capped = f" (capped at {display.duration(MAX_PAUSE)})" if asked_s > MAX_PAUSE.total_seconds() else ""
    return (f"rate limited by the exchange: it asked for a pause of {display.duration(timedelta(seconds=asked_s))}; "
            f"no poll before {until:%H:%M:%S} UTC{capped}")


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


def price_groups(plans: Iterable[AccountPlan]) -> dict[str, list[str]]:
    """Accounts that re-price between polls, by their market key (the exchange and how it is
    reached): one mark-price request, or one price stream, serves a whole group."""
    groups: dict[str, list[str]] = {}
    for plan in plans:
        if plan.repricing:
            groups.setdefault(plan.market_key, []).append(plan.name)
    return groups


def channels_of(plan: AccountPlan, channels: Iterable) -> list:
    """The configured channels (ChannelConfig) that hear the account of `plan`."""
    return [c for c in channels if c.name in plan.channels]


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


class Feeds(Protocol):
    """What the pipeline asks of the streams (alerter.streams.Streams) while they run."""

    def polled(self, name: str) -> None: ...

    def prices_live(self, name: str) -> bool: ...


class Pipeline:
    """Every stage of a poll, for the accounts of the running configuration.

    `poll_account(name)` is one full poll; `check_prices(names)` and `reprice_from(names, marks,
    as_of)` are the fast path's estimates; `handle(poll)` decides, records and hands over a poll
    made elsewhere (`alerter check --notify`). Never raises for exchange, data or database
    problems: they count towards "monitoring blind"."""

    def __init__(self, settings: Settings, *, sources: dict, store: StoreThread | None = None, notifier=None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.plans = make_plans(settings)
        self.sources = sources
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.feeds: Feeds | None = None  # the streams, while they run
        self.on_recorded: Callable[[], None] = lambda: None  # alerts are in the outbox: wake the channel workers
        self.paused: dict[str, tuple[datetime, str]] = {}  # account → (no poll before, why): Retry-After
        self.in_flight: set[str] = set()  # accounts whose full poll is in flight (see reprice_from)
        self.confirmed: dict[str, tuple[datetime, AccountSnapshot]] = {}  # last full poll per account
        self.priced_at: dict[str, float] = {}  # account → how new (loop time) the marks of its last estimate were
        self.locks: dict[str, asyncio.Lock] = {}  # one decision per account at a time
        self.polled: set[str] = set()  # accounts polled successfully since the last heartbeat
        self.unsaved: dict[str, dict] = {}  # account → states the database could not take
        self.unrecorded: list[tuple[Alert, dict[str, datetime | None]]] = []  # sent directly: (alert, channel → sent at)
        self.store_blind_at: datetime | None = None
        self.noticed: dict[tuple[str, str], datetime] = {}  # (account, notice key) → when it was last told

    def configure(self, settings: Settings, plans: dict[str, AccountPlan], sources: dict, notifier, rebuilt: Iterable[str]) -> None:
        """Run on a new configuration (a reload). `rebuilt`: accounts removed or whose source was
        rebuilt: a snapshot taken with other keys is no basis for estimates."""
        removed = self.plans.keys() - plans.keys()
        self.settings, self.plans, self.sources, self.notifier = settings, plans, sources, notifier
        for name in rebuilt:
            self.confirmed.pop(name, None)
        for name in removed:
            self.unsaved.pop(name, None)
            self.polled.discard(name)

    def account_config(self, name: str):
        return next(a for a in self.settings.accounts if a.name == name)

    # ------------------------------------------------------------ full polls

    async def poll_account(self, name: str, notices: tuple[Alert, ...] | list[Alert] = ()) -> list[Alert]:
        """One poll of one account: fetch, evaluate, decide, record. `notices`: the exchange's own
        notices that asked for this poll (`notices_due`), recorded and sent with it."""
        self.in_flight.add(name)
        try:
            return await self.handle(replace(await self.fetch(name), notices=tuple(notices)))
        finally:
            self.in_flight.discard(name)

    async def fetch(self, name: str) -> Poll:
        """Fetch and evaluate one account, unless the exchange asked for a pause (then the poll
        fails without a request: a poll missed is a failed poll). Keeps the snapshot as the basis
        of estimates, or drops the old one when the poll failed."""
        now = self.clock()
        until, note = self.paused.get(name, (now, ""))
        if now < until:
            return Poll(name, error=f"transient: {note}", error_kind="transient")
        self.paused.pop(name, None)
        plan = self.plans[name]
        started = asyncio.get_running_loop().time()
        poll = await fetch_health(plan, self.sources[name])
        if poll.retry_after_s is not None and poll.retry_after_s > plan.poll_interval.total_seconds():
            until = self.clock() + min(timedelta(seconds=poll.retry_after_s), MAX_PAUSE)
            note = pause_note(poll.retry_after_s, until)
            self.paused[name] = (until, note)
            poll = replace(poll, error=f"{poll.error}; {note}")
        if poll.snapshot is not None:
            self.confirmed[name] = (self.clock(), poll.snapshot)
            # its marks are at least as new as its request: marks asked for before are older
            self.priced_at[name] = max(self.priced_at.get(name, started), started)
            if self.feeds is not None:
                self.feeds.polled(name)
        else:  # a failed full poll: no estimates until one succeeds (they would "restore" a blind account)
            self.confirmed.pop(name, None)
        return poll

    async def notices_due(self, name: str, exchange: str, notices: Iterable[Notice]) -> list[Alert]:
        """The alerts for the exchange's notices that are told (policy.notice_due), `exchange` as
        it calls itself. When one was last told comes from memory (by the positions it names), or
        after a restart from the alerts in the store (by its text)."""
        now = self.clock()
        plan = self.plans.get(name)
        alerts = []
        for notice in notices if plan is not None else ():
            last_at = self.noticed.get((name, notice.key))
            if last_at is None and self.store is not None:
                try:
                    last_at = await self.store.last_notice_at(name, notice.text)
                except StoreError as e:  # unknown: tell rather than hide
                    logger.error("%s: cannot read the notices already told: %s", name, e)
            if notice_due(last_at, now, plan.repeat.after(NOTICE_LEVEL)):
                self.noticed[(name, notice.key)] = now
                alerts.append(notice_alert(name, exchange, notice, now))
            else:
                logger.info("%s: %s (told at %s: not again before the call repeat)", name, notice.text, last_at.strftime("%H:%M:%S UTC"))
        return alerts

    # ------------------------------------------------------------ the fast path

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

    async def check_prices(self, names: list[str]) -> int:
        """The fast path between full polls: one public mark-price request for every position of
        these accounts (all on one exchange), then each account's last confirmed snapshot is
        re-priced and goes through the policy as an estimate. Accounts whose mark prices arrive
        by stream are left out while their stream is up. Returns how many were evaluated."""
        from alerter.sources import SourceError

        if self.feeds is not None:
            names = [name for name in names if not self.feeds.prices_live(name)]
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

    # ------------------------------------------------------------ decide and record

    async def handle(self, poll: Poll) -> list[Alert]:
        """Decide, record and hand over one poll (full or estimated); returns its alerts."""
        # One account's polls are decided, recorded and sent one at a time, in order: recording
        # awaits the store's thread, and two decisions from the same previous state would repeat
        # or contradict each other.
        async with self.locks.setdefault(poll.account, asyncio.Lock()):
            if poll.basis is not None and self.confirmed.get(poll.account, (None, None))[1] is not poll.basis:
                logger.debug("%s: estimate dropped, a full poll came in meanwhile", poll.account)
                return []  # re-priced from positions a newer full poll (or its failure) has replaced
            alerts, store_error = await self.record(poll)
            if store_error is not None:
                await self.deliver_unrecorded(self.plans[poll.account], alerts, store_error)
            elif alerts:
                self.on_recorded()
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
                previous, acked = await self.store.load_decision(name)
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
                routes = route_all(alerts, channels_of(plan, self.settings.channels))
                await self.store.commit_poll(name, states, samples, alerts, routes, now, snapshot=confirmed,
                                             ended_acks=[acks[scope] for scope in ended],
                                             poll_error=(poll.error_kind or "data", poll.error) if poll.error is not None else None)
                self.unsaved.pop(name, None)
            except StoreError as e:
                error = e
        if error is None and self.unrecorded:
            await self.record_unrecorded(now)
        if error is not None:
            self.unsaved[name] = states
        for a in alerts:
            logger.log(logging.WARNING if a.kind in (AlertKind.RAISED, AlertKind.REPEAT, AlertKind.BLIND) else logging.INFO,
                       "%s: alert %s %s (%s)", name, a.kind, a.level.label, a.scope)
        return alerts, error

    # ------------------------------------------------------------ the database down

    async def deliver_unrecorded(self, plan: AccountPlan, alerts: list[Alert], error: StoreError) -> None:
        """The database cannot take the poll: send its alerts straight away, and to every channel
        the notice that the database is failing when the policy says it is due."""
        from alerter.notify import message_level, render, route_all

        now = self.clock()
        logger.error("database failing, alerts sent without being recorded: %s", error)
        routes = route_all(alerts, channels_of(plan, self.settings.channels))
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
            await self.store.record_sent(batch, now)
        except StoreError as e:
            logger.error("cannot yet record the alerts sent without the database: %s", e)
            self.unrecorded[:0] = batch
            return
        logger.warning("recorded %d alert(s) sent while the database was failing", len(batch))
        self.on_recorded()
