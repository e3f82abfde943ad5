"""Pure alert policy: (previous state, new health, thresholds, repeats, now) → (state, alerts).

No I/O and no clock: `now` is a parameter, so a sequence of polls can be replayed exactly.
Rules: escalate at once (to the highest level reached, one alert); de-escalate only below the
lower threshold minus the hysteresis; repeat a holding level on its schedule; announce the
return to ok once; a scope that cannot be fetched is "blind" after N failures (at once for
bad credentials) and "restored" when data returns; an alerting scope missing from a poll is
resolved only when the next full poll confirms it gone (a partial answer reads exactly like a
closed position). An isolated position the exchange's profile cannot evaluate is blind on its
own, at once (it will not become readable by waiting), while the rest of the account is decided
as usual; it is restored when it becomes readable, or when full polls confirm it closed. A
database that cannot record a poll gets its own notice, repeated on the blind schedule.

Acknowledgements (`Ack`, "I'm on it") come in as plain data: one holds back the repeats of its
scope's acknowledged level (and of a lower one the scope falls back to), nothing else: a raise,
a resolution, a blind or restored notice always goes out. `settle_acks` says which
acknowledgements a decision ended (a raise, the resolution, their time run out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from alerter.models import (
    ACCOUNT_SCOPE,
    NOTICE_SCOPE,
    Ack,
    Alert,
    AlertKind,
    Health,
    Level,
    RepeatSchedule,
    ScopeState,
    Thresholds,
)

if TYPE_CHECKING:
    from alerter.sources.stream import Notice

RAISING = (Level.CRITICAL, Level.CALL, Level.WARNING)
CONFIRM_ABSENT = 2  # consecutive full polls without an alerting scope before it is resolved


def level_for(ratio: float, thresholds: Thresholds, current: Level = Level.OK) -> Level:
    """The level a ratio deserves, given the level the scope is at now (for hysteresis)."""
    if ratio != ratio:  # NaN never means "ok"
        raise ValueError("margin ratio is NaN")
    raw = next((lvl for lvl in RAISING if ratio >= thresholds.threshold(lvl)), Level.OK)
    if raw >= current:
        return raw
    for lvl in RAISING:
        if lvl <= current and ratio >= thresholds.threshold(lvl) - thresholds.hysteresis:
            return lvl
    return Level.OK


def _alert(kind: AlertKind, level: Level, health: Health, thresholds: Thresholds, now: datetime, **extra) -> Alert:
    threshold = thresholds.threshold(level) if level > Level.OK else None
    figure = health.own_figure
    return Alert(
        kind=kind,
        level=level,
        account=health.account,
        scope=health.scope,
        created_at=now,
        exchange=health.exchange,
        margin_ratio=health.margin_ratio,
        threshold=threshold,
        equity=health.equity,
        maintenance_margin=health.maintenance_margin,
        deposit_needed=health.deposit_needed,
        repay_needed=health.repay_needed,
        target=thresholds.target,
        liquidation_move=health.liquidation_move,
        top_positions=health.top_positions,
        currency=health.currency,
        estimated=health.estimated,
        approximate=health.approximate,
        figure=figure.text(health.margin_ratio) if figure else "",
        figure_threshold=figure.threshold_text(threshold) if figure and threshold is not None else "",
        way_back=figure.way_back(health.deposit_needed, health.repay_needed) if figure else "",
        distances=figure.distances(health.top_positions, health.currency) if figure else (),
        **extra,
    )


def _due(last_at: datetime | None, interval, now: datetime) -> bool:
    return interval is not None and last_at is not None and now - last_at >= interval


def ack_holds(ack: Ack | None, level: Level, now: datetime) -> bool:
    """The acknowledgement holds back a repeat of `level`: it is at or below the acknowledged
    level (a scope acknowledged at CRITICAL that falls back to CALL stays acknowledged) and the
    acknowledgement's time has not run out."""
    return ack is not None and Level.OK < level <= ack.level and (ack.until_at is None or now < ack.until_at)


