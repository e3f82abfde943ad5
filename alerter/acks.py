"""`alerter ack` and `alerter unack`'s work: find the scope a person names, record the
acknowledgement with its announcement, and send that announcement when no daemon runs (a running
daemon's channel workers pick it up from the outbox within a second). The commands
(alerter/commands/ack.py, unack.py) print; the decision what an acknowledgement holds back is the
policy's (`ack_holds`, `settle_acks`).

A scope is named as `status` prints it: nothing or "account" for the cross account, "BTC/USDT
long" (short), "BTC/USDT:USDT long (isolated)", "BTC cross" (a margin coin's pool), or the
stored id ("isolated:BTC/USDT:USDT:long"); case and spacing do not matter.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from alerter import display
from alerter.display import shown, where
from alerter.errors import ConfigError
from alerter.models import ACCOUNT_SCOPE, Ack, Level, ScopeState


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def names_of(scope: str) -> set[str]:
    """Every spelling of a scope a person may type (normalised)."""
    names = {scope, display.scope_label(scope) or ACCOUNT_SCOPE, display.scope_label(scope, short=True) or ACCOUNT_SCOPE}
    return {_norm(n) for n in names}



def resolve_scope(account: str, text: str | None, scopes: list[str]) -> str:
    """The scope of `scopes` (the account's) that `text` names; with no text, the account scope,
    or the account's only scope. Raises LookupError with a one-line reason."""
    listing = ", ".join(shown(s) for s in sorted(scopes, key=lambda s: (s != ACCOUNT_SCOPE, s))) or "none"
    if text is None or not text.strip():
        if ACCOUNT_SCOPE in scopes:
            return ACCOUNT_SCOPE
        if len(scopes) == 1:
            return scopes[0]
        raise LookupError(f"{account}: name the scope (scopes: {listing})")
    found = [s for s in scopes if _norm(text) in names_of(s)]
    if len(found) == 1:
        return found[0]
    if found:
        raise LookupError(f"{account}: {text!r} names {len(found)} scopes ({', '.join(found)}): use one of those")
    raise LookupError(f"{account}: no scope {text!r} (scopes: {listing})")


def ack_text(ack: Ack, now: datetime) -> str:
    """"acked 13:05, 1h00m left, adding margin" (times UTC, as everywhere in status)."""
    parts = [f"acked {ack.acked_at:%H:%M}" if ack.acked_at.date() == now.date() else f"acked {ack.acked_at:%Y-%m-%d %H:%M}"]
    parts.append(f"{display.age(ack.until_at - now)} left" if ack.until_at is not None else "until resolved")
    if ack.note:
        parts.append(ack.note)
    return ", ".join(parts)


def acknowledged_text(ack: Ack, now: datetime) -> str:
    """What `alerter ack` (and the Telegram bot's /ack) says it did, in one sentence."""
    held = f"until {display.time_of_day(ack.until_at, now)} or the resolution" if ack.until_at else "until the resolution"
    return (f"acknowledged {where(ack.account, ack.scope)} at {ack.level.name}: its repeats are held back {held}; "
            "a higher level still alerts at once")


def in_force(acks: list[Ack], now: datetime) -> list[Ack]:
    """The acknowledgements whose time has not run out (the daemon deletes the others at its next poll)."""
    return [a for a in acks if a.until_at is None or a.until_at > now]


# ---------------------------------------------------------------- the commands' work

@dataclass(frozen=True)
class Acked:
    ack: Ack
    channels: tuple[str, ...]  # the channels the announcement is for
    sent: dict[str, str | None]  # channel → None when delivered, else the error; empty when a daemon sends it
    daemon: bool  # a daemon runs on the database: it announces it


def _configured(settings, account: str):
    from alerter.plan import plans

    account_plans = plans(settings)
    if account not in account_plans:
        raise ConfigError(f"no account named {account!r} (configured: {', '.join(account_plans) or 'none'})")
    return account_plans[account]


def _last_ratio(store, account: str, scope: str) -> float | None:
    """The scope's margin ratio at its last sample, for an announcement (None: never sampled)."""
    latest = next((s for s in store.latest_samples() if (s.account, s.scope) == (account, scope)), None)
    return latest.margin_ratio if latest else None


def acknowledge_scope(settings, account: str, scope_text: str | None, *, duration: timedelta | None, note: str, now: datetime,
                      in_daemon: bool = False) -> Acked:
    """Record the acknowledgement of a scope at its current level and announce it. Raises
    ConfigError (unknown account or scope), ValueError (nothing to acknowledge), StoreError.
    `in_daemon`: asked from inside the running daemon (its Telegram bot), whose workers send it."""
    from alerter import views
    from alerter.notify import route
    from alerter.pipeline import channels_of
    from alerter.policy import acknowledge

    plan = _configured(settings, account)
    with views.open_store(settings) as store:
        states: dict[str, ScopeState] = store.load_states(account)
        if not states:
            raise ValueError(f"{account}: nothing recorded yet (the daemon has not polled it)")
        try:
            scope = resolve_scope(account, scope_text, list(states))
        except LookupError as e:
            raise ConfigError(str(e)) from None
        try:
            ack, announcement = acknowledge(states[scope], now, until_at=now + duration if duration else None, note=note,
                                            margin_ratio=_last_ratio(store, account, scope), thresholds=plan.thresholds)
        except ValueError as e:
            raise ValueError(f"{where(account, scope)} {e}") from None
        channels = route(announcement, channels_of(plan, settings.channels))
        store.save_ack(ack, announcement, channels)
    sent, daemon = send_now(settings, channels, now) if not in_daemon else ({}, True)
    return Acked(ack, tuple(channels), sent, daemon)


def send_now(settings, channels: list[str], now: datetime) -> tuple[dict[str, str | None], bool]:
    """Deliver what is pending for `channels` unless a daemon holds the database (its workers
    send it: two senders would send it twice). Returns (channel → error or None, daemon running)."""
    from alerter.lockfile import DatabaseInUse, hold_lock

    if not channels:
        return {}, False
    try:
        lock = hold_lock(settings.daemon.database)
    except DatabaseInUse:
        return {}, True
    try:
        return asyncio.run(_deliver(settings, channels, now)), False
    finally:
        os.close(lock)


async def _deliver(settings, channels: list[str], now: datetime) -> dict[str, str | None]:
    from alerter.delivery import deliver_due
    from alerter.logs import setup_logging
    from alerter.notify import Notifier
    from alerter.secrets import of as secrets_of
    from alerter.store import Store
    from alerter.storethread import StoreThread

    setup_logging("warning", secrets_of(settings))
    thread = StoreThread(Store(settings.daemon.database))
    notifier = Notifier(settings.channels)
    out: dict[str, str | None] = {}
    try:
        for channel in channels:
            summary = await deliver_due(thread, notifier, settings.channels, now, expiry=settings.daemon.alert_expiry, channel=channel)
            out[channel] = summary.failed.get(channel)
    finally:
        await thread.close()
    return out


def remove(settings, account: str, scope_text: str | None, now: datetime, *, in_daemon: bool = False) -> Acked:
    """Delete a scope's acknowledgement and announce that its repeats resume, to the channels that
    hear its level. Raises ConfigError (unknown account or scope, or none there), StoreError.
    `in_daemon`: as for `acknowledge_scope`."""
    from alerter import views
    from alerter.notify import route
    from alerter.pipeline import channels_of
    from alerter.policy import unacknowledge

    plan = _configured(settings, account)
    with views.open_store(settings) as store:
        acks = {a.scope: a for a in store.acks(account)}
        scopes = list(dict.fromkeys([*store.load_states(account), *acks]))
        try:
            scope = resolve_scope(account, scope_text, scopes)
        except LookupError as e:
            raise ConfigError(str(e)) from None
        removed, channels = None, []
        if scope in acks:
            announcement = unacknowledge(acks[scope], now, margin_ratio=_last_ratio(store, account, scope), thresholds=plan.thresholds)
            channels = route(announcement, channels_of(plan, settings.channels))
            removed = store.remove_ack(account, scope, announcement, channels)
    if removed is None:
        raise ConfigError(f"{where(account, scope)} is not acknowledged" + (f" (acknowledged: {', '.join(shown(s) for s in acks)})" if acks else ""))
    sent, daemon = send_now(settings, channels, now) if not in_daemon else ({}, True)
    return Acked(removed, tuple(channels), sent, daemon)


def listing(settings, now: datetime) -> list[tuple[Ack, Level | None]]:
    """The acknowledgements in force, each with its scope's level now."""
    from alerter import views

    with views.open_store(settings) as store:
        acks = in_force(store.acks(), now)
        states = {a: store.load_states(a) for a in {ack.account for ack in acks}}
    return [(ack, states[ack.account][ack.scope].level if ack.scope in states[ack.account] else None) for ack in acks]
