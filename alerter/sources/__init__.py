"""Exchange sources: the only package that imports ccxt, and only inside functions.

    source = build_source(account)            # ccxt async exchange with the account's keys
    snapshot = await source.fetch_snapshot()  # AccountSnapshot, or SourceError(kind=...)
    await source.close()

Each exchange's answer is turned into an AccountSnapshot by a pure normaliser, chosen from the
explicit NORMALISERS dict (`generic` for ids not in it).
"""

from alerter.sources.errors import SourceError, classify, scrub
from alerter.sources.exchange import RetryPolicy, SharedMarkets, Source, build_source, check_capabilities, deep_merge
from alerter.sources.registry import NORMALISERS, normaliser_for

__all__ = [
    "NORMALISERS",
    "RetryPolicy",
    "SharedMarkets",
    "Source",
    "SourceError",
    "build_source",
    "check_capabilities",
    "classify",
    "deep_merge",
    "normaliser_for",
    "scrub",
]