def decide(
    previous: ScopeState | None,
    health: Health,
    thresholds: Thresholds,
    repeat: RepeatSchedule,
    now: datetime,
    ack: Ack | None = None,
) -> tuple[ScopeState, list[Alert]]:
    """One successful evaluation of one scope. `ack` (this scope's acknowledgement, if any) holds
    back a repeat that is due; the repeat is not counted as told, so it comes at the first poll
    after the acknowledgement ends."""
    prev = previous or ScopeState(account=health.account, scope=health.scope, since_at=now)
    alerts: list[Alert] = []
    state = prev
    if prev.failures or prev.blind or prev.blind_notified_at is not None:
        state = replace(prev, failures=0, blind=False, blind_notified_at=None)
    if prev.blind:
        alerts.append(_alert(AlertKind.RESTORED, prev.level, health, thresholds, now, since_at=prev.since_at))

    # A clock that jumped back leaves announcements "in the future": count from now instead,
    # so repeats are delayed by one interval at most, never suppressed.
    if state.notified_at is not None and state.notified_at > now:
        state = replace(state, notified_at=now)

    level = level_for(health.margin_ratio, thresholds, prev.level)
    if level > prev.level:
        alerts.append(_alert(AlertKind.RAISED, level, health, thresholds, now, since_at=now))
        state = replace(state, level=level, since_at=now, notified_at=now, peak=max(prev.peak, level))
    elif level == Level.OK and prev.level > Level.OK:
        alerts.append(_alert(AlertKind.RESOLVED, prev.peak, health, thresholds, now, since_at=prev.since_at))
        state = replace(state, level=Level.OK, since_at=now, notified_at=None, peak=Level.OK)
    elif level < prev.level:
        state = replace(state, level=level, since_at=now)
    elif level > Level.OK and _due(state.notified_at, repeat.after(level), now) and not ack_holds(ack, level, now):
        alerts.append(_alert(AlertKind.REPEAT, level, health, thresholds, now, since_at=state.since_at))
        state = replace(state, notified_at=now)
    return state, alerts


def decide_failure(
    previous: ScopeState | None,
    account: str,
    now: datetime,
    reason: str,
    *,
    immediate: bool,
    blind_after: int,
    repeat: RepeatSchedule,
    exchange: str = "",
    scope: str = ACCOUNT_SCOPE,
) -> tuple[ScopeState, list[Alert]]:
    """One failed poll. `immediate` (bad credentials) goes blind at once; otherwise after
    `blind_after` consecutive failures. While blind, the notice repeats on `repeat.blind`."""
    prev = previous or ScopeState(account=account, scope=scope, since_at=now)
    failures = prev.failures + 1
    state = replace(prev, failures=failures)
    if state.blind_notified_at is not None and state.blind_notified_at > now:
        state = replace(state, blind_notified_at=now)
    blind = Alert(
        kind=AlertKind.BLIND,
        level=prev.level,
        account=account,
        scope=scope,
        created_at=now,
        exchange=exchange,
        failures=failures,
        reason=reason,
        since_at=now,
    )
    if not prev.blind and (immediate or failures >= blind_after):
        return replace(state, blind=True, blind_notified_at=now), [blind]
    if prev.blind and _due(state.blind_notified_at, repeat.blind, now):
        return replace(state, blind_notified_at=now), [blind]
    return state, []


NOTICE_LEVEL = Level.CALL  # an exchange's margin call reaches the channels that hear a CALL


def notice_due(last_at: datetime | None, now: datetime, every: timedelta | None) -> bool:
    """Whether an exchange notice about the same positions is told again: the first one always;
    a repeat once `every` (the call level's repeat interval) has passed; never when repeats are off."""
    if last_at is None:
        return True
    if every is None:
        return False
    return now - last_at >= every or now < last_at  # a clock that went back: tell rather than hide


