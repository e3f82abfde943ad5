"""Exchange sources: the only package that imports ccxt, and only inside functions.

    source = build_source(account)            # ccxt async exchange with the account's keys
    snapshot = await source.fetch_snapshot()  # AccountSnapshot, or SourceError(kind=...)
    await source.close()

Each exchange's answer is turned into an AccountSnapshot by the pure normaliser of its profile
(`alerter.sources.registry.PROFILES`, one module per exchange); `generic` only for an account that
asks for it. The names below are loaded on first use, so that alerter.config can read the registry
without importing exchange.py (which imports alerter.config).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SourceError": "alerter.sources.errors",
    "classify": "alerter.sources.errors",
    "describe": "alerter.sources.errors",
    "RetryPolicy": "alerter.sources.exchange",
    "SharedMarkets": "alerter.sources.exchange",
    "Source": "alerter.sources.exchange",
    "build_source": "alerter.sources.exchange",
    "check_capabilities": "alerter.sources.exchange",
    "deep_merge": "alerter.sources.exchange",
    "PROFILES": "alerter.sources.registry",
    "profile_for": "alerter.sources.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
