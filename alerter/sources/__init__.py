"""Venue sources: the only package that imports ccxt, and only inside functions.

    source = build_source(account)            # the account's venue, read by its profile
    snapshot = await source.fetch_snapshot()  # AccountSnapshot, or SourceError(kind=...)
    await source.close()

Each venue's answer is turned into an AccountSnapshot by the pure normaliser of its profile (one
module per venue, listed by alerter.sources.registry, imported when an account asks for it);
`generic` only for an account that asks for it. Nothing here imports ccxt or alerter.config.
"""

from alerter.sources.errors import SourceError, classify, describe
from alerter.sources.exchange import RetryPolicy, SharedMarkets, Source, build_source, check_capabilities, deep_merge

__all__ = ["RetryPolicy", "SharedMarkets", "Source", "SourceError", "build_source", "check_capabilities", "classify",
           "deep_merge", "describe"]