def notice_alert(account: str, exchange: str, notice: Notice, now: datetime) -> Alert:
    """The alert quoting an exchange's own notice (`exchange`: as the exchange calls itself)."""
    return Alert(kind=AlertKind.NOTICE, level=NOTICE_LEVEL, account=account, scope=NOTICE_SCOPE, created_at=now,
                 exchange=exchange, reason=notice.text)


STORE_NOTICE_EVERY = timedelta(hours=1)  # the "database failing" notice when blind repeats are off


def decide_store_failure(
    notified_at: datetime | None,
    reason: str,
    repeat: RepeatSchedule,
    now: datetime,
) -> tuple[datetime | None, list[Alert]]:
    """The database cannot take a poll: a notice to every channel that alerts are not being
    recorded, at most once per blind-repeat interval (hourly when blind repeats are off), and
    again at once when the clock went back. Returns (when it was last announced, [notice])."""
    interval = repeat.blind or STORE_NOTICE_EVERY
    if notified_at is not None and timedelta(0) <= now - notified_at < interval:
        return notified_at, []
    notice = Alert(kind=AlertKind.BLIND, level=Level.OK, account="alerter", scope="database", created_at=now, reason=reason)
    return now, [notice]


def decide_account(
    previous: dict[str, ScopeState],
    healths: list[Health],
    thresholds: Thresholds,
    repeat: RepeatSchedule,
    now: datetime,
    unreadable: Sequence[tuple[str, str]] = (),
    acks: Mapping[str, Ack] | None = None,
) -> tuple[dict[str, ScopeState], list[Alert]]:
    """Every scope of one account after a successful poll.

    A scope the poll does not list (an isolated position closed, or left out of a partial
    answer) is dropped at once when it was ok. One at warning or above keeps its state and
    level, silently, until CONFIRM_ABSENT consecutive full polls have not listed it; then it
    gets its "resolved" notice and is dropped. A re-priced estimate (its healths are
    `estimated`) only re-uses the last full poll's positions: it neither counts nor resolves.

    `unreadable` lists (scope, reason) for isolated positions the poll found but the profile
    cannot evaluate: each is a failed poll of its own scope, blind at once (`decide_failure`
    with `immediate`), repeated on the blind schedule. Blindness is never ended by absence
    alone before CONFIRM_ABSENT full polls; then the scope gets "restored" (position closed)."""
    estimated = any(h.estimated for h in healths)
    states: dict[str, ScopeState] = {}
    alerts: list[Alert] = []
    for health in healths:
        prev = previous.get(health.scope)
        if prev is not None and prev.absent and not estimated:
            prev = replace(prev, absent=0)  # listed again: it was never gone
        states[health.scope], scope_alerts = decide(prev, health, thresholds, repeat, now, (acks or {}).get(health.scope))
        alerts.extend(scope_alerts)
    account = healths[0].account if healths else next((p.account for p in previous.values()), "")
    exchange = healths[0].exchange if healths else ""
    for scope, reason in ([] if estimated else unreadable):  # an estimate carries them over unchanged (below)
        prev = previous.get(scope)
        if prev is not None and prev.absent:
            prev = replace(prev, absent=0)
        states[scope], scope_alerts = decide_failure(prev, account, now, reason, immediate=True, blind_after=1,
                                                     repeat=repeat, exchange=exchange, scope=scope)
        alerts.extend(scope_alerts)
    prev = previous.get(ACCOUNT_SCOPE)
    if prev is not None and prev.blind and healths and not estimated and ACCOUNT_SCOPE not in states:
        # a failed poll blinds the "account" scope; an account whose cross scopes are pools (one
        # per margin coin) has no such scope to restore it, so the poll that succeeds does
        alerts.append(Alert(kind=AlertKind.RESTORED, level=prev.level, account=prev.account, scope=ACCOUNT_SCOPE, created_at=now,
                            since_at=prev.since_at, exchange=exchange))
        if prev.level > Level.OK:
            states[ACCOUNT_SCOPE] = replace(prev, failures=0, blind=False, blind_notified_at=None)
    for scope, prev in previous.items():
        if scope in states or (prev.level == Level.OK and not prev.blind) or (scope == ACCOUNT_SCOPE and prev.blind and healths and not estimated):
            continue
        if estimated:
            states[scope] = prev
            continue
        if prev.absent + 1 < CONFIRM_ABSENT:
            states[scope] = replace(prev, absent=prev.absent + 1)
            continue
        closed = dict(account=prev.account, scope=scope, created_at=now, since_at=prev.since_at, reason="position closed", exchange=exchange)
        if prev.blind:
            alerts.append(Alert(kind=AlertKind.RESTORED, level=prev.level, **closed))
        if prev.level > Level.OK:
            alerts.append(Alert(kind=AlertKind.RESOLVED, level=prev.peak, **closed))
    return states, alerts


