"""What changed between two configurations, in words for the reload log line.

Pure: two Settings (and their plans) in, a list of short phrases out ("+1 account (b)", "−1 channel (mail)",
"thresholds of a changed: call 70%→60%"). A secret (an API key, a channel URL, the heartbeat
URL) and the free-form `ccxt` table are named when they change, never shown.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel, SecretStr

from alerter.display import duration, ratio
from alerter.config import Settings
from alerter.plan import AccountPlan

HIDDEN = frozenset({"ccxt", "url_by_level"})  # may hold tokens (custom headers, channel URLs): named, never shown
THRESHOLD_KEYS = ("warning", "call", "critical", "hysteresis", "target")


def show(value: Any) -> str:
    """A setting's value for a log line: durations as 30s, 5m, 1d; None as off."""
    if value is None:
        return "off"
    if isinstance(value, timedelta):
        return duration(value)
    if isinstance(value, list):
        return ",".join(map(str, value))
    return str(value)


def _pct(x: float | None) -> str:
    return "off" if x is None else ratio(x)


def field_changes(old: BaseModel, new: BaseModel, *, skip: frozenset[str] = frozenset(), ratios: bool = False) -> list[str]:
    """'field old→new' for each field that differs; secrets and hidden fields only by name."""
    out = []
    for name in type(new).model_fields:
        if name in skip:
            continue
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        if name in HIDDEN or isinstance(before, SecretStr) or isinstance(after, SecretStr):
            out.append(f"{name} changed")
        elif ratios:
            out.append(f"{name} {_pct(before)}→{_pct(after)}")
        else:
            out.append(f"{name} {show(before)}→{show(after)}")
    return out


def _counted(sign: str, what: str, names: list[str]) -> str:
    return f"{sign}{len(names)} {what}{'s' if len(names) != 1 else ''} ({', '.join(names)})"


def describe_changes(old: Settings, new: Settings, old_plans: dict[str, AccountPlan], new_plans: dict[str, AccountPlan]) -> list[str]:
    """Every difference that matters to the running daemon, as short phrases (no secrets).
    The plans are those of the two settings (alerter.plan.plans)."""
    parts: list[str] = []
    old_accounts = {a.name: a for a in old.accounts}
    new_accounts = {a.name: a for a in new.accounts}
    old_channels = {c.name: c for c in old.channels}
    new_channels = {c.name: c for c in new.channels}
    for sign, what, a, b in (("+", "account", new_accounts, old_accounts), ("−", "account", old_accounts, new_accounts),
                             ("+", "channel", new_channels, old_channels), ("−", "channel", old_channels, new_channels)):
        names = [n for n in a if n not in b]
        if names:
            parts.append(_counted(sign, what, names))
    for name, account in new_accounts.items():
        if name not in old_accounts:
            continue
        before = old_accounts[name]
        fields = field_changes(before, account, skip=frozenset({"name", "thresholds"}))
        if fields:
            parts.append(f"account {name}: {', '.join(fields)}")
        # the account's own overrides: its effective thresholds where it overrides (or did)
        overridden = set(before.thresholds.model_dump(exclude_none=True)) | set(account.thresholds.model_dump(exclude_none=True))
        t_before, t_after = old_plans[name].thresholds, new_plans[name].thresholds
        moved = [f"{k} {_pct(getattr(t_before, k))}→{_pct(getattr(t_after, k))}"
                 for k in THRESHOLD_KEYS if k in overridden and getattr(t_before, k) != getattr(t_after, k)]
        if moved:
            parts.append(f"thresholds of {name} changed: {', '.join(moved)}")
    for name, channel in new_channels.items():
        if name in old_channels:
            fields = field_changes(old_channels[name], channel, skip=frozenset({"name"}))
            if fields:
                parts.append(f"channel {name}: {', '.join(fields)}")
    for section, ratios in (("thresholds", True), ("repeat", False), ("daemon", False)):
        fields = field_changes(getattr(old, section), getattr(new, section), ratios=ratios)
        if fields:
            parts.append(f"{section}: {', '.join(fields)}")
    return parts