def settle_acks(acks: Mapping[str, Ack], states: Mapping[str, ScopeState], alerts: Sequence[Alert], now: datetime) -> dict[str, str]:
    """The acknowledgements (scope → `Ack`) that one decision of their account ends, with why:
    a raise of the scope (an escalation breaks through, and the next repeats are the new
    level's), its resolution (or the scope gone, back at ok), or their time run out. The others
    go on. Blind and restored notices end nothing: the level still holds."""
    ended: dict[str, str] = {}
    for scope, ack in acks.items():
        raised = [a.level for a in alerts if a.scope == scope and a.kind == AlertKind.RAISED]
        state = states.get(scope)
        if state is not None and state.level > ack.level:  # raised past it, by this decision or one not recorded
            raised.append(state.level)
        if raised:
            ended[scope] = f"raised to {max(raised).name}"
        elif any(a.scope == scope and a.kind == AlertKind.RESOLVED for a in alerts) or state is None or state.level == Level.OK:
            ended[scope] = "resolved"
        elif ack.until_at is not None and now >= ack.until_at:
            ended[scope] = "its time ran out"
    return ended


def acknowledge(
    state: ScopeState | None,
    now: datetime,
    *,
    until_at: datetime | None = None,
    note: str = "",
    margin_ratio: float | None = None,
    thresholds: Thresholds | None = None,
) -> tuple[Ack, Alert]:
    """Someone is on it: the scope's acknowledgement at its current level, and the announcement
    for the channels that heard that level. Raises ValueError when there is nothing to
    acknowledge (no state, or the scope is at ok: blind notices are never held back)."""
    if state is None or state.level == Level.OK:
        raise ValueError("is ok: nothing to acknowledge (an acknowledgement holds back the repeats of warning, call or critical)")
    if until_at is not None and until_at <= now:
        raise ValueError("an acknowledgement must last longer than 0")
    ack = Ack(account=state.account, scope=state.scope, level=state.level, acked_at=now, until_at=until_at, note=note)
    announcement = Alert(
        kind=AlertKind.ACKNOWLEDGED, level=state.level, account=state.account, scope=state.scope, created_at=now,
        margin_ratio=margin_ratio, threshold=thresholds.threshold(state.level) if thresholds is not None else None,
        since_at=state.since_at, until_at=until_at, reason=note,
    )
    return ack, announcement


def unacknowledge(ack: Ack, now: datetime, *, margin_ratio: float | None = None, thresholds: Thresholds | None = None) -> Alert:
    """The announcement that `ack` was removed: its level's repeats resume. For the channels that
    heard the acknowledgement (the same level's), never paging (it is what the user just did)."""
    return Alert(
        kind=AlertKind.UNACKNOWLEDGED, level=ack.level, account=ack.account, scope=ack.scope, created_at=now,
        margin_ratio=margin_ratio, threshold=thresholds.threshold(ack.level) if thresholds is not None else None,
        since_at=ack.acked_at, reason=ack.note,
    )
